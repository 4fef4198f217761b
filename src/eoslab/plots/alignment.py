"""Figure of the Gauss–Newton and layerwise decomposition over training (Lowell 2024 Fig. 2–4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eoslab.plots._save import save_figure

COMPONENTS = ("I", "II", "III", "IV", "V")
_NAMES = {
    "I": "(I) output C_L",
    "II": "(II) activation ratios",
    "III": "(III) layerwise norms",
    "IV": "(IV) coupling",
    "V": "(V) alignment",
}


def plot_alignment(
    rows: list[dict],
    path: str | Path,
    *,
    summary: dict | None = None,
    layer: int = 1,
    title: str | None = None,
) -> list[Path]:
    """Plot the Gauss–Newton and layerwise decomposition over time; write PNG and PDF.

    Top: λ_1(H), λ_1(G), λ_1(H − G) and the counterfactual λ̃_1(G); bottom: layer ``layer``'s
    five components relative to their first value (``docs/methods.md`` §4–5).

    Args:
        rows: analysis rows (``RunStore.rows("analysis")``), each with ``step``, ``time``,
            ``lambda_H``, ``lambda_G`` and, for MLPs, ``comp<ℓ>_<I…V>``.
        path: output path with or without suffix.
        summary: ``results/analysis_summary.json`` content (adds the counterfactual curve
            and the stable threshold 2/η).
        layer: the layer whose components are drawn.
        title: figure title.

    Returns:
        The written file paths.

    Raises:
        ValueError: if ``rows`` is empty.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no analysis rows to plot; run `eoslab analyze RUN` first")
    rows = sorted(rows, key=lambda r: r["step"])
    t = np.array([r.get("time", r["step"]) for r in rows], dtype=float)
    comp_keys = [f"comp{layer}_{c}" for c in COMPONENTS]
    has_comp = all(k in rows[0] for k in comp_keys)
    fig, axes = plt.subplots(
        2 if has_comp else 1, 1, figsize=(6.4, 6.0 if has_comp else 3.6), dpi=120, sharex=True
    )
    ax = axes[0] if has_comp else axes
    for key, label, style in (
        ("lambda_H", "λ_1(H)", "k-"),
        ("lambda_G", "λ_1(G)", "C0-"),
        ("lambda_R", "λ_1(H − G)", "C2:"),
    ):
        if key in rows[0]:
            ax.plot(t, [r.get(key, np.nan) for r in rows], style, lw=1.3, label=label)
    if summary and summary.get("counterfactual_lambda_G"):
        steps = summary["steps"]
        tt = [t[[r["step"] for r in rows].index(s)] for s in steps]
        ax.plot(tt, summary["counterfactual_lambda_G"], "C1--", lw=1.3, label="λ̃_1(G), (V) frozen")
    if summary and summary.get("lr"):
        ax.axhline(2 / summary["lr"], color="gray", ls="--", lw=1, label="2/η")
    ax.set_ylabel("top eigenvalue")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    if has_comp:
        ax2 = axes[1]
        for c, key in zip(COMPONENTS, comp_keys):
            v = np.array([r[key] for r in rows], dtype=float)
            ax2.plot(t, v / v[0], lw=1.3, label=_NAMES[c])
        ax2.set_yscale("log")
        ax2.set_ylabel(f"layer {layer}: factor / initial")
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3)
        ax2.set_xlabel("flow time t = Σ η")
    else:
        ax.set_xlabel("flow time t = Σ η")
    fig.tight_layout()
    return save_figure(fig, path)
