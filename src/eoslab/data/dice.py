"""The synthetic Dice data set of Lowell et al. 2024 (§7.3), as ``docs/methods.md`` §9 draws it.

Six classes of abstract symbols inspired by the pips of a die, drawn on a square canvas with
coordinates [−1, 1]², anti-aliased, grayscale, 32 × 32 by default; 20,000 images per class,
split 50/50 into train and test with a fixed seed. Every parameter is uniform on its range and
the line-end style ``lend`` is uniform over R's three codes 0 = round, 1 = butt, 2 = square:

========  ==================================================================================
class     drawing (``docs/methods.md`` §9)
========  ==================================================================================
one       a pip at (x, y); x, y ∈ [−1, 1], cex ∈ [0.1, 1]
two       pips at (x, y) and (−x, −y) with one cex; same ranges as "one"
three     a line from (x, y) to (−x, −y); x, y ∈ [−1, 1], lwd ∈ [0.1, 2.5], lend
four      the box with corners (±x, ±y); x, y ∈ [−1, 1], lwd ∈ [0.1, 1], lend
five      the box with corners (±x, ±y), x, y ∈ [0.2, 1], lwd ∈ [0.1, 1], lend, plus a pip at
          (0, 0) with cex ∈ [0.1, 0.7]
six       the line from (x, y) to (−x, −y) translated by +(dx, dy) and by −(dx, dy);
          x, y ∈ [−0.9, 0.9], dx, dy ∈ [0.1, 0.8], lwd ∈ [0.1, 2.5], lend
========  ==================================================================================

The original images were drawn with R's base graphics (``points``, ``lines``, ``polygon``) and
saved as image files; their device-dependent sizes are not recoverable from the paper, so the
following are **choices** of this module (the constants below):

- **Coordinates.** The canvas [−1, 1]² fills the image exactly, with no margin. Pixel column
  j ∈ 0..S−1 covers x ∈ [−1 + 2j/S, −1 + 2(j+1)/S]; pixel row i covers
  y ∈ [1 − 2(i+1)/S, 1 − 2i/S], i.e. **y points up** as in an R plot: row 0 is the top edge
  (y = +1) and ``X[n, 0, i, j]`` is the pixel around (x, y) = (−1 + (2j+1)/S, 1 − (2i+1)/S).
  Shapes reaching beyond the canvas are clipped.
- **Pips** are filled discs (R's ``pch = 19``) of radius :data:`PIP_RADIUS` · cex canvas units:
  a cex = 1 pip has radius 0.2, one tenth of the canvas width (3.2 px at 32 × 32).
- **Lines** have width :data:`LWD_UNIT` · lwd canvas units: an lwd = 1 line is 0.1 wide, one
  twentieth of the canvas width (1.6 px at 32 × 32). Line ends (``lend``): *butt* stops at the
  end point, *square* extends the line by half its width beyond it, *round* adds a half-disc
  cap of radius half the width.
- **Boxes** are the closed polyline through the four corners, stroked with that width. R's
  ``polygon`` strokes a closed path, on which ``lend`` has no visible effect and the corners use
  ``ljoin`` (round by default); because ``docs/methods.md`` §9 makes lend a parameter of the box,
  here the corner *join* follows lend — round → round join, square → mitre join, butt → bevel
  join. For these right-angle corners that is exactly the union of the four sides drawn as
  separate segments with that end cap, except for butt, whose notched outer corner the bevel
  half fills.
- **Ink.** R draws black on white; here ink = 1 on a background of 0, and X ∈ [0, 1].
- **Anti-aliasing.** Each pixel is the mean of :data:`SUPERSAMPLE` × :data:`SUPERSAMPLE`
  sub-samples on a regular grid; each sub-sample is itself anti-aliased by the signed distance
  sd to the shape (negative inside), with coverage clamp(½ − sd/δ, 0, 1) for the sub-sample
  spacing δ, so features thinner than a sub-sample (a cex = 0.1 pip, an lwd = 0.1 line) still
  leave faint ink instead of vanishing between samples. The union of shapes takes the minimum
  signed distance.
- **Quantisation.** Pixel values are rounded to multiples of 1/255, as in the 8-bit image files
  of the original; images are computed and cached as uint8 0..255 and only converted to the
  requested floating dtype at the end, so every dtype sees the same image.

Rendering is vectorised over a chunk of images of one class at a time, all in float32 with
exactly rounded elementwise operations only (no fused multiply–add, no library reductions), so
an image's bytes do not depend on the chunk it was drawn in or on the number of threads: the
same seed gives identical bytes on CPU. Parameters of class k come from their own random
stream (``numpy.random.SeedSequence([seed, 0, k])`` seeding a CPU ``torch.Generator``), and the
train/test split of class k from another (``SeedSequence([seed, 1, k])``).

:func:`load_dice` caches the generated images (all six classes, both splits) as a plain
``.npz`` (read with ``allow_pickle=False``) under ``cache_dir`` (default ``$EOSLAB_CACHE`` or
``~/.cache/eoslab``), keyed by (size, n_per_class, seed, :data:`GENERATOR_VERSION`), with its
SHA-256 in a ``sha256sum``-style file beside it, verified on every load.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from eoslab.data._cache import default_cache_dir, read_checksummed_npz, write_checksummed_npz
from eoslab.data.base import Dataset, Provenance

__all__ = [
    "DICE_CLASSES",
    "GENERATOR_VERSION",
    "LEND_STYLES",
    "LWD_UNIT",
    "PARAM_RANGES",
    "PIP_RADIUS",
    "SUPERSAMPLE",
    "default_cache_dir",
    "dice_cache_path",
    "dice_split_indices",
    "generate_dice",
    "generate_dice_class",
    "load_dice",
    "render_dice",
    "sample_dice_params",
]

DICE_CLASSES: tuple[str, ...] = ("one", "two", "three", "four", "five", "six")
"""Class names; label k is ``DICE_CLASSES[k]`` (k + 1 pips on a die)."""

LEND_STYLES: tuple[str, ...] = ("round", "butt", "square")
"""Line-end styles indexed by R's ``lend`` codes 0, 1, 2."""

