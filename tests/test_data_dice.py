"""The Dice data set (docs/methods.md §9): classes as specified, splits, determinism, cache."""

from __future__ import annotations

import math

import matplotlib.image
import numpy as np
import pytest
import torch

from eoslab.data import DATASETS, load_dataset
from eoslab.data.dice import (
    DICE_CLASSES,
    LWD_UNIT,
    PARAM_RANGES,
    PIP_RADIUS,
    dice_cache_path,
    dice_split_indices,
    generate_dice,
    generate_dice_class,
    load_dice,
    render_dice,
    sample_dice_params,
)
from eoslab.data.show import show_examples

S = 32
PIXEL_AREA = (2 / S) ** 2  # canvas units² per pixel
CENTRES = (2 * torch.arange(S, dtype=torch.float64) + 1 - S) / S  # pixel centres, one axis


@pytest.fixture(scope="module")
def small() -> object:
    return generate_dice(20, size=16, seed=0)


@pytest.fixture(scope="module")
def drawn() -> dict:
    """60 images of each class at 32 × 32, as floats in [0, 1], with their parameters."""
    out = {}
    for name in DICE_CLASSES:
        X, params = generate_dice_class(name, 60, size=S, seed=1)
        out[name] = (X.to(torch.float64) / 255, params)
    return out


def ink_mass(X: torch.Tensor) -> torch.Tensor:
    """Total ink per image in canvas units², [n]."""
    return X.sum(dim=(1, 2)) * PIXEL_AREA


# ---------------------------------------------------------------------- the data set


def test_shapes_range_classes_balance(small):
    assert small.name == "dice"
    assert small.classes == ["one", "two", "three", "four", "five", "six"]
    assert small.X.shape == (120, 1, 16, 16) and small.X.dtype == torch.float32
    assert small.class_counts().tolist() == [20] * 6
    assert small.y.tolist() == sorted(small.y.tolist())  # class order
    assert small.X.min() == 0.0 and small.X.max() <= 1.0
    assert torch.equal(small.X * 255, (small.X * 255).round())  # 8-bit values
    assert bool((small.X.flatten(1).amax(1) > 0).all())  # no blank image
    prov = small.provenance
    assert prov.licence == "generated" and prov.checksum.startswith("sha256:")
    assert "docs/methods.md §9" in prov.notes and "seed=0" in prov.notes
    assert generate_dice(4, size=8, dtype=torch.float64).X.dtype == torch.float64


def test_deterministic_per_seed(small):
    again = generate_dice(20, size=16, seed=0)
    assert torch.equal(again.X, small.X) and torch.equal(again.y, small.y)
    assert again.provenance.checksum == small.provenance.checksum
    other = generate_dice(20, size=16, seed=1)
    for c in range(6):
        assert not torch.equal(other.X[other.y == c], small.X[small.y == c])
    # a class's images do not depend on how many were drawn or on the chunking
    X5, _ = generate_dice_class("six", 20, size=16, seed=0)
    assert torch.equal(X5.to(torch.float32) / 255, small.X[small.y == 5, 0])
    params = sample_dice_params("six", 20, seed=0)
    assert torch.equal(render_dice("six", params, size=16, chunk_size=3), X5)


def test_parameters_uniform_on_their_ranges():
    for name in DICE_CLASSES:
        params = sample_dice_params(name, 3000, seed=2)
        for key, (lo, hi) in PARAM_RANGES[name].items():
            v = params[key]
            assert v.min() >= lo and v.max() <= hi, (name, key)
            assert abs(float(v.mean()) - (lo + hi) / 2) < 0.05 * (hi - lo), (name, key)
        if name in ("one", "two"):
            assert "lend" not in params
        else:
            counts = torch.bincount(params["lend"], minlength=3)
            assert counts.numel() == 3 and bool((counts > 900).all()), (name, counts)


def test_split_sizes_disjoint_and_complete(tmp_path):
    train = load_dice(split="train", size=16, n_per_class=21, cache_dir=tmp_path)
    test = load_dice(split="test", size=16, n_per_class=21, cache_dir=tmp_path)
    assert train.class_counts().tolist() == [11] * 6 and test.class_counts().tolist() == [10] * 6
    full = generate_dice(21, size=16)
    tr, te = dice_split_indices(21, seed=0)
    assert len(np.intersect1d(tr, te)) == 0 and len(np.union1d(tr, te)) == 126
    assert torch.equal(train.X, full.X[tr]) and torch.equal(test.X, full.X[te])
    rows = {bytes(x.numpy().tobytes()) for x in train.X}
    assert not any(bytes(x.numpy().tobytes()) in rows for x in test.X)
    assert "split='test'" in test.provenance.notes
    assert train.provenance.checksum != test.provenance.checksum


