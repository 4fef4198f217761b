"""The vendored digits data and the Dataset operations (subset, classes, split, transforms)."""

from __future__ import annotations

import hashlib
import re
import shutil

import numpy as np
import pytest
import torch

from eoslab.data import DATASETS, Dataset, Provenance, load_dataset, load_digits, train_test_split
from eoslab.data.digits import DIGITS_PATH, DIGITS_SHA256


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def toy(n_per_class=(5, 3, 4), shape=(2, 3)) -> Dataset:
    y = torch.cat([torch.full((k,), c, dtype=torch.int64) for c, k in enumerate(n_per_class)])
    X = torch.arange(len(y) * int(np.prod(shape)), dtype=torch.float64).reshape(len(y), *shape)
    classes = [f"c{c}" for c in range(len(n_per_class))]
    return Dataset(X=X, y=y, classes=classes, provenance=Provenance("toy", "none"), name="toy")


# ---------------------------------------------------------------------- digits


def test_digits_shape_classes_range(digits):
    assert len(digits) == 1797
    assert digits.X.shape == (1797, 1, 8, 8)
    assert digits.input_shape == (1, 8, 8)
    assert digits.X.dtype == torch.float64 and digits.y.dtype == torch.int64
    assert digits.classes == [str(k) for k in range(10)] and digits.n_classes == 10
    assert digits.class_counts().tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert digits.X.min() == 0.0 and digits.X.max() == 1.0
    # values are the integer counts 0..16 divided by 16
    assert torch.equal(digits.X * 16, (digits.X * 16).round())
    assert digits.name == "digits"
    assert digits.provenance.licence == "CC BY 4.0"
    assert digits.provenance.checksum == f"sha256:{DIGITS_SHA256}"


def test_digits_unscaled_and_dtype():
    ds = load_digits(dtype=torch.float32, scale=False)
    assert ds.X.dtype == torch.float32 and ds.X.max() == 16.0
    with pytest.raises(ValueError, match="floating-point"):
        load_digits(dtype=torch.int64)


def test_digits_file_is_plain_npz_with_recorded_checksum():
    digest = hashlib.sha256(DIGITS_PATH.read_bytes()).hexdigest()
    assert digest == DIGITS_SHA256
    attribution = (DIGITS_PATH.parent / "ATTRIBUTION.md").read_text()
    assert DIGITS_SHA256 in attribution
    with np.load(DIGITS_PATH, allow_pickle=False) as f:
        assert sorted(f.files) == ["X", "y"]
        assert f["X"].dtype == np.uint8 and f["X"].shape == (1797, 8, 8)
        assert f["y"].dtype == np.int64 and f["X"].max() == 16


def test_digits_checksum_mismatch_names_file(tmp_path):
    bad = tmp_path / "digits.npz"
    shutil.copyfile(DIGITS_PATH, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"checksum mismatch.*" + re.escape(str(bad))):
        load_digits(path=bad)
    good = tmp_path / "copy.npz"
    shutil.copyfile(DIGITS_PATH, good)
    assert len(load_digits(path=good)) == 1797
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_digits(path=tmp_path / "missing.npz")


def test_registry():
    assert DATASETS["digits"] is load_digits
    assert len(load_dataset("digits", dtype=torch.float32)) == 1797
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*digits"):
        load_dataset("mnist")


# ---------------------------------------------------------------------- subset


def test_subset_balanced_deterministic_and_ordered(digits):
    a = digits.subset(105, seed=3)
    b = digits.subset(105, seed=3)
    c = digits.subset(105, seed=4)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    assert not torch.equal(a.X, c.X)
    counts = a.class_counts()
    assert len(a) == 105 and counts.sum() == 105
    assert counts.max() - counts.min() == 1 and int((counts == 11).sum()) == 5
    assert a.classes == digits.classes
    assert a.provenance.steps == ("subset(n=105, seed=3, balanced=True)",)
    assert digits.provenance.steps == ()  # the source is not mutated


def _row_set(ds):
    return {tuple(row) for row in ds.flatten().X.tolist()}


def test_subsets_with_one_seed_nest(digits):
    sizes = [20, 47, 100, 333]
    subsets = [digits.subset(n, seed=7) for n in sizes]
    for small, big in zip(subsets, subsets[1:]):
        assert _row_set(small) <= _row_set(big)
    unbalanced = [digits.subset(n, seed=7, balanced=False) for n in sizes]
    for small, big in zip(unbalanced, unbalanced[1:]):
        assert _row_set(small) <= _row_set(big)


def test_subset_unbalanced_and_full(digits):
    u = digits.subset(50, seed=0, balanced=False)
    assert len(u) == 50 and torch.equal(u.X, digits.subset(50, seed=0, balanced=False).X)
    full = digits.subset(len(digits), seed=0, balanced=False)
    assert torch.equal(full.X, digits.X)


