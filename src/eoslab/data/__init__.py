"""Data sets as tensors with provenance, and seeded ways to subset them (``docs/architecture.md``).

Every loader returns a :class:`Dataset` (X [N, ...], int64 labels y [N], class names and a
:class:`Provenance`). Loaders are registered by name in the plain dict :data:`DATASETS`;
:func:`load_dataset` looks one up.
"""

from __future__ import annotations

from collections.abc import Callable

from eoslab.data.base import Dataset, Provenance, train_test_split
from eoslab.data.cifar10 import load_cifar10
from eoslab.data.dice import load_dice
from eoslab.data.digits import load_digits
from eoslab.data.fashion_mnist import load_fashion_mnist
from eoslab.data.sst import load_sst
from eoslab.data.synthetic import gaussian_mixture, teacher_student
from eoslab.data.uea import load_uea

__all__ = [
    "DATASETS",
    "Dataset",
    "Provenance",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_sst",
    "load_uea",
    "train_test_split",
]

DATASETS: dict[str, Callable[..., Dataset]] = {
    "cifar10": load_cifar10,
    "dice": load_dice,
    "digits": load_digits,
    "fashion_mnist": load_fashion_mnist,
    "gaussian_mixture": gaussian_mixture,
    "sst": load_sst,
    "teacher_student": teacher_student,
    "uea": load_uea,
}
"""Registry: data-set name → loader returning a :class:`Dataset`."""


def load_dataset(name: str, **kwargs) -> Dataset:
    """Load the data set registered as ``name``.

    Args:
        name: a key of :data:`DATASETS`.
        **kwargs: keyword arguments of that loader (e.g. ``dtype``, ``scale`` for
            ``"digits"``); an unknown keyword is the loader's own TypeError.

    Raises:
        ValueError: if ``name`` is not registered; the message lists the known names.
    """
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}") from None
    return loader(**kwargs)
