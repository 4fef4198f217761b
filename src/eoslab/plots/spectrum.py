"""Figure of top Hessian eigenvalues at one or more points of training."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eoslab.plots._save import save_figure


def plot_spectrum(
    spectra: dict[str, np.ndarray],
    path: str | Path,
    *,
    threshold: float | None = None,
    title: str = "Top Hessian eigenvalues",
) -> list[Path]:
    """Plot eigenvalues λ_1 ≥ λ_2 ≥ … for each labelled state; write PNG and PDF.

    Args:
        spectra: label → eigenvalues (descending).
        path: output path without or with suffix; ``.png`` and ``.pdf`` are written.
        threshold: optional horizontal line (e.g. GD's threshold 2/η, docs/methods.md §2).
        title: figure title.

    Returns:
        The written file paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, lam in spectra.items():
        lam = np.asarray(lam, dtype=float)
        ax.plot(np.arange(1, len(lam) + 1), lam, "o-", ms=4, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls="--", lw=1, label="2/η")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("index i")
    ax.set_ylabel("λ_i (Hessian of the training loss)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
