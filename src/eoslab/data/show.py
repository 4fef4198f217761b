"""A PNG grid of examples per class for any :class:`~eoslab.data.base.Dataset`.

``eoslab data show NAME`` calls :func:`show_examples`: one row per class, labelled with the
class name, ``per_class`` seeded random examples per row. It is how one checks by eye that a
loader draws what it claims (e.g. the Dice classes of ``docs/methods.md`` §9). How an input is drawn
depends on its shape:

- [N, 1, H, W]: grayscale image; [N, 3, H, W]: RGB image (CHW → HWC);
- [N, C, T]: time series, one line per channel;
- [N, D]: a √D × √D grayscale image when D is a perfect square, a 3 × s × s RGB image when
  D = 3s² (flattened CIFAR-like images), otherwise a bar chart (D ≤ 32) or a line;
- [N]: one bar per example.

Images are tiled into one mosaic (mid-grey borders and empty cells) and share one colour
scale, the range of the values shown (gray: low = black, high = white, so Dice ink is white),
so intensities compare across classes; the other kinds get one small axes per example.
Matplotlib's Agg canvas is used directly, without pyplot, so no global backend is changed
and no window opens.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from eoslab.data.base import Dataset

__all__ = ["show_examples"]


def _square_side(d: int) -> int | None:
    s = math.isqrt(d)
    return s if s * s == d else None


def _layout(shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """How to draw one input of this shape: (kind, shape to reshape it to)."""
    if len(shape) == 3:
        c, h, w = shape
        if c == 1:
            return "gray", (h, w)
        if c == 3:
            return "rgb", (c, h, w)
        raise ValueError(
            f"image inputs must have 1 or 3 channels to be shown, got input shape {shape}"
        )
    if len(shape) == 2:
        return "series", shape
    if len(shape) == 1:
        (d,) = shape
        side = _square_side(d)
        if side is not None and d > 1:
            return "gray", (side, side)
        if d % 3 == 0 and d > 3 and _square_side(d // 3) is not None:
            side = _square_side(d // 3)
            return "rgb", (3, side, side)
        return ("bars" if d <= 32 else "line"), (d,)
    if len(shape) == 0:
        return "bars", (1,)
    raise ValueError(f"cannot show inputs of shape {shape}: expected 0 to 3 dimensions per sample")


def _pick(ds: Dataset, per_class: int, seed: int) -> list[np.ndarray]:
    """Up to ``per_class`` seeded random sample indices of each class, in drawn order."""
    g = torch.Generator().manual_seed(int(seed))
    y = ds.y.cpu()
    picks = []
    for c in range(ds.n_classes):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)[:per_class]]
        picks.append(idx.numpy())
    return picks


def show_examples(ds: Dataset, path: str | Path, *, per_class: int = 8, seed: int = 0) -> Path:
    """Write a PNG grid of examples: one row per class, ``per_class`` columns.

    Args:
        ds: the data set; any input shape listed in the module docs.
        path: output file (parent folders are created); written as PNG whatever its suffix.
        per_class: examples per class; classes with fewer show all they have, and an empty
            class shows an empty row.
        seed: seed of the CPU generator that picks the examples.

    Returns:
        The path written.

    Raises:
        ValueError: if per_class < 1, the data set is empty, or its inputs have a shape
            that cannot be drawn (e.g. images with 2 or 4 channels).
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    if len(ds) == 0:
        raise ValueError(f"cannot show examples of an empty data set ({ds.name})")
    kind, shape = _layout(ds.input_shape)
    picks = _pick(ds, per_class, seed)
    shown = np.concatenate(picks)
    values = ds.X[torch.as_tensor(shown, dtype=torch.int64, device=ds.X.device)]
    values = values.detach().to("cpu", torch.float64).numpy().reshape(len(shown), *shape)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    span = hi - lo if hi > lo else 1.0

    if kind in ("gray", "rgb"):
        fig = _image_grid(ds, picks, values, kind, lo, span, per_class)
    else:
        fig = _plot_grid(ds, picks, values, kind, lo, hi, span, per_class)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)
    return out


def _title(ds: Dataset) -> str:
    return f"{ds.name}: N={len(ds)}, input shape {ds.input_shape}"


def _image_grid(ds, picks, values, kind, lo, span, per_class) -> Figure:
    """All images tiled into one mosaic in a single axes (fast for many examples).

    Cells are separated by a 1-pixel mid-grey border; empty cells stay mid-grey.
    """
    if kind == "gray":
        values = np.repeat(values[:, None], 3, axis=1)  # [n, 3, H, W]
    _, _, h, w = values.shape
    scaled = np.clip((values - lo) / span, 0.0, 1.0).transpose(0, 2, 3, 1)  # [n, H, W, 3]
    n_rows = ds.n_classes
    mosaic = np.full((n_rows * (h + 1) + 1, per_class * (w + 1) + 1, 3), 0.5)
    k = 0
    for c, idx in enumerate(picks):
        for j in range(len(idx)):
            top, left = 1 + c * (h + 1), 1 + j * (w + 1)
            mosaic[top : top + h, left : left + w] = scaled[k]
            k += 1
    scale = 1.1 / max(h, w)  # inches per image pixel: a cell is about 1.1 in wide
    fig = Figure(figsize=(1.4 + scale * mosaic.shape[1], 0.5 + scale * mosaic.shape[0]))
    FigureCanvasAgg(fig)
    ax = fig.add_axes(
        (
            1.2 / fig.get_figwidth(),
            0.1 / fig.get_figheight(),
            scale * mosaic.shape[1] / fig.get_figwidth(),
            scale * mosaic.shape[0] / fig.get_figheight(),
        )
    )
    ax.imshow(mosaic, interpolation="nearest", aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([1 + c * (h + 1) + (h - 1) / 2 for c in range(n_rows)], ds.classes, fontsize=9)
    ax.tick_params(length=0)
    fig.suptitle(_title(ds), fontsize=9)
    return fig


def _plot_grid(ds, picks, values, kind, lo, hi, span, per_class) -> Figure:
    """One small axes per example, for series, bars and lines."""
    n_rows, n_cols = ds.n_classes, per_class
    fig = Figure(figsize=(1.2 + 1.8 * n_cols, 0.6 + 1.1 * n_rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    fig.suptitle(_title(ds), fontsize=9)
    k = 0
    for c, idx in enumerate(picks):
        for j in range(n_cols):
            ax = axes[c, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(ds.classes[c], rotation=0, ha="right", va="center", fontsize=9)
            if j >= len(idx):
                for spine in ax.spines.values():
                    spine.set_visible(False)
                continue
            v = values[k]
            k += 1
            if kind == "series":
                for channel in v:  # [C, T]
                    ax.plot(channel, linewidth=0.7)
                ax.set_ylim(lo - 0.05 * span, hi + 0.05 * span)
            elif kind == "bars":
                ax.bar(np.arange(v.size), v.reshape(-1), width=0.8)
                ax.set_ylim(min(lo, 0.0) - 0.05 * span, max(hi, 0.0) + 0.05 * span)
            else:
                ax.plot(v.reshape(-1), linewidth=0.7)
                ax.set_ylim(lo - 0.05 * span, hi + 0.05 * span)
    fig.subplots_adjust(
        left=0.9 / fig.get_figwidth(), right=0.98, bottom=0.02, top=0.92, wspace=0.08, hspace=0.12
    )
    return fig
