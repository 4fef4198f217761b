"""UEA/UCR time-series classification data (``.ts`` files), cut into fixed-length windows.

Lowell 2024 trains on the UEA AtrialFibrillation data set — 2 ECG channels × 640 samples
per recording, 3 classes (``n``, ``s``, ``t``), 15 training and 15 test recordings — after
"split[ting] the time series in AtrialFibrillation into sequences of length 128", then
flattening each input (``docs/methods.md`` §8: AtrialFibrillation, N = 60…960, length-128
windows). This module reads the archive's ``.ts`` format (:func:`read_ts`) and cuts every
recording into windows along time (:func:`load_uea`), each window inheriting its
recording's label.

The ``.ts`` format (as written by the archive and sktime): optional ``#`` comment lines,
then header lines ``@<identifier> <value>`` (identifiers case-insensitive:
``@problemName``, ``@timeStamps``, ``@missing``, ``@univariate``, ``@dimension(s)``,
``@equalLength``, ``@seriesLength``, ``@classLabel true <labels…>`` or ``false``), then
``@data`` and one recording per line: channels separated by ``:``, values within a
channel by ``,``, ``?`` for a missing value, and the class label as the last ``:`` field.

Windowing choices (the paper's text says only that the series were split into length-128
sequences; AtrialFibrillation's 640 = 5 × 128 needs neither of these):

- **(choice)** a recording shorter than the window is zero-padded at its end to one window,
  following Lowell 2024's treatment of SST, whose phrases were "zero-padded or cropped" to a
  fixed length; ``pad="drop"`` skips such recordings and ``pad="error"`` refuses them.
- **(choice)** samples after the last whole window are cropped (dropped), as a too-long SST
  phrase is; their number is recorded in the provenance.

The 15 training recordings give 75 non-overlapping windows; the paper's larger sizes
(up to 960) need overlapping windows, ``stride < window`` (e.g. stride 8 gives 65 windows
per recording). The paper does not say how it obtained them. Windows of one recording are
strongly dependent, so every window carries its recording's index
(:attr:`WindowedDataset.recording_index`) to allow subsets and splits without leakage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eoslab.data import _download
from eoslab.data.base import Dataset, Provenance

__all__ = ["TsFile", "TsFormatError", "WindowedDataset", "load_uea", "read_ts"]

_ALIASES = {
    # The archive itself spells the data set both ways (folder and file names differ
    # between releases), so accept either and search for both.
    "atrialfibrillation": ("AtrialFibrillation", "AtrialFibrilation"),
    "atrialfibrilation": ("AtrialFibrillation", "AtrialFibrilation"),
}
_ARCHIVE_SOURCE = (
    "UEA & UCR Time Series Classification archive (timeseriesclassification.com): "
    'A. Bagnall et al., "The UEA multivariate time series classification archive, 2018", '
    "arXiv:1811.00075"
)
_AF_SOURCE = (
    '; AtrialFibrillation from G. Moody, "Spontaneous termination of atrial fibrillation: '
    'a challenge from PhysioNet and Computers in Cardiology 2004", Computers in Cardiology '
    "31, 2004 (PhysioNet AF Termination Challenge Database)"
)
_LICENCE = (
    "per the archive's page for the data set; the archive asks users to cite Bagnall et al. "
    "(2018) and the data set's original source"
)
_BOOL = {"true": True, "false": False}


class TsFormatError(ValueError):
    """A ``.ts`` file is malformed; the message starts with ``<file>:<line>:``.

    Attributes:
        path: the file.
        line: 1-based line number of the problem (the last line for missing content).
    """

    def __init__(self, path: Path | str, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path = Path(path)
        self.line = line


@dataclass(frozen=True)
class TsFile:
    """The content of one ``.ts`` file.

    Attributes:
        path: the file read.
        problem_name: the ``@problemName`` value (None if absent).
        header: every header identifier, lower-cased, → its raw value string.
        class_labels: the labels declared by ``@classLabel true …`` in declaration order
            (None when the file declares none, or has no labels).
        series: one float64 array [C, T_i] per recording; NaN marks a missing value.
        labels: each recording's label string (None for ``@classLabel false``).
        lines: 1-based line number of each recording.
    """

    path: Path
    problem_name: str | None
    header: dict[str, str]
    class_labels: list[str] | None
    series: list[np.ndarray]
    labels: list[str] | None
    lines: list[int]

    @property
    def n_channels(self) -> int:
        """C, the number of channels (dimensions) per recording."""
        return self.series[0].shape[0]


def _parse_bool(path: Path, line: int, key: str, value: str) -> bool:
    try:
        return _BOOL[value.strip().lower()]
    except KeyError:
        raise TsFormatError(path, line, f"@{key} must be true or false, got {value!r}") from None


def _parse_int(path: Path, line: int, key: str, value: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        n = 0
    if n < 1:
        raise TsFormatError(path, line, f"@{key} must be a positive integer, got {value!r}")
    return n


def _parse_channel(path: Path, line: int, channel: int, text: str) -> np.ndarray:
    values = [v.strip() for v in text.split(",")]
    values = ["nan" if v == "?" else v for v in values]
    try:
        out = np.array(values, dtype=np.float64)
    except ValueError:
        for k, v in enumerate(values):
            try:
                float(v)
            except ValueError:
                what = "an empty value" if v == "" else f"{v!r}, not a number or '?'"
                raise TsFormatError(path, line, f"channel {channel}, value {k}: {what}") from None
        raise TsFormatError(path, line, f"channel {channel}: cannot parse values") from None
    # ±inf, written out ("inf", "-Infinity") or overflowing float64 ("1e400"); NaN stays,
    # as a missing value like "?"
    infinite = np.isinf(out)
    if infinite.any():
        k = int(np.flatnonzero(infinite)[0])
        raise TsFormatError(
            path,
            line,
            f"channel {channel}, value {k}: {values[k]!r} is not finite (infinite or beyond "
            "float64's range); values must be finite numbers or '?'",
        )
    return out


def read_ts(path: str | Path) -> TsFile:
    """Parse a UEA/UCR ``.ts`` file (the archive's and sktime's format, described above).

    Args:
        path: the ``.ts`` file.

    Returns:
        A :class:`TsFile`.

    Raises:
        FileNotFoundError: if the file is missing.
        TsFormatError: naming file and line, for: a header value of the wrong type, a
            repeated identifier, text before ``@data`` that is neither header nor comment,
            no ``@data`` line or no data after it, timestamped series or regression
            targets (not supported), a wrong number of channels, a value that is neither
            a finite number nor ``?`` (``inf``, ``-Infinity`` and ``1e400`` are refused;
            ``nan`` reads as missing, like ``?``), channels of unequal length within a
            recording, a length other than ``@seriesLength`` / unequal lengths under
            ``@equalLength true``, or a label not declared by ``@classLabel``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".ts file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TsFormatError(
            path, _text_line(path, err.start), f"not UTF-8 text ({err.reason})"
        ) from err
    lines = text.splitlines()

    header: dict[str, str] = {}
    header_line: dict[str, int] = {}
    data_start = None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            raise TsFormatError(
                path,
                number,
                f"expected a header (@...) or comment (#) line before @data, found {line[:40]!r}",
            )
        key, _, value = line[1:].partition(" ")
        key = key.strip().lower()
        if key == "dimensions":
            key = "dimension"
        if key == "data":
            data_start = number
            break
        if key in header:
            raise TsFormatError(path, number, f"@{key} repeated (first on line {header_line[key]})")
        header[key], header_line[key] = value.strip(), number
    if data_start is None:
        raise TsFormatError(path, len(lines), "no @data line: the header never ends")

    def at(key):
        return header_line[key]

    if "timestamps" in header and _parse_bool(
        path, at("timestamps"), "timestamps", header["timestamps"]
    ):
        raise TsFormatError(path, at("timestamps"), "timestamped series are not supported")
    if "targetlabel" in header and _parse_bool(
        path, at("targetlabel"), "targetlabel", header["targetlabel"]
    ):
        raise TsFormatError(
            path, at("targetlabel"), "regression targets (@targetLabel true) are not supported"
        )
    n_channels = None
    if "univariate" in header and _parse_bool(
        path, at("univariate"), "univariate", header["univariate"]
    ):
        n_channels = 1
    if "dimension" in header:
        dims = _parse_int(path, at("dimension"), "dimension", header["dimension"])
        if n_channels == 1 and dims != 1:
            raise TsFormatError(
                path, at("dimension"), f"@dimension {dims} contradicts @univariate true"
            )
        n_channels = dims
    if "missing" in header:
        _parse_bool(path, at("missing"), "missing", header["missing"])
    equal_length = (
        _parse_bool(path, at("equallength"), "equalLength", header["equallength"])
        if "equallength" in header
        else False
    )
    series_length = (
        _parse_int(path, at("serieslength"), "seriesLength", header["serieslength"])
        if "serieslength" in header
        else None
    )
    has_labels, class_labels = False, None
    if "classlabel" in header:
        flag, *declared = header["classlabel"].split()
        has_labels = _parse_bool(path, at("classlabel"), "classLabel", flag)
        if has_labels and declared:
            if len(set(declared)) != len(declared):
                raise TsFormatError(
                    path, at("classlabel"), f"@classLabel repeats a label: {declared}"
                )
            class_labels = declared
        elif not has_labels and declared:
            raise TsFormatError(
                path, at("classlabel"), f"@classLabel false followed by labels {declared}"
            )

    series, labels, numbers = [], [], []
    for number in range(data_start + 1, len(lines) + 1):
        line = lines[number - 1].strip()
        if not line or line.startswith("#"):
            continue
        if "(" in line:
            raise TsFormatError(path, number, "timestamped values '(t, v)' are not supported")
        fields = line.split(":")
        if has_labels:
            *fields, label = fields
            label = label.strip()
            if not label:
                raise TsFormatError(path, number, "empty class label (last ':' field)")
            if class_labels is not None and label not in class_labels:
                raise TsFormatError(
                    path,
                    number,
                    f"unknown class label {label!r}; @classLabel declares {class_labels}",
                )
        expected = (
            n_channels
            if n_channels is not None
            else (series[0].shape[0] if series else len(fields))
        )
        if len(fields) != expected:
            extra = " and a class label" if has_labels else ""
            raise TsFormatError(
                path,
                number,
                f"expected {expected} channel(s){extra} "
                f"({expected + has_labels} ':'-separated fields), found "
                f"{len(fields) + has_labels}",
            )
        channels = [_parse_channel(path, number, c, f) for c, f in enumerate(fields)]
        lengths = {len(c) for c in channels}
        if len(lengths) != 1:
            raise TsFormatError(
                path, number, f"channels have unequal lengths {[len(c) for c in channels]}"
            )
        length = lengths.pop()
        if series_length is not None and equal_length and length != series_length:
            raise TsFormatError(
                path, number, f"series length {length}, but @seriesLength is {series_length}"
            )
        if equal_length and series and length != series[0].shape[1]:
            raise TsFormatError(
                path,
                number,
                f"series length {length} differs from the first recording's "
                f"{series[0].shape[1]} under @equalLength true",
            )
        series.append(np.stack(channels))  # [C, T]
        numbers.append(number)
        if has_labels:
            labels.append(label)
    if not series:
        raise TsFormatError(path, max(len(lines), 1), "no recordings after @data")
    return TsFile(
        path=path,
        problem_name=header.get("problemname") or None,
        header=header,
        class_labels=class_labels,
        series=series,
        labels=labels if has_labels else None,
        lines=numbers,
    )


