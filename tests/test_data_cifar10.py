"""CIFAR-10 loader on tiny fake files in both official formats, the safe unpickler, and the
download helper (checksums, atomic write, no-network message) via local file:// URLs."""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from eoslab.data import DATASETS, load_cifar10, load_dataset
from eoslab.data._download import ChecksumError, DownloadError, download, file_digest
from eoslab.data.cifar10 import (
    CIFAR10_ARCHIVES,
    CIFAR10_CLASSES,
    RestrictedUnpickler,
    UnsafeFileError,
)

N_PER_BATCH = {"data_batch_1": 3, "data_batch_2": 2, "data_batch_3": 4, "data_batch_4": 1}
N_PER_BATCH |= {"data_batch_5": 2, "test_batch": 3}
N_TRAIN = sum(v for k, v in N_PER_BATCH.items() if k != "test_batch")


def fake_batches(seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in N_PER_BATCH.items():
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        out[name] = (data, labels)
    return out


def python_files(batches) -> dict[str, bytes]:
    """Pickled dicts with bytes keys, as in the official (Python 2) files, at protocol 2."""
    files = {}
    for name, (data, labels) in batches.items():
        d = {
            b"batch_label": f"{name} of fake".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{k}.png".encode() for k in range(len(labels))],
        }
        files[name] = pickle.dumps(d, protocol=2)
    meta = {
        b"num_cases_per_batch": 10000,
        b"label_names": [c.encode() for c in CIFAR10_CLASSES],
        b"num_vis": 3072,
    }
    files["batches.meta"] = pickle.dumps(meta, protocol=2)
    return files


def binary_files(batches) -> dict[str, bytes]:
    files = {}
    for name, (data, labels) in batches.items():
        records = np.concatenate([np.array(labels, dtype=np.uint8)[:, None], data], axis=1)
        files[f"{name}.bin"] = records.tobytes()
    files["batches.meta.txt"] = ("\n".join(CIFAR10_CLASSES) + "\n\n").encode()
    return files


FOLDER = {"python": "cifar-10-batches-py", "binary": "cifar-10-batches-bin"}


def write_folder(root: Path, fmt: str, files: dict[str, bytes]) -> Path:
    folder = root / FOLDER[fmt]
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def write_archive(root: Path, fmt: str, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    archive = root / CIFAR10_ARCHIVES[fmt][0]
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{FOLDER[fmt]}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def expected(batches, split):
    names = [f"data_batch_{k}" for k in range(1, 6)] if split == "train" else ["test_batch"]
    X = np.concatenate([batches[n][0] for n in names]).reshape(-1, 3, 32, 32)
    y = np.concatenate([batches[n][1] for n in names])
    return torch.from_numpy(X.astype(np.float64) / 255), torch.from_numpy(y.astype(np.int64))


@pytest.fixture(scope="module")
def batches():
    return fake_batches()


@pytest.mark.parametrize("fmt", ["python", "binary"])
@pytest.mark.parametrize("container", ["folder", "archive"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_parses_both_formats_folder_and_archive(tmp_path, batches, fmt, container, split):
    files = python_files(batches) if fmt == "python" else binary_files(batches)
    if container == "folder":
        write_folder(tmp_path, fmt, files)
        ds = load_cifar10(tmp_path, split=split, dtype=torch.float64)
    else:
        write_archive(tmp_path, fmt, files)
        with pytest.warns(UserWarning, match="differs from the published"):
            ds = load_cifar10(tmp_path, split=split, dtype=torch.float64)
    X, y = expected(batches, split)
    assert ds.name == "cifar10"
    assert ds.X.shape == (N_TRAIN if split == "train" else 3, 3, 32, 32)
    assert ds.X.dtype == torch.float64 and ds.y.dtype == torch.int64
    assert torch.equal(ds.X, X) and torch.equal(ds.y, y)
    assert ds.classes == CIFAR10_CLASSES
    assert "Krizhevsky" in ds.provenance.source
    assert f"{fmt} format" in ds.provenance.notes and split in ds.provenance.notes
    algo = "sha256" if container == "folder" else "md5"
    assert ds.provenance.checksum.startswith(f"{algo}:")


def test_channel_layout_is_rgb_planes_row_major(tmp_path):
    data = np.zeros((1, 3072), dtype=np.uint8)
    data[0, 0] = 255  # red, row 0, col 0
    data[0, 1024 + 32] = 255  # green, row 1, col 0
    data[0, 2048 + 31] = 255  # blue, row 0, col 31
    b = {k: (np.zeros((1, 3072), np.uint8), [0]) for k in N_PER_BATCH}
    b["test_batch"] = (data, [9])
    write_folder(tmp_path, "binary", binary_files(b))
    ds = load_cifar10(tmp_path, split="test", format="binary")
    assert ds.X.dtype == torch.float32
    assert torch.nonzero(ds.X[0]).tolist() == [[0, 0, 0], [1, 1, 0], [2, 0, 31]]
    assert ds.y.tolist() == [9]


def test_root_may_be_the_folder_or_archive_itself_and_auto_prefers_python(tmp_path, batches):
    folder = write_folder(tmp_path / "a", "python", python_files(batches))
    assert len(load_cifar10(folder, split="test")) == 3
    archive = write_archive(tmp_path / "b", "binary", binary_files(batches))
    with pytest.warns(UserWarning):
        assert len(load_cifar10(archive, split="test")) == 3
    # both formats present: auto takes python, format= picks explicitly
    write_folder(tmp_path / "a", "binary", binary_files(fake_batches(seed=1)))
    auto = load_cifar10(tmp_path / "a", split="test")
    binary = load_cifar10(tmp_path / "a", split="test", format="binary")
    assert "python format" in auto.provenance.notes
    assert "binary format" in binary.provenance.notes
    assert not torch.equal(auto.X, binary.X)


def test_registered_and_reachable_through_load_dataset(tmp_path, batches):
    assert DATASETS["cifar10"] is load_cifar10
    write_folder(tmp_path, "binary", binary_files(batches))
    ds = load_dataset("cifar10", root=tmp_path, split="test")
    assert len(ds) == 3


# ---------------------------------------------------------------------- errors


def test_missing_data_names_what_and_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz") as err:
        load_cifar10(tmp_path)
    assert str(tmp_path) in str(err.value) and "cifar-10-batches-bin" in str(err.value)


def test_missing_batch_file_is_named(tmp_path, batches):
    folder = write_folder(tmp_path, "python", python_files(batches))
    (folder / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        load_cifar10(tmp_path)
    files = binary_files(batches)
    del files["test_batch.bin"]
    write_archive(tmp_path / "arch", "binary", files)
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError, match="test_batch.bin"):
        load_cifar10(tmp_path / "arch", split="test")


def test_truncated_binary_batch_names_file_and_byte_count(tmp_path, batches):
    folder = write_folder(tmp_path, "binary", binary_files(batches))
    raw = (folder / "data_batch_2.bin").read_bytes()
    (folder / "data_batch_2.bin").write_bytes(raw[:-100])
    n = len(raw) - 100
    with pytest.raises(ValueError, match=rf"data_batch_2\.bin: truncated .*{n} bytes"):
        load_cifar10(tmp_path)


def test_truncated_archive_is_reported(tmp_path, batches):
    archive = write_archive(tmp_path, "python", python_files(batches))
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) // 2])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="truncated or damaged"):
        load_cifar10(tmp_path)


def test_truncated_pickle_is_reported(tmp_path, batches):
    folder = write_folder(tmp_path, "python", python_files(batches))
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="test_batch: not a readable CIFAR-10 python batch"):
        load_cifar10(tmp_path, split="test")


def test_wrong_shape_and_labels_out_of_range(tmp_path, batches):
    bad = dict(batches)
    bad["test_batch"] = (np.zeros((2, 3000), np.uint8), [0, 1])
    write_folder(tmp_path / "shape", "python", python_files(bad))
    with pytest.raises(ValueError, match=r"test_batch: 'data' must be a uint8 array \[n, 3072\]"):
        load_cifar10(tmp_path / "shape", split="test")

    bad["test_batch"] = (np.zeros((2, 3072), np.uint8), [0, 1, 2])
    write_folder(tmp_path / "count", "python", python_files(bad))
    with pytest.raises(ValueError, match="'labels' has shape"):
        load_cifar10(tmp_path / "count", split="test")

    bad["test_batch"] = (np.zeros((2, 3072), np.uint8), [0, 10])
    write_folder(tmp_path / "py", "python", python_files(bad))
    with pytest.raises(ValueError, match=r"test_batch: labels must lie in 0\.\.9"):
        load_cifar10(tmp_path / "py", split="test")
    write_folder(tmp_path / "bin", "binary", binary_files(bad))
    with pytest.raises(ValueError, match=r"test_batch\.bin: labels must lie in 0\.\.9"):
        load_cifar10(tmp_path / "bin", split="test")


def test_bad_meta_and_options(tmp_path, batches):
    files = binary_files(batches)
    files["batches.meta.txt"] = b"cat\ndog\n"
    write_folder(tmp_path, "binary", files)
    with pytest.raises(ValueError, match="10 distinct class names"):
        load_cifar10(tmp_path, split="test")
    with pytest.raises(ValueError, match="split"):
        load_cifar10(tmp_path, split="val")
    with pytest.raises(ValueError, match="format"):
        load_cifar10(tmp_path, format="png")
    with pytest.raises(ValueError, match="floating-point"):
        load_cifar10(tmp_path, dtype=torch.uint8)


# ---------------------------------------------------------------------- safe unpickling


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_executing(tmp_path, batches):
    marker = tmp_path / "pwned"
    payload = {b"data": batches["test_batch"][0], b"labels": Evil(marker)}
    files = python_files(batches)
    files["test_batch"] = pickle.dumps(payload, protocol=2)
    write_folder(tmp_path, "python", files)
    with pytest.raises(UnsafeFileError, match=r"test_batch: refusing .*system") as err:
        load_cifar10(tmp_path, split="test")
    assert isinstance(err.value, pickle.UnpicklingError) and isinstance(err.value, ValueError)
    assert not marker.exists()
    # the same file through the plain unpickler really would run the command
    assert b"system" in files["test_batch"]


@pytest.mark.parametrize(
    "obj",
    [
        eval,  # builtins.eval as a global
        getattr,
        Path("x"),  # pathlib class reconstruction
        np.int64(3),  # numpy scalars are not in the official files
    ],
)
def test_unpickler_allows_only_the_official_globals(obj):
    data = pickle.dumps({b"x": obj}, protocol=2)
    with pytest.raises(UnsafeFileError, match="refusing to unpickle the global"):
        RestrictedUnpickler(io.BytesIO(data), name="f").load()


class Rot13:
    def __reduce__(self):
        return (codecs.encode, ("abc", "rot13"))


def test_codecs_encode_is_restricted_to_latin1():
    # _codecs.encode(str, 'latin1') is how protocol 2 stores bytes; other codecs are refused
    crafted = pickle.dumps(Rot13(), protocol=2)
    assert b"_codecs" in crafted
    with pytest.raises(UnsafeFileError, match="latin-1"):
        RestrictedUnpickler(io.BytesIO(crafted), name="f").load()
    ok = pickle.dumps({b"k": b"\x00\xffdata", b"e": b""}, protocol=2)
    assert RestrictedUnpickler(io.BytesIO(ok), name="f").load() == {
        b"k": b"\x00\xffdata",
        b"e": b"",
    }


def test_str_keys_are_accepted(tmp_path, batches):
    files = python_files(batches)
    data, labels = batches["test_batch"]
    files["test_batch"] = pickle.dumps({"data": data, "labels": labels}, protocol=2)
    write_folder(tmp_path, "python", files)
    assert load_cifar10(tmp_path, split="test").y.tolist() == labels


# ---------------------------------------------------------------------- download


def test_download_verifies_checksums_and_writes_atomically(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"cifar" * 1000)
    sha, md5 = hashlib.sha256(src.read_bytes()).hexdigest(), file_digest(src, "md5")
    dest = tmp_path / "out" / "file.bin"
    assert download(src.as_uri(), dest, sha256=sha, md5=md5, progress=False) == dest
    assert dest.read_bytes() == src.read_bytes()
    # present and matching: no new download (source gone, still fine)
    src.unlink()
    assert download(src.as_uri(), dest, md5=md5, progress=False) == dest


def test_download_checksum_mismatch_names_file_and_both_digests(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"not the archive")
    actual = file_digest(src, "md5")
    wrong = "0" * 32
    dest = tmp_path / "cifar-10-python.tar.gz"
    with pytest.raises(ChecksumError) as err:
        download(src.as_uri(), dest, md5=wrong, progress=False)
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and wrong in msg and actual in msg
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == [src]  # no temporary file left behind
    with pytest.raises(ValueError, match="64 hex digits"):
        download(src.as_uri(), dest, sha256="abc", progress=False)


def test_download_without_network_says_where_to_place_the_file(tmp_path):
    dest = tmp_path / "cifar-10-binary.tar.gz"
    with pytest.raises(DownloadError, match=rf"could not download .*place the file at {dest}"):
        download((tmp_path / "nowhere.tar.gz").as_uri(), dest, progress=False)
    with pytest.raises(DownloadError, match="could not download http://127.0.0.1:9/x"):
        download("http://127.0.0.1:9/x", dest, progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_download_progress_line(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name == "tqdm":
            raise ImportError("no tqdm")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 3000)
    download(src.as_uri(), tmp_path / "d.bin", progress=True)
    assert "downloading d.bin" in capsys.readouterr().err


def test_load_cifar10_download_uses_the_published_md5(tmp_path, batches, monkeypatch):
    from eoslab.data import _download

    calls = []

    def fake_download(url, dest, *, md5):
        calls.append((url, md5))
        write_archive(Path(dest).parent, "python", python_files(batches))
        return dest

    monkeypatch.setattr(_download, "download", fake_download)
    with pytest.warns(UserWarning):
        ds = load_cifar10(tmp_path, split="test", download=True)
    assert len(ds) == 3
    assert calls == [
        (
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
        )
    ]
    assert CIFAR10_ARCHIVES["binary"][1] == "c32a1d4ab5d03f1284b67883e8d87530"
