"""Layerwise decomposition (docs/methods.md §4–5, Lowell 2024 Eq. 3–8) against dense truths.

Every per-sample quantity of ``layerwise_stats`` is checked in float64 against explicit
per-sample Jacobians (torch.func.jacrev of f with respect to θ and to z_ℓ); the five-factor
product against C_ℓ on a network trained on digits; alignment ratios on constructed
matrices with known values; the generic per-sample Jacobian path against brute force on a CNN.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from eoslab.data import load_dataset
from eoslab.eigen import NonConvergenceWarning
from eoslab.models import build_model
from eoslab.models.init import init_model
from eoslab.probes.alignment import alignment_ratio, counterfactual_sharpness
from eoslab.probes.jacobians import per_layer_c, per_sample_m_norm_sq
from eoslab.probes.layerwise import COMPONENT_NAMES, LayerwiseStats, layerwise_stats
from eoslab.problem import Problem

DT = torch.float64


@pytest.fixture(autouse=True)
def _single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _mlp_problem(
    act="tanh",
    crit="cross_entropy",
    *,
    bias=True,
    par="standard",
    N=7,
    d_in=5,
    width=6,
    depth=4,
    n_out=3,
    seed=0,
    chunk_size=None,
):
    model = build_model(
        "mlp",
        in_dim=d_in,
        n_out=n_out,
        depth=depth,
        width=width,
        activation=act,
        bias=bias,
        parametrization=par,
        dtype=DT,
        seed=seed,
    )
    g = torch.Generator().manual_seed(seed + 100)
    X = torch.randn(N, d_in, generator=g, dtype=DT)
    y = torch.randint(0, n_out, (N,), generator=g)
    problem = Problem(model, crit, X, y, chunk_size=chunk_size)
    return problem, problem.initial_theta()


# ----------------------------------------------------------------------------- brute force


def _top_sq(X):  # ‖X‖² for one matrix
    return torch.linalg.svdvals(X)[0] ** 2


def _brute(problem: Problem, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample quantities from explicit Jacobians, one sample at a time."""
    model = problem.model
    L = model.depth
    params = problem.layout.unflatten(theta)
    W = [params[f"layers.{i}.weight"] * model.weight_multipliers[i] for i in range(L)]
    b = [params.get(f"layers.{i}.bias") for i in range(L)]
    sigma = model.activation_fn

    def layer(i, a):  # z_{i+1} from a_i (0-based layer index i)
        z = W[i] @ a
        return z if b[i] is None else z + b[i]

    def f_from_z(i, z):  # f from z of layer i (0-based)
        for j in range(i + 1, L):
            z = layer(j, sigma(z))
        return z

    groups = list(problem.layout.group_slices().values())
    out = {k: [] for k in ("M_sq", "c", "A_sq", "K_sq", "s_blocks", "A", "K")}
    for x, yy in zip(problem.X, problem.y):
        zs, a = [], x
        for i in range(L):
            zs.append(layer(i, a))
            a = sigma(zs[-1])
        f = zs[-1]
        torch.testing.assert_close(f, problem.forward(theta, x[None])[0], rtol=1e-13, atol=1e-13)
        Hs = problem.criterion.output_hessian_sqrt(f[None], yy[None])[0]
        J = torch.func.jacrev(lambda t, x=x: problem.forward(t, x[None])[0])(theta)  # [n, P]
        M = Hs @ J
        out["M_sq"].append(torch.linalg.eigvalsh(M @ M.T)[-1])
        out["c"].append(
            torch.stack([torch.linalg.eigvalsh(M[:, g] @ M[:, g].T)[-1] for g in groups])
        )
        As = [Hs @ torch.func.jacrev(lambda z, i=i: f_from_z(i, z))(zs[i]) for i in range(L)]
        Ks = [torch.func.jacrev(lambda z, i=i: layer(i + 1, sigma(z)))(zs[i]) for i in range(L - 1)]
        out["A"].append(As)
        out["K"].append(Ks)
        out["A_sq"].append(torch.stack([_top_sq(A) for A in As]))
        out["K_sq"].append(torch.stack([_top_sq(K) for K in Ks]) if Ks else torch.zeros(0))
        out["s_blocks"].append([M[:, g] @ M[:, g].T for g in groups])
    for k in ("M_sq", "c", "A_sq", "K_sq"):
        out[k] = torch.stack(out[k])
    return out


def _close(a, b, rtol=1e-10):
    if b.numel() == 0:
        assert a.shape == b.shape
        return
    torch.testing.assert_close(a, b.to(a), rtol=rtol, atol=rtol * float(b.abs().max() + 1e-300))