def test_registered():
    assert DATASETS["dice"] is load_dice
    assert "gaussian_mixture" in DATASETS and "teacher_student" in DATASETS


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_dice(split="val", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="n_per_class"):
        generate_dice(1)
    with pytest.raises(ValueError, match="size"):
        generate_dice(4, size=1)
    with pytest.raises(ValueError, match="seed"):
        generate_dice(4, seed=-1)
    with pytest.raises(ValueError, match="dtype"):
        generate_dice(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="unknown dice class"):
        sample_dice_params("seven", 3)
    with pytest.raises(ValueError, match="lack"):
        render_dice("three", {"x": torch.zeros(2), "y": torch.zeros(2)})


# ---------------------------------------------------------------------- each class as drawn


def test_anti_aliased(drawn):
    for name, (X, _) in drawn.items():
        grey = ((X > 0) & (X < 1)).sum()
        assert grey > 0, name
        assert X.min() == 0.0 and X.max() <= 1.0, name


def test_one_is_a_single_disc_at_x_y(drawn):
    X, p = drawn["one"]
    r = PIP_RADIUS * p["cex"]
    inside = (p["x"].abs() < 1 - r - 0.1) & (p["y"].abs() < 1 - r - 0.1)
    assert inside.sum() >= 20
    m = X.sum(dim=(1, 2))
    cx = (X * CENTRES[None, None, :]).sum(dim=(1, 2)) / m
    cy = (X * -CENTRES[None, :, None]).sum(dim=(1, 2)) / m  # y up: row 0 is the top
    assert (cx - p["x"])[inside].abs().max() < 0.2 * 2 / S
    assert (cy - p["y"])[inside].abs().max() < 0.2 * 2 / S
    # all ink within a pixel of the disc, and as much of it as the disc's area
    dist = torch.hypot(
        CENTRES[None, None, :] - p["x"][:, None, None],
        -CENTRES[None, :, None] - p["y"][:, None, None],
    )
    assert bool((X[dist > r[:, None, None] + 1.5 * 2 / S] == 0).all())
    area = math.pi * r**2
    err = (ink_mass(X) - area)[inside].abs()
    assert bool((err <= 0.03 * area[inside] + 0.5 * PIXEL_AREA).all())


def test_two_is_point_symmetric_with_two_discs(drawn):
    X, p = drawn["two"]
    assert (X - X.flip(-1, -2)).abs().max() <= 1 / 255 + 1e-12
    r = PIP_RADIUS * p["cex"]
    apart = (p["x"].abs() < 1 - r - 0.1) & (p["y"].abs() < 1 - r - 0.1)
    apart &= torch.hypot(p["x"], p["y"]) > r + 0.1
    area = 2 * math.pi * r**2
    err = (ink_mass(X) - area)[apart].abs()
    assert apart.sum() >= 10 and bool((err <= 0.03 * area[apart] + PIXEL_AREA).all())


def test_three_is_a_point_symmetric_line_with_its_ends(drawn):
    X, p = drawn["three"]
    assert (X - X.flip(-1, -2)).abs().max() <= 1 / 255 + 1e-12
    h = LWD_UNIT * p["lwd"] / 2
    length = 2 * torch.hypot(p["x"], p["y"])
    lend = p["lend"]
    area = torch.where(
        lend == 0,
        length * 2 * h + math.pi * h**2,  # round: two half-disc caps
        torch.where(lend == 1, length * 2 * h, (length + 2 * h) * 2 * h),  # butt, square
    )
    ok = (p["x"].abs() + 2 * h < 0.99) & (p["y"].abs() + 2 * h < 0.99)
    err = (ink_mass(X) - area)[ok].abs()
    assert ok.sum() >= 20 and bool((err <= 0.03 * area[ok] + PIXEL_AREA).all())


def box_area(p) -> torch.Tensor:
    h = LWD_UNIT * p["lwd"] / 2
    bx, by = p["x"].abs(), p["y"].abs()
    hole = (2 * bx - 2 * h).clamp(min=0) * (2 * by - 2 * h).clamp(min=0)
    mitre = (2 * bx + 2 * h) * (2 * by + 2 * h) - hole
    rounded = 4 * bx * by + 2 * (2 * bx + 2 * by) * h + math.pi * h**2 - hole
    return torch.where(
        p["lend"] == 0, rounded, torch.where(p["lend"] == 1, mitre - 2 * h**2, mitre)
    )


