"""Small convolutional networks: Cohen et al.'s CNN and the CIFAR-sized AlexNet.

Both are plain ``nn.Module`` objects without normalisation or dropout, whose forward pass is
a pure function of the parameters and the input (no in-place operations, no data-dependent Python
control flow), so they work under ``torch.func.functional_call``, ``grad``, ``jvp``, ``vjp`` and
``vmap`` (``docs/architecture.md`` rule 2). Inputs are images [B, C, H, W] or one image [C, H, W].

This module also holds the pieces the other convolutional models (:mod:`~eoslab.models.vgg`,
:mod:`~eoslab.models.resnet`) share: :class:`ScaledConv2d` and :class:`ScaledLinear`, the
layers that carry the NTK parametrisation's forward multiplier, and the argument checks.

NTK parametrisation for convolutions (Jacot et al. 2018; Arora et al. 2019, "On exact
computation with an infinitely wide neural net"): the layer computes
z = c·(W ⋆ a) + b with c = gain(σ)/√fan_in and fan_in = in_channels·k_h·k_w, the same
convention as :class:`~eoslab.models.mlp.MLP` with fan_in = in_features, and as
:func:`~eoslab.models.init.init_model`, which stores W_eff/c.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from eoslab.models.init import gain, init_model
from eoslab.models.mlp import ACTIVATIONS, PARAMETRIZATIONS

__all__ = ["POOLINGS", "AlexNet", "ScaledConv2d", "ScaledLinear", "SmallCNN"]

POOLINGS = ("max", "average")
"""Pooling kinds of :class:`SmallCNN`: 2×2 max pooling or 2×2 average pooling, stride 2."""


# ---------------------------------------------------------------------- shared layers


class ScaledConv2d(nn.Conv2d):
    """``nn.Conv2d`` computing z = c·(W ⋆ a) + b with a fixed Python float c.

    c = ``weight_multiplier`` is 1 in the standard parametrisation and gain/√fan_in in the NTK
    parametrisation; it is not a parameter. The stored ``weight`` is W; ``bias`` is not scaled.
    """

    def __init__(self, *args, weight_multiplier: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_multiplier = float(weight_multiplier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """c·(W ⋆ x) + b for x [B, C_in, H, W] or [C_in, H, W]."""
        c = self.weight_multiplier
        return self._conv_forward(x, self.weight if c == 1.0 else self.weight * c, self.bias)

    def extra_repr(self) -> str:
        """``nn.Conv2d``'s description plus the multiplier when it is not 1."""
        base = super().extra_repr()
        c = self.weight_multiplier
        return base if c == 1.0 else f"{base}, weight_multiplier={c:.6g}"