def _check_against_brute(problem, theta, st: LayerwiseStats):
    bf = _brute(problem, theta)
    L = problem.model.depth
    _close(st.M_norm_sq, bf["M_sq"])
    _close(st.c, bf["c"])  # c_ℓ = s_ℓ‖A_ℓ‖² against λ_1(M_ℓ M_ℓᵀ) from ∂f/∂θ_ℓ
    _close(st.A_norm_sq, bf["A_sq"])
    _close(st.K_norm_sq, bf["K_sq"])
    # Layer ℓ's block of M_x M_xᵀ is s_ℓ A_ℓ A_ℓᵀ (docs/methods.md §5; NTK: ω_ℓ² in s_ℓ).
    for n in range(problem.N):
        for i in range(L):
            A = bf["A"][n][i]
            _close(st.s[n, i] * A @ A.T, bf["s_blocks"][n][i])
    # A_ℓ = A_{ℓ+1} K_ℓ (Eq. 5) on the brute-force matrices.
    for n in range(problem.N):
        for i in range(L - 1):
            _close(bf["A"][n][i + 1] @ bf["K"][n][i], bf["A"][n][i])
    # Aggregates from the brute-force per-sample values.
    EA, EK = bf["A_sq"].mean(0), bf["K_sq"].mean(0)
    _close(st.alpha, EA[:-1] / (EA[1:] * EK))
    for i in range(L - 1):
        A_next = torch.stack([bf["A"][n][i + 1] for n in range(problem.N)])
        K = torch.stack([bf["K"][n][i] for n in range(problem.N)])
        _close(st.alpha[i], alignment_ratio(A_next, K))
    C = bf["c"].mean(0)
    _close(st.C, C)
    s = bf["c"] / bf["A_sq"]
    mask = bf["A_sq"] > 1e-12 * bf["A_sq"].max()
    _close(st.s[mask], s[mask])
    _close(st.gamma, C / (st.s.mean(0) * EA))
    _close(st.EM2, bf["M_sq"].mean())


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("par", ["standard", "ntk"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("crit", ["mse", "cross_entropy"])
@pytest.mark.parametrize("act", ["tanh", "relu", "elu"])
def test_per_sample_quantities_match_brute_force(act, crit, bias, par):
    problem, theta = _mlp_problem(act, crit, bias=bias, par=par)
    st = layerwise_stats(problem, theta, chunk_size=3)  # ragged last chunk (7 = 3 + 3 + 1)
    _check_against_brute(problem, theta, st)
    # Five-factor identity (Eq. 7) and the triangle inequality (Eq. 8).
    _close(st.components.prod(1), st.C[:-1], rtol=1e-12)
    assert float(st.EM2) <= float(st.sum_C) * (1 + 1e-12)
    assert bool((st.M_norm_sq <= st.c.sum(1) * (1 + 1e-12)).all())


@pytest.mark.parametrize("act", ["gelu", "softplus", "identity"])
def test_other_activations_match_brute_force(act):
    problem, theta = _mlp_problem(act, "cross_entropy", par="ntk", depth=3)
    _check_against_brute(problem, theta, layerwise_stats(problem, theta))


def test_depth_one_is_a_single_block():
    problem, theta = _mlp_problem("tanh", "cross_entropy", depth=1)
    st = layerwise_stats(problem, theta)
    _check_against_brute(problem, theta, st)
    assert st.components.shape == (0, 5) and st.EK.shape == (0,)
    _close(st.EM2, st.C[0], rtol=1e-12)  # one block: ‖M_x‖² = c_1
    assert st.metrics()["sum_C"] == pytest.approx(st.metrics()["EM2"], rel=1e-12)


@pytest.fixture(scope="module")
def trained_digits():
    """A small tanh MLP after 100 full-batch GD steps on 300 digits (cross-entropy)."""
    torch.set_num_threads(1)
    data = load_dataset("digits")
    X, y = data.X[:300].to(DT), data.y[:300]
    model = build_model("mlp", in_dim=64, n_out=10, depth=4, width=24, activation="tanh", dtype=DT)
    init_model(model, "kaiming", seed=0)
    problem = Problem(model, "cross_entropy", X, y)
    theta = problem.initial_theta()
    loss0 = float(problem.loss(theta))
    for _ in range(100):
        theta = theta - 0.5 * problem.gradient(theta)
    assert float(problem.loss(theta)) < 0.5 * loss0  # it did train
    return problem, theta


def test_five_components_exact_on_trained_network(trained_digits):
    problem, theta = trained_digits
    st = layerwise_stats(problem, theta)
    L = st.depth
    assert L == 4 and st.components.shape == (L - 1, 5)
    # (I)(II)(III)(IV)(V) = C_ℓ to round-off for every ℓ < L.
    _close(st.components.prod(1), st.C[:-1], rtol=1e-12)
    # The pieces are what their names say.
    _close(st.components[:, 0], st.C[-1].expand(L - 1), rtol=1e-15)
    _close(st.components[:, 1], st.Es[:-1] / st.Es[-1], rtol=1e-12)
    _close(st.components[:, 3], st.gamma[:-1] / st.gamma[-1], rtol=1e-12)
    _close(st.alignment_product[:-1], st.components[:, 4], rtol=0)
    assert float(st.alignment_product[-1]) == 1.0
    # E‖A_k‖² = α_k E‖A_{k+1}‖² E‖K_k‖² (Eq. 6) and C_ℓ = γ_ℓ E s_ℓ E‖A_ℓ‖².
    _close(st.EA[:-1], st.alpha * st.EA[1:] * st.EK, rtol=1e-12)
    _close(st.C, st.gamma * st.Es * st.EA, rtol=1e-12)
    # Eq. 8, on average and per sample.
    assert float(st.EM2) <= float(st.sum_C)
    assert bool((st.M_norm_sq <= st.c.sum(1) * (1 + 1e-12)).all())
    m = st.metrics()
    assert all(isinstance(v, float) for v in m.values())
    expected = {f"C_{i}" for i in range(1, L + 1)} | {"EM2", "sum_C", "K_converged"}
    expected |= {f"comp{i}_{c}" for i in range(1, L) for c in COMPONENT_NAMES}
    expected |= {f"{p}_{i}" for p in ("Es", "EA", "gamma") for i in range(1, L + 1)}
    expected |= {f"{p}_{i}" for p in ("EK", "alpha") for i in range(1, L)}
    assert expected <= set(m)
    for i in range(1, L):
        prod = 1.0
        for c in COMPONENT_NAMES:
            prod *= m[f"comp{i}_{c}"]
        assert prod == pytest.approx(m[f"C_{i}"], rel=1e-12)
    assert m["sum_C"] == pytest.approx(sum(m[f"C_{i}"] for i in range(1, L + 1)), rel=1e-14)


def test_chunk_size_invariance_ragged(trained_digits):
    problem, theta = trained_digits
    ref = layerwise_stats(problem, theta, chunk_size=300)
    for chunk in (7, 128):  # 300 = 42·7 + 6 and 2·128 + 44: ragged last chunks
        st = layerwise_stats(problem, theta, chunk_size=chunk)
        for name in ("s", "A_norm_sq", "c", "K_norm_sq", "M_norm_sq", "C", "EK", "components"):
            _close(getattr(st, name), getattr(ref, name), rtol=1e-12)
    # The iterative ‖K‖² path is chunk-invariant too (shared start block, per-sample freeze).
    it_full = layerwise_stats(problem, theta, exact_width=0, chunk_size=300)
    it_rag = layerwise_stats(problem, theta, exact_width=0, chunk_size=37)
    assert it_full.K_method == ("iterative",) * 3
    _close(it_rag.K_norm_sq, it_full.K_norm_sq, rtol=1e-12)


def test_generic_paths_equal_mlp_path(trained_digits):
    problem, theta = trained_digits
    sub = problem.with_data(problem.X[:40], problem.y[:40])
    st = layerwise_stats(sub, theta)
    _close(per_sample_m_norm_sq(sub, theta, chunk_size=13), st.M_norm_sq, rtol=1e-11)
    c = per_layer_c(sub, theta, chunk_size=40)
    assert list(c) == [f"layers.{i}" for i in range(4)]
    _close(torch.stack(list(c.values()), 1), st.c, rtol=1e-11)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_iterative_K_equals_exact(act):
    # width 40 > exact_width = 16 → subspace iteration on hidden layers; relu has dead units.
    problem, theta = _mlp_problem(act, "cross_entropy", N=30, d_in=8, width=40, depth=4, seed=3)
    exact = layerwise_stats(problem, theta, exact_width=64)
    it = layerwise_stats(problem, theta, exact_width=16, block_size=4, tol=1e-10, max_iter=2000)
    assert exact.K_method == ("exact",) * 3
    assert it.K_method == ("iterative", "iterative", "exact")  # K_3 is 3 × 40: exact
    assert it.all_converged and float(it.K_residual.max()) <= 1e-10
    assert max(it.K_iterations) > 1
    _close(it.K_norm_sq, exact.K_norm_sq, rtol=1e-12)
    _close(it.components.prod(1), it.C[:-1], rtol=1e-12)
    # Forcing every layer (including the 3 × 40 output Jacobian) through the iteration.
    all_it = layerwise_stats(problem, theta, exact_width=0, block_size=4, tol=1e-10, max_iter=2000)
    _close(all_it.K_norm_sq, exact.K_norm_sq, rtol=1e-12)


def test_iterative_nonconvergence_is_reported():
    problem, theta = _mlp_problem("tanh", "mse", N=10, d_in=8, width=40, depth=3, seed=1)
    with pytest.warns(NonConvergenceWarning, match="did not converge"):
        st = layerwise_stats(problem, theta, exact_width=0, block_size=2, max_iter=1)
    assert not st.all_converged
    assert not bool(st.K_converged.all())
    assert float(st.K_residual.max()) > 1e-8
    assert st.metrics()["K_converged"] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonConvergenceWarning)
        ok = layerwise_stats(problem, theta, exact_width=0, max_iter=3000)
    assert ok.all_converged and ok.metrics()["K_converged"] == 1.0


# ----------------------------------------------------------------------------- alignment


def test_alignment_ratio_constructed_matrices():
    m = 5
    sig = torch.tensor([3.0, 2.0, 1.5, 1.0, 0.5], dtype=DT)
    K = torch.diag(sig).expand(m, m, m)  # the same K for every sample; top left vector e_1
    e = torch.eye(m, dtype=DT)
    # Deterministic rank-1 A aligned with K's top singular vector: α = 1.
    A1 = e[0].expand(m, 1, m)
    assert float(alignment_ratio(A1, K)) == pytest.approx(1.0, rel=1e-14)
    # Orthogonal to it (along e_2): α = σ_2²/σ_1².
    A2 = e[1].expand(m, 1, m)
    assert float(alignment_ratio(A2, K)) == pytest.approx(4.0 / 9.0, rel=1e-14)
    # A uniform over the basis vectors e_1..e_m: α = Σσ_i² / (m σ_1²).
    A3 = e.unsqueeze(1)  # [m, 1, m]
    assert float(alignment_ratio(A3, K)) == pytest.approx(
        float(sig.square().sum() / (m * 9.0)), rel=1e-14
    )
    # Random scale along the aligned direction (rank 1, aligned): still α = 1.
    r = torch.tensor([0.5, 1.0, 2.0, 3.0, 0.1], dtype=DT)
    Q, _ = torch.linalg.qr(torch.randn(m, m, generator=torch.Generator().manual_seed(0), dtype=DT))
    KQ = (torch.diag(sig) @ Q.T).expand(m, m, m)  # top left singular vector still e_1
    assert float(alignment_ratio(r.view(m, 1, 1) * A1, KQ)) == pytest.approx(1.0, rel=1e-13)
    # Norms correlated over samples: 1×1 samples (2, 2) and (0, 0) → α = 8 / (2·2) = 2.
    a = torch.tensor([2.0, 0.0], dtype=DT).view(2, 1, 1)
    assert float(alignment_ratio(a, a)) == pytest.approx(2.0, rel=1e-14)
    with pytest.raises(ValueError, match="expected"):
        alignment_ratio(A1, K[:, :3, :])


def _set_linear_mlp(w2_diag):
    """Identity-activation MLP 2 → 4 → 4 → 3 without biases, MSE, with set weights."""
    model = build_model(
        "mlp", in_dim=2, n_out=3, depth=3, width=4, activation="identity", bias=False, dtype=DT
    )
    with torch.no_grad():
        model.layers[1].weight.copy_(torch.diag(torch.tensor(w2_diag, dtype=DT)))
        model.layers[2].weight.copy_(torch.eye(3, 4, dtype=DT))  # W_3 = [I_3 | 0]
    X = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    problem = Problem(model, "mse", X, torch.zeros(6, dtype=torch.int64))
    return problem, problem.initial_theta()


def test_alignment_ratio_in_the_network_known_values():
    # MSE: A_3 = I, K_2 = W_3 = [I | 0], A_2 = W_3; K_1 = W_2 = diag(·), A_1 = W_3 W_2.
    # Aligned: W_2 = diag(2,1,1,1): ‖A_2‖² = 1, ‖K_1‖² = 4, ‖A_1‖² = 4 → α_1 = 1, α_2 = 1.
    problem, theta = _set_linear_mlp([2.0, 1.0, 1.0, 1.0])
    st = layerwise_stats(problem, theta)
    _close(st.alpha, torch.tensor([1.0, 1.0], dtype=DT), rtol=1e-14)
    _close(st.EK, torch.tensor([4.0, 1.0], dtype=DT), rtol=1e-14)
    # Misaligned: W_2 = diag(1,1,1,2) puts K_1's top direction e_4 in the null space of A_2:
    # ‖A_1‖² = 1, ‖K_1‖² = 4 → α_1 = 1/4.
    problem, theta = _set_linear_mlp([1.0, 1.0, 1.0, 2.0])
    st = layerwise_stats(problem, theta)
    _close(st.alpha, torch.tensor([0.25, 1.0], dtype=DT), rtol=1e-14)
    _close(st.alignment_product, torch.tensor([0.25, 1.0, 1.0], dtype=DT), rtol=1e-14)


def test_counterfactual_sharpness():
    C = torch.tensor([[4.0, 2.0, 1.0], [8.0, 3.0, 1.0]], dtype=DT)  # 2 snapshots, L = 3
    V = torch.tensor([[2.0, 1.0], [8.0, 2.0]], dtype=DT)
    zeta = torch.tensor([0.5, 0.25], dtype=DT)
    lam, lr = counterfactual_sharpness(C, V, V[0], zeta)
    # t_0: nothing frozen → ζ Σ C = 0.5·7; t_1: 0.25·(8·2/8 + 3·1/2 + 1) = 0.25·4.5.
    _close(lam, torch.tensor([3.5, 1.125], dtype=DT), rtol=1e-15)
    _close(lr, 2.0 / lam, rtol=1e-15)
    lam_full, _ = counterfactual_sharpness(
        C, torch.cat([V, torch.ones(2, 1, dtype=DT)], 1), [2.0, 1.0, 1.0], zeta
    )
    _close(lam_full, lam, rtol=0)
    with pytest.raises(ValueError, match="layers"):
        counterfactual_sharpness(C, V[:, :1], V[0, :1], zeta)


# ----------------------------------------------------------------------------- generic / CNN


@pytest.fixture(scope="module")
def tiny_cnn():
    model = build_model(
        "small_cnn",
        in_channels=1,
        n_out=3,
        input_size=8,
        widths=(2, 2),
        activation="tanh",
        dtype=DT,
    )
    g = torch.Generator().manual_seed(5)
    X = torch.randn(7, 1, 8, 8, generator=g, dtype=DT)
    y = torch.randint(0, 3, (7,), generator=g)
    problem = Problem(model, "cross_entropy", X, y)
    return problem, problem.initial_theta()


def test_generic_paths_on_cnn_match_brute_force(tiny_cnn):
    problem, theta = tiny_cnn
    J = torch.func.jacrev(lambda t: problem.forward(t, problem.X))(theta)  # [N, n, P]
    f = problem.forward(theta, problem.X)
    Hs = problem.criterion.output_hessian_sqrt(f, problem.y)
    M = Hs @ J
    truth = torch.linalg.eigvalsh(M @ M.mT)[:, -1]
    _close(per_sample_m_norm_sq(problem, theta, chunk_size=3), truth, rtol=1e-11)
    c = per_layer_c(problem, theta, chunk_size=4)
    groups = problem.layout.group_slices()
    assert list(c) == list(groups) and len(c) == 3  # two convs and the head
    for name, sl in groups.items():
        Mg = M[:, :, sl]
        _close(c[name], torch.linalg.eigvalsh(Mg @ Mg.mT)[:, -1], rtol=1e-11)
    assert bool((truth <= torch.stack(list(c.values()), 1).sum(1) * (1 + 1e-12)).all())


def test_non_mlp_raises_clear_error(tiny_cnn):
    problem, theta = tiny_cnn
    with pytest.raises(ValueError, match="convolutional.*per_sample_m_norm_sq"):
        layerwise_stats(problem, theta)
    seq = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(DT)
    X = torch.randn(4, 5, dtype=DT)
    p2 = Problem(seq, "mse", X, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="linear_layers"):
        layerwise_stats(p2, p2.initial_theta())


def test_bad_arguments():
    problem, theta = _mlp_problem()
    with pytest.raises(ValueError, match="shape"):
        layerwise_stats(problem, theta[:-1])
    with pytest.raises(ValueError, match="chunk_size"):
        layerwise_stats(problem, theta, chunk_size=0)
    with pytest.raises(ValueError, match="max_iter"):
        layerwise_stats(problem, theta, max_iter=0)
    with pytest.raises(ValueError, match="shape"):
        per_sample_m_norm_sq(problem, theta[:-1])
