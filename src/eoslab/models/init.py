"""Seeded weight initialisations: Kaiming, Xavier with the Kaiming gain, PyTorch's default.

Every scheme fixes the distribution of the *effective* weight W_ℓ of each layer, the matrix
in z_ℓ = W_ℓ a_{ℓ−1} + b_ℓ (``docs/methods.md`` §5). For a model in the NTK parametrisation
(:class:`~eoslab.models.mlp.MLP` with ``parametrization="ntk"``) the stored parameter is
W_ℓ / c_ℓ, where c_ℓ is the layer's forward multiplier, so a standard and an NTK model
initialised with the same scheme and seed compute the same function at initialisation and
differ only in their training geometry (Jacot et al. 2018).

Schemes (fan_in, fan_out as in PyTorch: for a weight [out, in, *k], fan_in = in·prod(k) and
fan_out = out·prod(k)):

- ``"kaiming"``: W ~ N(0, gain² / fan_in) (He et al. 2015, fan-in mode; Lowell 2022 uses it
  for all networks). Biases zero.
- ``"xavier"``: W ~ N(0, gain² · 2 / (fan_in + fan_out)) (Glorot & Bengio 2010, with the
  Kaiming correction that scales by the activation's gain; Lowell 2024 §3). Biases zero.
- ``"pytorch_default"``: what ``nn.Linear`` / ``nn.Conv*`` do by default,
  W, b ~ U(−1/√fan_in, 1/√fan_in) (independent of the activation), but seeded.

Draws are made in float64 on a CPU ``torch.Generator`` and then cast, so a seed gives the
same weights on every device, and a float32 model holds the float64 model's weights rounded.
The random stream visits layers in order, weight before bias.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["GAINS", "INIT_SCHEMES", "gain", "init_model", "weight_std"]

GAINS: dict[str, float] = {
    "identity": 1.0,
    "relu": math.sqrt(2.0),
    "tanh": 5.0 / 3.0,
    "elu": math.sqrt(2.0),
    "gelu": 1.5335304411955348,
    "softplus": 1.0418668355353016,
}
"""Gain of each activation, the factor in std(W) = gain / √fan_in.

``identity``, ``relu`` and ``tanh`` are ``torch.nn.init.calculate_gain``'s values
(``"linear"``, ``"relu"``, ``"tanh"``). PyTorch defines none for the others:

- ``elu``: √2. Lowell 2024 §3 states it "followed [Clevert et al. 2016] in using [a gain]
  for the ELU function"; the number was lost from our copy of the paper, and Clevert et al.
  initialise their ELU networks as He et al. 2015 do, i.e. with the ReLU gain √2 **(choice)**.
  (The second-moment value 1/√E[elu(z)²] ≈ 1.2452, z ~ N(0, 1), would be the alternative.)
- ``gelu``, ``softplus``: He et al.'s criterion gain = 1/√E[σ(z)²] for z ~ N(0, 1), which
  gives √2 for ReLU; evaluated by quadrature **(choice)**.
