"""Fashion-MNIST IDX parsing on tiny files written here, auto-detection of Debian's package,
and (when installed) the real Debian data."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from eoslab.data import DATASETS, load_dataset, load_fashion_mnist
from eoslab.data import fashion_mnist as fm
from eoslab.data.fashion_mnist import FASHION_MNIST_CLASSES, IdxFormatError, read_idx


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 | array.ndim
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_split(folder: Path, split: str, images, labels, *, gz: bool = True) -> None:
    prefix = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
        data = idx_bytes(arr)
        name = f"{prefix}-{kind}-ubyte"
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def fake(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(
        np.uint8
    )


@pytest.fixture
def folder(tmp_path):
    write_split(tmp_path, "train", *fake(7))
    write_split(tmp_path, "test", *fake(4, seed=1))
    return tmp_path


def test_parses_valid_files(folder):
    images, labels = fake(7)
    ds = load_fashion_mnist(folder)
    assert ds.name == "fashion_mnist" and len(ds) == 7
    assert ds.X.shape == (7, 1, 28, 28) and ds.X.dtype == torch.float32
    assert torch.equal(ds.X[:, 0] * 255, torch.from_numpy(images).float())
    assert ds.y.tolist() == labels.tolist() and ds.y.dtype == torch.int64
    assert ds.classes == FASHION_MNIST_CLASSES and ds.classes[0] == "T-shirt/top"
    assert ds.provenance.licence == "MIT" and "Xiao" in ds.provenance.source
    assert "train-images-idx3-ubyte.gz" in ds.provenance.checksum
    assert "not the official 60000" in ds.provenance.notes
    test = load_fashion_mnist(folder, split="test", dtype=torch.float64)
    assert len(test) == 4 and test.X.dtype == torch.float64
    assert DATASETS["fashion_mnist"] is load_fashion_mnist
    assert len(load_dataset("fashion_mnist", path=folder, split="test")) == 4


def test_uncompressed_files_are_accepted(tmp_path):
    write_split(tmp_path, "test", *fake(3), gz=False)
    assert len(load_fashion_mnist(tmp_path, split="test")) == 3


def test_bad_magic_names_the_file(folder):
    images, _ = fake(7)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images, 2049)))
    with pytest.raises(IdxFormatError, match=r"train-images-idx3-ubyte\.gz: magic number 2049"):
        load_fashion_mnist(folder)
    # a labels file read as images
    with pytest.raises(IdxFormatError, match="expected 2051"):
        read_idx(folder / "train-labels-idx1-ubyte.gz", magic=2051)


def test_truncated_payload_header_and_gzip(folder, tmp_path):
    images, labels = fake(7)
    data = idx_bytes(images)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data[:-5]))
    with pytest.raises(IdxFormatError, match=r"images-idx3-ubyte\.gz: truncated.*found 5483"):
        load_fashion_mnist(folder)
    path.write_bytes(gzip.compress(data + b"\0"))
    with pytest.raises(IdxFormatError, match="trailing bytes"):
        load_fashion_mnist(folder)
    path.write_bytes(gzip.compress(data[:10]))
    with pytest.raises(IdxFormatError, match="header declares 3 dimensions"):
        load_fashion_mnist(folder)
    path.write_bytes(gzip.compress(data)[:-20])  # cut gzip stream
    with pytest.raises(IdxFormatError, match=r"idx3-ubyte\.gz: damaged or truncated gzip"):
        load_fashion_mnist(folder)
    path.write_bytes(b"no gzip at all")
    with pytest.raises(IdxFormatError, match="damaged or truncated gzip"):
        load_fashion_mnist(folder)


def test_dims_counts_and_labels_are_checked(tmp_path):
    write_split(tmp_path / "a", "train", np.zeros((2, 28, 27), np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(IdxFormatError, match="must be 28 x 28"):
        load_fashion_mnist(tmp_path / "a")
    write_split(tmp_path / "b", "train", np.zeros((2, 28, 28), np.uint8), np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="holds 2 images but .* holds 3 labels"):
        load_fashion_mnist(tmp_path / "b")
    write_split(tmp_path / "c", "train", np.zeros((2, 28, 28), np.uint8), np.array([0, 10]))
    with pytest.raises(ValueError, match=r"labels-idx1-ubyte\.gz: labels must lie in 0\.\.9"):
        load_fashion_mnist(tmp_path / "c")


def test_missing_files_and_options(folder, tmp_path):
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist(folder, split="test")
    with pytest.raises(FileNotFoundError, match="folder not found"):
        load_fashion_mnist(tmp_path / "nope")
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist(folder, split="valid")
    with pytest.raises(ValueError, match="floating-point"):
        load_fashion_mnist(folder, dtype=torch.int32)


def test_auto_detection_searches_candidates_then_dpkg(tmp_path, monkeypatch):
    pkg = tmp_path / "usr" / "share" / "datasets" / "fashion-mnist"
    write_split(pkg, "train", *fake(2))
    monkeypatch.setattr(fm, "CANDIDATE_DIRS", (tmp_path / "none", pkg))
    monkeypatch.setattr(fm, "_dpkg_listing", lambda package: [])
    assert fm.find_fashion_mnist() == pkg
    assert len(load_fashion_mnist()) == 2

    listing = ["/.", str(pkg.parent), str(pkg), str(pkg / "train-images-idx3-ubyte.gz")]
    monkeypatch.setattr(fm, "CANDIDATE_DIRS", (tmp_path / "none",))
    monkeypatch.setattr(fm, "_dpkg_listing", lambda package: listing)
    assert fm.find_fashion_mnist() == pkg

    monkeypatch.setattr(fm, "_dpkg_listing", lambda package: [])
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist()


def test_dpkg_listing_tolerates_absent_package():
    assert fm._dpkg_listing("no-such-package-eoslab-test") == []


DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Debian package dataset-fashion-mnist is not installed (no {DEBIAN_DIR}); "
    "`apt-get install dataset-fashion-mnist` to run this test",
)
def test_real_debian_data():
    assert fm.find_fashion_mnist() == DEBIAN_DIR
    train = load_fashion_mnist()
    test = load_fashion_mnist(split="test", dtype=torch.float64)
    assert train.X.shape == (60000, 1, 28, 28) and len(test) == 10000
    for ds, n in ((train, 60000), (test, 10000)):
        assert int(ds.y.min()) == 0 and int(ds.y.max()) == 9
        assert ds.class_counts().tolist() == [n // 10] * 10  # balanced, as published
        assert float(ds.X.min()) == 0.0 and float(ds.X.max()) == 1.0
    assert "not the official" not in train.provenance.notes
