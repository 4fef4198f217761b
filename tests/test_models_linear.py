"""Deep linear networks: structure, the end-to-end product, initialisations, torch.func."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call, jacrev, vmap

from eoslab.models import (
    CIFAR10_EXAMPLES,
    DEEP_LINEAR_INITS,
    MLP,
    MODEL_TABLE,
    MODELS,
    DeepLinear,
    build_model,
    init_model,
)

F64 = torch.float64


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def inputs(n, d, seed=0):
    return torch.randn(n, d, dtype=F64, generator=torch.Generator().manual_seed(seed))


def explicit_product(m):
    """W_L ⋯ W_1 from the stored weights and the multipliers, by a plain loop."""
    ws = [lay.weight.detach() * c for lay, c in zip(m.linear_layers(), m.weight_multipliers)]
    a = torch.eye(m.in_dim, dtype=F64)
    for w in ws:
        a = w @ a
    return a


def test_structure_registry_and_counts():
    m = DeepLinear(7, 3, depth=5, width=4, dtype=F64)
    assert isinstance(m, MLP) and MODELS["deep_linear"] is DeepLinear
    assert m.activation == "identity" and not m.has_bias and m.init == "xavier"
    dims = [7, 4, 4, 4, 4, 3]
    assert [tuple(lay.weight.shape) for lay in m.linear_layers()] == list(zip(dims[1:], dims[:-1]))
    assert n_params(m) == sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    assert [n for n, _ in m.named_parameters()][:2] == ["layers.0.weight", "layers.1.weight"]
    assert n_params(DeepLinear(7, 3, depth=5, width=4, bias=True)) == n_params(m) + 4 * 4 + 3
    # Cohen et al.'s network: 20 bias-free 50×50 layers
    cohen = build_model("deep_linear", in_dim=50, n_out=50, depth=20, width=50)
    assert n_params(cohen) == 20 * 50 * 50 and cohen.depth == 20
    kwargs, count = CIFAR10_EXAMPLES["deep_linear"]
    assert n_params(build_model("deep_linear", **kwargs)) == count == 3072 * 50 + 18 * 2500 + 500
    assert "`deep_linear`" in MODEL_TABLE
    assert DeepLinear(5, 2, depth=1, width=9).linear_layers()[0].weight.shape == (2, 5)
    assert "init='xavier'" in repr(m)


@pytest.mark.parametrize("init", DEEP_LINEAR_INITS)
@pytest.mark.parametrize("parametrization", ["standard", "ntk"])
def test_forward_is_the_matrix_product(init, parametrization):
    m = DeepLinear(
        6, 4, depth=7, width=5, init=init, parametrization=parametrization, dtype=F64, seed=3
    )
    x = inputs(10, 6)
    a = explicit_product(m)
    assert torch.allclose(m.end_to_end_matrix(), a, atol=1e-13, rtol=0)
    assert torch.allclose(m(x), x @ a.T, atol=1e-12, rtol=0)
    out, zs = m(x, return_preactivations=True)  # the MLP machinery: z_ℓ = W_ℓ z_{ℓ−1}
    assert len(zs) == 7 and zs[-1] is out
    w2 = m.linear_layers()[2].weight * m.weight_multipliers[2]
    assert torch.allclose(zs[2], zs[1] @ w2.T, atol=1e-13, rtol=0)


def test_with_biases_the_map_is_affine():
    m = DeepLinear(6, 4, depth=4, width=5, bias=True, init="pytorch_default", dtype=F64)
    assert all(torch.count_nonzero(lay.bias) > 0 for lay in m.linear_layers())
    x = inputs(8, 6)
    f0 = m(torch.zeros(1, 6, dtype=F64))
    assert torch.allclose(m(x), x @ m.end_to_end_matrix().T + f0, atol=1e-13, rtol=0)


@pytest.mark.parametrize(
    "in_dim, width, n_out", [(10, 10, 10), (12, 8, 5), (8, 8, 3), (30, 30, 30)]
)
@pytest.mark.parametrize("scale", [1.0, 0.9])
def test_orthogonal_init_gives_a_perfectly_conditioned_product(in_dim, width, n_out, scale):
    depth = 20
    m = DeepLinear(
        in_dim,
        n_out,
        depth=depth,
        width=width,
        init="orthogonal",
        init_scale=scale,
        dtype=F64,
        seed=1,
    )
    for lay in m.linear_layers():
        w = lay.weight.detach()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        assert torch.allclose(gram, scale**2 * torch.eye(gram.shape[0], dtype=F64), atol=1e-13)
    s = torch.linalg.svdvals(m.end_to_end_matrix().detach())
    assert s.shape == (n_out,)
    assert torch.allclose(s, torch.full_like(s, scale**depth), rtol=1e-11, atol=0)
    # Xavier (Cohen et al.) products of the same shape are far from isometries
    if in_dim == width == n_out == 30:
        sx = torch.linalg.svdvals(
            DeepLinear(30, 30, depth=depth, width=30, dtype=F64).end_to_end_matrix().detach()
        )
        assert float(sx[0] / sx[-1]) > 1e3


def test_orthogonal_layers_are_haar_like_and_seeded():
    a = DeepLinear(4, 4, depth=3, width=4, init="orthogonal", dtype=F64, seed=0)
    b = DeepLinear(4, 4, depth=3, width=4, init="orthogonal", dtype=F64, seed=0)
    c = DeepLinear(4, 4, depth=3, width=4, init="orthogonal", dtype=F64, seed=1)
    for la, lb, lc in zip(a.linear_layers(), b.linear_layers(), c.linear_layers()):
        assert torch.equal(la.weight, lb.weight) and not torch.equal(la.weight, lc.weight)
    # the sign correction makes the distribution Haar: E[W] = 0, so no systematic diagonal
    diag = torch.stack(
        [
            torch.diagonal(
                DeepLinear(3, 3, depth=1, width=3, init="orthogonal", dtype=F64, seed=s)
                .linear_layers()[0]
                .weight.detach()
            )
            for s in range(400)
        ]
    )
    assert float(diag.mean().abs()) < 0.05


def test_identity_init():
    m = DeepLinear(6, 3, depth=5, width=4, init="identity", init_scale=1.1, dtype=F64)
    expected = torch.zeros(3, 6, dtype=F64)
    expected[range(3), range(3)] = 1.1**5
    assert torch.allclose(m.end_to_end_matrix(), expected, atol=1e-14, rtol=0)
    assert torch.equal(m.linear_layers()[1].weight, 1.1 * torch.eye(4, dtype=F64))
    ntk = DeepLinear(
        6, 3, depth=5, width=4, init="identity", init_scale=1.1, parametrization="ntk", dtype=F64
    )
    assert ntk.weight_multipliers == tuple(1 / math.sqrt(d) for d in (6, 4, 4, 4, 4))
    assert torch.allclose(ntk.end_to_end_matrix(), expected, atol=1e-13, rtol=0)


@pytest.mark.parametrize("scheme", ["xavier", "kaiming"])
def test_gaussian_init_variance_and_gain_one(scheme):
    m = DeepLinear(600, 600, depth=2, width=500, init=scheme, dtype=F64, seed=2)
    for lay in m.linear_layers():
        fan_out, fan_in = lay.weight.shape
        expected = 2 / (fan_in + fan_out) if scheme == "xavier" else 1 / fan_in
        assert abs(float(lay.weight.detach().var()) / expected - 1) < 0.02
    # same draws as init_model with the identity gain
    again = init_model(DeepLinear(600, 600, depth=2, width=500, dtype=F64), scheme, seed=2)
    assert torch.equal(again.linear_layers()[1].weight, m.linear_layers()[1].weight)


def test_seeds_and_global_rng():
    state = torch.random.get_rng_state()
    for init in DEEP_LINEAR_INITS:
        a = DeepLinear(5, 3, depth=4, width=6, init=init, seed=9)
        b = DeepLinear(5, 3, depth=4, width=6, init=init, seed=9)
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(state, torch.random.get_rng_state())
    f32 = DeepLinear(5, 3, depth=4, width=6, init="orthogonal", dtype=torch.float32, seed=4)
    f64 = DeepLinear(5, 3, depth=4, width=6, init="orthogonal", dtype=F64, seed=4)
    assert all(torch.equal(p, q.float()) for p, q in zip(f32.parameters(), f64.parameters()))
    m = DeepLinear(5, 3, depth=4, width=6, init="orthogonal", dtype=F64, seed=4)
    m.initialize("identity", seed=0, init_scale=2.0)
    assert torch.equal(m.linear_layers()[1].weight, 2 * torch.eye(6, dtype=F64))


def test_errors():
    with pytest.raises(ValueError, match="unknown init 'he'"):
        DeepLinear(4, 2, width=3, init="he")
    with pytest.raises(ValueError, match="init_scale applies to the 'orthogonal' and 'identity'"):
        DeepLinear(4, 2, width=3, init="xavier", init_scale=2.0)
    with pytest.raises(ValueError, match="init_scale must be positive"):
        DeepLinear(4, 2, width=3, init="orthogonal", init_scale=0.0)
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        DeepLinear(4, 2, depth=0, width=3)
    with pytest.raises(TypeError, match="width"):
        DeepLinear(4, 2, depth=3)
    with pytest.raises(TypeError, match=r"build_model\('deep_linear'"):
        build_model("deep_linear", in_dim=4, n_out=2, width=3, activation="tanh")


@pytest.mark.parametrize("parametrization", ["standard", "ntk"])
def test_functional_call_and_vmap_over_parameter_perturbations(parametrization):
    m = DeepLinear(
        6, 3, depth=6, width=5, init="orthogonal", parametrization=parametrization, dtype=F64
    )
    params = {k: v.detach().clone() for k, v in m.named_parameters()}
    x = inputs(7, 6)

    def f(p, xs):
        return functional_call(m, p, (xs,))

    assert torch.equal(f(params, x), m(x))
    K = 4
    g = torch.Generator().manual_seed(1)
    batched = {
        k: v + 0.05 * torch.randn(K, *v.shape, dtype=F64, generator=g) for k, v in params.items()
    }
    out = vmap(f, in_dims=(0, None))(batched, x)  # [K, 7, 3]
    assert out.shape == (K, 7, 3)
    for k in range(K):
        one = {name: t[k] for name, t in batched.items()}
        ws = [one[f"layers.{i}.weight"] * c for i, c in enumerate(m.weight_multipliers)]
        a = torch.linalg.multi_dot(ws[::-1])
        assert torch.allclose(out[k], x @ a.T, atol=1e-12, rtol=0)
    # per-sample Jacobian of f w.r.t. the first layer: ∂f/∂W_1 = A_{2..L} ⊗ xᵀ
    jac = vmap(lambda xi: jacrev(lambda p: f(p, xi))(params))(x)
    rest = torch.linalg.multi_dot(
        [params[f"layers.{i}.weight"] * m.weight_multipliers[i] for i in range(5, 0, -1)]
    )
    expected = torch.einsum("oi,nj->noij", rest * m.weight_multipliers[0], x)
    assert torch.allclose(jac["layers.0.weight"], expected, atol=1e-12, rtol=0)


def test_hessian_operator_matches_dense_hessian():
    from eoslab.linalg import HessianOperator
    from eoslab.problem import Problem

    m = DeepLinear(5, 3, depth=4, width=3, init="orthogonal", dtype=F64, seed=2)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(11, 5, generator=g, dtype=F64)
    y = torch.randint(0, 3, (11,), generator=g)
    problem = Problem(m, "mse", X, y, chunk_size=4)
    theta = problem.initial_theta()

    def loss(t):
        return problem.criterion.per_sample(problem.forward(t, X), y).mean()

    dense = torch.func.hessian(loss)(theta)
    assert torch.allclose(HessianOperator(problem, theta).to_dense(), dense, atol=1e-12, rtol=0)