PIP_RADIUS = 0.2
"""Radius, in canvas units, of a pip of cex = 1 (choice: one tenth of the canvas width)."""

LWD_UNIT = 0.1
"""Width, in canvas units, of a line of lwd = 1 (choice: one twentieth of the canvas width)."""

SUPERSAMPLE = 4
"""Sub-samples per pixel along each axis (4 × 4 = 16 per pixel)."""

GENERATOR_VERSION = 1
"""Bumped whenever a change to sampling or rendering changes any image; part of the cache key."""

PARAM_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "one": {"x": (-1.0, 1.0), "y": (-1.0, 1.0), "cex": (0.1, 1.0)},
    "two": {"x": (-1.0, 1.0), "y": (-1.0, 1.0), "cex": (0.1, 1.0)},
    "three": {"x": (-1.0, 1.0), "y": (-1.0, 1.0), "lwd": (0.1, 2.5)},
    "four": {"x": (-1.0, 1.0), "y": (-1.0, 1.0), "lwd": (0.1, 1.0)},
    "five": {"x": (0.2, 1.0), "y": (0.2, 1.0), "lwd": (0.1, 1.0), "cex": (0.1, 0.7)},
    "six": {
        "x": (-0.9, 0.9),
        "y": (-0.9, 0.9),
        "dx": (0.1, 0.8),
        "dy": (0.1, 0.8),
        "lwd": (0.1, 2.5),
    },
}
"""The uniform ranges of ``docs/methods.md`` §9 per class; classes with lines also draw ``lend``."""

_HAS_LEND = ("three", "four", "five", "six")
_STREAM_PARAMS, _STREAM_SPLIT = 0, 1
_CHUNK_SAMPLES = 1 << 19  # sub-samples per chunk: a float32 temporary is 2 MiB
_FAR = 1.0e4  # "no chamfer" offset for boxes without a bevel join, far outside any canvas
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


# ---------------------------------------------------------------------- parameters


