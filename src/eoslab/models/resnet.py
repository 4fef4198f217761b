"""ResNet-32 for CIFAR-10 without batch normalisation.

He et al. 2016 ("Deep residual learning for image recognition", §4.2): a 3×3 convolution
with 16 channels, then three stages of n basic blocks on feature maps of 32×32, 16×16 and
8×8 with 16, 32 and 64 channels, global average pooling and a fully connected layer; depth
6n + 2, so ResNet-32 has n = 5. Cohen et al. 2021 train ResNet-32 on CIFAR-10 in a variant
without batch normalisation (their code loads ``resnet_cifar.resnet32``, the common PyTorch
port of He et al.'s CIFAR model).

Implemented exactly as (σ = ``activation``, w = ``base_width`` = 16 by default)::

    stem:   h = σ(Conv2d(C, w, 3, padding=1)(x))
    block:  out = σ(conv2(σ(conv1(h))) + shortcut(h))
            conv1 = Conv2d(c_in, c_out, 3, stride=s, padding=1), conv2 = Conv2d(c_out, c_out, 3,
            padding=1); s = 2 and c_out = 2·c_in in the first block of stages 2 and 3, else
            s = 1 and c_out = c_in
    stages: n blocks each at widths w, 2w, 4w
    head:   global average over H, W → Linear(4w, n_out)

Shortcut: He et al.'s **option A**, parameter-free: the identity when shapes agree; for the
two down-sampling blocks, spatial subsampling ``h[..., ::2, ::2]`` and zero channels padded
equally before and after (c_out − c_in)/2 on each side, as the common port does with
``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))``. Slicing and padding
keep the model ``torch.func``-compatible.

Biases **(choice)**: without batch normalisation, each convolution has a bias (the port's
convolutions have none because BN's shift follows them); ``bias=False`` gives bias-free
convolutions. The final Linear always has a bias.

Parameters for CIFAR-10 (3×32×32, 10 classes): conv weights 432 + 23,040 + 87,552 + 350,208
= 461,232, fc 650: 461,882 with ``bias=False``; plus 1,136 conv biases = 463,018 with
``bias=True`` (the BN version has 464,154: 2,272 BN parameters instead of the biases).

Scale at initialisation: without normalisation the residual stream grows through the
blocks; ``residual_scale`` α multiplies every residual branch, out = σ(α·F(h) + shortcut(h))
(α = 1 is the plain network; α < 1 resembles SkipInit / Fixup-style down-weighting,
De & Smith 2020; Zhang et al. 2019). Measured with ReLU, Kaiming initialisation and
standard-normal 3×32×32 inputs, the logits' standard deviation at initialisation is about
220 for α = 1, 6 for α = 0.5 and 1.2 for α = 0.25 (tanh, α = 1: about 0.2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from eoslab.models.cnn import (
    _check_activation,
    _check_image,
    _check_parametrization,
    _check_positive_int,
    _conv,
    _ConvNetBase,
    _image_size,
    _linear,
)

__all__ = ["BasicBlock", "ResNet", "ResNet32"]


class BasicBlock(nn.Module):
    """out = σ(α·conv2(σ(conv1(h))) + shortcut(h)), option-A shortcut, no normalisation.

    Args:
        conv1: the first 3×3 convolution (stride s, c_in → c_out).
        conv2: the second 3×3 convolution (c_out → c_out).
        activation_fn: σ.
        residual_scale: α.
    """

    def __init__(
        self,
        conv1: nn.Conv2d,
        conv2: nn.Conv2d,
        activation_fn: Callable[[torch.Tensor], torch.Tensor],
        residual_scale: float,
    ):
        super().__init__()
        self.conv1 = conv1
        self.conv2 = conv2
        self.stride = conv1.stride[0]
        self.in_channels = conv1.in_channels
        self.out_channels = conv2.out_channels
        self._sigma = activation_fn
        self.residual_scale = float(residual_scale)

    def shortcut(self, h: torch.Tensor) -> torch.Tensor:
        """Option A: identity, or subsample by the stride and zero-pad the new channels."""
        if self.stride != 1:
            h = h[..., :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        if extra:
            before = extra // 2
            h = F.pad(h, (0, 0, 0, 0, before, extra - before))  # pads dim −3, the channels
        return h

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """The block's output for h [B, c_in, H, W] or [c_in, H, W]."""
        branch = self.conv2(self._sigma(self.conv1(h)))
        if self.residual_scale != 1.0:
            branch = branch * self.residual_scale
        return self._sigma(branch + self.shortcut(h))

    def extra_repr(self) -> str:
        """Stride and residual scale."""
        return f"stride={self.stride}, residual_scale={self.residual_scale}"


