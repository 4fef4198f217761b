"""Convolutional models: SmallCNN, AlexNet, VGG-11/16 and ResNet-32 without normalisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap

from eoslab.models import (
    ACTIVATIONS,
    CIFAR10_EXAMPLES,
    MODEL_TABLE,
    MODELS,
    VGG,
    VGG11,
    VGG16,
    AlexNet,
    ResNet,
    ResNet32,
    SmallCNN,
    build_model,
    gain,
    init_model,
    weight_std,
)
from eoslab.models.cnn import ScaledConv2d, ScaledLinear

F64 = torch.float64
CONV_MODELS = ("small_cnn", "alexnet", "vgg11", "vgg16", "resnet32")
# cheap variants with the real topologies (same layers, few channels)
SMALL = {
    "small_cnn": dict(widths=(4, 5)),
    "alexnet": dict(conv_width=4, fc_widths=(12, 8)),
    "vgg11": dict(base_width=2, classifier_widths=(8, 8)),
    "vgg16": dict(base_width=2, classifier_widths=(8, 8)),
    "resnet32": dict(base_width=4),
}
ACT_MODULES = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def images(b, c, h, w=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, h if w is None else w, generator=g, dtype=F64)


def small(name, in_channels=3, n_out=3, **kw):
    kw = {"dtype": F64, **SMALL[name], **kw}
    return build_model(name, in_channels=in_channels, n_out=n_out, **kw)


def conv_params(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def copy_effective(ref: nn.Module, model: nn.Module) -> None:
    """Copy the model's effective weights c·W (and biases) into a reference network."""
    ref_layers = [m for m in ref.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    layers = model.weight_layers()
    assert len(ref_layers) == len(layers)
    with torch.no_grad():
        for r, lay in zip(ref_layers, layers):
            assert r.weight.shape == lay.weight.shape
            r.weight.copy_(lay.weight * lay.weight_multiplier)
            if lay.bias is not None:
                r.bias.copy_(lay.bias)


# ---------------------------------------------------------------------- parameter counts


def test_true_parameter_counts_on_meta_device():
    state = torch.random.get_rng_state()
    for name, (kwargs, count) in CIFAR10_EXAMPLES.items():
        if name in CONV_MODELS:
            m = build_model(name, device="meta", **kwargs)
            assert all(p.is_meta for p in m.parameters())
            assert n_params(m) == count, name
    assert torch.equal(state, torch.random.get_rng_state())

    # VGG-16 (config D) on CIFAR-10: 13 convs = 14,714,688 parameters, classifier 512→512→512→10
    vgg16 = VGG16(3, 10, device="meta")
    convs = [m for m in vgg16.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in vgg16.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == vgg16.n_conv == 13 and len(fcs) == 3
    assert sum(n_params(c) for c in convs) == 14_714_688
    assert [(f.in_features, f.out_features) for f in fcs] == [(512, 512), (512, 512), (512, 10)]
    assert vgg16.feature_shape == (512, 1, 1)
    channels = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert [c.out_channels for c in convs] == channels
    formula = sum(conv_params(a, b, 3) for a, b in zip([3, *channels[:-1]], channels))
    assert formula == 14_714_688
    vgg11 = VGG11(3, 10, device="meta")
    assert vgg11.n_conv == 8
    assert n_params(VGG11(3, 10, classifier_widths=(), device="meta")) == 9_220_480 + 5_130

    # ResNet-32: 31 convs + 1 fc; BN-free counts with and without conv biases (BN version 464,154)
    r = ResNet32(3, 10, device="meta")
    assert r.depth == 32 and len(r.weight_layers()) == 32 and len(r.blocks) == 15
    assert n_params(r) == 463_018
    assert n_params(ResNet32(3, 10, bias=False, device="meta")) == 461_882
    assert 0.455e6 < n_params(r) < 0.465e6
    assert ResNet(3, 10, blocks_per_stage=3, device="meta").depth == 20

    # AlexNet by formula: 32 → 16 → 8 after the two 3×3/2 poolings; 28 → 14 → 7
    for c, size, side in [(3, 32, 8), (1, 28, 7)]:
        a = AlexNet(c, 10, input_size=size, device="meta")
        expect = (
            conv_params(c, 64, 5)
            + conv_params(64, 64, 5)
            + (64 * side * side * 384 + 384)
            + (384 * 192 + 192)
            + (192 * 10 + 10)
        )
        assert n_params(a) == expect and a.feature_shape == (64, side, side)

    # SmallCNN (Cohen et al.'s convnet): size // 2 per layer
    for c, size, n_out in [(3, 32, 10), (1, 28, 10), (1, 8, 10), (3, 32, 2)]:
        s = SmallCNN(c, n_out, input_size=size, device="meta")
        side = size // 4
        expect = conv_params(c, 32, 3) + conv_params(32, 32, 3) + 32 * side * side * n_out + n_out
        assert n_params(s) == expect
    assert n_params(SmallCNN(3, 10)) == 30_634


def test_registry_and_table():
    for name in CONV_MODELS:
        assert name in MODELS and f"`{name}`" in MODEL_TABLE
    assert MODELS["vgg16"] is VGG16 and MODELS["resnet32"] is ResNet32
    assert f"{15_245_130:,}" in MODEL_TABLE and f"{463_018:,}" in MODEL_TABLE
    with pytest.raises(TypeError, match=r"build_model\('small_cnn'"):
        build_model("small_cnn", in_channels=3, n_out=10, dropout=0.5)
    with pytest.raises(TypeError, match=r"build_model\('vgg16'"):
        build_model("vgg16", in_channels=3, n_out=10, config="A")


# ---------------------------------------------------------------------- structure


@pytest.mark.parametrize("name", CONV_MODELS)
def test_output_shapes_and_single_images(name):
    for c, size, n_out in [(3, 32, 10), (1, 28, 10), (1, 8, 3)]:
        m = small(name, in_channels=c, n_out=n_out, input_size=size)
        x = images(4, c, size, seed=size)
        out = m(x)
        assert out.shape == (4, n_out) and out.dtype == F64 and torch.isfinite(out).all()
        one = m(x[1])  # one image [C, H, W] without a batch dimension
        assert one.shape == (n_out,)
        assert torch.allclose(one, out[1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", CONV_MODELS)
def test_no_normalisation_dropout_or_inplace(name):
    m = build_model(name, device="meta", **CIFAR10_EXAMPLES[name][0])
    allowed = (type(m), nn.ModuleList, ScaledConv2d, ScaledLinear)
    for mod in m.modules():
        assert isinstance(mod, allowed) or type(mod).__name__ == "BasicBlock", type(mod)
        assert not isinstance(
            mod,
            (
                nn.modules.batchnorm._BatchNorm,
                nn.GroupNorm,
                nn.LayerNorm,
                nn.LocalResponseNorm,
                nn.modules.dropout._DropoutNd,
            ),
        )
        assert not getattr(mod, "inplace", False)
    assert all(name.endswith(("weight", "bias")) for name, _ in m.named_parameters())
    assert not list(m.buffers())  # no running statistics


def test_input_and_constructor_errors():
    m = SmallCNN(3, 10, widths=(2,), dtype=F64)
    with pytest.raises(ValueError, match=r"expects images \[B, 3, 32, 32\].*\(2, 1, 32, 32\)"):
        m(images(2, 1, 32))
    with pytest.raises(ValueError, match=r"\(2, 3, 28, 28\)"):
        m(images(2, 3, 28))
    r = ResNet32(3, 10, base_width=2, dtype=F64)
    assert r(images(2, 3, 20)).shape == (2, 10)  # global average: any H, W
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        r(images(2, 1, 32))
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*relu"):
        SmallCNN(3, 10, activation="swish")
    with pytest.raises(ValueError, match="unknown pooling 'sum'"):
        SmallCNN(3, 10, pooling="sum")
    with pytest.raises(ValueError, match="too small for 4"):
        SmallCNN(1, 10, input_size=8, widths=(2, 2, 2, 2))
    with pytest.raises(ValueError, match="unknown parametrization 'mup'"):
        AlexNet(3, 10, parametrization="mup")
    with pytest.raises(ValueError, match="unknown VGG config 'Z'"):
        VGG("Z", 3, 10)
    with pytest.raises(ValueError, match="n_out must be a positive integer"):
        ResNet32(3, 0)
    with pytest.raises(ValueError, match="every entry of widths"):
        SmallCNN(3, 10, widths=(4, 0))
    with pytest.raises(ValueError, match="input_size"):
        VGG11(3, 10, input_size=(32, 32, 3))


# ---------------------------------------------------------------------- reference forwards


@pytest.mark.parametrize(
    "activation, pooling, parametrization",
    [("relu", "max", "standard"), ("tanh", "average", "ntk"), ("elu", "max", "ntk")]
    + [(a, "max", "standard") for a in ("softplus", "gelu", "identity")],
)
def test_small_cnn_is_cohens_convnet(activation, pooling, parametrization):
    m = SmallCNN(
        3,
        4,
        widths=(5, 6),
        activation=activation,
        pooling=pooling,
        parametrization=parametrization,
        dtype=F64,
        seed=3,
    )
    assert m.activation_fn is ACTIVATIONS[activation]
    act = ACT_MODULES[activation]
    pool = nn.MaxPool2d((2, 2)) if pooling == "max" else nn.AvgPool2d((2, 2))
    ref = nn.Sequential(
        nn.Conv2d(3, 5, kernel_size=3, padding=1, stride=1),
        act(),
        pool,
        nn.Conv2d(5, 6, kernel_size=3, padding=1, stride=1),
        act(),
        pool,
        nn.Flatten(),
        nn.Linear(6 * 8 * 8, 4),
    ).to(F64)
    copy_effective(ref, m)
    x = images(3, 3, 32)
    assert torch.allclose(m(x), ref(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_alexnet_matches_explicit_forward(activation):
    m = AlexNet(
        1, 5, input_size=28, conv_width=3, fc_widths=(7, 6), activation=activation, dtype=F64
    )
    act = ACT_MODULES[activation]
    ref = nn.Sequential(
        nn.Conv2d(1, 3, 5, padding=2),
        act(),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(3, 3, 5, padding=2),
        act(),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(3 * 7 * 7, 7),
        act(),
        nn.Linear(7, 6),
        act(),
        nn.Linear(6, 5),
    ).to(F64)
    copy_effective(ref, m)
    x = images(2, 1, 28)
    assert torch.allclose(m(x), ref(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("config", ["A", "D"])
def test_vgg_matches_simonyan_zisserman_config(config):
    cfgs = {
        "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
        "D": [
            64,
            64,
            "M",
            128,
            128,
            "M",
            256,
            256,
            256,
            "M",
            512,
            512,
            512,
            "M",
            512,
            512,
            512,
            "M",
        ],
    }
    layers, c = [], 3
    for v in cfgs[config]:  # the paper's table, scaled down by 32
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c, v // 32, kernel_size=3, padding=1), nn.Tanh()]
            c = v // 32
    ref = nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Linear(16, 9),
        nn.Tanh(),
        nn.Linear(9, 9),
        nn.Tanh(),
        nn.Linear(9, 10),
    ).to(F64)
    m = VGG(config, 3, 10, base_width=2, classifier_widths=(9, 9), activation="tanh", dtype=F64)
    copy_effective(ref, m)
    x = images(2, 3, 32)
    assert torch.allclose(m(x), ref(x), atol=1e-12, rtol=0)


class _RefBlock(nn.Module):
    """He et al.'s basic block, option A, as in the common PyTorch CIFAR port, without BN."""

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1)
        self.down = stride != 1 or cin != planes
        self.planes = planes

    def forward(self, x):
        out = self.conv2(F.relu(self.conv1(x)))
        short = x
        if self.down:
            p = self.planes // 4
            short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p), "constant", 0)
        return F.relu(out + short)


def test_resnet_matches_reference_port():
    w, n = 4, 2
    stem = nn.Conv2d(3, w, 3, padding=1)
    blocks, c = [], w
    for stage in range(3):
        for i in range(n):
            planes = w * 2**stage
            blocks.append(_RefBlock(c, planes, 2 if stage > 0 and i == 0 else 1))
            c = planes
    fc = nn.Linear(4 * w, 10)
    ref_modules = nn.ModuleList([stem, *blocks, fc]).to(F64)

    def ref(x):
        h = F.relu(stem(x))
        for b in blocks:
            h = b(h)
        return fc(F.avg_pool2d(h, h.size(3)).flatten(1))

    m = ResNet(3, 10, blocks_per_stage=n, base_width=w, dtype=F64, seed=2)
    init_model(m, "kaiming", seed=5)
    copy_effective(ref_modules, m)
    x = images(3, 3, 32)
    assert torch.allclose(m(x), ref(x), atol=1e-12, rtol=0)
    # the option-A shortcut: stride-2 subsampling, zero channels on both sides
    h = images(1, 4, 8)
    s = m.blocks[n].shortcut(h)
    assert s.shape == (1, 8, 4, 4)
    assert torch.equal(s[:, 2:6], h[:, :, ::2, ::2])
    assert torch.count_nonzero(s[:, :2]) == 0 and torch.count_nonzero(s[:, 6:]) == 0
    # residual_scale multiplies the residual branch only
    scaled = ResNet(3, 10, blocks_per_stage=1, base_width=w, residual_scale=0.0, dtype=F64)
    b0 = scaled.blocks[0]
    h = images(2, w, 8).relu()
    assert torch.allclose(b0(h), F.relu(h), atol=0, rtol=0)


# ---------------------------------------------------------------------- seeds and init


@pytest.mark.parametrize("name", CONV_MODELS)
def test_seeded_construction_and_global_rng(name):
    state = torch.random.get_rng_state()
    a = small(name, seed=7)
    b = small(name, seed=7)
    c = small(name, seed=8)
    assert torch.equal(state, torch.random.get_rng_state())
    for (na, pa), (_, pb), (_, pc) in zip(
        a.named_parameters(), b.named_parameters(), c.named_parameters()
    ):
        assert torch.equal(pa, pb), na
        if pa.dim() > 1:
            assert not torch.equal(pa, pc), na
    f32 = init_model(small(name, dtype=torch.float32), "kaiming", seed=1)
    f64 = init_model(small(name), "kaiming", seed=1)
    for (_, p32), (_, p64) in zip(f32.named_parameters(), f64.named_parameters()):
        assert torch.equal(p32, p64.to(torch.float32))


@pytest.mark.parametrize(
    "model, activation",
    [
        (lambda: AlexNet(3, 10, dtype=F64), "relu"),
        (lambda: ResNet32(3, 10, dtype=F64), "relu"),
        (lambda: SmallCNN(64, 10, widths=(96, 96), input_size=8, dtype=F64), "relu"),
        (
            lambda: SmallCNN(64, 10, widths=(96,), input_size=8, activation="tanh", dtype=F64),
            "tanh",
        ),
    ],
)
def test_kaiming_variance_of_every_wide_layer(model, activation):
    m = init_model(model(), "kaiming", seed=0)
    checked = 0
    for layer in m.weight_layers():
        w = layer.weight.detach()
        fan_in = math.prod(w.shape[1:])
        expected = weight_std("kaiming", fan_in, 0, activation) ** 2
        assert expected == pytest.approx(gain(activation) ** 2 / fan_in)
        if w.numel() >= 30_000:  # sampling error of the variance: √(2/n) ≤ 0.8 %
            assert abs(float(w.var()) / expected - 1) < 0.03, (tuple(w.shape), float(w.var()))
            checked += 1
        assert abs(float(w.mean())) < 5 * math.sqrt(expected / w.numel())
        if layer.bias is not None:
            assert torch.count_nonzero(layer.bias) == 0
    assert checked >= 1
    if activation == "relu":  # the ReLU case of the brief: Var = 2/fan_in, fan_in = C_in·k·k
        conv = [lay for lay in m.weight_layers() if isinstance(lay, nn.Conv2d)][-1]
        fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert abs(float(conv.weight.detach().var()) * fan_in / 2 - 1) < 0.03


# ---------------------------------------------------------------------- parametrisations


@pytest.mark.parametrize("name", CONV_MODELS)
@pytest.mark.parametrize("scheme", ["kaiming", "xavier"])
def test_ntk_and_standard_give_the_same_function_at_init(name, scheme):
    std = init_model(small(name, activation="tanh"), scheme, seed=4)
    ntk = init_model(small(name, activation="tanh", parametrization="ntk"), scheme, seed=4)
    assert std.weight_multipliers == (1.0,) * len(std.weight_layers())
    g = gain("tanh")
    for layer, c in zip(ntk.weight_layers(), ntk.weight_multipliers):
        assert c == pytest.approx(g / math.sqrt(math.prod(layer.weight.shape[1:])))
        assert layer.weight_multiplier == c
    x = images(2, 3, 32)
    assert torch.allclose(ntk(x), std(x), atol=1e-12, rtol=0)
    if scheme == "kaiming":  # NTK storage: the N(0, 1) draws themselves
        w = ntk.weight_layers()[1].weight
        w_std = std.weight_layers()[1].weight
        assert torch.allclose(w * ntk.weight_multipliers[1], w_std, atol=1e-13, rtol=0)
    assert "weight_multiplier=" in repr(ntk) and "weight_multiplier=" not in repr(std)


# ---------------------------------------------------------------------- torch.func


@pytest.mark.parametrize("parametrization", ["standard", "ntk"])
def test_small_cnn_functional_call_and_vmap_over_parameters(parametrization):
    m = SmallCNN(
        1,
        10,
        input_size=8,
        widths=(4, 6),
        activation="elu",
        parametrization=parametrization,
        dtype=F64,
    )
    init_model(m, "kaiming", seed=0)
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    x = images(9, 1, 8)

    def f(p, inputs):
        return functional_call(m, p, (inputs,))

    assert torch.equal(f(before, x), m(x))
    g = torch.Generator().manual_seed(1)
    K = 5
    batched = {
        k: v + 0.01 * torch.randn(K, *v.shape, dtype=F64, generator=g) for k, v in before.items()
    }
    out = vmap(f, in_dims=(0, None))(batched, x)  # [K, 9, 10]
    assert out.shape == (K, 9, 10)
    for k in range(K):
        one = {name: t[k] for name, t in batched.items()}
        assert torch.allclose(out[k], f(one, x), atol=1e-13, rtol=0)

    # per-sample parameter Jacobians: vmap over single images [C, H, W]
    jac = vmap(lambda xi: jacrev(lambda p: f(p, xi))(before))(x)
    assert jac["convs.0.weight"].shape == (9, 10, 4, 1, 3, 3)
    direct = jacrev(lambda p: f(p, x[3:4])[0])(before)
    assert torch.allclose(jac["head.weight"][3], direct["head.weight"], atol=1e-13)
    assert torch.allclose(jac["convs.1.weight"][3], direct["convs.1.weight"], atol=1e-13)
    assert all(torch.equal(before[k], v) for k, v in m.named_parameters())


@pytest.mark.parametrize("name", ["alexnet", "vgg11", "resnet32"])
def test_functional_call_and_vmap_on_the_other_models(name):
    m = init_model(small(name, in_channels=1, input_size=8), "kaiming", seed=0)
    params = {k: v.detach() for k, v in m.named_parameters()}
    x = images(3, 1, 8)
    assert torch.equal(functional_call(m, params, (x,)), m(x))
    g = torch.Generator().manual_seed(0)
    batched = {
        k: v + 0.01 * torch.randn(2, *v.shape, dtype=F64, generator=g) for k, v in params.items()
    }
    out = vmap(lambda p: functional_call(m, p, (x,)))(batched)
    one = functional_call(m, {k: v[1] for k, v in batched.items()}, (x,))
    assert out.shape == (2, 3, 3) and torch.allclose(out[1], one, atol=1e-12, rtol=0)


def test_small_cnn_in_problem_on_digits():
    from eoslab.data import load_digits
    from eoslab.problem import Problem

    ds = load_digits().subset(40, seed=0)
    m = init_model(SmallCNN(1, 10, input_size=8, widths=(4, 4), dtype=F64), "kaiming", seed=0)
    problem = Problem(m, "cross_entropy", ds.X, ds.y, chunk_size=16)
    theta = problem.initial_theta()
    loss, grad = problem.loss_and_gradient(theta)
    assert problem.size == n_params(m) and torch.isfinite(loss) and grad.shape == theta.shape
    assert torch.count_nonzero(grad) > 0


@pytest.mark.parametrize(
    "model",
    [
        lambda: SmallCNN(1, 3, input_size=6, widths=(2, 2), activation="tanh", dtype=F64),
        lambda: AlexNet(1, 3, input_size=6, conv_width=2, fc_widths=(3,), dtype=F64),
    ],
)
def test_hessian_operator_matches_dense_hessian(model):
    from eoslab.linalg import HessianOperator
    from eoslab.problem import Problem

    m = init_model(model(), "kaiming", seed=1)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(12, 1, 6, 6, generator=g, dtype=F64)
    y = torch.randint(0, 3, (12,), generator=g)
    problem = Problem(m, "cross_entropy", X, y, chunk_size=5)
    theta = problem.initial_theta()

    def loss(t):
        return problem.criterion.per_sample(problem.forward(t, X), y).mean()

    dense = torch.func.hessian(loss)(theta)
    assert torch.allclose(HessianOperator(problem, theta).to_dense(), dense, atol=1e-12, rtol=0)
