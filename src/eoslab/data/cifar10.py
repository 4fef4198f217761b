"""CIFAR-10 (Krizhevsky 2009), read from the official archives or their extracted folders.

Lowell 2022 trains on CIFAR-10 (50,000 training images) and Lowell 2024 on subsets of it
of 390…6250 images (``docs/methods.md`` §8). The data come in two official formats, both read
here, either from the ``.tar.gz`` archive itself (streamed with :mod:`tarfile`, nothing is
extracted to disk) or from the folder it extracts to:

- python (``cifar-10-python.tar.gz`` → ``cifar-10-batches-py/``): ``data_batch_1`` …
  ``data_batch_5``, ``test_batch`` and ``batches.meta``, each a Python-2 pickle of a dict
  with bytes keys (``b"data"``: uint8 [n, 3072], ``b"labels"``: list of ints,
  ``b"label_names"`` in the meta file).
- binary (``cifar-10-binary.tar.gz`` → ``cifar-10-batches-bin/``): ``data_batch_1.bin`` …
  ``data_batch_5.bin``, ``test_batch.bin`` and ``batches.meta.txt``; each record is 1
  label byte followed by 3072 pixel bytes.

In both, the 3072 bytes of an image are the red, green and blue 32 × 32 planes, each
row-major, so a plain reshape gives [3, 32, 32].

Pickles can run arbitrary code when loaded, so the python batches are read only through
:class:`RestrictedUnpickler`, which allows nothing but the globals the official files
need (numpy array reconstruction and bytes) and raises :class:`UnsafeFileError`
otherwise, before anything named by the file is called.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import torch

from eoslab.data import _download
from eoslab.data.base import Dataset, Provenance

__all__ = [
    "CIFAR10_ARCHIVES",
    "CIFAR10_CLASSES",
    "CIFAR10_URL",
    "RestrictedUnpickler",
    "UnsafeFileError",
    "load_cifar10",
]

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
"""The ten class names, label k = ``CIFAR10_CLASSES[k]`` (as in ``batches.meta``)."""

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/"
"""Folder of the official archives (Krizhevsky's CIFAR page)."""

CIFAR10_ARCHIVES = {
    "python": ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    "binary": ("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),
}
"""Format → (official archive name, its published MD5)."""

_FOLDERS = {"python": "cifar-10-batches-py", "binary": "cifar-10-batches-bin"}
_SIDE, _PLANES = 32, 3
_PIXELS = _PLANES * _SIDE * _SIDE  # 3072 bytes per image
_RECORD = 1 + _PIXELS  # binary record: label byte + pixels
_N_CLASSES = 10

_SOURCE = (
    'A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", technical '
    "report, University of Toronto, 2009; CIFAR-10 "
    f"({CIFAR10_URL}cifar.html)"
)
_LICENCE = "no explicit licence; the authors ask users to cite Krizhevsky (2009)"


# ---------------------------------------------------------------------- safe unpickling


class UnsafeFileError(pickle.UnpicklingError, ValueError):
    """A pickle names a global outside the allowed set; it was refused, not executed."""


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` restricted to the latin-1 bytes round trip of protocol-2 pickles."""
    if not isinstance(obj, str) or encoding.replace("_", "-").lower() not in (
        "latin1",
        "latin-1",
        "iso-8859-1",
    ):
        raise UnsafeFileError(
            f"pickle calls _codecs.encode with ({type(obj).__name__}, {encoding!r}); only "
            "str with latin-1 (how Python 3 writes bytes at protocol 2) is allowed"
        )
    return codecs.encode(obj, "latin-1", errors)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals the official CIFAR-10 files need.

    Allowed: ``numpy.core.multiarray._reconstruct`` (and its numpy ≥ 2 home
    ``numpy._core.multiarray``), ``numpy.ndarray``, ``numpy.dtype``, and, for pickles of
    bytes written by Python 3 at protocol ≤ 2, ``bytes`` and ``_codecs.encode`` restricted
    to latin-1. Dicts, lists, ints and Python-2 strings are opcodes and need no global.
    Any other global (``os.system``, ``builtins.eval``, …) raises
    :class:`UnsafeFileError` naming the file and the global, so nothing it names is ever
    called.

    Args:
        file: binary file object to read the pickle from.
        name: name of the file, for error messages.
    """

    def __init__(self, file, *, name: str):
        super().__init__(file, encoding="bytes")
        self.name = name

    def find_class(self, module: str, name: str):
        """Resolve ``module.name`` if allowed, else raise :class:`UnsafeFileError`."""
        if (module, name) in {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        }:
            return _reconstruct()
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if module in ("builtins", "__builtin__") and name == "bytes":
            return bytes
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise UnsafeFileError(
            f"{self.name}: refusing to unpickle the global {module}.{name}; a CIFAR-10 "
            "batch needs only numpy arrays, dicts, lists and bytes, so this file is not an "
            "official CIFAR-10 file (nothing it names was executed)"
        )


def _unpickle(data: bytes, name: str):
    try:
        return RestrictedUnpickler(io.BytesIO(data), name=name).load()
    except UnsafeFileError:
        raise
    except Exception as err:  # a damaged pickle raises any of several types
        raise ValueError(
            f"{name}: not a readable CIFAR-10 python batch ({len(data)} bytes): "
            f"{type(err).__name__}: {err}"
        ) from err


def _get(d: dict, key: str, name: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise ValueError(f"{name}: batch dict has no {key!r} entry; its keys are {sorted(map(str, d))}")


# ---------------------------------------------------------------------- per-format parsers


def _files_for(fmt: str, split: str) -> list[str]:
    if fmt == "python":
        batches = [f"data_batch_{k}" for k in range(1, 6)] if split == "train" else ["test_batch"]
        return [*batches, "batches.meta"]
    batches = (
        [f"data_batch_{k}.bin" for k in range(1, 6)] if split == "train" else ["test_batch.bin"]
    )
    return [*batches, "batches.meta.txt"]


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= _N_CLASSES):
        raise ValueError(
            f"{name}: labels must lie in 0..{_N_CLASSES - 1}, got range "
            f"{labels.min()}..{labels.max()}"
        )
    return labels.astype(np.int64)


def _parse_python_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(data, name)
    if not isinstance(d, dict):
        raise ValueError(f"{name}: expected a pickled dict, got {type(d).__name__}")
    X = _get(d, "data", name)
    labels = _get(d, "labels", name)
    if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.ndim != 2 or X.shape[1] != _PIXELS:
        desc = f"{X.dtype} {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
        raise ValueError(f"{name}: 'data' must be a uint8 array [n, {_PIXELS}], got {desc}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: 'labels' must be a list of integers ({err})") from err
    if labels.shape != (X.shape[0],):
        raise ValueError(
            f"{name}: 'labels' has shape {labels.shape} but 'data' has {X.shape[0]} images"
        )
    return X, _check_labels(labels, name)


def _parse_binary_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    if len(data) == 0 or len(data) % _RECORD:
        raise ValueError(
            f"{name}: truncated or not a CIFAR-10 binary batch: {len(data)} bytes is not a "
            f"positive multiple of the {_RECORD}-byte record (1 label byte + {_PIXELS} pixel "
            f"bytes); {len(data) // _RECORD} whole records and {len(data) % _RECORD} bytes over"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _RECORD)
    return records[:, 1:], _check_labels(records[:, 0], name)


def _parse_meta(data: bytes, fmt: str, name: str) -> list[str]:
    if fmt == "python":
        d = _unpickle(data, name)
        if not isinstance(d, dict):
            raise ValueError(f"{name}: expected a pickled dict, got {type(d).__name__}")
        raw = _get(d, "label_names", name)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
    else:
        names = [line.strip() for line in data.decode().splitlines() if line.strip()]
    if len(names) != _N_CLASSES or len(set(names)) != _N_CLASSES:
        raise ValueError(f"{name}: expected {_N_CLASSES} distinct class names, got {names}")
    return names


# ---------------------------------------------------------------------- locating the files


def _read_folder(folder: Path, files: list[str]) -> dict[str, bytes]:
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 folder {folder} lacks {missing} (looked for {files})")
    return {f: (folder / f).read_bytes() for f in files}


def _read_archive(archive: Path, folder: str, files: list[str]) -> dict[str, bytes]:
    wanted = {f"{folder}/{f}": f for f in files}
    out: dict[str, bytes] = {}
    try:
        # One sequential pass: a gzip stream cannot seek back cheaply.
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                key = member.name.removeprefix("./")
                if key in wanted and member.isfile():
                    out[wanted[key]] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(
            f"{archive}: not a readable CIFAR-10 archive (truncated or damaged?): {err}"
        ) from err
    missing = [k for k, f in wanted.items() if f not in out]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 archive {archive} lacks the members {missing}")
    return out


def _candidates(root: Path, fmt: str) -> list[tuple[str, Path]]:
    """(kind, path) pairs to try, in order: root may hold, or be, the folder or archive."""
    folder, (archive, _) = _FOLDERS[fmt], CIFAR10_ARCHIVES[fmt]
    out = [("folder", root / folder)]
    if root.name == folder:
        out.append(("folder", root))
    out.append(("archive", root / archive))
    if root.name == archive:
        out.append(("archive", root))
    return out


def _locate(root: Path, formats: list[str]) -> tuple[str, str, Path] | None:
    for fmt in formats:
        for kind, path in _candidates(root, fmt):
            if (kind == "folder" and path.is_dir()) or (kind == "archive" and path.is_file()):
                return fmt, kind, path
    return None


def load_cifar10(
    root: str | Path,
    *,
    split: str = "train",
    format: str = "auto",
    download: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """Load CIFAR-10 as a :class:`~eoslab.data.base.Dataset` with X in [0, 1].

    ``root`` may be a folder holding the extracted folder (``cifar-10-batches-py`` or
    ``cifar-10-batches-bin``) or the official archive, or be that extracted folder or
    archive itself. With ``format="auto"`` the python format is preferred, then binary,
    and within a format the extracted folder before the archive. Archives are read in one
    streaming pass without extracting. An official archive's MD5 is compared with the
    published one: a mismatch (e.g. a repacked archive) gives a warning, and the digest
    actually read is recorded in the provenance either way.

    X = pixel / 255 (``docs/methods.md`` §8 experiments use these raw [0, 1] pixels;
    standardise with :meth:`Dataset.standardize` if wanted).

    Args:
        root: folder containing the data, or the extracted folder / archive itself.
        split: ``"train"`` (the five data batches, 50,000 images) or ``"test"`` (10,000).
        format: ``"auto"``, ``"python"`` (pickled batches) or ``"binary"`` (records).
        download: if nothing is found, fetch the official archive of the format
            (python for ``"auto"``) into ``root``, verifying its published MD5.
        dtype: floating dtype of X.

    Returns:
        Dataset ``"cifar10"`` with X [N, 3, 32, 32], y int64 [N] and the ten class
        names of ``batches.meta``.

    Raises:
        FileNotFoundError: if no data are found (lists every place looked at) or a
            batch file is missing.
        UnsafeFileError: if a python batch names a forbidden global.
        ValueError: for unknown options, truncated binary batches (file and byte count),
            wrong array shapes or dtypes, or labels outside 0..9.
        eoslab.data._download.DownloadError: if downloading was asked for and failed.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if format not in ("auto", "python", "binary"):
        raise ValueError(f"format must be 'auto', 'python' or 'binary', got {format!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype}")
    root = Path(root)
    formats = ["python", "binary"] if format == "auto" else [format]

    found = _locate(root, formats)
    if found is None and download:
        fmt = formats[0]
        archive, md5 = CIFAR10_ARCHIVES[fmt]
        _download.download(CIFAR10_URL + archive, root / archive, md5=md5)
        found = _locate(root, [fmt])
    if found is None:
        looked = [str(p) for fmt in formats for _, p in _candidates(root, fmt)]
        raise FileNotFoundError(
            f"no CIFAR-10 data ({' or '.join(formats)} format) under {root}; looked for "
            f"{looked}. Pass download=True, or fetch {CIFAR10_URL}"
            f"{CIFAR10_ARCHIVES[formats[0]][0]} and place it in {root}"
        )
    fmt, kind, path = found
    files = _files_for(fmt, split)
    if kind == "folder":
        raw = _read_folder(path, files)
        h = hashlib.sha256()
        for f in files:
            h.update(raw[f])
        checksum = f"sha256:{h.hexdigest()}"
        where = f"extracted folder {path}; checksum = SHA-256 of {files} concatenated"
    else:
        archive_name, published = CIFAR10_ARCHIVES[fmt]
        md5 = _download.file_digest(path, "md5")
        if md5 == published:
            verdict = f"matches the published MD5 of {archive_name}"
        else:
            verdict = f"differs from the published MD5 {published} of {archive_name}"
            warnings.warn(
                f"{path}: MD5 {md5} differs from the published {published} of the official "
                f"{archive_name}; reading it anyway",
                stacklevel=2,
            )
        raw = _read_archive(path, _FOLDERS[fmt], files)
        checksum = f"md5:{md5}"
        where = f"archive {path} (read without extracting; MD5 {verdict})"

    parse = _parse_python_batch if fmt == "python" else _parse_binary_batch
    parts = [parse(raw[f], str(path / f)) for f in files[:-1]]
    classes = _parse_meta(raw[files[-1]], fmt, str(path / files[-1]))
    X_np = np.concatenate([p[0] for p in parts])
    y_np = np.concatenate([p[1] for p in parts])

    X = torch.from_numpy(X_np).reshape(-1, _PLANES, _SIDE, _SIDE).to(dtype).div_(255)  # [N,3,32,32]
    provenance = Provenance(
        source=_SOURCE,
        licence=_LICENCE,
        checksum=checksum,
        notes=(
            f"{split} split, {fmt} format, from the {where}; pixels / 255 in [0, 1]; dtype {dtype}"
        ),
    )
    return Dataset(
        X=X, y=torch.from_numpy(y_np), classes=classes, provenance=provenance, name="cifar10"
    )