class ResNet(_ConvNetBase):
    """He et al.'s CIFAR ResNet (depth 6n + 2) without batch normalisation.

    See the module docstring for the exact architecture, the option-A shortcut and the counts.

    Args:
        in_channels: C, channels of the input images.
        n_out: number of outputs (classes).
        blocks_per_stage: n; depth 6n + 2 (n = 3: ResNet-20, n = 5: ResNet-32, n = 9: ResNet-56).
        input_size: H = W (int) or (H, W) of the training images, recorded for configs and
            ``repr``; the head follows a global average, so the forward accepts any H, W
            (it checks the channels only).
        base_width: channels of the first stage (16 in He et al.); stages use w, 2w, 4w.
        activation: a key of :data:`~eoslab.models.mlp.ACTIVATIONS`.
        bias: whether the convolutions have biases (the final Linear always has one).
        residual_scale: α multiplying every residual branch (1 = the plain network).
        parametrization: ``"standard"`` or ``"ntk"`` (c = gain/√(c_in·9) per conv layer).
        dtype: parameter dtype (default: ``torch.get_default_dtype()``).
        device: parameter device (default: CPU; ``"meta"`` builds without initialising).
        seed: seed of the construction-time ``"pytorch_default"`` initialisation.

    Attributes:
        depth: 6n + 2, the number of weight layers.

    Raises:
        ValueError: on a non-positive size, an unknown activation or parametrisation.
    """

    def __init__(
        self,
        in_channels: int,
        n_out: int,
        *,
        blocks_per_stage: int,
        input_size: int | tuple[int, int] = 32,
        base_width: int = 16,
        activation: str = "relu",
        bias: bool = True,
        residual_scale: float = 1.0,
        parametrization: str = "standard",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("n_out", n_out)
        _check_positive_int("blocks_per_stage", blocks_per_stage)
        _check_positive_int("base_width", base_width)
        self._sigma = _check_activation(activation)
        _check_parametrization(parametrization)
        self.in_channels = in_channels
        self.n_out = n_out
        self.blocks_per_stage = blocks_per_stage
        self.depth = 6 * blocks_per_stage + 2
        self.input_size = _image_size(input_size)
        self.base_width = base_width
        self.activation = activation
        self.has_bias = bias
        self.residual_scale = float(residual_scale)
        self.parametrization = parametrization

        kw = dict(bias=bias, dtype=dtype, parametrization=parametrization, activation=activation)
        self.stem = _conv(in_channels, base_width, 3, padding=1, **kw)
        blocks = []
        c_in = base_width
        for stage in range(3):
            c_out = base_width * 2**stage
            for i in range(blocks_per_stage):
                stride = 2 if (stage > 0 and i == 0) else 1
                conv1 = _conv(c_in, c_out, 3, padding=1, stride=stride, **kw)
                conv2 = _conv(c_out, c_out, 3, padding=1, **kw)
                blocks.append(BasicBlock(conv1, conv2, self._sigma, residual_scale))
                c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        kw["bias"] = True
        self.fc = _linear(c_in, n_out, **kw)
        self._finish(device, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, n_out] for images x [B, C, H, W], or [n_out] for one image [C, H, W]."""
        _check_image(self, x, check_size=False)
        h = self._sigma(self.stem(x))
        for block in self.blocks:
            h = block(h)
        return self.fc(h.mean(dim=(-2, -1)))

    def extra_repr(self) -> str:
        """The constructor arguments, shown by ``repr``."""
        return (
            f"in_channels={self.in_channels}, n_out={self.n_out}, "
            f"blocks_per_stage={self.blocks_per_stage}, input_size={self.input_size}, "
            f"base_width={self.base_width}, activation={self.activation!r}, "
            f"bias={self.has_bias}, residual_scale={self.residual_scale}, "
            f"parametrization={self.parametrization!r}"
        )


class ResNet32(ResNet):
    """ResNet-32 without batch normalisation: ``ResNet(..., blocks_per_stage=5)``.

    Takes the arguments of :class:`ResNet` except ``blocks_per_stage``; 463,018 parameters on
    CIFAR-10 (461,882 with ``bias=False``).
    """

    def __init__(self, in_channels: int, n_out: int, **kwargs):
        super().__init__(in_channels, n_out, blocks_per_stage=5, **kwargs)
