"""The UEA/UCR .ts parser and windowed loader on small files written here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from eoslab.data import DATASETS, load_dataset, load_uea
from eoslab.data.uea import TsFormatError, WindowedDataset, read_ts


def ts_text(
    recordings,
    labels,
    *,
    name="AtrialFibrilation",
    declared=("n", "s", "t"),
    univariate=False,
    equal=True,
    missing=False,
    extra_header="",
    fmt=lambda v: f"{v:.6g}",
):
    dims = recordings[0].shape[0]
    length = recordings[0].shape[1]
    head = [
        "#This is a comment",
        "# another one",
        f"@problemName {name}",
        "@timeStamps false",
        f"@missing {str(missing).lower()}",
        f"@univariate {str(univariate).lower()}",
    ]
    if not univariate:
        head.append(f"@dimensions {dims}")
    head.append(f"@equalLength {str(equal).lower()}")
    if equal:
        head.append(f"@seriesLength {length}")
    head.append("@classLabel true " + " ".join(declared))
    if extra_header:
        head.append(extra_header)
    head.append("@data")
    body = []
    for rec, lab in zip(recordings, labels):
        chans = [",".join("?" if np.isnan(v) else fmt(v) for v in ch) for ch in rec]
        body.append(":".join(chans) + f":{lab}")
    return "\n".join(head + body) + "\n"


def af_like(n_rec=3, length=640, seed=0):
    rng = np.random.default_rng(seed)
    recs = [np.round(rng.standard_normal((2, length)), 4) for _ in range(n_rec)]
    labels = (
        ["n", "s", "t"][:n_rec] if n_rec <= 3 else [["n", "s", "t"][k % 3] for k in range(n_rec)]
    )
    return recs, labels


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def af_root(tmp_path):
    recs, labels = af_like()
    write(tmp_path / "AtrialFibrilation" / "AtrialFibrilation_TRAIN.ts", ts_text(recs, labels))
    test_recs, test_labels = af_like(n_rec=2, seed=1)
    write(
        tmp_path / "AtrialFibrilation" / "AtrialFibrilation_TEST.ts",
        ts_text(test_recs, test_labels),
    )
    return tmp_path, recs, labels


# ---------------------------------------------------------------------- parser


def test_read_ts_multivariate(af_root):
    root, recs, labels = af_root
    ts = read_ts(root / "AtrialFibrilation" / "AtrialFibrilation_TRAIN.ts")
    assert ts.problem_name == "AtrialFibrilation"
    assert ts.class_labels == ["n", "s", "t"] and ts.labels == labels
    assert ts.n_channels == 2 and len(ts.series) == 3
    for got, want in zip(ts.series, recs):
        assert got.shape == (2, 640) and np.array_equal(got, want)
    assert ts.lines == [12, 13, 14]
    assert ts.header["serieslength"] == "640" and ts.header["dimension"] == "2"


def test_read_ts_univariate_string_labels_missing_and_crlf(tmp_path):
    text = (
        "@problemName Toy\r\n@univariate true\r\n@missing true\r\n@equalLength false\r\n"
        "@classLabel true walking running\r\n@data\r\n"
        "1.0,2.0,?,4.0:running\r\n\r\n# a comment in the data\r\n 5, 6 ,7:walking\r\n"
    )
    ts = read_ts(write(tmp_path / "Toy_TRAIN.ts", text))
    assert ts.labels == ["running", "walking"]
    assert ts.series[0].shape == (1, 4) and np.isnan(ts.series[0][0, 2])
    assert ts.series[1].tolist() == [[5.0, 6.0, 7.0]]
    assert ts.lines == [7, 10]


def test_read_ts_infers_channels_without_dimension_header(tmp_path):
    text = "@classLabel true 1 2\n@data\n1,2:3,4:1\n5,6:7,8:2\n"
    ts = read_ts(write(tmp_path / "x.ts", text))
    assert ts.n_channels == 2 and ts.labels == ["1", "2"]
    text = "@classLabel true 1 2\n@data\n1,2:3,4:1\n5,6:2\n"
    with pytest.raises(TsFormatError, match=r"x\.ts:4: expected 2 channel"):
        read_ts(write(tmp_path / "x.ts", text))


@pytest.mark.parametrize(
    "body, line, message",
    [
        ("1,2,3:4,5,6:n\n1,2,3:n\n", 13, r"expected 2 channel\(s\) and a class label \(3 "),
        ("1,2,3:4,5,6:n\n1,2,3:4,5,6:7,8,9:n\n", 13, "found 4"),
        ("1,2,x:4,5,6:n\n", 12, r"channel 0, value 2: 'x', not a number"),
        ("1,2,3:4,,6:n\n", 12, "channel 1, value 1: an empty value"),
        ("1,2,3:4,5,6:q\n", 12, r"unknown class label 'q'; @classLabel declares \['n', 's', 't'\]"),
        ("1,2,3:4,5,6:\n", 12, "empty class label"),
        ("1,2,3:4,5:n\n", 12, r"channels have unequal lengths \[3, 2\]"),
        ("1,2:4,5:n\n", 12, "series length 2, but @seriesLength is 3"),
        ("(0,1),(1,2),(2,3):(0,1),(1,2),(2,3):n\n", 12, "timestamped values"),
    ],
)
def test_malformed_data_lines_name_file_and_line(tmp_path, body, line, message):
    head = ts_text([np.zeros((2, 3))], ["n"]).split("@data\n")[0] + "@data\n"
    path = write(tmp_path / "Bad_TRAIN.ts", head + body)
    with pytest.raises(TsFormatError, match=rf"Bad_TRAIN\.ts:{line}: .*{message}") as err:
        read_ts(path)
    assert err.value.line == line and err.value.path == path


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("@problemName X\n@classLabel true a b\n1,2:a\n", 3, "expected a header"),
        ("@problemName X\n@classLabel true a b\n", 2, "no @data line"),
        ("@classLabel true a b\n@data\n\n# only a comment\n", 4, "no recordings after @data"),
        ("@univariate maybe\n@data\n1:a\n", 1, "@univariate must be true or false, got 'maybe'"),
        ("@dimensions two\n@data\n1:a\n", 1, "@dimension must be a positive integer"),
        ("@univariate true\n@dimensions 2\n@data\n1:a\n", 2, "contradicts @univariate true"),
        ("@classLabel true a a\n@data\n1:a\n", 1, "repeats a label"),
        ("@problemName A\n@problemname B\n@data\n1:a\n", 2, r"@problemname repeated \(first"),
        ("@timeStamps true\n@data\n1:a\n", 1, "timestamped series are not supported"),
        ("@targetLabel true\n@data\n1:2.5\n", 1, "regression targets"),
        ("@equalLength true\n@classLabel true a\n@data\n1,2:a\n1,2,3:a\n", 5, "differs from"),
    ],
)
def test_malformed_headers_name_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path / "h.ts", text)
    with pytest.raises(TsFormatError, match=rf"h\.ts:{line}: .*{message}"):
        read_ts(path)


def test_not_utf8_and_missing_file(tmp_path):
    path = tmp_path / "b.ts"
    path.write_bytes(b"@problemName X\n@classLabel true a\n@data\n1,\xff:a\n")
    with pytest.raises(TsFormatError, match=r"b\.ts:4: not UTF-8"):
        read_ts(path)
    with pytest.raises(FileNotFoundError):
        read_ts(tmp_path / "none.ts")


# ---------------------------------------------------------------------- windows


@pytest.mark.parametrize("name", ["AtrialFibrillation", "AtrialFibrilation", "atrialfibrillation"])
def test_windows_640_into_5_of_128_and_both_spellings(af_root, name):
    root, recs, labels = af_root
    ds = load_uea(name, root=root)
    assert isinstance(ds, WindowedDataset) and ds.name == "AtrialFibrillation"
    assert ds.X.shape == (15, 2, 128) and ds.X.dtype == torch.float32
    assert ds.classes == ["n", "s", "t"]
    assert ds.y.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert ds.recording_index.tolist() == [r for r in range(3) for _ in range(5)]
    assert ds.n_recordings == 3
    # window k of recording r is samples 128k..128k+127
    want = torch.from_numpy(recs[1][:, 3 * 128 : 4 * 128]).float()
    assert torch.equal(ds.X[5 + 3], want)
    assert "Moody" in ds.provenance.source and "Bagnall" in ds.provenance.source
    assert ds.provenance.checksum.startswith("sha256:")


def test_archive_spelling_with_two_ls_and_flat_layout(tmp_path):
    recs, labels = af_like()
    write(tmp_path / "AtrialFibrillation" / "AtrialFibrillation_TRAIN.ts", ts_text(recs, labels))
    assert len(load_uea("AtrialFibrilation", root=tmp_path)) == 15
    flat = tmp_path / "flat"
    write(flat / "AtrialFibrilation_TEST.ts", ts_text(recs, labels))
    assert len(load_uea("AtrialFibrillation", root=flat, split="test")) == 15


def test_stride_overlap_counts(af_root):
    root, recs, _ = af_root
    ds = load_uea("AtrialFibrillation", root=root, stride=64)
    assert len(ds) == 3 * 9  # (640 - 128) / 64 + 1
    assert torch.equal(ds.X[1], torch.from_numpy(recs[0][:, 64:192]).float())
    assert len(load_uea("AtrialFibrillation", root=root, stride=8)) == 3 * 65
    assert len(load_uea("AtrialFibrillation", root=root, window=640)) == 3
    assert load_uea("AtrialFibrillation", root=root, window=None).X.shape == (3, 2, 640)
    test = load_uea("AtrialFibrillation", root=root, split="test", dtype=torch.float64)
    assert len(test) == 10 and test.X.dtype == torch.float64


def test_short_recordings_padding_and_tail_cropping(tmp_path):
    recs = [np.arange(1, 301, dtype=float).reshape(1, 300), np.arange(1, 101, dtype=float)[None]]
    text = ts_text(recs, ["a", "b"], declared=("a", "b"), univariate=True, equal=False)
    path = write(tmp_path / "U" / "U_TRAIN.ts", text)
    ds = load_uea("U", root=tmp_path)
    # 300 -> 2 windows of 128 (44 samples cropped); 100 -> 1 zero-padded window
    assert ds.X.shape == (3, 1, 128) and ds.recording_index.tolist() == [0, 0, 1]
    assert ds.y.tolist() == [0, 0, 1]
    assert torch.equal(ds.X[2, 0, :100], torch.arange(1, 101, dtype=torch.float32))
    assert torch.all(ds.X[2, 0, 100:] == 0)
    assert "1 short recording(s) zero-padded" in ds.provenance.notes
    assert "44 sample(s) after the last whole window cropped" in ds.provenance.notes
    dropped = load_uea(path, pad="drop")
    assert len(dropped) == 2 and dropped.recording_index.tolist() == [0, 0]
    with pytest.raises(ValueError, match=r"U_TRAIN\.ts:\d+: recording 1 has 100 samples"):
        load_uea(path, pad="error")
    with pytest.raises(ValueError, match="lengths 100..300"):
        load_uea(path, window=None)
    with pytest.raises(ValueError, match="no windows"):
        load_uea(path, window=500, pad="drop")


def test_missing_values_error_zero_interpolate(tmp_path):
    rec = np.array([[np.nan, 1.0, np.nan, 3.0, np.nan], [1.0, 2.0, 3.0, 4.0, 5.0]])
    text = ts_text([rec], ["x"], declared=("x",), missing=True)
    path = write(tmp_path / "m_TRAIN.ts", text)
    with pytest.raises(ValueError, match=r"m_TRAIN\.ts:12 \(recording 0\): 3 missing .*\[0\]"):
        load_uea(path, window=5)
    zero = load_uea(path, window=5, missing="zero")
    assert zero.X[0, 0].tolist() == [0.0, 1.0, 0.0, 3.0, 0.0]
    interp = load_uea(path, window=5, missing="interpolate", dtype=torch.float64)
    assert interp.X[0, 0].tolist() == [1.0, 1.0, 2.0, 3.0, 3.0]
    assert interp.X[0, 1].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    all_nan = np.full((2, 3), np.nan)
    path = write(tmp_path / "n_TRAIN.ts", ts_text([all_nan], ["x"], declared=("x",)))
    with pytest.raises(ValueError, match="channel 0 has no values"):
        load_uea(path, window=3, missing="interpolate")


@pytest.mark.parametrize(
    "value", ["inf", "-inf", "Infinity", "-Infinity", "INF", "1e400", "-1E+400", "+inf"]
)
def test_infinite_or_overflowing_values_name_file_and_line(tmp_path, value):
    # a real file: line 12 is the first recording, line 13 the one with the bad value (its
    # second channel, value 1); read_ts and load_uea both refuse it
    head = ts_text([np.zeros((2, 3))], ["n"]).split("@data\n")[0] + "@data\n"
    path = write(tmp_path / "Inf_TRAIN.ts", head + f"1,2,3:4,5,6:n\n1,2,3:4,{value},6:s\n")
    message = rf"Inf_TRAIN\.ts:13: channel 1, value 1: '{re.escape(value)}' is not finite"
    with pytest.raises(TsFormatError, match=message) as err:
        read_ts(path)
    assert err.value.line == 13 and err.value.path == path
    with pytest.raises(TsFormatError, match=message):
        load_uea(path, window=3)


def test_nan_and_question_mark_stay_missing_values_and_dtype_overflow_is_refused(tmp_path):
    # "nan" is read as a missing value, like "?" (the missing-value options apply to both)
    text = "@classLabel true a\n@univariate true\n@data\n1,nan,3,?:a\n"
    path = write(tmp_path / "N_TRAIN.ts", text)
    assert np.isnan(read_ts(path).series[0][0, [1, 3]]).all()
    with pytest.raises(ValueError, match=r"N_TRAIN\.ts:4 \(recording 0\): 2 missing"):
        load_uea(path, window=4)
    assert load_uea(path, window=4, missing="zero").X[0, 0].tolist() == [1, 0, 3, 0]
    # finite in float64 but beyond float32: refused when loading as float32, with file:line
    text = "@classLabel true a\n@univariate true\n@data\n1,2,3:a\n\n4,-1e300,6:a\n"
    path = write(tmp_path / "B_TRAIN.ts", text)
    with pytest.raises(
        ValueError, match=r"B_TRAIN\.ts:6: recording 1, channel 0, value 1: -1e\+300 is beyond"
    ):
        load_uea(path, window=3)
    big = load_uea(path, window=3, dtype=torch.float64)
    assert big.X[1, 0, 1].item() == -1e300


def test_undeclared_labels_are_sorted_and_registry(tmp_path):
    text = "@classLabel true\n@univariate true\n@data\n1,2:zeta\n3,4:alpha\n"
    path = write(tmp_path / "S_TRAIN.ts", text)
    ds = load_dataset("uea", name_or_path=path, window=2)
    assert ds.classes == ["alpha", "zeta"] and ds.y.tolist() == [1, 0]
    assert ds.name == "S"
    assert DATASETS["uea"] is load_uea
    no_labels = write(tmp_path / "L_TRAIN.ts", "@classLabel false\n@data\n1,2\n")
    with pytest.raises(ValueError, match="no class labels"):
        load_uea(no_labels, window=2)


def test_file_and_option_errors(af_root, tmp_path):
    root, _, _ = af_root
    train = root / "AtrialFibrilation" / "AtrialFibrilation_TRAIN.ts"
    assert len(load_uea(train)) == 15
    assert len(load_uea(root / "AtrialFibrilation", split="test")) == 10
    with pytest.raises(ValueError, match="is a train file but split='test'"):
        load_uea(train, split="test")
    with pytest.raises(FileNotFoundError, match="Nope_TRAIN.ts"):
        load_uea("Nope", root=root)
    with pytest.raises(ValueError, match="root is needed"):
        load_uea("AtrialFibrillation")
    with pytest.raises(FileNotFoundError, match=".ts file not found"):
        load_uea(tmp_path / "x" / "y.ts")
    for kwargs, match in [
        ({"split": "val"}, "split"),
        ({"window": 0}, "window"),
        ({"stride": 1.5}, "stride"),
        ({"window": None, "stride": 4}, "stride needs"),
        ({"pad": "reflect"}, "pad"),
        ({"missing": "mean"}, "missing"),
        ({"dtype": torch.int64}, "floating-point"),
    ]:
        with pytest.raises(ValueError, match=match):
            load_uea(train, **kwargs)


def test_recording_index_survives_derivations(af_root):
    root, _, _ = af_root
    ds = load_uea("AtrialFibrillation", root=root)
    sub = ds.subset(6, seed=0)
    assert isinstance(sub, WindowedDataset)
    # each kept window still matches the window of its recording
    for x, r in zip(sub.X, sub.recording_index.tolist()):
        assert any(torch.equal(x, w) for w in ds.X[ds.recording_index == r])
    two = ds.select_classes(["t", "n"])
    assert two.classes == ["t", "n"] and two.y.tolist() == [1] * 5 + [0] * 5
    assert two.recording_index.tolist() == [0] * 5 + [2] * 5
    flat = ds.flatten().to(dtype=torch.float64)
    assert flat.X.shape == (15, 256) and torch.equal(flat.recording_index, ds.recording_index)
    assert flat.provenance.steps == ("flatten()", "to(device=None, dtype=torch.float64)")
    rec = ds.select_recordings([2, 0])
    assert rec.recording_index.tolist() == [0] * 5 + [2] * 5
    assert "select_recordings([2, 0])" in rec.provenance.steps[-1]
    with pytest.raises(ValueError, match=r"recordings \[7\] have no windows"):
        ds.select_recordings([7])
    with pytest.raises(ValueError, match="recording_index has 2 entries"):
        WindowedDataset(
            X=ds.X,
            y=ds.y,
            classes=ds.classes,
            provenance=ds.provenance,
            recording_index=torch.tensor([0, 1]),
        )
