"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from its IDX files, e.g. Debian's package.

70,000 grayscale 28 × 28 images of ten kinds of clothing (60,000 train, 10,000 test),
a drop-in replacement for MNIST; a real image data set for CPU-scaled versions of the
experiments of ``docs/methods.md`` §8 when CIFAR-10 is too large.

The files are in the IDX format of LeCun's MNIST: a big-endian header — two zero bytes,
a type byte (0x08 = unsigned byte), the number of dimensions, then one uint32 per
dimension — followed by the values, row-major. Images have magic number 2051 (0x00000803,
dims N × 28 × 28) and labels 2049 (0x00000801, dims N). Every field is checked, and every
error names the file.

Debian ships the four gzipped files in the package ``dataset-fashion-mnist`` (version
0.0~git20200523.55506a9-1 in bookworm), installed into ``/usr/share/datasets/fashion-mnist/``;
with ``path=None`` that folder (and a few other likely places, then ``dpkg -L``) is found
automatically.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch

from eoslab.data import _download
from eoslab.data.base import Dataset, Provenance

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "IdxFormatError",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "read_idx",
]

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
"""Class names; label k means ``FASHION_MNIST_CLASSES[k]`` (Xiao et al. 2017, Table 1)."""

FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
"""Split → (images file, labels file), as published and as Debian installs them."""

DEBIAN_PACKAGE = "dataset-fashion-mnist"
"""Debian package holding the four files."""

CANDIDATE_DIRS = (
    Path("/usr/share/datasets/fashion-mnist"),  # where dataset-fashion-mnist installs them
    Path("/usr/share/dataset-fashion-mnist"),
    Path("/usr/share/datasets/fashion_mnist"),
    Path("/usr/local/share/datasets/fashion-mnist"),
)
"""Folders searched, in order, when no path is given (before asking ``dpkg -L``)."""

_MAGIC = {"images": 2051, "labels": 2049}
_SIDE = 28
_SIZES = {"train": 60000, "test": 10000}


class IdxFormatError(ValueError):
    """An IDX file is malformed (bad magic number, dimensions or size)."""


