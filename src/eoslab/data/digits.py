"""The UCI handwritten digits (8 × 8), vendored: a real data set that needs no download.

1,797 images of the digits 0–9 (the test portion of the UCI "Optical Recognition of
Handwritten Digits" data, E. Alpaydin and C. Kaynak, 1998, CC BY 4.0, taken from
scikit-learn's copy). Small enough for float64 dense-Hessian tests and CPU-scaled versions
of the experiments in ``docs/methods.md`` §8. See ``_vendor/ATTRIBUTION.md``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from eoslab.data.base import Dataset, Provenance

__all__ = ["DIGITS_PATH", "DIGITS_SHA256", "load_digits"]

DIGITS_PATH = Path(__file__).parent / "_vendor" / "digits.npz"
"""The vendored file: arrays X (uint8 [1797, 8, 8], values 0..16) and y (int64 [1797])."""

DIGITS_SHA256 = "b4c39ef8f395731e48099b7ad55c41ee93f8a773b0f93b9820aa0938612dd9ea"
"""SHA-256 of :data:`DIGITS_PATH`, also recorded in ``_vendor/ATTRIBUTION.md``."""

_N, _SIDE, _MAX = 1797, 8, 16


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_digits(
    *,
    dtype: torch.dtype = torch.float64,
    scale: bool = True,
    path: str | Path | None = None,
) -> Dataset:
    """Load the digits data set as a :class:`~eoslab.data.base.Dataset`.

    The file's SHA-256 is checked before it is read, and it is opened with
    ``allow_pickle=False``, so a corrupted or substituted file is refused rather than
    silently used.

    Args:
        dtype: floating dtype of X (float64 by default, as in Lowell 2024's experiments).
        scale: divide the pixel counts 0..16 by 16 so X lies in [0, 1]; otherwise X holds
            the counts themselves (as floats).
        path: read this file instead of the vendored one; it must still carry the
            vendored file's checksum (meant for tests and relocated installs).

    Returns:
        Dataset ``"digits"`` with X [1797, 1, 8, 8], y int64 [1797] and classes
        ``["0", …, "9"]``.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if the checksum does not match, the arrays have unexpected shapes,
            dtypes or values, or dtype is not floating point.
    """
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    file = Path(path) if path is not None else DIGITS_PATH
    if not file.is_file():
        raise FileNotFoundError(f"digits data file not found: {file}")
    digest = _sha256(file)
    if digest != DIGITS_SHA256:
        raise ValueError(
            f"checksum mismatch for digits data file {file}: SHA-256 is {digest}, expected "
            f"{DIGITS_SHA256} (see eoslab/data/_vendor/ATTRIBUTION.md); the file is "
            "corrupted or not the vendored copy"
        )
    with np.load(file, allow_pickle=False) as archive:
        X_np, y_np = archive["X"], archive["y"]
    if X_np.shape != (_N, _SIDE, _SIDE) or X_np.dtype != np.uint8:
        raise ValueError(f"{file}: X must be uint8 [{_N}, 8, 8], got {X_np.dtype} {X_np.shape}")
    if y_np.shape != (_N,) or y_np.dtype != np.int64:
        raise ValueError(f"{file}: y must be int64 [{_N}], got {y_np.dtype} {y_np.shape}")
    if X_np.max() > _MAX:
        raise ValueError(f"{file}: pixel counts must lie in 0..{_MAX}, got max {X_np.max()}")

    X = torch.from_numpy(X_np).to(dtype).unsqueeze(1)  # [N, 1, 8, 8]
    if scale:
        X = X / _MAX
    provenance = Provenance(
        source=(
            'UCI ML Repository, "Optical Recognition of Handwritten Digits" (test portion, '
            "optdigits.tes), E. Alpaydin and C. Kaynak, 1998; copy bundled with scikit-learn "
            "(BSD-3-Clause)"
        ),
        licence="CC BY 4.0",
        checksum=f"sha256:{digest}",
        notes=(
            "8x8 counts of on-pixels in 4x4 blocks of 32x32 NIST bitmaps, values 0..16; "
            + ("scaled by 1/16 to [0, 1]" if scale else "unscaled counts")
            + f"; dtype {dtype}"
        ),
    )
    return Dataset(
        X=X,
        y=torch.from_numpy(y_np.copy()),
        classes=[str(k) for k in range(10)],
        provenance=provenance,
        name="digits",
    )
