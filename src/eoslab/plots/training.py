"""Figure of a training run: top Hessian eigenvalues against the stability threshold.

The edge-of-stability picture (Cohen et al. 2021; Lowell 2022 Fig. 1; ``docs/methods.md`` §2):
λ_1 rises (progressive sharpening) until it reaches the optimizer's threshold (2/η for GD)
and then hovers there, while the loss keeps falling non-monotonically.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from eoslab.plots._save import save_figure


def eigenvalue_columns(columns) -> list[str]:
    """The ``lambda_i`` columns of a run DataFrame, in order of i."""
    found = [(int(m.group(1)), c) for c in columns if (m := re.fullmatch(r"lambda_(\d+)", c))]
    return [c for _, c in sorted(found)]


def plot_sharpness(
    df,
    path: str | Path,
    *,
    x: str = "time",
    title: str | None = None,
    max_curves: int | None = None,
) -> list[Path]:
    """Plot λ_1…λ_k and the threshold over training, with the loss below; write PNG and PDF.

    Args:
        df: a run DataFrame (:func:`eoslab.load_run`): probe rows carry ``lambda_i`` and
            ``threshold``; step rows carry ``loss``.
        path: output path with or without suffix; ``.png`` and ``.pdf`` are written.
        x: the time axis: ``"time"`` (flow time t = Σ η, docs/methods.md §2) or ``"step"``.
        title: figure title (default: none).
        max_curves: plot at most this many eigenvalues (default: all recorded).

    Returns:
        The written file paths.

    Raises:
        ValueError: if the DataFrame has no eigenvalue columns or lacks ``x``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lam_cols = eigenvalue_columns(df.columns)
    if not lam_cols:
        raise ValueError("the run has no probe rows with eigenvalues (lambda_1 …)")
    if x not in df.columns:
        raise ValueError(f"the run DataFrame has no column {x!r}")
    if max_curves is not None:
        lam_cols = lam_cols[:max_curves]
    probes = df[df[lam_cols[0]].notna()]
    fig, (ax, ax_loss) = plt.subplots(
        2, 1, figsize=(6.4, 5.6), dpi=120, sharex=True, gridspec_kw=dict(height_ratios=[2.2, 1])
    )
    cmap = plt.get_cmap("viridis")
    n = len(lam_cols)
    for i, c in enumerate(reversed(lam_cols)):  # λ_1 drawn last, on top
        j = n - 1 - i
        ax.plot(
            probes[x],
            probes[c],
            color=cmap(0.85 * j / max(n - 1, 1)),
            lw=2.0 if j == 0 else 0.9,
            label="λ_1" if j == 0 else (f"λ_2 … λ_{n}" if j == n - 1 else None),
        )
    thr_col = "probe_threshold" if "probe_threshold" in df.columns else "threshold"
    if thr_col in df.columns:
        thr = df[df[thr_col].notna()]
        ax.plot(thr[x], thr[thr_col], "k--", lw=1.2, label="threshold (2/η for GD)")
    ax.set_ylabel("Hessian eigenvalue")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    if "loss" in df.columns:
        steps = df[df["loss"].notna()]
        ax_loss.plot(steps[x], steps["loss"], color="C3", lw=1)
        vals = np.asarray(steps["loss"], dtype=float)
        if len(vals) and np.all(vals[np.isfinite(vals)] > 0):
            ax_loss.set_yscale("log")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_xlabel("flow time t = Σ η" if x == "time" else x)
    ax_loss.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
