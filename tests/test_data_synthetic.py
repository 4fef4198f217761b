"""Seeded synthetic data sets, and the example grids of show_examples for every input shape."""

from __future__ import annotations

import matplotlib.image
import pytest
import torch

from eoslab.data import DATASETS, Dataset, Provenance, load_dataset
from eoslab.data.show import show_examples
from eoslab.data.synthetic import (
    _teacher,
    _teacher_logits,
    class_means,
    gaussian_mixture,
    teacher_student,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- gaussian mixture


def test_gaussian_mixture_shapes_balance_provenance():
    ds = gaussian_mixture(101, n_classes=4, dim=5, separation=3.0, seed=0)
    assert ds.X.shape == (101, 5) and ds.X.dtype == torch.float64 and ds.y.dtype == torch.int64
    assert ds.classes == ["0", "1", "2", "3"] and ds.name == "gaussian_mixture"
    assert ds.class_counts().tolist() == [26, 25, 25, 25]
    assert ds.provenance.source == "synthetic" and ds.provenance.licence == "generated"
    for text in ("n=101", "n_classes=4", "dim=5", "separation=3.0", "seed=0"):
        assert text in ds.provenance.notes
    assert len(set(ds.y[:20].tolist())) > 1  # shuffled, not in class order


def test_gaussian_mixture_deterministic_and_dtype():
    a = gaussian_mixture(50, n_classes=3, dim=4, seed=7)
    b = gaussian_mixture(50, n_classes=3, dim=4, seed=7, dtype=torch.float32)
    c = gaussian_mixture(50, n_classes=3, dim=4, seed=8)
    assert torch.equal(a.y, b.y) and torch.equal(a.X.to(torch.float32), b.X)
    assert b.X.dtype == torch.float32
    assert not torch.equal(a.X, c.X)
    assert torch.equal(gaussian_mixture(50, n_classes=3, dim=4, seed=7).X, a.X)


@pytest.mark.parametrize("k,dim", [(2, 1), (3, 2), (4, 3), (5, 10), (6, 2)])
def test_class_means_simplex(k, dim):
    means = class_means(k, dim, separation=2.5, generator=torch.Generator().manual_seed(0))
    assert means.shape == (k, dim)
    dist = torch.cdist(means, means)[~torch.eye(k, dtype=torch.bool)]
    if k <= dim + 1:
        assert torch.allclose(dist, torch.full_like(dist, 2.5), atol=1e-12)
        assert torch.allclose(means.mean(0), torch.zeros(dim, dtype=torch.float64), atol=1e-12)
    else:
        assert torch.allclose(
            means.norm(dim=1), torch.full((k,), 2.5 / 2**0.5, dtype=torch.float64)
        )


def test_gaussian_mixture_separation_controls_difficulty():
    def nearest_mean_accuracy(sep):
        ds = gaussian_mixture(600, n_classes=3, dim=2, separation=sep, seed=1)
        means = torch.stack([ds.X[ds.y == c].mean(0) for c in range(3)])
        return (torch.cdist(ds.X, means).argmin(1) == ds.y).double().mean().item()

    assert nearest_mean_accuracy(12.0) > 0.99
    assert nearest_mean_accuracy(0.0) < 0.5


# ---------------------------------------------------------------------- teacher-student


def test_teacher_student_labels_are_the_teacher_argmax():
    ds = teacher_student(300, dim=6, n_classes=4, teacher_width=16, seed=3)
    assert ds.X.shape == (300, 6) and ds.classes == ["0", "1", "2", "3"]
    assert ds.name == "teacher_student" and ds.provenance.licence == "generated"
    assert "teacher_width=16" in ds.provenance.notes
    g = torch.Generator().manual_seed(3)
    weights = _teacher(6, 4, 16, g)
    X = torch.randn(300, 6, generator=g, dtype=torch.float64)
    assert torch.equal(X, ds.X)
    assert torch.equal(_teacher_logits(X, weights).argmax(1), ds.y)
    assert (ds.class_counts() > 0).sum() >= 2


def test_teacher_student_deterministic_and_validated():
    a = teacher_student(40, seed=0)
    assert torch.equal(a.X, teacher_student(40, seed=0).X)
    assert torch.equal(a.y, teacher_student(40, seed=0, dtype=torch.float32).y)
    assert not torch.equal(a.X, teacher_student(40, seed=1).X)
    with pytest.raises(ValueError, match="n_classes"):
        teacher_student(10, n_classes=1)
    with pytest.raises(ValueError, match="dtype"):
        gaussian_mixture(10, dtype=torch.int32)
    with pytest.raises(ValueError, match="separation"):
        gaussian_mixture(10, separation=-1.0)


def test_registered():
    assert DATASETS["gaussian_mixture"] is gaussian_mixture
    assert DATASETS["teacher_student"] is teacher_student
    assert len(load_dataset("teacher_student", n=12, dim=3)) == 12


# ---------------------------------------------------------------------- show_examples


def make(shape, n=24, n_classes=3) -> Dataset:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, *shape, generator=g)
    y = torch.arange(n) % n_classes
    return Dataset(X, y, [f"c{k}" for k in range(n_classes)], Provenance("t", "none"), "toy")


@pytest.mark.parametrize(
    "shape",
    [(1, 8, 8), (3, 6, 6), (2, 40), (64,), (48,), (5,), (50,)],
    ids=["gray", "rgb", "series", "flat-square", "flat-rgb", "flat-bars", "flat-line"],
)
def test_show_examples_png_for_every_shape(tmp_path, shape):
    out = show_examples(make(shape), tmp_path / "sub" / "grid.png", per_class=4, seed=1)
    assert out.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(out)
    assert image.ndim == 3 and image.shape[2] in (3, 4)


def test_show_examples_short_class_and_errors(tmp_path):
    ds = gaussian_mixture(7, n_classes=3, dim=9, seed=0)  # 3, 2, 2 per class
    out = show_examples(ds, tmp_path / "g.png", per_class=5)
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="channels"):
        show_examples(make((2, 4, 4)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="per_class"):
        show_examples(ds, tmp_path / "x.png", per_class=0)


def test_show_examples_picks_are_seeded(tmp_path):
    ds = teacher_student(60, dim=16, n_classes=2, seed=0)
    paths = [show_examples(ds, tmp_path / f"{k}.png", seed=s) for k, s in zip("abc", [0, 0, 1])]
    a, b, c = (matplotlib.image.imread(p) for p in paths)
    assert (a == b).all() and not (a == c).all()