def _text_line(path: Path, offset: int) -> int:
    """1-based line number of byte ``offset`` in ``path``."""
    return path.read_bytes()[:offset].count(b"\n") + 1


# ---------------------------------------------------------------------- windowed data set


@dataclass(frozen=True, eq=False)
class WindowedDataset(Dataset):
    """A :class:`~eoslab.data.base.Dataset` of windows that remembers their recordings.

    Attributes:
        recording_index: int64 [N], the 0-based recording (line order in the ``.ts`` file)
            each window was cut from; kept through :meth:`subset`, :meth:`select_classes`
            and the other derivations, so windows of one recording can be kept together
            (e.g. with :meth:`select_recordings`) to avoid leakage between splits.
    """

    recording_index: torch.Tensor | None = None

    def __post_init__(self):
        super().__post_init__()
        index = self.recording_index
        if index is None:
            index = torch.arange(len(self))
        if not isinstance(index, torch.Tensor) or index.dtype != torch.int64 or index.dim() != 1:
            raise ValueError("recording_index must be a 1-D int64 tensor")
        if index.shape[0] != len(self):
            raise ValueError(
                f"recording_index has {index.shape[0]} entries but the data set has "
                f"{len(self)} samples"
            )
        object.__setattr__(self, "recording_index", index)

    @property
    def n_recordings(self) -> int:
        """Number of distinct recordings the windows come from."""
        return int(torch.unique(self.recording_index).numel())

    def _take(self, index: torch.Tensor, step: str) -> WindowedDataset:
        rec = self.recording_index[index.to(self.recording_index.device)]
        index = index.to(self.X.device)
        return self._derive(
            step, X=self.X[index], y=self.y[index.to(self.y.device)], recording_index=rec
        )

    def select_classes(self, classes: Sequence[str | int]) -> WindowedDataset:
        """As :meth:`Dataset.select_classes`, keeping each window's recording index."""
        plain = Dataset(
            X=self.X, y=self.y, classes=self.classes, provenance=self.provenance, name=self.name
        )
        out = plain.select_classes(classes)
        old = torch.tensor([self.classes.index(c) for c in out.classes], device=self.y.device)
        keep = torch.nonzero(torch.isin(self.y, old)).flatten()
        return WindowedDataset(
            X=out.X,
            y=out.y,
            classes=out.classes,
            provenance=out.provenance,
            name=out.name,
            recording_index=self.recording_index[keep.to(self.recording_index.device)],
        )

    def select_recordings(self, recordings: Sequence[int]) -> WindowedDataset:
        """All windows of the given recordings, in their original order.

        Args:
            recordings: recording indices (values of :attr:`recording_index`).

        Raises:
            ValueError: if a recording has no windows here.
        """
        wanted = torch.as_tensor(list(recordings), dtype=torch.int64)
        present = torch.unique(self.recording_index)
        absent = wanted[~torch.isin(wanted, present)]
        if absent.numel():
            raise ValueError(
                f"recordings {absent.tolist()} have no windows in {self.name}; present: "
                f"{present.tolist()}"
            )
        keep = torch.nonzero(torch.isin(self.recording_index, wanted)).flatten()
        return self._take(keep, f"select_recordings({wanted.tolist()})")


