"""Reading text files for the sentiment corpora: strict UTF-8 lines and ``file:line`` errors."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SSTFormatError"]


class SSTFormatError(ValueError):
    """A text file is malformed; the message starts with ``<file>:<line>:``.

    Attributes:
        path: the file (for a file inside a tarball, ``archive!member``).
        line: 1-based line number of the problem.
    """

    def __init__(self, path: Path | str, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line


def _decode(data: bytes, origin: str) -> list[str]:
    """Lines of UTF-8 text (BOM allowed), split at line feeds only, carriage returns stripped.

    ``str.splitlines`` is not used: it also splits on characters such as U+0085 and U+2028
    that may occur inside a sentence.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise SSTFormatError(origin, line, f"not valid UTF-8 ({err.reason})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _read_lines(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    return _decode(path.read_bytes(), str(path))
