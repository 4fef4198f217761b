"""Small seeded synthetic data sets for tests and quick experiments.

Both generators draw everything from one CPU ``torch.Generator`` seeded by an explicit integer
(``docs/architecture.md`` rule 6) in float64 and only cast X to the requested dtype at the end,
so a seed gives the same samples, and the same labels, whatever the dtype. They stand in for the
real data of ``docs/methods.md`` §8 where only the structure matters (full-batch training of an
MLP on n_c classes, ``docs/methods.md`` §1).

- :func:`gaussian_mixture`: n_c isotropic unit-variance Gaussian blobs around class means a
  chosen distance apart.
- :func:`teacher_student`: Gaussian inputs labelled by the argmax of a random tanh MLP teacher.
"""

from __future__ import annotations

import math

import torch

from eoslab.data.base import Dataset, Provenance

__all__ = ["class_means", "gaussian_mixture", "teacher_student"]


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return value


def _check_dtype(dtype: torch.dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype}")


def _balanced_labels(n: int, n_classes: int, g: torch.Generator) -> torch.Tensor:
    """n labels in a seeded random order, balanced: the first n mod n_c classes get one more.

    Each class gets ⌊n/n_c⌋ or ⌈n/n_c⌉ labels.
    """
    y = torch.arange(n, dtype=torch.int64) % n_classes
    return y[torch.randperm(n, generator=g)]


def class_means(
    n_classes: int, dim: int, *, separation: float, generator: torch.Generator
) -> torch.Tensor:
    """Class means for :func:`gaussian_mixture`, float64 [n_classes, dim].

    If n_classes ≤ dim + 1, the means are the vertices of a regular simplex centred at the
    origin, every pair exactly ``separation`` apart, randomly rotated into R^dim. Otherwise
    they are random unit directions scaled by separation/√2 (the radius of that simplex as
    n_c → ∞), so pairs are separation apart only on average.

    Args:
        n_classes: n_c ≥ 1.
        dim: input dimension ≥ 1.
        separation: distance between means in units of the noise standard deviation.
        generator: CPU generator the rotation or directions are drawn from.
    """
    k = n_classes
    if k <= dim + 1:
        # e_1..e_k centred lie in the (k−1)-dim sum-zero subspace, pairwise √2 apart
        centred = torch.eye(k, dtype=torch.float64) - 1.0 / k  # [k, k]
        # Helmert basis of the sum-zero subspace: row j−1 = (1, …, 1, −j, 0, …)/√(j(j+1))
        basis = torch.zeros(k - 1, k, dtype=torch.float64)  # [k−1, k], orthonormal rows
        for j in range(1, k):
            basis[j - 1, :j] = 1.0
            basis[j - 1, j] = -float(j)
            basis[j - 1] /= math.sqrt(j * (j + 1))
        coords = centred @ basis.T  # [k, k−1]
        rot, _ = torch.linalg.qr(
            torch.randn(dim, max(k - 1, 1), generator=generator, dtype=torch.float64)
        )  # [dim, k−1], orthonormal columns
        means = coords @ rot[:, : k - 1].T  # [k, dim]
    else:
        dirs = torch.randn(k, dim, generator=generator, dtype=torch.float64)
        means = dirs / dirs.norm(dim=1, keepdim=True)
    return means * (float(separation) / math.sqrt(2.0))


