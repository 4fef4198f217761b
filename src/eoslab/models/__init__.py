"""Network architectures and their initialisations (``docs/architecture.md``: models/).

Architectures are registered by name in the plain dict :data:`MODELS`; :func:`build_model`
constructs one. Initialisations live in :mod:`eoslab.models.init`; Lowell 2022 initialises
every network with ``init_model(model, "kaiming", seed=...)``. All models are plain
``nn.Module`` objects without normalisation or dropout, pure in their parameters, so they work
under ``torch.func.functional_call`` and ``vmap``; all take ``parametrization="standard"`` or
``"ntk"``, a ``seed`` and ``dtype``/``device``, and all but ``deep_linear`` an ``activation``.

:data:`MODEL_TABLE` is a Markdown table of the registry (name, constructor, input, parameters
for CIFAR-10, source) for the README; its parameter counts come from :data:`CIFAR10_EXAMPLES`,
which the tests check by constructing each model on the meta device.

Conv models compute their head's fan-in from ``input_size`` (28×28×1 and 8×8×1 work too;
VGG pools with ``ceil_mode`` so 28×28 reaches a 1×1 map). Small ``widths``/``base_width``
values give cheap variants of the same topologies for tests.
"""

from __future__ import annotations

from torch import nn

from eoslab.models.cnn import AlexNet, SmallCNN
from eoslab.models.init import GAINS, INIT_SCHEMES, gain, init_model, weight_std
from eoslab.models.linear import DEEP_LINEAR_INITS, DeepLinear
from eoslab.models.mlp import ACTIVATIONS, MLP, PARAMETRIZATIONS
from eoslab.models.resnet import ResNet, ResNet32
from eoslab.models.vgg import VGG, VGG11, VGG16

__all__ = [
    "ACTIVATIONS",
    "CIFAR10_EXAMPLES",
    "DEEP_LINEAR_INITS",
    "GAINS",
    "INIT_SCHEMES",
    "MLP",
    "MODEL_TABLE",
    "MODELS",
    "PARAMETRIZATIONS",
    "VGG",
    "VGG11",
    "VGG16",
    "AlexNet",
    "DeepLinear",
    "ResNet",
    "ResNet32",
    "SmallCNN",
    "build_model",
    "gain",
    "init_model",
    "weight_std",
]

MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "small_cnn": SmallCNN,
    "alexnet": AlexNet,
    "vgg11": VGG11,
    "vgg16": VGG16,
    "resnet32": ResNet32,
    "deep_linear": DeepLinear,
}
"""Registry: architecture name → ``nn.Module`` class."""

CIFAR10_EXAMPLES: dict[str, tuple[dict, int]] = {
    "mlp": (dict(in_dim=3072, n_out=10, depth=3, width=200), 656_810),
    "small_cnn": (dict(in_channels=3, n_out=10), 30_634),
    "alexnet": (dict(in_channels=3, n_out=10), 1_756_426),
    "vgg11": (dict(in_channels=3, n_out=10), 9_750_922),
    "vgg16": (dict(in_channels=3, n_out=10), 15_245_130),
    "resnet32": (dict(in_channels=3, n_out=10), 463_018),
    "deep_linear": (dict(in_dim=3072, n_out=10, depth=20, width=50), 199_100),
}
"""For each registered name: keyword arguments of a CIFAR-10 (3×32×32, 10 classes) instance
and its number of parameters."""

_TABLE_ROWS: dict[str, tuple[str, str, str]] = {
    # name: (constructor and defaults, input, source)
    "mlp": (
        "`MLP(in_dim, n_out, *, depth, width, activation='tanh')`",
        "[B, ...] flattened to `in_dim`",
        "Cohen et al. 2021 (2×200 tanh = `depth=3, width=200`, counted here); Lowell 2024 "
        "(`depth=6, width=512`)",
    ),
    "small_cnn": (
        "`SmallCNN(in_channels, n_out, *, input_size=32, widths=(32, 32), pooling='max')`",
        "[B, C, H, W]",
        "Cohen et al. 2021 code, `convnet` (cnn-relu, cnn-tanh, cnn-avgpool-*)",
    ),
    "alexnet": (
        "`AlexNet(in_channels, n_out, *, input_size=32, conv_width=64, fc_widths=(384, 192))`",
        "[B, C, H, W]",
        "Krizhevsky's CIFAR-10 net (TF tutorial; Zhang et al. 2017) without LRN; Lowell 2022",
    ),
    "vgg11": (
        "`VGG11(in_channels, n_out, *, input_size=32, base_width=64, "
        "classifier_widths=(512, 512))`",
        "[B, C, H, W]",
        "Simonyan & Zisserman 2015 config A, no BN/dropout; head of Cohen et al.'s "
        "`vgg11_nodropout` (conv part 9,220,480)",
    ),
    "vgg16": (
        "`VGG16(in_channels, n_out, *, ...)` as `vgg11`",
        "[B, C, H, W]",
        "Simonyan & Zisserman 2015 config D, no BN/dropout; Lowell 2022 (conv part 14,714,688)",
    ),
    "resnet32": (
        "`ResNet32(in_channels, n_out, *, base_width=16, bias=True, residual_scale=1.0)`",
        "[B, C, H, W], any H, W",
        "He et al. 2016 §4.2 (n = 5), option-A shortcut, no BN; Cohen et al. 2021 "
        "(461,882 with `bias=False`)",
    ),
    "deep_linear": (
        "`DeepLinear(in_dim, n_out, *, depth=20, width, bias=False, init='xavier')`",
        "[B, ...] flattened to `in_dim`",
        "Cohen et al. 2021 (`make_deeplinear(20, 50)`); counted for width 50",
    ),
}


def _markdown_table() -> str:
    lines = [
        "| name | constructor | input | parameters (CIFAR-10) | source |",
        "|---|---|---|---|---|",
    ]
    for name, (ctor, inputs, source) in _TABLE_ROWS.items():
        count = CIFAR10_EXAMPLES[name][1]
        lines.append(f"| `{name}` | {ctor} | {inputs} | {count:,} | {source} |")
    return "\n".join(lines) + "\n"


MODEL_TABLE: str = _markdown_table()
"""The registry as a Markdown table (name, constructor, input, parameters for CIFAR-10,
source), ready to paste into the README."""


def build_model(name: str, **kwargs) -> nn.Module:
    """Construct the architecture registered as ``name`` with keyword arguments ``kwargs``.

    Examples: ``build_model("mlp", in_dim=64, n_out=10, depth=3, width=200)``,
    ``build_model("vgg16", in_channels=3, n_out=10, activation="tanh")``.

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
