"""Writing a figure: PNG for screens and PDF for papers, side by side."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, path: str | Path) -> list[Path]:
    """Save ``fig`` as ``path.png`` and ``path.pdf`` (a .png/.pdf suffix is replaced), close it.

    Returns:
        The two written paths.
    """
    import matplotlib.pyplot as plt

    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".png", ".pdf") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    files = [base.with_suffix(".png"), base.with_suffix(".pdf")]
    for f in files:
        fig.savefig(f)
    plt.close(fig)
    return files
