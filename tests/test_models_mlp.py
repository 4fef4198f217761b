"""MLP structure, parametrisations and seeded initialisations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap

from eoslab.models import (
    ACTIVATIONS,
    GAINS,
    MLP,
    MODELS,
    build_model,
    gain,
    init_model,
    weight_std,
)

F64 = torch.float64


def n_params_formula(dims, bias=True):
    return sum(a * b + (b if bias else 0) for a, b in zip(dims[:-1], dims[1:]))


# ---------------------------------------------------------------------- structure


@pytest.mark.parametrize(
    "in_dim, n_out, depth, width, bias",
    [
        (64, 10, 4, 64, True),  # 64 → 3×64 → 10
        (64, 10, 3, 200, True),  # Cohen et al.'s 2×200
        (3072, 10, 6, 512, True),  # Lowell 2024: depth 6, width 512
        (5, 3, 1, 7, True),  # depth 1: a single Linear, width unused
        (5, 3, 3, 4, False),
    ],
)
def test_parameter_count_matches_formula(in_dim, n_out, depth, width, bias):
    m = MLP(in_dim, n_out, depth=depth, width=width, bias=bias)
    dims = [in_dim] + [width] * (depth - 1) + [n_out]
    assert sum(p.numel() for p in m.parameters()) == n_params_formula(dims, bias)
    layers = m.linear_layers()
    assert len(layers) == depth and all(isinstance(layer, nn.Linear) for layer in layers)
    assert [(lay.in_features, lay.out_features) for lay in layers] == list(zip(dims[:-1], dims[1:]))
    names = [n for n, _ in m.named_parameters()]
    assert names[0] == "layers.0.weight"


def test_flattens_input_and_checks_size():
    m = MLP(64, 10, depth=2, width=8, dtype=F64)
    x = torch.randn(5, 1, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m(x), m(x.reshape(5, 64)))
    assert m(x.reshape(5, 64)[0]).shape == (10,)  # one flattened sample
    with pytest.raises(ValueError, match=r"expects 64 input features.*\(5, 63\)"):
        m(torch.zeros(5, 63, dtype=F64))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_activation_forward_matches_reference(activation):
    reference = {
        "relu": torch.relu,
        "tanh": torch.tanh,
        "elu": F.elu,
        "softplus": F.softplus,
        "gelu": F.gelu,
        "identity": lambda t: t,
    }[activation]
    m = MLP(6, 3, depth=3, width=5, activation=activation, dtype=F64, seed=1)
    assert m.activation == activation and m.activation_fn is ACTIVATIONS[activation]
    x = torch.randn(4, 6, dtype=F64, generator=torch.Generator().manual_seed(2))
    W = [lay.weight for lay in m.linear_layers()]
    b = [lay.bias for lay in m.linear_layers()]
    h = reference(x @ W[0].T + b[0])
    h = reference(h @ W[1].T + b[1])
    expected = h @ W[2].T + b[2]
    out, zs = m(x, return_preactivations=True)
    assert torch.allclose(m(x), expected, atol=1e-13, rtol=0)
    assert len(zs) == 3 and zs[-1] is out
    assert torch.allclose(zs[1], reference(zs[0]) @ W[1].T + b[1], atol=1e-13, rtol=0)


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*relu"):
        MLP(4, 2, depth=2, width=3, activation="swish")
    with pytest.raises(ValueError, match=r"unknown parametrization 'mup'"):
        MLP(4, 2, depth=2, width=3, parametrization="mup")
    with pytest.raises(ValueError, match="depth must be a positive integer, got 0"):
        MLP(4, 2, depth=0, width=3)
    with pytest.raises(ValueError, match="width"):
        MLP(4, 2, depth=2, width=-1)


def test_registry():
    assert MODELS["mlp"] is MLP
    m = build_model("mlp", in_dim=4, n_out=2, depth=2, width=3)
    assert isinstance(m, MLP)
    with pytest.raises(ValueError, match=r"unknown model 'cnn'.*mlp"):
        build_model("cnn")
    with pytest.raises(TypeError, match=r"build_model\('mlp'"):
        build_model("mlp", in_dim=4, n_out=2, depth=2, width=3, dropout=0.1)


def test_construction_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    MLP(10, 3, depth=3, width=16)
    assert torch.equal(state, torch.random.get_rng_state())


# ---------------------------------------------------------------------- parametrisation


def test_ntk_and_standard_compute_the_same_function_class():
    ntk = MLP(12, 4, depth=4, width=16, activation="relu", parametrization="ntk", dtype=F64)
    std = MLP(12, 4, depth=4, width=16, activation="relu", dtype=F64)
    dims = [12, 16, 16, 16]
    assert ntk.weight_multipliers == tuple(math.sqrt(2) / math.sqrt(d) for d in dims)
    assert std.weight_multipliers == (1.0,) * 4
    # copy the NTK model's effective weights c·W into the standard model
    with torch.no_grad():
        for ls, ln, c in zip(std.linear_layers(), ntk.linear_layers(), ntk.weight_multipliers):
            ls.weight.copy_(ln.weight * c)
            ls.bias.copy_(ln.bias)
    x = torch.randn(7, 12, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ntk(x), std(x), atol=1e-14, rtol=0)


@pytest.mark.parametrize("scheme", ["kaiming", "xavier", "pytorch_default"])
def test_same_scheme_and_seed_give_same_function_in_both_parametrisations(scheme):
    kw = dict(depth=3, width=32, activation="tanh", dtype=F64)
    ntk = init_model(MLP(10, 3, parametrization="ntk", **kw), scheme, seed=4)
    std = init_model(MLP(10, 3, **kw), scheme, seed=4)
    x = torch.randn(6, 10, dtype=F64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ntk(x), std(x), atol=1e-13, rtol=0)
    if scheme == "kaiming":  # stored NTK weights are exactly N(0, 1) draws
        c = ntk.weight_multipliers[1]
        w_std = std.linear_layers()[1].weight
        assert torch.allclose(ntk.linear_layers()[1].weight, w_std / c, atol=1e-13)


# ---------------------------------------------------------------------- initialisation


def test_gain_table():
    assert GAINS["relu"] == pytest.approx(nn.init.calculate_gain("relu"))
    assert GAINS["tanh"] == pytest.approx(nn.init.calculate_gain("tanh"))
    assert GAINS["identity"] == pytest.approx(nn.init.calculate_gain("linear"))
    assert GAINS["elu"] == pytest.approx(math.sqrt(2))
    # gelu and softplus: gain = 1/sqrt(E[σ(z)²]), z ~ N(0, 1)
    z = torch.linspace(-12, 12, 400_001, dtype=F64)
    density = torch.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
    for name in ("gelu", "softplus"):
        second_moment = torch.trapezoid(ACTIVATIONS[name](z) ** 2 * density, z)
        assert GAINS[name] == pytest.approx(float(second_moment) ** -0.5, rel=1e-9)
    assert set(GAINS) == set(ACTIVATIONS)
    with pytest.raises(ValueError, match="no gain for activation 'swish'"):
        gain("swish")


@pytest.mark.parametrize(
    "scheme, activation",
    [("kaiming", "relu"), ("kaiming", "tanh"), ("xavier", "elu"), ("pytorch_default", "tanh")],
)
def test_init_variance_matches_formula(scheme, activation):
    dims = [300, 1000, 1000, 200]
    m = MLP(dims[0], dims[-1], depth=3, width=1000, activation=activation, dtype=F64)
    init_model(m, scheme, seed=0)
    for layer, fan_in, fan_out in zip(m.linear_layers(), dims[:-1], dims[1:]):
        expected = weight_std(scheme, fan_in, fan_out, activation) ** 2
        w = layer.weight.detach()
        assert abs(float(w.var()) / expected - 1) < 0.02, (scheme, activation, fan_in)
        assert abs(float(w.mean())) < 5 * math.sqrt(expected / w.numel())
        if scheme == "pytorch_default":
            assert float(layer.bias.detach().abs().max()) <= 1 / math.sqrt(fan_in)
        else:
            assert torch.count_nonzero(layer.bias) == 0
    if scheme == "xavier":  # Lowell 2024: Xavier scaled by the (Kaiming) gain
        assert weight_std("xavier", 300, 1000, "elu") == pytest.approx(
            math.sqrt(2) * math.sqrt(2 / 1300)
        )


def test_init_determinism_and_dtype_consistency():
    kw = dict(depth=3, width=20, activation="elu")
    a = init_model(MLP(8, 3, dtype=F64, **kw), "xavier", seed=11)
    b = init_model(MLP(8, 3, dtype=F64, **kw), "xavier", seed=11)
    c = init_model(MLP(8, 3, dtype=F64, **kw), "xavier", seed=12)
    f32 = init_model(MLP(8, 3, dtype=torch.float32, **kw), "xavier", seed=11)
    for (_, pa), (_, pb), (_, pc), (_, p32) in zip(
        a.named_parameters(), b.named_parameters(), c.named_parameters(), f32.named_parameters()
    ):
        assert torch.equal(pa, pb)
        assert torch.equal(p32, pa.to(torch.float32))
        if pa.dim() == 2:
            assert not torch.equal(pa, pc)
    # a generator continues its stream; the constructor's seed is honoured too
    g = torch.Generator().manual_seed(11)
    d = init_model(MLP(8, 3, dtype=F64, **kw), "xavier", generator=g)
    assert torch.equal(d.layers[0].weight, a.layers[0].weight)
    e = init_model(MLP(8, 3, dtype=F64, **kw), "xavier", generator=g)
    assert not torch.equal(e.layers[0].weight, a.layers[0].weight)
    assert torch.equal(
        MLP(8, 3, seed=5, **kw).layers[0].weight, MLP(8, 3, seed=5, **kw).layers[0].weight
    )


def test_init_errors_and_generic_modules():
    m = MLP(4, 2, depth=2, width=3)
    with pytest.raises(ValueError, match="exactly one of seed= and generator="):
        init_model(m, "kaiming")
    with pytest.raises(ValueError, match="exactly one"):
        init_model(m, "kaiming", seed=0, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"unknown init scheme 'orthogonal'.*kaiming"):
        init_model(m, "orthogonal", seed=0)
    seq = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)).to(F64)
    with pytest.raises(ValueError, match="pass activation="):
        init_model(seq, "kaiming", seed=0)
    init_model(seq, "kaiming", seed=0, activation="relu")
    conv = seq[0].weight
    assert torch.count_nonzero(seq[0].bias) == 0
    assert float(conv.detach().abs().max()) < 6 * math.sqrt(2 / 9)  # fan_in = 1·3·3


# ---------------------------------------------------------------------- torch.func


@pytest.mark.parametrize("parametrization", ["standard", "ntk"])
def test_functional_call_and_vmap_over_parameter_perturbations(parametrization):
    m = MLP(64, 10, depth=3, width=16, activation="elu", dtype=F64, parametrization=parametrization)
    init_model(m, "kaiming", seed=0)
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    x = torch.rand(9, 1, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    K = 5
    batched = {
        k: v + 0.01 * torch.randn(K, *v.shape, dtype=F64, generator=g) for k, v in before.items()
    }

    def f(p, inputs):
        return functional_call(m, p, (inputs,))

    out = vmap(f, in_dims=(0, None))(batched, x)  # [K, 9, 10]
    assert out.shape == (K, 9, 10)
    for k in range(K):
        one = {name: t[k] for name, t in batched.items()}
        assert torch.allclose(out[k], f(one, x), atol=1e-13, rtol=0)

    # per-sample parameter Jacobians through vmap over samples
    def sample_jacobian(xi):
        return jacrev(lambda p: f(p, xi.unsqueeze(0))[0])(before)

    jac = vmap(sample_jacobian)(x)
    assert jac["layers.0.weight"].shape == (9, 10, 16, 64)
    direct = jacrev(lambda p: f(p, x[3:4])[0])(before)
    assert torch.allclose(jac["layers.1.weight"][3], direct["layers.1.weight"], atol=1e-13)
    # the module's own parameters were not touched
    assert all(torch.equal(before[k], v) for k, v in m.named_parameters())


def test_works_with_problem_on_digits():
    from eoslab.data import load_digits
    from eoslab.problem import Problem

    ds = load_digits().subset(50, seed=0)
    m = init_model(MLP(64, 10, depth=3, width=16, activation="tanh", dtype=F64), "kaiming", seed=0)
    problem = Problem(m, "cross_entropy", ds.X, ds.y)
    theta = problem.initial_theta()
    loss, grad = problem.loss_and_gradient(theta)
    assert problem.size == n_params_formula([64, 16, 16, 10])
    assert torch.isfinite(loss) and grad.shape == theta.shape