def _class_index(label: int | str) -> int:
    if isinstance(label, str):
        if label not in DICE_CLASSES:
            raise ValueError(f"unknown dice class {label!r}; classes are {list(DICE_CLASSES)}")
        return DICE_CLASSES.index(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < 6:
        raise ValueError(f"dice class label must be a name or an int in 0..5, got {label!r}")
    return label


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _generator(seed: int, stream: int, k: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, stream, k]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def sample_dice_params(label: int | str, n: int, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Parameters of n images of one class, uniform on the ranges of ``docs/methods.md`` §9.

    Args:
        label: class name (``"one"``…``"six"``) or label 0..5.
        n: number of images, ≥ 0.
        seed: non-negative data-set seed; class k uses its own stream derived from
            (seed, k), so classes are independent of each other and of n_per_class elsewhere.

    Returns:
        Dict of float64 [n] tensors named as in :data:`PARAM_RANGES` for the class, plus
        ``"lend"`` (int64 [n], R codes 0 = round, 1 = butt, 2 = square) for classes with lines.
    """
    k = _class_index(label)
    seed = _check_seed(seed)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    name = DICE_CLASSES[k]
    ranges = PARAM_RANGES[name]
    g = _generator(seed, _STREAM_PARAMS, k)
    u = torch.rand(n, len(ranges), generator=g, dtype=torch.float64)  # [n, n_params]
    params = {key: lo + (hi - lo) * u[:, j] for j, (key, (lo, hi)) in enumerate(ranges.items())}
    if name in _HAS_LEND:
        params["lend"] = torch.randint(0, len(LEND_STYLES), (n,), generator=g, dtype=torch.int64)
    return params


# ---------------------------------------------------------------------- geometry


def _segment_geometry(
    mx: torch.Tensor,
    my: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    lwd: torch.Tensor,
    lend: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """A segment of direction ±(x, y) and half-length |(x, y)| centred at (mx, my), float64.

    Its signed distance is that of a rounded box in the segment's frame: half-extents
    (ex, ey) along and across the segment, minus a rounding radius rr (``_box_sd``).
    """
    half_len = torch.hypot(x, y)
    flat = half_len == 0  # a zero-length segment: any direction draws the same thing
    safe = torch.where(flat, torch.ones_like(half_len), half_len)
    cos = torch.where(flat, torch.ones_like(x), x / safe)
    sin = torch.where(flat, torch.zeros_like(y), y / safe)
    h = 0.5 * LWD_UNIT * lwd
    zero = torch.zeros_like(h)
    is_round, is_square = lend == 0, lend == 2
    return {
        "mx": mx,
        "my": my,
        "cos": cos,
        "sin": sin,
        "ex": half_len + torch.where(is_square, h, zero),  # square: extended by half the width
        "ey": torch.where(is_round, zero, h),
        "rr": torch.where(is_round, h, zero),  # round: the half-disc caps of a capsule
    }


def _box_geometry(
    x: torch.Tensor, y: torch.Tensor, lwd: torch.Tensor, lend: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The stroked outline of the box with corners (±x, ±y), float64 (see ``_box_ring_sd``)."""
    h = 0.5 * LWD_UNIT * lwd
    zero = torch.zeros_like(h)
    is_round, is_butt = lend == 0, lend == 1
    return {
        "bx": x.abs(),
        "by": y.abs(),
        "h": h,
        "grow": torch.where(is_round, zero, h),  # mitre/bevel: outer box grows by h
        "rr": torch.where(is_round, h, zero),  # round join: outer box rounded by h
        "cut": torch.where(is_butt, h, torch.full_like(h, _FAR)),  # bevel: chamfer qx+qy ≤ h
    }


def _geometry(name: str, p: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-image shape parameters in canvas units, float32 [n] each."""
    if name in ("one", "two"):
        geo = {"cx": p["x"], "cy": p["y"], "r": PIP_RADIUS * p["cex"]}
    elif name == "three":
        zero = torch.zeros_like(p["x"])
        geo = _segment_geometry(zero, zero, p["x"], p["y"], p["lwd"], p["lend"])
    elif name == "four":
        geo = _box_geometry(p["x"], p["y"], p["lwd"], p["lend"])
    elif name == "five":
        geo = _box_geometry(p["x"], p["y"], p["lwd"], p["lend"])
        geo["r"] = PIP_RADIUS * p["cex"]
    else:  # six: the first line translated by +(dx, dy); the second is its point reflection
        geo = _segment_geometry(p["dx"], p["dy"], p["x"], p["y"], p["lwd"], p["lend"])
    return {key: value.to(torch.float32) for key, value in geo.items()}


# ---------------------------------------------------------------------- signed distances
# Sample coordinates are separable: xs [Ns] along columns, ys [Ns] down the rows, so per-image
# terms are formed on [B, 1, Ns] and [B, Ns, 1] and only combined on the full [B, Ns, Ns] grid.
# Only exactly rounded operations (+, −, ×, sqrt, abs, min, max) are used, in separate kernels,
# so each sample's value is independent of its position in the batch (bitwise determinism).


def _col(t: torch.Tensor) -> torch.Tensor:
    return t[:, None, None]


def _box_sd(qx: torch.Tensor, qy: torch.Tensor) -> torch.Tensor:
    """Exact signed distance to an axis-aligned box from folded coordinates q = |p| − e."""
    inside = torch.maximum(qx, qy).clamp_(max=0.0)
    outside = qx.clamp(min=0.0).square_() + qy.clamp(min=0.0).square_()
    return outside.sqrt_().add_(inside)


def _pip_sd(xs, ys, cx, cy, r) -> torch.Tensor:
    """Signed distance to the discs of radius r at (cx, cy): |p − c| − r, [B, Ns, Ns]."""
    dx = (xs[None, None, :] - _col(cx)).square_()  # [B, 1, Ns]
    dy = (ys[None, :, None] - _col(cy)).square_()  # [B, Ns, 1]
    return (dx + dy).sqrt_().sub_(_col(r))


def _segment_sd(xs, ys, g, sign: float) -> torch.Tensor:
    """Signed distance to the stroked segment centred at sign·(mx, my), [B, Ns, Ns]."""
    px = xs[None, None, :] - sign * _col(g["mx"])  # [B, 1, Ns]
    py = ys[None, :, None] - sign * _col(g["my"])  # [B, Ns, 1]
    cos, sin = _col(g["cos"]), _col(g["sin"])
    u = (px * cos) + (py * sin)  # along the segment, [B, Ns, Ns]
    v = (py * cos) - (px * sin)  # across it
    qx = u.abs_().sub_(_col(g["ex"]))
    qy = v.abs_().sub_(_col(g["ey"]))
    return _box_sd(qx, qy).sub_(_col(g["rr"]))


def _box_ring_sd(axs, ays, g) -> torch.Tensor:
    """Signed distance to the stroked box outline, [B, Ns, Ns].

    In folded coordinates q = (|x| − X, |y| − Y) the stroke is the outer shape (the box grown
    by h with mitre corners, rounded by h for round joins, chamfered along qx + qy = h for
    bevel joins) minus the inner box of half-extents (X − h, Y − h), empty when X or Y < h.
    """
    qx = axs[None, None, :] - _col(g["bx"])  # [B, 1, Ns]
    qy = ays[None, :, None] - _col(g["by"])  # [B, Ns, 1]
    grow, h = _col(g["grow"]), _col(g["h"])
    outer = _box_sd(qx - grow, qy - grow).sub_(_col(g["rr"]))
    chamfer = ((qx - _col(g["cut"])) * _INV_SQRT2) + (qy * _INV_SQRT2)  # (qx+qy−cut)/√2
    outer = torch.maximum(outer, chamfer)
    hole = _box_sd(qx + h, qy + h)
    return torch.maximum(outer, hole.neg_())


def _class_sd(name: str, g, xs, ys, axs, ays) -> torch.Tensor:
    if name == "one":
        return _pip_sd(xs, ys, g["cx"], g["cy"], g["r"])
    if name == "two":
        first = _pip_sd(xs, ys, g["cx"], g["cy"], g["r"])
        return torch.minimum(first, _pip_sd(xs, ys, -g["cx"], -g["cy"], g["r"]))
    if name == "three":
        return _segment_sd(xs, ys, g, 1.0)
    if name == "four":
        return _box_ring_sd(axs, ays, g)
    if name == "five":
        zero = torch.zeros_like(g["r"])
        return torch.minimum(_box_ring_sd(axs, ays, g), _pip_sd(xs, ys, zero, zero, g["r"]))
    return torch.minimum(_segment_sd(xs, ys, g, 1.0), _segment_sd(xs, ys, g, -1.0))


def _to_pixels(sd: torch.Tensor, size: int, ss: int) -> torch.Tensor:
    """Sub-sample coverage clamp(½ − sd/δ, 0, 1), averaged over ss × ss blocks, as uint8."""
    b = sd.shape[0]
    cov = sd.mul_(-0.5 * size * ss).add_(0.5).clamp_(0.0, 1.0)  # δ = 2/(size·ss)
    cov = cov.view(b, size, ss, size, ss)
    rows = cov[:, :, 0] + cov[:, :, 1] if ss > 1 else cov[:, :, 0].clone()  # [B, S, S, ss]
    for k in range(2, ss):
        rows.add_(cov[:, :, k])
    total = rows[..., 0] + rows[..., 1] if ss > 1 else rows[..., 0].clone()  # [B, S, S]
    for k in range(2, ss):
        total.add_(rows[..., k])
    return total.mul_(255.0 / (ss * ss)).round_().clamp_(0.0, 255.0).to(torch.uint8)


def _sample_grid(size: int, ss: int) -> torch.Tensor:
    """Sub-sample centres along one axis, (2k + 1 − Ns)/Ns for k < Ns = size·ss, float32.

    Exactly antisymmetric (grid[Ns−1−k] = −grid[k]), so symmetric shapes render symmetric.
    """
    ns = size * ss
    k = torch.arange(ns, dtype=torch.float64)
    return ((2 * k + 1 - ns) / ns).to(torch.float32)


def render_dice(
    label: int | str,
    params: Mapping[str, torch.Tensor],
    *,
    size: int = 32,
    supersample: int = SUPERSAMPLE,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Draw images of one class from their parameters (``docs/methods.md`` §9; module docs).

    Args:
        label: class name or label 0..5.
        params: the class's parameters, as returned by :func:`sample_dice_params`.
        size: image side S in pixels, ≥ 2.
        supersample: sub-samples per pixel along each axis, 1..15.
        chunk_size: images drawn per vectorised step; by default as many as fit
            2¹⁹ sub-samples (a 2 MiB float32 temporary). Does not change the result.

    Returns:
        uint8 [n, S, S], ink 255 on background 0, row 0 at the top (y = +1).
    """
    name = DICE_CLASSES[_class_index(label)]
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an integer ≥ 2, got {size!r}")
    if isinstance(supersample, bool) or not isinstance(supersample, int):
        raise ValueError(f"supersample must be an integer in 1..15, got {supersample!r}")
    if not 1 <= supersample <= 15:
        raise ValueError(f"supersample must be an integer in 1..15, got {supersample!r}")
    needed = set(PARAM_RANGES[name]) | ({"lend"} if name in _HAS_LEND else set())
    missing = needed - set(params)
    if missing:
        raise ValueError(f"params for class {name!r} lack {sorted(missing)}; got {sorted(params)}")
    n = params["x"].shape[0]
    for key in needed:
        if params[key].shape != (n,):
            raise ValueError(
                f"params[{key!r}] must have shape ({n},) like params['x'], got "
                f"{tuple(params[key].shape)}"
            )
    ns = size * supersample
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_SAMPLES // (ns * ns))
    geo = _geometry(name, params)
    xs = _sample_grid(size, supersample)  # column centres, left to right
    ys = -xs  # row centres, top (y ≈ +1) to bottom
    axs, ays = xs.abs(), ys.abs()
    out = torch.empty(n, size, size, dtype=torch.uint8)
    with torch.no_grad():
        for start in range(0, n, chunk_size):
            part = {key: value[start : start + chunk_size] for key, value in geo.items()}
            sd = _class_sd(name, part, xs, ys, axs, ays)
            out[start : start + chunk_size] = _to_pixels(sd, size, supersample)
    return out


def generate_dice_class(
    label: int | str, n: int, *, size: int = 32, seed: int = 0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sample parameters for n images of one class and draw them.

    The images are those :func:`generate_dice` returns for this class when
    ``n == n_per_class`` (as uint8 before the conversion to float).

    Args:
        label: class name or label 0..5.
        n: number of images.
        size: image side in pixels.
        seed: data-set seed.

    Returns:
        (images uint8 [n, size, size] with ink 255 on 0, params from :func:`sample_dice_params`).
    """
    params = sample_dice_params(label, n, seed=seed)
    return render_dice(label, params, size=size), params


# ---------------------------------------------------------------------- data sets


def _check_sizes(size: int, n_per_class: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an integer ≥ 2, got {size!r}")
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 2:
        raise ValueError(
            f"n_per_class must be an integer ≥ 2 (half of each class goes to test), got "
            f"{n_per_class!r}"
        )


def _dice_arrays(n_per_class: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """All images, class by class: uint8 [6·n_per_class, size, size] and int64 labels."""
    images = [generate_dice_class(k, n_per_class, size=size, seed=seed)[0] for k in range(6)]
    X = torch.cat(images).numpy()
    y = np.repeat(np.arange(6, dtype=np.int64), n_per_class)
    return X, y


def _content_digest(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(X).data)
    h.update(np.ascontiguousarray(y).data)
    return h.hexdigest()


def _notes(size: int, n_per_class: int, seed: int, dtype: torch.dtype, extra: str) -> str:
    return (
        f"Dice (Lowell et al. 2024 §7.3; docs/methods.md §9), generator version "
        f"{GENERATOR_VERSION}: "
        f"size={size}, n_per_class={n_per_class}, seed={seed}{extra}; canvas [-1, 1]^2 fills "
        "the image, y up (row 0 at the top); pip radius "
        f"{PIP_RADIUS}*cex, line width {LWD_UNIT}*lwd (canvas units); box corners joined by "
        f"lend (round/mitre/bevel); {SUPERSAMPLE}x{SUPERSAMPLE} sub-samples per pixel with "
        "signed-distance coverage; ink = 1 on background 0, 8-bit (multiples of 1/255); "
        f"dtype {dtype}. checksum = SHA-256 of the uint8 images then the int64 labels."
    )


def _to_dataset(
    X: np.ndarray, y: np.ndarray, dtype: torch.dtype, notes: str, name: str = "dice"
) -> Dataset:
    X_t = torch.from_numpy(np.ascontiguousarray(X)).unsqueeze(1).to(dtype).div_(255.0)
    return Dataset(
        X=X_t,  # [N, 1, S, S]
        y=torch.from_numpy(np.ascontiguousarray(y)),
        classes=list(DICE_CLASSES),
        provenance=Provenance(
            source=(
                "synthetic Dice images drawn by eoslab.data.dice after Lowell et al. 2024, "
                "'Layerwise Jacobian alignment', §7.3 (docs/methods.md §9)"
            ),
            licence="generated",
            checksum=f"sha256:{_content_digest(X, y)}",
            notes=notes,
        ),
        name=name,
    )


def _check_dtype(dtype: torch.dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype}")


def generate_dice(
    n_per_class: int = 20000,
    *,
    size: int = 32,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """Generate the whole Dice data set (both splits) without touching any cache.

    Follows ``docs/methods.md`` §9 with the rendering choices in the module docs.

    Args:
        n_per_class: images per class (the paper: 20,000), ≥ 2.
        size: image side S in pixels (the default 32 is ``docs/methods.md`` §9's choice).
        seed: non-negative seed; the same seed gives identical bytes on CPU.
        dtype: floating dtype of X.

    Returns:
        Dataset ``"dice"`` with X [6·n_per_class, 1, S, S] in [0, 1] (ink = 1 on background
        0, multiples of 1/255), y int64 in class order (n_per_class of each) and classes
        ``["one", …, "six"]``. :func:`dice_split_indices` gives its train/test split.
    """
    _check_sizes(size, n_per_class)
    seed = _check_seed(seed)
    _check_dtype(dtype)
    X, y = _dice_arrays(n_per_class, size, seed)
    return _to_dataset(X, y, dtype, _notes(size, n_per_class, seed, dtype, "; both splits"))


def dice_split_indices(n_per_class: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The fixed 50/50 train/test split, as indices into :func:`generate_dice`'s order.

    Class k's images occupy positions k·n_per_class … (k+1)·n_per_class − 1; a seeded
    permutation of them (stream (seed, 1, k)) sends n_per_class − ⌊n_per_class/2⌋ to train
    and ⌊n_per_class/2⌋ to test. Both index arrays are sorted.

    Returns:
        (train, test), int64 index arrays.
    """
    seed = _check_seed(seed)
    _check_sizes(2, n_per_class)
    n_train = n_per_class - n_per_class // 2
    train, test = [], []
    for k in range(6):
        perm = torch.randperm(n_per_class, generator=_generator(seed, _STREAM_SPLIT, k))
        perm = perm.numpy().astype(np.int64) + k * n_per_class
        train.append(np.sort(perm[:n_train]))
        test.append(np.sort(perm[n_train:]))
    return np.concatenate(train), np.concatenate(test)


# ---------------------------------------------------------------------- cache


def dice_cache_path(
    *, size: int = 32, n_per_class: int = 20000, seed: int = 0, cache_dir: str | Path | None = None
) -> Path:
    """The cache file for (size, n_per_class, seed, :data:`GENERATOR_VERSION`).

    Its checksum lives beside it in the same name plus ``.sha256``.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    name = f"dice-size{size}-n{n_per_class}-seed{seed}-v{GENERATOR_VERSION}.npz"
    return root / "dice" / name


def _meta(size: int, n_per_class: int, seed: int) -> np.ndarray:
    return np.array([GENERATOR_VERSION, size, n_per_class, seed, SUPERSAMPLE], dtype=np.int64)


def _write_cache(path: Path, X: np.ndarray, y: np.ndarray, meta: np.ndarray) -> None:
    """Write the .npz and its checksum file (see :mod:`eoslab.data._cache`)."""
    write_checksummed_npz(path, compressed=True, X=X, y=y, meta=meta)


def _read_cache(path: Path, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    advice = "delete it or call load_dice(..., regenerate=True) to rebuild it"
    arrays = read_checksummed_npz(
        path, required={"X", "y", "meta"}, what="dice cache file", advice=advice
    )
    X, y, stored = arrays["X"], arrays["y"], arrays["meta"]
    if not np.array_equal(stored, meta):
        raise ValueError(
            f"dice cache file {path} was made with [version, size, n_per_class, seed, "
            f"supersample] = {stored.tolist()}, expected {meta.tolist()}; {advice}"
        )
    version, size, n_per_class = (int(v) for v in meta[:3])
    shape = (6 * n_per_class, size, size)
    if X.shape != shape or X.dtype != np.uint8 or y.shape != shape[:1] or y.dtype != np.int64:
        raise ValueError(
            f"dice cache file {path}: expected X uint8 {shape} and y int64 {shape[:1]}, got "
            f"X {X.dtype} {X.shape} and y {y.dtype} {y.shape}; {advice}"
        )
    return X, y


def load_dice(
    *,
    split: str = "train",
    size: int = 32,
    n_per_class: int = 20000,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    regenerate: bool = False,
) -> Dataset:
    """Load one split of the Dice data set (``docs/methods.md`` §9), generating and caching it once.

    The first call for a (size, n_per_class, seed) draws all 6·n_per_class images
    (:func:`generate_dice`) and writes them to :func:`dice_cache_path` with a SHA-256 file
    beside it; later calls verify the checksum and read the file (``allow_pickle=False``).

    Args:
        split: ``"train"`` or ``"test"`` (:func:`dice_split_indices`; 50/50 per class).
        size: image side S in pixels.
        n_per_class: images per class before the split (the paper: 20,000).
        seed: non-negative data-set seed (images and split).
        cache_dir: cache root; default ``$EOSLAB_CACHE`` or ``~/.cache/eoslab``.
        dtype: floating dtype of X.
        regenerate: ignore any cached file, draw the images again and overwrite it — the way
            out after a checksum error.

    Returns:
        Dataset ``"dice"`` with X [N, 1, S, S] in [0, 1] (ink = 1 on background 0), y int64
        [N] in class order, classes ``["one", …, "six"]``; N = 6·(n_per_class −
        ⌊n_per_class/2⌋) for train and 6·⌊n_per_class/2⌋ for test.

    Raises:
        ValueError: on a bad argument, or if a cached file fails its checksum or does not
            hold what its name says (the message names the file; pass ``regenerate=True``).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    _check_sizes(size, n_per_class)
    seed = _check_seed(seed)
    _check_dtype(dtype)
    path = dice_cache_path(size=size, n_per_class=n_per_class, seed=seed, cache_dir=cache_dir)
    meta = _meta(size, n_per_class, seed)
    if path.exists() and not regenerate:
        X, y = _read_cache(path, meta)
    else:
        X, y = _dice_arrays(n_per_class, size, seed)
        _write_cache(path, X, y, meta)
    train, test = dice_split_indices(n_per_class, seed=seed)
    index = train if split == "train" else test
    extra = f"; split={split!r} ({len(index) // 6} per class, stream (seed, 1, class))"
    return _to_dataset(X[index], y[index], dtype, _notes(size, n_per_class, seed, dtype, extra))
