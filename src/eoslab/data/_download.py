"""Download a file with an atomic write and checksum verification (shared by the loaders).

Loaders of public data sets (CIFAR-10, ``docs/methods.md`` §8) fetch an archive once and then
read it locally. Two rules keep a half-written or substituted file from ever being used:

- the bytes go to a temporary file in the destination's folder and are renamed onto the
  destination only after the download finished and its digest matched, so ``dest``
  either does not exist or is complete (``os.replace`` is atomic on one file system);
- the SHA-256 and/or MD5 digest is computed while streaming and compared with the
  published one; on a mismatch nothing is kept and the error names both digests.

Without network access the error says where to put the file by hand.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["ChecksumError", "DownloadError", "download", "file_digest"]

_CHUNK = 1 << 20  # 1 MiB per read


class DownloadError(OSError):
    """A file could not be fetched (no network, unknown host, missing remote file, …)."""


class ChecksumError(ValueError):
    """A file's digest differs from the expected one."""


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks.

    Args:
        path: the file.
        algorithm: a :mod:`hashlib` algorithm name (``"sha256"``, ``"md5"``, …).

    Returns:
        The lower-case hex digest.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected(sha256: str | None, md5: str | None) -> dict[str, str]:
    expected = {}
    for algorithm, digest in (("sha256", sha256), ("md5", md5)):
        if digest is not None:
            digest = digest.strip().lower()
            width = hashlib.new(algorithm).digest_size * 2
            if len(digest) != width or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(
                    f"{algorithm} must be {width} hex digits, got {digest!r} ({len(digest)} chars)"
                )
            expected[algorithm] = digest
    return expected


def _mismatches(actual: dict[str, str], expected: dict[str, str]) -> list[str]:
    return [
        f"{algorithm} expected {digest}, got {actual[algorithm]}"
        for algorithm, digest in expected.items()
        if actual[algorithm] != digest
    ]


class _Progress:
    """tqdm when installed, otherwise one line on stderr rewritten in place."""

    def __init__(self, total: int | None, label: str, enabled: bool):
        self.total, self.label, self.enabled = total, label, enabled
        self.done = 0
        self._bar = None
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label)

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        size = f"{self.done / 2**20:.1f} MiB"
        if self.total:
            size += f" / {self.total / 2**20:.1f} MiB ({100 * self.done / self.total:.0f}%)"
        print(f"\rdownloading {self.label}: {size}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            print(file=sys.stderr, flush=True)


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` to the file ``dest``, atomically and with checksum verification.

    If ``dest`` already exists and at least one digest is given and every given digest
    matches, nothing is downloaded. Otherwise the file is streamed into a temporary file
    beside ``dest`` (``<dest name>.<random>.part``), hashed on the way, and renamed onto
    ``dest`` only when every given digest matches; the temporary file is removed on any
    failure, so an interrupted or corrupted download never leaves a ``dest`` behind.

    Args:
        url: any URL :func:`urllib.request.urlopen` handles (``https://``, ``file://``).
        dest: path of the file to write (its folder is created if needed).
        sha256: expected SHA-256 hex digest, or None.
        md5: expected MD5 hex digest (as published for older archives), or None.
        progress: show progress (tqdm if installed, else a line on stderr).
        timeout: seconds to wait for the connection and for each read.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DownloadError: if the URL cannot be fetched (no network, missing remote file);
            the message says where to place the file manually.
        ChecksumError: if a digest does not match; names the file and both digests.
        ValueError: if a given digest is not a hex string of the right length.
    """
    dest = Path(dest)
    expected = _expected(sha256, md5)
    if expected and dest.is_file():
        actual = {algorithm: file_digest(dest, algorithm) for algorithm in expected}
        if not _mismatches(actual, expected):
            return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    hashes = {algorithm: hashlib.new(algorithm) for algorithm in ("sha256", "md5")}
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f"{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, OSError, ValueError) as err:
                reason = getattr(err, "reason", err)
                raise DownloadError(
                    f"could not download {url}: {reason}; place the file at {dest} manually"
                ) from err
            with response:
                length = response.headers.get("Content-Length")
                bar = _Progress(int(length) if length else None, dest.name, progress)
                try:
                    while True:
                        try:
                            chunk = response.read(_CHUNK)
                        except OSError as err:
                            raise DownloadError(
                                f"could not download {url}: connection failed after "
                                f"{bar.done} bytes ({err}); place the file at {dest} manually"
                            ) from err
                        if not chunk:
                            break
                        out.write(chunk)
                        for h in hashes.values():
                            h.update(chunk)
                        bar.update(len(chunk))
                finally:
                    bar.close()
        actual = {algorithm: h.hexdigest() for algorithm, h in hashes.items()}
        bad = _mismatches(actual, expected)
        if bad:
            raise ChecksumError(
                f"checksum mismatch for {dest.name} downloaded from {url}: {'; '.join(bad)}. "
                f"The file is corrupted or not the expected one and was not kept at {dest}"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