def read_idx(path: str | Path, *, magic: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes (gzipped if its name ends in ``.gz``).

    Args:
        path: the file.
        magic: the expected magic number, 2051 (3-D images) or 2049 (1-D labels); its
            low byte is the number of dimensions.

    Returns:
        uint8 array with the shape the header declares.

    Raises:
        FileNotFoundError: if the file is missing.
        IdxFormatError: on a damaged gzip stream, a wrong magic number, a header shorter
            than declared, or a payload whose size differs from the product of the dims.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise IdxFormatError(f"{path}: damaged or truncated gzip stream: {err}") from err
    if len(data) < 4:
        raise IdxFormatError(f"{path}: {len(data)} bytes, too short for an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise IdxFormatError(
            f"{path}: magic number {found} (0x{found:08x}), expected {magic} (0x{magic:08x}; "
            "2051 = images, 2049 = labels)"
        )
    n_dims = magic & 0xFF
    header = 4 + 4 * n_dims
    if len(data) < header:
        raise IdxFormatError(
            f"{path}: header declares {n_dims} dimensions ({header} bytes) but the file has "
            f"only {len(data)} bytes"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(n_dims))
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(data) - header
    if payload != expected:
        what = "truncated" if payload < expected else "has trailing bytes"
        raise IdxFormatError(
            f"{path}: {what}: dims {dims} need {expected} data bytes after the {header}-byte "
            f"header, found {payload}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _dpkg_listing(package: str) -> list[str]:
    """Paths ``dpkg -L package`` lists, or [] if dpkg is absent or the package is not installed."""
    dpkg = shutil.which("dpkg")
    if dpkg is None:
        return []
    try:
        result = subprocess.run(
            [dpkg, "-L", package], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return result.stdout.splitlines() if result.returncode == 0 else []


def _has_files(folder: Path) -> bool:
    return all((folder / f).is_file() for f in FASHION_MNIST_FILES["train"])


def find_fashion_mnist() -> Path:
    """The folder of Debian's ``dataset-fashion-mnist`` files (or another standard place).

    Searches :data:`CANDIDATE_DIRS`, then the folders of the files that
    ``dpkg -L dataset-fashion-mnist`` lists.

    Returns:
        A folder holding at least the training images and labels.

    Raises:
        FileNotFoundError: if none is found; says how to install the package or which
            argument to pass instead.
    """
    for folder in CANDIDATE_DIRS:
        if _has_files(folder):
            return folder
    wanted = FASHION_MNIST_FILES["train"][0]
    for line in _dpkg_listing(DEBIAN_PACKAGE):
        p = Path(line.strip())
        if p.name == wanted and _has_files(p.parent):
            return p.parent
    raise FileNotFoundError(
        "Fashion-MNIST not found: looked in "
        f"{', '.join(map(str, CANDIDATE_DIRS))} and in `dpkg -L {DEBIAN_PACKAGE}`. "
        f"Install it with `apt-get install {DEBIAN_PACKAGE}` (Debian/Ubuntu), or pass "
        "path=<folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz>"
    )


def _resolve(folder: Path, name: str) -> Path:
    # the published .gz, or the same file already decompressed (as some tools leave it)
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {name} (or {name.removesuffix('.gz')}) not found in {folder}"
    )


def load_fashion_mnist(
    path: str | Path | None = None,
    *,
    split: str = "train",
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """Load Fashion-MNIST as a :class:`~eoslab.data.base.Dataset` with X in [0, 1].

    Args:
        path: folder holding the four IDX files (``train-images-idx3-ubyte.gz``,
            ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
            ``t10k-labels-idx1-ubyte.gz``; gzipped or not). None: find Debian's
            ``dataset-fashion-mnist`` install (:func:`find_fashion_mnist`).
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        dtype: floating dtype of X.

    Returns:
        Dataset ``"fashion_mnist"`` with X = pixel / 255, [N, 1, 28, 28], y int64 [N] and
        the classes of :data:`FASHION_MNIST_CLASSES`.

    Raises:
        FileNotFoundError: if the files are not found (with how to get them).
        IdxFormatError: if a file is malformed (names the file).
        ValueError: on unknown options, images that are not 28 × 28, image and label
            counts that differ, or labels outside 0..9.
    """
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype}")
    folder = find_fashion_mnist() if path is None else Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST folder not found: {folder}")
    images_file, labels_file = (_resolve(folder, f) for f in FASHION_MNIST_FILES[split])

    images = read_idx(images_file, magic=_MAGIC["images"])
    labels = read_idx(labels_file, magic=_MAGIC["labels"])
    if images.shape[1:] != (_SIDE, _SIDE):
        raise IdxFormatError(
            f"{images_file}: images must be {_SIDE} x {_SIDE}, got {images.shape[1:]}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_file} holds {images.shape[0]} images but {labels_file} holds "
            f"{labels.shape[0]} labels"
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(
            f"{labels_file}: labels must lie in 0..{len(FASHION_MNIST_CLASSES) - 1}, got max "
            f"{labels.max()}"
        )

    X = torch.from_numpy(images).to(dtype).div_(255).unsqueeze(1)  # [N, 1, 28, 28]
    y = torch.from_numpy(labels.astype(np.int64))
    digests = "; ".join(
        f"sha256:{_download.file_digest(f)} {f.name}" for f in (images_file, labels_file)
    )
    size_note = (
        "" if len(y) == _SIZES[split] else f"; {len(y)} samples, not the official {_SIZES[split]}"
    )
    provenance = Provenance(
        source=(
            'H. Xiao, K. Rasul and R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for '
            'Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017 (Zalando '
            "Research, github.com/zalandoresearch/fashion-mnist)"
        ),
        licence="MIT",
        checksum=digests,
        notes=(f"{split} split from {folder}; pixels / 255 in [0, 1]; dtype {dtype}" + size_note),
    )
    return Dataset(
        X=X, y=y, classes=list(FASHION_MNIST_CLASSES), provenance=provenance, name="fashion_mnist"
    )