class ScaledLinear(nn.Linear):
    """``nn.Linear`` computing z = c·W a + b with a fixed Python float c (see ScaledConv2d)."""

    def __init__(self, *args, weight_multiplier: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_multiplier = float(weight_multiplier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """c·W x + b for x [..., in_features]."""
        c = self.weight_multiplier
        return F.linear(x, self.weight if c == 1.0 else self.weight * c, self.bias)

    def extra_repr(self) -> str:
        """``nn.Linear``'s description plus the multiplier when it is not 1."""
        base = super().extra_repr()
        c = self.weight_multiplier
        return base if c == 1.0 else f"{base}, weight_multiplier={c:.6g}"


# ---------------------------------------------------------------------- shared checks


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_widths(name: str, widths, *, allow_empty: bool = False) -> tuple[int, ...]:
    widths = tuple(widths)
    if not widths and not allow_empty:
        raise ValueError(f"{name} must contain at least one width, got {widths!r}")
    for w in widths:
        _check_positive_int(f"every entry of {name}", w)
    return widths


def _check_activation(activation: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; known activations: {sorted(ACTIVATIONS)}"
        )
    return ACTIVATIONS[activation]


def _check_parametrization(parametrization: str) -> None:
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(
            f"unknown parametrization {parametrization!r}; known: {list(PARAMETRIZATIONS)}"
        )


def _image_size(input_size) -> tuple[int, int]:
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2:
        raise ValueError(f"input_size must be an int or a pair (H, W), got {input_size!r}")
    for s in size:
        _check_positive_int("input_size", s)
    return size


def _multiplier(parametrization: str, activation: str, fan_in: int) -> float:
    """c of one weight layer: 1 (standard) or gain(σ)/√fan_in (NTK), as in MLP."""
    return gain(activation) / math.sqrt(fan_in) if parametrization == "ntk" else 1.0


def _pooled(n: int, kernel: int, stride: int, padding: int = 0, *, ceil: bool = False) -> int:
    """Output length of a pooling window along one axis (PyTorch's formula)."""
    span = n + 2 * padding - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= n + padding:  # PyTorch drops a window starting in the pad
        out -= 1
    return out


def _check_image(model: nn.Module, x: torch.Tensor, *, check_size: bool = True) -> None:
    """Raise early, naming the shapes, when x is not [B, C, H, W] or [C, H, W] as expected."""
    expected = (model.in_channels, *model.input_size)
    got = tuple(x.shape[-3:]) if x.dim() in (3, 4) else None
    ok = got is not None and (got == expected if check_size else got[0] == expected[0])
    if not ok:
        what = f"[B, {expected[0]}, {expected[1]}, {expected[2]}]"
        if not check_size:
            what = f"[B, {expected[0]}, H, W]"
        raise ValueError(
            f"{type(model).__name__} expects images {what} (or one image without B), "
            f"got input of shape {tuple(x.shape)}"
        )


class _ConvNetBase(nn.Module):
    """Shared behaviour: weight layers in forward order, NTK multipliers, activation."""

    activation: str
    _sigma: Callable[[torch.Tensor], torch.Tensor]

    def weight_layers(self) -> list[nn.Module]:
        """The Conv2d and Linear layers in forward order (the order ``init_model`` visits)."""
        return [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    @property
    def weight_multipliers(self) -> tuple[float, ...]:
        """c_ℓ of each weight layer, in :meth:`weight_layers` order (all 1 when standard)."""
        return tuple(layer.weight_multiplier for layer in self.weight_layers())

    @property
    def activation_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """σ, the elementwise activation function."""
        return self._sigma

    def _finish(self, device, seed: int) -> None:
        # Layers were created on the meta device, so nothing was drawn from the global random
        # state (docs/architecture.md rule 6); allocate, then draw the seeded default
        # initialisation. A model built on the meta device (for parameter counts) is left
        # uninitialised.
        device = torch.device(device) if device is not None else torch.device("cpu")
        if device.type != "meta":
            self.to_empty(device=device)
            init_model(self, "pytorch_default", seed=seed)


def _conv(cin, cout, k, *, padding, bias, dtype, parametrization, activation, stride=1):
    c = _multiplier(parametrization, activation, cin * k * k)
    return ScaledConv2d(
        cin,
        cout,
        k,
        stride=stride,
        padding=padding,
        bias=bias,
        device="meta",
        dtype=dtype,
        weight_multiplier=c,
    )


def _linear(d_in, d_out, *, bias, dtype, parametrization, activation):
    c = _multiplier(parametrization, activation, d_in)
    return ScaledLinear(d_in, d_out, bias=bias, device="meta", dtype=dtype, weight_multiplier=c)


# ---------------------------------------------------------------------- SmallCNN


class SmallCNN(_ConvNetBase):
    """Cohen et al. 2021's small CNN: [conv 3×3 → σ → pool 2×2] × depth → linear head.

    Exactly ``convnet`` of Cohen et al.'s code (github.com/locuslab/edge-of-stability,
    ``src/archs.py``; their ``cnn-relu``/``cnn-tanh``/``cnn-elu`` are ``widths=(32, 32)`` with
    max pooling, ``cnn-avgpool-*`` the same with average pooling): for each width w_ℓ,
    ``Conv2d(w_{ℓ−1}, w_ℓ, 3, stride=1, padding=1)`` (size-preserving), σ, then 2×2 pooling
    with stride 2 (H ← ⌊H/2⌋); finally flatten (channel-major, as ``nn.Flatten``) and
    ``Linear(w_last·H'·W', n_out)``. σ is not applied to the output (logits).

    Parameters for CIFAR-10 (3×32×32, 10 classes, widths (32, 32), biases):
    (3·9·32 + 32) + (32·9·32 + 32) + (32·8·8·10 + 10) = 896 + 9,248 + 20,490 = 30,634.
    28×28×1 (Fashion-MNIST): 320 + 9,248 + 15,690 = 25,258; 8×8×1 (digits): 320 + 9,248 + 1,290.

    Args:
        in_channels: C, channels of the input images.
        n_out: number of outputs (classes).
        input_size: H = W (int) or (H, W) of the inputs; fixes the head's fan-in.
        widths: output channels of the conv layers (depth = ``len(widths)``).
        activation: a key of :data:`~eoslab.models.mlp.ACTIVATIONS`.
        pooling: ``"max"`` or ``"average"`` (:data:`POOLINGS`).
        bias: whether conv and linear layers have biases.
        parametrization: ``"standard"`` or ``"ntk"`` (c = gain/√(C_in·3·3) per conv layer,
            gain/√fan_in for the head).
        dtype: parameter dtype (default: ``torch.get_default_dtype()``).
        device: parameter device (default: CPU; ``"meta"`` builds without initialising).
        seed: seed of the construction-time ``"pytorch_default"`` initialisation; call
            :func:`~eoslab.models.init.init_model` for another scheme.

    Attributes:
        feature_shape: (C, H', W') of the last pooled feature map.
        weight_multipliers: c_ℓ per weight layer (convs, then the head).

    Raises:
        ValueError: on a non-positive size, an unknown activation, pooling or
            parametrisation, or an input too small for ``len(widths)`` poolings.
    """

    def __init__(
        self,
        in_channels: int,
        n_out: int,
        *,
        input_size: int | tuple[int, int] = 32,
        widths: tuple[int, ...] = (32, 32),
        activation: str = "relu",
        pooling: str = "max",
        bias: bool = True,
        parametrization: str = "standard",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("n_out", n_out)
        widths = _check_widths("widths", widths)
        self._sigma = _check_activation(activation)
        _check_parametrization(parametrization)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; known: {list(POOLINGS)}")
        self.in_channels = in_channels
        self.n_out = n_out
        self.input_size = _image_size(input_size)
        self.widths = widths
        self.activation = activation
        self.pooling = pooling
        self.has_bias = bias
        self.parametrization = parametrization

        h, w = self.input_size
        for _ in widths:
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(
                f"input_size {self.input_size} is too small for {len(widths)} 2×2 poolings"
            )
        self.feature_shape = (widths[-1], h, w)
        kw = dict(dtype=dtype, parametrization=parametrization, activation=activation)
        chans = (in_channels, *widths)
        self.convs = nn.ModuleList(
            _conv(a, b, 3, padding=1, bias=bias, **kw) for a, b in zip(chans[:-1], chans[1:])
        )
        self.head = _linear(math.prod(self.feature_shape), n_out, bias=bias, **kw)
        self._finish(device, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, n_out] for images x [B, C, H, W], or [n_out] for one image [C, H, W]."""
        _check_image(self, x)
        pool = F.max_pool2d if self.pooling == "max" else F.avg_pool2d
        h = x
        for conv in self.convs:
            h = pool(self._sigma(conv(h)), 2)
        return self.head(h.flatten(start_dim=-3))

    def extra_repr(self) -> str:
        """The constructor arguments, shown by ``repr``."""
        return (
            f"in_channels={self.in_channels}, n_out={self.n_out}, input_size={self.input_size}, "
            f"widths={self.widths}, activation={self.activation!r}, pooling={self.pooling!r}, "
            f"bias={self.has_bias}, parametrization={self.parametrization!r}"
        )


# ---------------------------------------------------------------------- AlexNet


class AlexNet(_ConvNetBase):
    """The CIFAR-sized AlexNet of the edge-of-stability and generalisation literature.

    Krizhevsky's CIFAR-10 network as distributed with TensorFlow's CIFAR-10 tutorial
    (``cifar10.py``: conv1, pool1, conv2, pool2, local3, local4, softmax_linear) and used as
    "small AlexNet" by Zhang et al. 2017 ("Understanding deep learning requires rethinking
    generalization") and as "AlexNet" on CIFAR-10 by Lowell 2022 (§4.1, after Krizhevsky et
    al. 2012). Implemented exactly as (for 3×32×32 inputs; σ = ``activation``)::

        Conv2d(C, 64, 5, padding=2) → σ → MaxPool2d(3, stride=2, padding=1)   # 64×16×16
        Conv2d(64, 64, 5, padding=2) → σ → MaxPool2d(3, stride=2, padding=1)  # 64×8×8
        flatten (4096) → Linear(4096, 384) → σ → Linear(384, 192) → σ → Linear(192, n_out)

    Differences from the TensorFlow model **(choice)**: no local response normalisation (the
    papers' variants have no normalisation), inputs at full size instead of 24×24 crops,
    and PyTorch's symmetric pooling padding (TensorFlow's "SAME" pads 3×3/stride-2 windows on
    the right only; output sizes agree for even sizes, windows are offset by one pixel).

    Parameters for CIFAR-10: conv1 3·25·64 + 64 = 4,864; conv2 64·25·64 + 64 = 102,464;
    fc 4096·384 + 384 = 1,573,248; fc 384·192 + 192 = 73,920; fc 192·10 + 10 = 1,930;
    total 1,756,426. (28×28 inputs pool to 7×7, so the first fc has fan-in 3,136.)

    Args:
        in_channels: C, channels of the input images.
        n_out: number of outputs (classes).
        input_size: H = W (int) or (H, W) of the inputs; fixes the first fc layer's fan-in.
        conv_width: channels of both conv layers (64 in the paper's model).
        fc_widths: widths of the hidden fully connected layers ((384, 192) in the paper's).
        activation: a key of :data:`~eoslab.models.mlp.ACTIVATIONS` (Lowell 2022: relu, tanh).
        bias: whether the layers have biases.
        parametrization: ``"standard"`` or ``"ntk"``.
        dtype: parameter dtype (default: ``torch.get_default_dtype()``).
        device: parameter device (default: CPU; ``"meta"`` builds without initialising).
        seed: seed of the construction-time ``"pytorch_default"`` initialisation (Lowell 2022
            then uses ``init_model(model, "kaiming", seed=...)``).

    Raises:
        ValueError: on a non-positive size, an unknown activation or parametrisation.
    """

    def __init__(
        self,
        in_channels: int,
        n_out: int,
        *,
        input_size: int | tuple[int, int] = 32,
        conv_width: int = 64,
        fc_widths: tuple[int, ...] = (384, 192),
        activation: str = "relu",
        bias: bool = True,
        parametrization: str = "standard",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("n_out", n_out)
        _check_positive_int("conv_width", conv_width)
        fc_widths = _check_widths("fc_widths", fc_widths, allow_empty=True)
        self._sigma = _check_activation(activation)
        _check_parametrization(parametrization)
        self.in_channels = in_channels
        self.n_out = n_out
        self.input_size = _image_size(input_size)
        self.conv_width = conv_width
        self.fc_widths = fc_widths
        self.activation = activation
        self.has_bias = bias
        self.parametrization = parametrization

        h, w = self.input_size
        for _ in range(2):
            h, w = _pooled(h, 3, 2, 1), _pooled(w, 3, 2, 1)
        self.feature_shape = (conv_width, h, w)
        kw = dict(dtype=dtype, parametrization=parametrization, activation=activation)
        self.convs = nn.ModuleList(
            [
                _conv(in_channels, conv_width, 5, padding=2, bias=bias, **kw),
                _conv(conv_width, conv_width, 5, padding=2, bias=bias, **kw),
            ]
        )
        dims = (math.prod(self.feature_shape), *fc_widths, n_out)
        self.fcs = nn.ModuleList(
            _linear(a, b, bias=bias, **kw) for a, b in zip(dims[:-1], dims[1:])
        )
        self._finish(device, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, n_out] for images x [B, C, H, W], or [n_out] for one image [C, H, W]."""
        _check_image(self, x)
        h = x
        for conv in self.convs:
            h = F.max_pool2d(self._sigma(conv(h)), 3, stride=2, padding=1)
        h = h.flatten(start_dim=-3)
        last = len(self.fcs) - 1
        for i, fc in enumerate(self.fcs):
            h = fc(h)
            if i < last:
                h = self._sigma(h)
        return h

    def extra_repr(self) -> str:
        """The constructor arguments, shown by ``repr``."""
        return (
            f"in_channels={self.in_channels}, n_out={self.n_out}, input_size={self.input_size}, "
            f"conv_width={self.conv_width}, fc_widths={self.fc_widths}, "
            f"activation={self.activation!r}, bias={self.has_bias}, "
            f"parametrization={self.parametrization!r}"
        )