"""


def gain(activation: str) -> float:
    """The gain of ``activation`` from :data:`GAINS`.

    Raises:
        ValueError: for an activation without a gain; the message lists the known ones.
    """
    try:
        return GAINS[activation]
    except KeyError:
        raise ValueError(
            f"no gain for activation {activation!r}; known activations: {sorted(GAINS)}"
        ) from None


def _fans(shape: torch.Size) -> tuple[int, int]:
    if len(shape) < 2:
        raise ValueError(f"a weight needs at least 2 dimensions [out, in, ...], got {tuple(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _kaiming(shape, fan_in, fan_out, g, gen):
    w = torch.randn(shape, generator=gen, dtype=torch.float64) * (g / math.sqrt(fan_in))
    return w, torch.zeros(shape[0], dtype=torch.float64)


def _xavier(shape, fan_in, fan_out, g, gen):
    std = g * math.sqrt(2.0 / (fan_in + fan_out))
    w = torch.randn(shape, generator=gen, dtype=torch.float64) * std
    return w, torch.zeros(shape[0], dtype=torch.float64)


def _pytorch_default(shape, fan_in, fan_out, g, gen):
    bound = 1.0 / math.sqrt(fan_in)
    w = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    b = (torch.rand(shape[0], generator=gen, dtype=torch.float64) * 2 - 1) * bound
    return w, b


InitScheme = Callable[
    [torch.Size, int, int, float, torch.Generator], tuple[torch.Tensor, torch.Tensor]
]

INIT_SCHEMES: dict[str, InitScheme] = {
    "kaiming": _kaiming,
    "xavier": _xavier,
    "pytorch_default": _pytorch_default,
}
"""Registry: scheme name → function (shape, fan_in, fan_out, gain, generator) → (W, b),
float64 tensors of the effective weight and the bias."""


def weight_std(scheme: str, fan_in: int, fan_out: int, activation: str) -> float:
    """Standard deviation of each effective weight entry under ``scheme`` (the formula).

    kaiming: gain/√fan_in; xavier: gain·√(2/(fan_in+fan_out)); pytorch_default:
    1/√(3·fan_in) (the std of U(−1/√fan_in, 1/√fan_in)).

    Raises:
        ValueError: for an unknown scheme or activation.
    """
    _check_scheme(scheme)
    g = gain(activation)
    if scheme == "kaiming":
        return g / math.sqrt(fan_in)
    if scheme == "xavier":
        return g * math.sqrt(2.0 / (fan_in + fan_out))
    return 1.0 / math.sqrt(3.0 * fan_in)


def _check_scheme(scheme: str) -> None:
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; known schemes: {sorted(INIT_SCHEMES)}")


def _weight_layers(model: nn.Module) -> list[nn.Module]:
    if hasattr(model, "linear_layers"):
        return list(model.linear_layers())
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [m for m in model.modules() if isinstance(m, kinds)]


def init_model(
    model: nn.Module,
    scheme: str,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    activation: str | None = None,
) -> nn.Module:
    """Initialise the weight layers of ``model`` in place with ``scheme``; return ``model``.

    Weight layers are ``model.linear_layers()`` when the model has that method (as
    :class:`~eoslab.models.mlp.MLP` does), otherwise every ``nn.Linear`` and ``nn.Conv1d/2d/3d``
    in ``model.modules()`` order. If the model has ``weight_multipliers`` (one float per
    weight layer, the NTK parametrisation's c_ℓ), the stored weight is the drawn effective
    weight divided by c_ℓ. Other parameters are left untouched.

    Same scheme, same seed, same architecture → identical parameters, whatever the dtype
    and device (up to the final cast).

    Args:
        model: the module to initialise.
        scheme: a key of :data:`INIT_SCHEMES`.
        seed: integer seed of a fresh CPU ``torch.Generator``. Give exactly one of
            ``seed`` and ``generator``.
        generator: a CPU ``torch.Generator`` to draw from (its state advances).
        activation: activation whose gain (:data:`GAINS`) scales the weights; defaults to
            ``model.activation``. The same gain is used for every layer, including the
            output layer, as ``torch.nn.init`` users commonly do.

    Returns:
        ``model``, initialised.

    Raises:
        ValueError: on an unknown scheme or activation, a missing activation, both or
            neither of seed/generator, a non-CPU generator, a model without weight layers,
            or a ``weight_multipliers`` of the wrong length.
    """
    _check_scheme(scheme)
    if (seed is None) == (generator is None):
        raise ValueError("give exactly one of seed= and generator= to init_model")
    if generator is None:
        generator = torch.Generator().manual_seed(int(seed))
    elif generator.device.type != "cpu":
        raise ValueError(f"init_model draws on the CPU; got a generator on {generator.device}")
    if activation is None:
        activation = getattr(model, "activation", None)
        if not isinstance(activation, str):
            raise ValueError(
                f"{type(model).__name__} has no string attribute 'activation'; pass "
                f"activation= (one of {sorted(GAINS)})"
            )
    g = gain(activation)
    layers = _weight_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv layers to initialise")
    multipliers = tuple(getattr(model, "weight_multipliers", (1.0,) * len(layers)))
    if len(multipliers) != len(layers):
        raise ValueError(
            f"{type(model).__name__}.weight_multipliers has {len(multipliers)} entries for "
            f"{len(layers)} weight layers"
        )
    draw = INIT_SCHEMES[scheme]
    with torch.no_grad():
        for layer, c in zip(layers, multipliers):
            weight = layer.weight
            fan_in, fan_out = _fans(weight.shape)
            w, b = draw(weight.shape, fan_in, fan_out, g, generator)
            weight.copy_((w / c).to(dtype=weight.dtype, device=weight.device))
            if getattr(layer, "bias", None) is not None:
                layer.bias.copy_(b.to(dtype=layer.bias.dtype, device=layer.bias.device))
    return model