def gaussian_mixture(
    n: int,
    *,
    n_classes: int = 3,
    dim: int = 2,
    separation: float = 4.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Dataset:
    """A mixture of isotropic Gaussians, one per class: x = μ_y + ε with ε ~ N(0, I).

    Labels are balanced (counts differ by at most one) and shuffled; the means come from
    :func:`class_means` (a regular simplex with edge ``separation`` when n_c ≤ dim + 1).

    Args:
        n: number of samples, ≥ 1.
        n_classes: n_c ≥ 1.
        dim: input dimension ≥ 1.
        separation: distance between class means in noise standard deviations, ≥ 0.
        seed: integer seed of the CPU generator.
        dtype: floating dtype of X.

    Returns:
        Dataset ``"gaussian_mixture"`` with X [n, dim], y int64 [n], classes ``"0"``…
    """
    _check_int("n", n, 1)
    _check_int("n_classes", n_classes, 1)
    _check_int("dim", dim, 1)
    _check_dtype(dtype)
    if not math.isfinite(float(separation)) or separation < 0:
        raise ValueError(f"separation must be a finite number ≥ 0, got {separation!r}")
    g = torch.Generator().manual_seed(int(seed))
    means = class_means(n_classes, dim, separation=separation, generator=g)  # [n_c, dim]
    y = _balanced_labels(n, n_classes, g)
    X = means[y] + torch.randn(n, dim, generator=g, dtype=torch.float64)  # [n, dim]
    notes = (
        f"gaussian_mixture(n={n}, n_classes={n_classes}, dim={dim}, separation={separation}, "
        f"seed={seed}, dtype={dtype}): x = mu_y + N(0, I); means "
        + ("on a regular simplex" if n_classes <= dim + 1 else "along random directions")
        + f", pairwise distance {separation}"
        + ("" if n_classes <= dim + 1 else " on average")
        + "; balanced shuffled labels"
    )
    return Dataset(
        X=X.to(dtype),
        y=y,
        classes=[str(c) for c in range(n_classes)],
        provenance=Provenance(source="synthetic", licence="generated", notes=notes),
        name="gaussian_mixture",
    )


def _teacher(
    dim: int, n_classes: int, width: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random teacher weights (W1, b1, W2, b2), float64, drawn in that order.

    W1 [width, dim] ~ N(0, 1/dim), b1 [width] ~ N(0, 1), W2 [n_c, width] ~ N(0, 1/width),
    b2 = 0.
    """
    W1 = torch.randn(width, dim, generator=g, dtype=torch.float64) / math.sqrt(dim)
    b1 = torch.randn(width, generator=g, dtype=torch.float64)
    W2 = torch.randn(n_classes, width, generator=g, dtype=torch.float64) / math.sqrt(width)
    b2 = torch.zeros(n_classes, dtype=torch.float64)
    return W1, b1, W2, b2


def _teacher_logits(X: torch.Tensor, weights) -> torch.Tensor:
    W1, b1, W2, b2 = weights
    return torch.tanh(X @ W1.T + b1) @ W2.T + b2  # [n, n_c]


def teacher_student(
    n: int,
    *,
    dim: int = 10,
    n_classes: int = 3,
    teacher_width: int = 32,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Dataset:
    """Gaussian inputs x ~ N(0, I) labelled by a random one-hidden-layer tanh teacher.

    y = argmax_c [W2 tanh(W1 x + b1)]_c with W1 ~ N(0, 1/dim), b1 ~ N(0, 1),
    W2 ~ N(0, 1/teacher_width), all drawn from the seed (in that order, before X). The
    labels are a deterministic function of x, so the data are perfectly learnable, but the
    classes need not be balanced.

    Args:
        n: number of samples, ≥ 1.
        dim: input dimension ≥ 1.
        n_classes: n_c ≥ 2 teacher outputs.
        teacher_width: hidden width of the teacher, ≥ 1.
        seed: integer seed of the CPU generator.
        dtype: floating dtype of X (labels are computed in float64 first).

    Returns:
        Dataset ``"teacher_student"`` with X [n, dim], y int64 [n], classes ``"0"``…
    """
    _check_int("n", n, 1)
    _check_int("dim", dim, 1)
    _check_int("n_classes", n_classes, 2)
    _check_int("teacher_width", teacher_width, 1)
    _check_dtype(dtype)
    g = torch.Generator().manual_seed(int(seed))
    weights = _teacher(dim, n_classes, teacher_width, g)
    X = torch.randn(n, dim, generator=g, dtype=torch.float64)  # [n, dim]
    y = _teacher_logits(X, weights).argmax(dim=1)
    counts = torch.bincount(y, minlength=n_classes).tolist()
    notes = (
        f"teacher_student(n={n}, dim={dim}, n_classes={n_classes}, "
        f"teacher_width={teacher_width}, seed={seed}, dtype={dtype}): x ~ N(0, I), "
        "y = argmax W2 tanh(W1 x + b1), W1 ~ N(0, 1/dim), b1 ~ N(0, 1), "
        f"W2 ~ N(0, 1/teacher_width); class counts {counts}"
    )
    return Dataset(
        X=X.to(dtype),
        y=y,
        classes=[str(c) for c in range(n_classes)],
        provenance=Provenance(source="synthetic", licence="generated", notes=notes),
        name="teacher_student",
    )
