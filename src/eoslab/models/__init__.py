"""Network architectures and their initialisations (``DESIGN.md``: models/).

Architectures are registered by name in the plain dict :data:`MODELS`; :func:`build_model`
constructs one. Initialisations live in :mod:`eoslab.models.init`.
"""

from __future__ import annotations

from torch import nn

from eoslab.models.init import GAINS, INIT_SCHEMES, gain, init_model, weight_std
from eoslab.models.mlp import ACTIVATIONS, MLP, PARAMETRIZATIONS

__all__ = [
    "ACTIVATIONS",
    "GAINS",
    "INIT_SCHEMES",
    "MLP",
    "MODELS",
    "PARAMETRIZATIONS",
    "build_model",
    "gain",
    "init_model",
    "weight_std",
]

MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
}
"""Registry: architecture name → ``nn.Module`` class."""


def build_model(name: str, **kwargs) -> nn.Module:
    """Construct the architecture registered as ``name`` with keyword arguments ``kwargs``.

    Example: ``build_model("mlp", in_dim=64, n_out=10, depth=3, width=200)``.

    Raises:
        ValueError: if ``name`` is not registered (the message lists the known names) or
            the constructor rejects a value.
        TypeError: if a keyword is missing or unknown for that architecture.
    """
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}") from None
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise TypeError(f"build_model({name!r}, ...): {err}") from err