def test_subset_size_errors():
    ds = toy((5, 3, 4))
    for n in (0, 13, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"subset size n must be an integer in 1\.\.12"):
            ds.subset(n, seed=0)
    # 12 balanced needs 4 per class; class c1 has only 3
    with pytest.raises(ValueError, match=r"'c1' has 3"):
        ds.subset(12, seed=0)
    # 10 = 3·3 + 1: the extra sample must go to a class with ≥ 4 samples
    for seed in range(10):
        s = ds.subset(10, seed=seed)
        assert s.class_counts()[1] == 3
    assert len(ds.subset(11, seed=0)) == 11  # 3 + 4 + 4 with c1 unable to take a 4th
    assert ds.subset(11, seed=0).class_counts().tolist() == [4, 3, 4]


# ---------------------------------------------------------------------- classes


def test_select_classes_relabels_in_given_order(digits):
    s = digits.select_classes(["7", "2", "9"])
    assert s.classes == ["7", "2", "9"] and s.n_classes == 3
    assert s.class_counts().tolist() == [179, 177, 180]
    orig = digits.y[(digits.y == 7) | (digits.y == 2) | (digits.y == 9)]
    mapping = {7: 0, 2: 1, 9: 2}
    assert s.y.tolist() == [mapping[int(v)] for v in orig]
    assert torch.equal(s.X[s.y == 0], digits.X[digits.y == 7])
    assert torch.equal(digits.select_classes([7, 2, 9]).y, s.y)  # int labels work too


def test_select_classes_errors():
    ds = toy()
    with pytest.raises(ValueError, match=r"unknown class 'zz'"):
        ds.select_classes(["zz"])
    with pytest.raises(ValueError, match="not repeat"):
        ds.select_classes(["c0", 0])
    with pytest.raises(ValueError, match="at least one"):
        ds.select_classes([])
    with pytest.raises(ValueError, match=r"out of range 0\.\.2"):
        ds.select_classes([3])


# ---------------------------------------------------------------------- transforms


def test_flatten_standardize_to(digits):
    tr, te = train_test_split(digits, 0.3, seed=0)
    flat = tr.flatten()
    assert flat.X.shape == (len(tr), 64) and flat.input_shape == (64,)
    assert torch.equal(flat.X[5], tr.X[5].reshape(-1))

    std_tr = flat.standardize()
    mean, std = flat.feature_stats()
    assert mean.shape == (64,) and std.shape == (64,)
    varying = std > 0
    assert torch.allclose(std_tr.X.mean(0), torch.zeros(64, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(
        std_tr.X.std(0, correction=0)[varying], torch.ones(int(varying.sum()), dtype=torch.float64)
    )
    assert not varying.all()  # digits has constant blank pixels: centred, not divided by 0
    assert torch.isfinite(std_tr.X).all()

    std_te = te.flatten().standardize(mean, std)
    expected = (te.flatten().X - mean) / torch.where(std > 0, std, torch.ones_like(std))
    assert torch.equal(std_te.X, expected)
    with pytest.raises(ValueError, match="both mean and std"):
        flat.standardize(mean=mean)
    with pytest.raises(ValueError, match=r"std of shape \(3,\).*\(64,\)"):
        flat.standardize(mean, torch.ones(3))

    f32 = digits.to(dtype=torch.float32)
    assert f32.X.dtype == torch.float32 and f32.y.dtype == torch.int64
    assert digits.X.dtype == torch.float64
    assert digits.to() is digits
    with pytest.raises(ValueError, match="floating point"):
        digits.to(dtype=torch.int32)


def test_one_hot_and_validation():
    ds = toy((2, 1, 1))
    oh = ds.one_hot()
    assert oh.dtype == torch.float64 and oh.shape == (4, 3)
    assert oh.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match="int64"):
        Dataset(ds.X, ds.y.to(torch.int32), ds.classes, ds.provenance)
    with pytest.raises(ValueError, match="4 samples.*3"):
        Dataset(ds.X, ds.y[:3], ds.classes, ds.provenance)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        Dataset(ds.X, ds.y, ["a", "b"], ds.provenance)


# ---------------------------------------------------------------------- split


def test_train_test_split_stratified(digits):
    tr, te = train_test_split(digits, 0.2, seed=5)
    assert len(tr) + len(te) == len(digits)
    counts = digits.class_counts()
    assert te.class_counts().tolist() == [round(0.2 * int(c)) for c in counts]
    tr2, te2 = train_test_split(digits, 0.2, seed=5)
    assert torch.equal(te.X, te2.X) and torch.equal(tr.y, tr2.y)
    assert not torch.equal(te.X, train_test_split(digits, 0.2, seed=6)[1].X)
    assert te.provenance.steps[-1].endswith("[test]")
    for frac in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="test_fraction"):
            train_test_split(digits, frac, seed=0)
    with pytest.raises(ValueError, match="both must be non-empty"):
        train_test_split(toy((1, 1, 1)), 0.4, seed=0)


def test_split_partitions_samples():
    ds = toy((6, 4, 5))  # rows are distinct
    tr, te = train_test_split(ds, 0.5, seed=1)
    rows_tr, rows_te = _row_set(tr), _row_set(te)
    assert rows_tr.isdisjoint(rows_te) and len(rows_tr | rows_te) == len(ds)
    assert te.class_counts().tolist() == [3, 2, 2]  # round(2.5) = 2 (banker's rounding)
