"""VGG-11 and VGG-16 without normalisation, sized for 32×32 inputs (CIFAR-10).

Convolutional stacks are Simonyan & Zisserman 2015 ("Very deep convolutional networks for
large-scale image recognition"), Table 1, configurations **A** (VGG-11: 8 conv + 3 fc) and
**D** (VGG-16: 13 conv + 3 fc); every convolution is 3×3 with padding 1 and stride 1, every
"M" a 2×2 max pooling with stride 2. The CIFAR classifier is the one of Cohen et al. 2021's
``vgg11_nodropout`` (github.com/locuslab/edge-of-stability, ``src/vgg.py``, after
github.com/chengyangfu/pytorch-vgg-cifar10): after five poolings a 32×32 image is a 512×1×1
feature, followed by Linear(512, 512) → σ → Linear(512, 512) → σ → Linear(512, n_out), no
dropout **(choice: this 512→512→512→n_out head for both depths; ``classifier_widths=()``
gives the single Linear(512, n_out) head instead)**. Lowell 2022 trains "non-normalized
VGG-16s"; Cohen et al. train VGG-11.

Differences from the references: σ is configurable and used everywhere (they hard-code
ReLU), there is no batch normalisation or dropout, and pooling uses ``ceil_mode=True`` so that
inputs whose sides are not multiples of 32 (e.g. 28×28) still reach the classifier
(28 → 14 → 7 → 4 → 2 → 1); for 32×32 inputs ceil and floor pooling coincide.

Parameter counts for CIFAR-10 (3×32×32, 10 classes, biases, default head):

- VGG-11: conv 9,220,480 + classifier 530,442 = 9,750,922.
- VGG-16: conv 14,714,688 + classifier 530,442 = 15,245,130.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eoslab.models.cnn import (
    _check_activation,
    _check_image,
    _check_parametrization,
    _check_positive_int,
    _check_widths,
    _conv,
    _ConvNetBase,
    _image_size,
    _linear,
    _pooled,
)

__all__ = ["VGG", "VGG11", "VGG16", "VGG_CONFIGS"]

VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "A": (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"),
    "D": (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"),
}
"""Simonyan & Zisserman's configurations, channels in units of ``base_width`` (64 in the
paper: A = 64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M); "M" = 2×2 max pooling."""


class VGG(_ConvNetBase):
    """A VGG network without normalisation: configuration ``config`` + an MLP classifier.

    Forward (σ = ``activation``, after every conv and hidden fc layer, not the output)::

        [Conv2d(·, k·base_width, 3, padding=1) → σ | MaxPool2d(2, 2, ceil_mode=True)]*  (config)
        flatten (8·base_width·H'·W') → [Linear → σ]* (classifier_widths) → Linear(·, n_out)

    See the module docstring for the sources and the parameter counts.

    Args:
        config: ``"A"`` (VGG-11) or ``"D"`` (VGG-16), a key of :data:`VGG_CONFIGS`.
        in_channels: C, channels of the input images.
        n_out: number of outputs (classes).
        input_size: H = W (int) or (H, W); fixes the classifier's fan-in
            (8·base_width·⌈H/32⌉·⌈W/32⌉).
        base_width: channels of the first conv block (64 in the paper; small values give
            cheap test variants of the same topology).
        classifier_widths: hidden widths of the classifier ((512, 512) by default; ``()`` for
            a single linear layer).
        activation: a key of :data:`~eoslab.models.mlp.ACTIVATIONS`.
        bias: whether the layers have biases.
        parametrization: ``"standard"`` or ``"ntk"`` (c = gain/√(C_in·9) per conv layer).
        dtype: parameter dtype (default: ``torch.get_default_dtype()``).
        device: parameter device (default: CPU; ``"meta"`` builds without initialising).
        seed: seed of the construction-time ``"pytorch_default"`` initialisation.

    Raises:
        ValueError: on an unknown config, activation or parametrisation, or a non-positive size.
    """

    def __init__(
        self,
        config: str,
        in_channels: int,
        n_out: int,
        *,
        input_size: int | tuple[int, int] = 32,
        base_width: int = 64,
        classifier_widths: tuple[int, ...] = (512, 512),
        activation: str = "relu",
        bias: bool = True,
        parametrization: str = "standard",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if config not in VGG_CONFIGS:
            raise ValueError(f"unknown VGG config {config!r}; known: {sorted(VGG_CONFIGS)}")
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("n_out", n_out)
        _check_positive_int("base_width", base_width)
        classifier_widths = _check_widths("classifier_widths", classifier_widths, allow_empty=True)
        self._sigma = _check_activation(activation)
        _check_parametrization(parametrization)
        self.config = config
        self.in_channels = in_channels
        self.n_out = n_out
        self.input_size = _image_size(input_size)
        self.base_width = base_width
        self.classifier_widths = classifier_widths
        self.activation = activation
        self.has_bias = bias
        self.parametrization = parametrization

        kw = dict(dtype=dtype, parametrization=parametrization, activation=activation)
        layers: list[nn.Module] = []
        plan: list[str] = []  # "C" conv + σ, "M" pooling: the forward's static program
        c, (h, w) = in_channels, self.input_size
        for item in VGG_CONFIGS[config]:
            if item == "M":
                h, w = _pooled(h, 2, 2, ceil=True), _pooled(w, 2, 2, ceil=True)
                plan.append("M")
            else:
                layers.append(_conv(c, item * base_width, 3, padding=1, bias=bias, **kw))
                c = item * base_width
                plan.append("C")
        self.features = nn.ModuleList(layers)
        self._plan = tuple(plan)
        self.feature_shape = (c, h, w)
        dims = (math.prod(self.feature_shape), *classifier_widths, n_out)
        self.classifier = nn.ModuleList(
            _linear(a, b, bias=bias, **kw) for a, b in zip(dims[:-1], dims[1:])
        )
        self._finish(device, seed)

    @property
    def n_conv(self) -> int:
        """Number of convolution layers (8 for config A, 13 for D)."""
        return len(self.features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, n_out] for images x [B, C, H, W], or [n_out] for one image [C, H, W]."""
        _check_image(self, x)
        h = x
        convs = iter(self.features)
        for step in self._plan:
            if step == "M":
                h = F.max_pool2d(h, 2, stride=2, ceil_mode=True)
            else:
                h = self._sigma(next(convs)(h))
        h = h.flatten(start_dim=-3)
        last = len(self.classifier) - 1
        for i, fc in enumerate(self.classifier):
            h = fc(h)
            if i < last:
                h = self._sigma(h)
        return h

    def extra_repr(self) -> str:
        """The constructor arguments, shown by ``repr``."""
        return (
            f"config={self.config!r}, in_channels={self.in_channels}, n_out={self.n_out}, "
            f"input_size={self.input_size}, base_width={self.base_width}, "
            f"classifier_widths={self.classifier_widths}, activation={self.activation!r}, "
            f"bias={self.has_bias}, parametrization={self.parametrization!r}"
        )


class VGG11(VGG):
    """VGG-11 (configuration A) without normalisation: ``VGG("A", ...)``.

    Takes the arguments of :class:`VGG` after ``config``; 9,750,922 parameters on CIFAR-10.
    """

    def __init__(self, in_channels: int, n_out: int, **kwargs):
        super().__init__("A", in_channels, n_out, **kwargs)


class VGG16(VGG):
    """VGG-16 (configuration D) without normalisation: ``VGG("D", ...)``.

    Takes the arguments of :class:`VGG` after ``config``; 15,245,130 parameters on CIFAR-10,
    14,714,688 of them in the convolutions.
    """

    def __init__(self, in_channels: int, n_out: int, **kwargs):
        super().__init__("D", in_channels, n_out, **kwargs)
