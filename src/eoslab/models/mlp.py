"""Fully connected networks in the standard or the NTK parametrisation.

``docs/methods.md`` §5 notation: z_ℓ = W_ℓ a_{ℓ−1} + b_ℓ, a_ℓ = σ(z_ℓ), a_0 = x (flattened),
f = z_L for ℓ = 1..L, where L is the **depth = the number of Linear layers** (so there are
L − 1 hidden layers of ``width`` units). Lowell 2024's "depth 6, width 512" is
``MLP(d, n_c, depth=6, width=512)``: six Linear layers, five hidden layers of 512 units.
Cohen et al.'s "2×200 tanh" network (two hidden layers) is ``depth=3, width=200``.

The forward pass is a pure function of the parameters and the input: no in-place
operations, no data-dependent Python control flow, so it works under
``torch.func.functional_call``, ``grad``, ``jvp``, ``vjp`` and ``vmap``
(``docs/architecture.md`` rule 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from eoslab.models.init import gain, init_model

__all__ = ["ACTIVATIONS", "MLP", "PARAMETRIZATIONS"]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "elu": F.elu,
    "softplus": F.softplus,
    "gelu": F.gelu,
    "identity": _identity,
}
"""Registry: activation name → elementwise function σ (ELU with α = 1, softplus with
β = 1, exact erf GELU)."""

PARAMETRIZATIONS = ("standard", "ntk")
"""``standard``: z = W a + b with W the stored parameter. ``ntk``: z = c·W a + b with
c = gain/√fan_in (Jacot et al. 2018)."""


class MLP(nn.Module):
    """A multilayer perceptron f: R^{in_dim} → R^{n_out} built from ``nn.Linear`` layers.

    Layer ℓ maps a_{ℓ−1} to z_ℓ = c_ℓ W_ℓ a_{ℓ−1} + b_ℓ; σ follows every layer except the
    last, whose output z_L = f is returned (logits). In the standard parametrisation c_ℓ = 1.
    In the NTK parametrisation (Jacot et al. 2018) c_ℓ = gain(σ)/√fan_in_ℓ, so weights
    stored ~ N(0, 1) give the Kaiming-scaled effective weights c_ℓ W_ℓ; the function class
    is the same, but gradient descent sees a rescaled geometry (Cohen et al. 2021 find less
    progressive sharpening with NTK initialisation). Biases are not rescaled (β = 1).

    Parameters are created without touching the global random state and then initialised
    with :func:`~eoslab.models.init.init_model` (``"pytorch_default"``, the ordinary
    ``nn.Linear`` distribution) from ``seed``; call ``init_model`` again for another scheme.

    Parameter names are ``layers.{ℓ−1}.weight`` and ``layers.{ℓ−1}.bias``, in layer order.

    Args:
        in_dim: D, the number of input features after flattening.
        n_out: number of outputs (classes).
        depth: L ≥ 1, the number of Linear layers (L − 1 hidden layers).
        width: units per hidden layer (unused when depth = 1).
        activation: a key of :data:`ACTIVATIONS`.
        bias: whether the Linear layers have biases.
        parametrization: ``"standard"`` or ``"ntk"``.
        dtype: parameter dtype (default: ``torch.get_default_dtype()``).
        device: parameter device (default: CPU).
        seed: seed of the construction-time ``"pytorch_default"`` initialisation.

    Attributes:
        activation: the activation's name (for layerwise analysis and ``init_model``).
        weight_multipliers: c_ℓ for each Linear layer, in order.

    Raises:
        ValueError: on a non-positive size, an unknown activation or parametrisation.
    """

    def __init__(
        self,
        in_dim: int,
        n_out: int,
        *,
        depth: int,
        width: int,
        activation: str = "tanh",
        bias: bool = True,
        parametrization: str = "standard",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        for arg, value in (
            ("in_dim", in_dim),
            ("n_out", n_out),
            ("depth", depth),
            ("width", width),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive integer, got {value!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; known activations: {sorted(ACTIVATIONS)}"
            )
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"unknown parametrization {parametrization!r}; known: {list(PARAMETRIZATIONS)}"
            )
        self.in_dim = in_dim
        self.n_out = n_out
        self.depth = depth
        self.width = width
        self.activation = activation
        self.has_bias = bias
        self.parametrization = parametrization
        self._sigma = ACTIVATIONS[activation]

        dims = [in_dim] + [width] * (depth - 1) + [n_out]
        # On the meta device nn.Linear's own reset_parameters draws nothing, so building a
        # model never consumes the global random state (docs/architecture.md rule 6).
        self.layers = nn.ModuleList(
            nn.Linear(d_in, d_out, bias=bias, device="meta", dtype=dtype)
            for d_in, d_out in zip(dims[:-1], dims[1:])
        )
        self.to_empty(device=device if device is not None else "cpu")
        if parametrization == "ntk":
            g = gain(activation)
            self.weight_multipliers = tuple(g / math.sqrt(d) for d in dims[:-1])
        else:
            self.weight_multipliers = (1.0,) * depth
        init_model(self, "pytorch_default", seed=seed)

    def linear_layers(self) -> list[nn.Linear]:
        """The Linear modules in order, layer 1 (input side) to layer L (output)."""
        return list(self.layers)

    @property
    def activation_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """σ, the elementwise activation function."""
        return self._sigma

    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        a = x if x.dim() == 1 else x.reshape(x.shape[0], -1)
        if a.shape[-1] != self.in_dim:
            raise ValueError(
                f"MLP expects {self.in_dim} input features, got input of shape "
                f"{tuple(x.shape)} ({a.shape[-1]} features after flattening)"
            )
        return a

    def forward(
        self, x: torch.Tensor, *, return_preactivations: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """f(x) for a batch x [B, ...] (flattened to [B, in_dim]) or one sample x [in_dim].

        Args:
            x: inputs; every dimension after the first is flattened (row-major). Inside
                ``vmap`` over samples, give each sample a leading batch dimension of 1 or
                pass it already flattened to [in_dim].
            return_preactivations: also return [z_1, …, z_L] (``docs/methods.md`` §5); then
                a_ℓ = ``activation_fn(z_ℓ)`` and z_L is the output.

        Returns:
            Outputs [B, n_out] (or [n_out]); with ``return_preactivations`` a pair
            (outputs, list of the L pre-activations).
        """
        a = self._flatten(x)
        zs = []
        last = self.depth - 1
        for i, (layer, c) in enumerate(zip(self.layers, self.weight_multipliers)):
            weight = layer.weight if c == 1.0 else layer.weight * c
            z = F.linear(a, weight, layer.bias)
            zs.append(z)
            if i < last:
                a = self._sigma(z)
        if return_preactivations:
            return zs[-1], zs
        return zs[-1]

    def extra_repr(self) -> str:
        """The constructor arguments, shown by ``repr``."""
        return (
            f"in_dim={self.in_dim}, n_out={self.n_out}, depth={self.depth}, width={self.width}, "
            f"activation={self.activation!r}, bias={self.has_bias}, "
            f"parametrization={self.parametrization!r}"
        )
