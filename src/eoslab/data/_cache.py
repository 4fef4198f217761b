"""Checksummed ``.npz`` caches: the one way generated data are stored on disk.

A cache file ``NAME.npz`` has a sibling ``NAME.npz.sha256`` in ``sha256sum`` format. Both are
written through temporary files and renames, so a killed process never leaves a half-written
cache that looks valid; reads verify the checksum first and load with ``allow_pickle=False``.
Used by the Dice generator and the SST token embeddings, under :func:`default_cache_dir`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from eoslab.data._download import file_digest


def default_cache_dir() -> Path:
    """``$EOSLAB_CACHE`` if set and non-empty, else ``~/.cache/eoslab``."""
    env = os.environ.get("EOSLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "eoslab"


def checksum_path(path: Path) -> Path:
    """The ``.sha256`` file that belongs to cache file ``path``."""
    return path.with_name(path.name + ".sha256")


def write_checksummed_npz(path: Path, *, compressed: bool, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` and its SHA-256 beside it, atomically (tmp + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sha_path = checksum_path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp_sha = sha_path.with_name(f".{sha_path.name}.{os.getpid()}.tmp")
    save = np.savez_compressed if compressed else np.savez
    try:
        with open(tmp, "wb") as f:
            save(f, **arrays)
        tmp_sha.write_text(f"{file_digest(tmp)}  {path.name}\n")
        os.replace(tmp, path)
        os.replace(tmp_sha, sha_path)
    finally:
        for t in (tmp, tmp_sha):
            if t.exists():
                t.unlink()


def read_checksummed_npz(
    path: Path,
    *,
    required: set[str],
    what: str,
    advice: str,
    error: type[Exception] = ValueError,
) -> dict[str, np.ndarray]:
    """Verify ``path`` against its checksum file and load the ``required`` arrays.

    Args:
        path: the cache file.
        required: array names that must be present.
        what: how errors name the file (e.g. ``"dice cache file"``).
        advice: what the user can do, appended to every error.
        error: the exception type to raise.

    Raises:
        error: missing checksum file, checksum mismatch, unreadable file or missing arrays.
    """
    sha_path = checksum_path(path)
    if not sha_path.is_file():
        raise error(f"{what} {path} has no checksum file {sha_path}; {advice}")
    parts = sha_path.read_text().split()
    expected = parts[0] if parts else ""
    digest = file_digest(path)
    if digest != expected:
        raise error(
            f"checksum mismatch for {what} {path}: SHA-256 is {digest}, but "
            f"{sha_path.name} records {expected or '(nothing)'}; the file is corrupted or was "
            f"changed; {advice}"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = required - set(archive.files)
            if missing:
                raise error(f"{what} {path} lacks arrays {sorted(missing)}; {advice}")
            return {name: archive[name] for name in required}
    except (OSError, ValueError) as err:
        if isinstance(err, error):
            raise
        raise error(f"{what} {path} cannot be read ({err}); {advice}") from err