def _spellings(name: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((name, *_ALIASES.get(name.lower(), ()))))


def _resolve(name_or_path: str | Path, root: str | Path | None, split: str) -> Path:
    suffix = f"_{split.upper()}.ts"
    p = Path(name_or_path)
    if p.is_file():
        stem = p.name.upper()
        other = "_TEST.TS" if split == "train" else "_TRAIN.TS"
        if stem.endswith(other):
            raise ValueError(
                f"{p} is a {other[1:-3].lower()} file but split={split!r}; pass "
                f"split={other[1:-3].lower()!r}"
            )
        return p
    if p.is_dir():
        tried = [p / f"{n}{suffix}" for n in _spellings(p.name)]
    elif p.suffix == ".ts" or len(p.parts) > 1:
        raise FileNotFoundError(f".ts file not found: {p}")
    else:
        if root is None:
            raise ValueError(
                f"root is needed to find the data set {str(name_or_path)!r}: the folder "
                f"holding <Name>/<Name>{suffix} (or pass the .ts file itself)"
            )
        root, names = Path(root), _spellings(str(name_or_path))
        tried = [root / folder / f"{n}{suffix}" for folder in names for n in names]
        tried += [root / f"{n}{suffix}" for n in names]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no {split} file for UEA data set {str(name_or_path)!r}; looked for "
        f"{[str(t) for t in tried]}"
    )