@pytest.mark.parametrize("name", ["four", "five"])
def test_boxes_mirror_symmetric_with_joins_by_lend(drawn, name):
    X, p = drawn[name]
    assert (X - X.flip(-1)).abs().max() <= 1 / 255 + 1e-12  # x → −x
    assert (X - X.flip(-2)).abs().max() <= 1 / 255 + 1e-12  # y → −y
    h = LWD_UNIT * p["lwd"] / 2
    area = box_area(p)
    ok = (p["x"].abs() + h < 0.99) & (p["y"].abs() + h < 0.99)
    if name == "five":
        r = PIP_RADIUS * p["cex"]
        area = area + math.pi * r**2
        ok &= (p["x"].abs() - h > r + 0.1) & (p["y"].abs() - h > r + 0.1)
        # the pip at the origin: ink in the four centre pixels of the even-sized image
        assert bool((X[:, S // 2 - 1 : S // 2 + 1, S // 2 - 1 : S // 2 + 1] > 0).all())
    err = (ink_mass(X) - area)[ok].abs()
    assert ok.sum() >= 20 and bool((err <= 0.03 * area[ok] + 2 * PIXEL_AREA).all())


def test_four_corners_at_plus_minus_x_y():
    one = torch.ones(1, dtype=torch.float64)
    params = {"x": 0.5 * one, "y": -0.25 * one, "lwd": one, "lend": torch.tensor([2])}
    X = render_dice("four", params, size=S)[0].to(torch.float64) / 255
    ink_x = CENTRES[(X > 0).any(dim=0)]
    ink_y = -CENTRES[(X > 0).any(dim=1)]
    h = LWD_UNIT / 2
    assert ink_x.max() == pytest.approx(0.5 + h, abs=2 / S) and ink_x.min() == -ink_x.max()
    assert ink_y.max() == pytest.approx(0.25 + h, abs=2 / S) and ink_y.min() == -ink_y.max()
    assert X[S // 2, S // 2] == 0  # hollow


def test_six_is_two_parallel_point_symmetric_lines(drawn):
    X, p = drawn["six"]
    assert (X - X.flip(-1, -2)).abs().max() <= 1 / 255 + 1e-12
    # lines offset across their direction: the symbol is not symmetric about its own axis
    assert (X - X.flip(-1)).abs().max() > 0.5


def test_y_points_up():
    params = {"x": torch.tensor([0.5]), "y": torch.tensor([0.5]), "cex": torch.tensor([0.5])}
    X = render_dice("one", {k: v.double() for k, v in params.items()}, size=S)[0]
    rows, cols = torch.nonzero(X, as_tuple=True)
    assert rows.float().mean() < S / 2 and cols.float().mean() > S / 2  # top right


# ---------------------------------------------------------------------- cache


def test_cache_round_trip_and_env_default(tmp_path, monkeypatch):
    monkeypatch.setenv("EOSLAB_CACHE", str(tmp_path / "env"))
    first = load_dice(size=16, n_per_class=6, seed=3)
    path = dice_cache_path(size=16, n_per_class=6, seed=3)
    assert path.parent.parent == tmp_path / "env" and path.is_file()
    sha = path.with_name(path.name + ".sha256")
    assert sha.read_text().split()[1] == path.name
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == ["X", "meta", "y"] and f["X"].dtype == np.uint8
    stamp = path.stat().st_mtime_ns
    again = load_dice(size=16, n_per_class=6, seed=3, dtype=torch.float64)
    assert path.stat().st_mtime_ns == stamp  # read, not rewritten
    assert again.X.dtype == torch.float64
    assert torch.equal((again.X * 255).round(), (first.X * 255).round().to(torch.float64))
    assert again.provenance.checksum == first.provenance.checksum
    assert load_dataset("dice", size=16, n_per_class=6, seed=3).X.shape == first.X.shape


def test_cache_checksum_mismatch_names_file_then_regenerates(tmp_path):
    clean = load_dice(split="test", size=16, n_per_class=4, cache_dir=tmp_path)
    path = dice_cache_path(size=16, n_per_class=4, cache_dir=tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch") as info:
        load_dice(split="test", size=16, n_per_class=4, cache_dir=tmp_path)
    assert str(path) in str(info.value) and "regenerate=True" in str(info.value)
    fixed = load_dice(split="test", size=16, n_per_class=4, cache_dir=tmp_path, regenerate=True)
    assert torch.equal(fixed.X, clean.X)
    assert torch.equal(
        load_dice(split="test", size=16, n_per_class=4, cache_dir=tmp_path).X, clean.X
    )
    path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(ValueError, match="no checksum file"):
        load_dice(size=16, n_per_class=4, cache_dir=tmp_path)


# ---------------------------------------------------------------------- picture


def test_show_examples_writes_png(tmp_path, small):
    out = show_examples(small, tmp_path / "dice.png", per_class=5)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out)
    assert image.ndim == 3 and image.shape[2] in (3, 4) and image.shape[0] > 100