def _fill_missing(rec: np.ndarray, how: str, where: str) -> np.ndarray:
    bad = np.isnan(rec)
    if not bad.any():
        return rec
    if how == "error":
        channels = sorted({int(c) for c in np.nonzero(bad)[0]})
        raise ValueError(
            f"{where}: {int(bad.sum())} missing value(s) ('?') in channel(s) {channels}; pass "
            "missing='zero' or missing='interpolate'"
        )
    rec = rec.copy()
    if how == "zero":
        rec[bad] = 0.0
        return rec
    t = np.arange(rec.shape[1])
    for c in range(rec.shape[0]):
        ok = ~bad[c]
        if not ok.any():
            raise ValueError(f"{where}: channel {c} has no values at all; cannot interpolate")
        # linear between known values; before the first / after the last, the nearest value
        rec[c] = np.interp(t, t[ok], rec[c, ok])
    return rec


def load_uea(
    name_or_path: str | Path,
    *,
    root: str | Path | None = None,
    split: str = "train",
    window: int | None = 128,
    stride: int | None = None,
    pad: str = "zero",
    missing: str = "error",
    dtype: torch.dtype = torch.float32,
) -> WindowedDataset:
    """Load a UEA/UCR classification data set as windows of fixed length.

    Every recording x [C, T] gives the windows x[:, s : s + window] for
    s = 0, stride, 2·stride, … while s + window ≤ T, i.e. ⌊(T − window)/stride⌋ + 1
    windows (640 → 5 windows of 128; with stride 64 → 9), each labelled with its
    recording's class (Lowell 2024; ``docs/methods.md`` §8). Samples after the last whole
    window are cropped; recordings shorter than the window are handled by ``pad``. Values
    are used as stored (no normalisation; see :meth:`Dataset.standardize`).

    Args:
        name_or_path: a data-set name, looked up as ``<root>/<Name>/<Name>_TRAIN.ts`` or
            ``_TEST.ts`` (also ``<root>/<Name>_TRAIN.ts``; "AtrialFibrillation" and the
            archive's "AtrialFibrilation" are both accepted), a folder holding those
            files, or a ``.ts`` file itself (then ``split`` only has to agree with a
            ``_TRAIN``/``_TEST`` name).
        root: folder holding the data sets (needed with a bare name).
        split: ``"train"`` or ``"test"``.
        window: window length in samples; None keeps whole recordings (all must then
            have one length).
        stride: offset between consecutive windows; None = ``window`` (non-overlapping).
        pad: recordings shorter than ``window``: ``"zero"`` zero-pads them at the end to
            one window, ``"drop"`` skips them, ``"error"`` raises.
        missing: missing values (``?``): ``"error"`` raises, ``"zero"`` writes 0,
            ``"interpolate"`` interpolates linearly along time (constant beyond the ends).
        dtype: floating dtype of X.

    Returns:
        :class:`WindowedDataset` with X [N_windows, C, window], y int64, classes in the
        order of ``@classLabel`` (sorted when the file declares none), and
        ``recording_index`` [N_windows].

    Raises:
        FileNotFoundError: if the file is not found (lists the paths tried).
        TsFormatError: if the file is malformed (file and line).
        ValueError: on bad options, missing values with ``missing="error"``, a value
            beyond the range of ``dtype`` (file and line), a short
            recording with ``pad="error"``, unequal lengths with ``window=None``, or a
            file without class labels.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if pad not in ("zero", "drop", "error"):
        raise ValueError(f"pad must be 'zero', 'drop' or 'error', got {pad!r}")
    if missing not in ("error", "zero", "interpolate"):
        raise ValueError(f"missing must be 'error', 'zero' or 'interpolate', got {missing!r}")
    for arg, value in (("window", window), ("stride", stride)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{arg} must be a positive integer or None, got {value!r}")
    if window is None and stride is not None:
        raise ValueError("stride needs a window length; got window=None")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype}")
    stride = stride if stride is not None else window

    path = _resolve(name_or_path, root, split)
    ts = read_ts(path)
    if ts.labels is None:
        raise ValueError(f"{path}: no class labels (@classLabel false); not a classification set")
    classes = ts.class_labels if ts.class_labels is not None else sorted(set(ts.labels))
    label_of = {c: k for k, c in enumerate(classes)}

    lengths = [s.shape[1] for s in ts.series]
    if window is None:
        if len(set(lengths)) != 1:
            raise ValueError(
                f"{path}: recordings have lengths {min(lengths)}..{max(lengths)}; pass a "
                "window length to cut them into equal windows"
            )
        window = stride = lengths[0]

    n_channels = ts.n_channels
    windows, ys, recs = [], [], []
    padded, dropped, cropped = 0, 0, 0
    for r, (rec, line) in enumerate(zip(ts.series, ts.lines)):
        rec = _fill_missing(rec, missing, f"{path}:{line} (recording {r})")
        overflow = torch.isinf(torch.from_numpy(rec).to(dtype))
        if overflow.any():
            c, k = (int(i) for i in torch.nonzero(overflow)[0])
            raise ValueError(
                f"{path}:{line}: recording {r}, channel {c}, value {k}: {rec[c, k]:g} is "
                f"beyond the range of dtype {dtype}; pass a wider dtype (e.g. torch.float64)"
            )
        T = rec.shape[1]
        if T < window:
            if pad == "error":
                raise ValueError(
                    f"{path}:{line}: recording {r} has {T} samples, fewer than window={window}; "
                    "pass pad='zero' or pad='drop'"
                )
            if pad == "drop":
                dropped += 1
                continue
            rec = np.concatenate([rec, np.zeros((n_channels, window - T))], axis=1)
            padded += 1
            starts = [0]
        else:
            starts = list(range(0, T - window + 1, stride))
            cropped += T - (starts[-1] + window)
        windows.extend(rec[:, s : s + window] for s in starts)
        ys.extend([label_of[ts.labels[r]]] * len(starts))
        recs.extend([r] * len(starts))
    if not windows:
        raise ValueError(
            f"{path}: no windows: all {len(ts.series)} recordings are shorter than "
            f"window={window} and pad='drop'"
        )

    X = torch.from_numpy(np.stack(windows)).to(dtype)  # [N, C, window]
    name = ts.problem_name or path.stem.rsplit("_", 1)[0]
    name = _ALIASES.get(name.lower(), (name,))[0]
    source = _ARCHIVE_SOURCE + (_AF_SOURCE if name == "AtrialFibrillation" else "")
    notes = (
        f"{split} split from {path}: {len(ts.series)} recordings x {n_channels} channel(s), "
        f"lengths {min(lengths)}..{max(lengths)} -> {len(windows)} windows of length {window}, "
        f"stride {stride} (Lowell 2024; docs/methods.md §8); {padded} short recording(s) "
        f"zero-padded at the end, {dropped} dropped; {cropped} sample(s) after the last whole "
        f"window cropped; missing={missing!r}; recording_index maps windows to recordings; "
        f"dtype {dtype}"
    )
    provenance = Provenance(
        source=source,
        licence=_LICENCE,
        checksum=f"sha256:{_download.file_digest(path)}",
        notes=notes,
    )
    return WindowedDataset(
        X=X,
        y=torch.tensor(ys, dtype=torch.int64),
        classes=classes,
        provenance=provenance,
        name=name,
        recording_index=torch.tensor(recs, dtype=torch.int64),
    )
