"""Gauss–Newton probe against dense truths (docs/methods.md §4–5): λ of H, G, H − G, layers, ζ."""

import warnings

import pytest
import torch
from cases import dense_ggn, dense_hessian, make_problem

from eoslab.eigen import EigSpec, NonConvergenceWarning
from eoslab.probes.gauss_newton import GaussNewtonProbe, GaussNewtonResult

F64 = torch.float64
CASES = ["mlp-tanh-ce", "mlp-relu-mse", "cnn-ce", "deep-linear-mse"]
REL = 1e-7  # the probe solves to relative residual 1e-6; isolated top eigenvalues are far better


pytestmark = pytest.mark.usefixtures("one_thread")


def top(A):
    return torch.linalg.eigvalsh(A)[-1].item()


def brute_force_em2(problem, theta):
    """E_x‖M_x‖², M_x = H_ℓ(x)^{1/2} J_x, ‖M_x‖² = λ_1(M_x M_xᵀ), from explicit Jacobians."""
    X, y = problem.X, problem.y
    J = torch.func.jacrev(lambda t: problem.forward(t, X))(theta)  # [N, o, P]
    f = problem.forward(theta, X).detach()
    M = problem.criterion.output_hessian_sqrt(f, y) @ J  # [N, o, P]
    return torch.linalg.eigvalsh(M @ M.mT)[:, -1].mean().item()


@pytest.fixture(scope="module", params=CASES)
def case(request):
    """(name, problem, θ, dense H, dense G, full probe result with E‖M‖²)."""
    problem, theta = make_problem(request.param)
    H, G = dense_hessian(problem, theta), dense_ggn(problem, theta)
    em2 = brute_force_em2(problem, theta)
    res = GaussNewtonProbe(residual_min=True)(problem, theta, m_norm_sq_mean=em2)
    return request.param, problem, theta, H, G, em2, res


def test_result_shape(case):
    _, problem, _, _, _, _, res = case
    assert isinstance(res, GaussNewtonResult)
    assert all(isinstance(v, float) for v in res.metrics.values())
    keys = ["H", "G", "R", "R_min"] + [f"layer_{n}" for n in problem.layout.group_slices()]
    assert list(res.warm) == keys and list(res.eigs) == keys
    for key, block in res.warm.items():
        assert isinstance(block, torch.Tensor) and not block.requires_grad
        assert block.dtype == F64 and block.dim() == 2
        assert res.metrics[f"converged_{key}"] == 1.0
        assert res.metrics[f"matvecs_{key}"] == res.eigs[key].n_matvecs
    # the view-free copies own their storage (a checkpoint saves no larger base)
    for block in res.warm.values():
        assert block.untyped_storage().nbytes() == block.numel() * block.element_size()
    assert res.metrics["eig_converged"] == 1.0
    assert res.metrics["eig_residual_max"] <= 1e-6
    assert res.n_matvecs == sum(e.n_matvecs for e in res.eigs.values())
    m = res.metrics
    layer_mv = sum(v for k, v in m.items() if k.startswith("matvecs_layer_"))
    r_mv = m["matvecs_R"] + m["matvecs_R_min"]
    assert res.n_hessian_products == m["matvecs_H"] + r_mv + layer_mv
    assert res.n_ggn_products == m["matvecs_G"] + r_mv


def test_top_eigenvalues_match_dense(case):
    _, _, _, H, G, _, res = case
    m = res.metrics
    assert m["lambda_H"] == pytest.approx(top(H), rel=REL)
    assert m["lambda_G"] == pytest.approx(top(G), rel=REL)
    assert m["lambda_R"] == pytest.approx(top(H - G), rel=REL, abs=1e-10 * top(H))
    R_min = torch.linalg.eigvalsh(H - G)[0].item()
    assert m["lambda_R_min"] == pytest.approx(R_min, rel=REL, abs=1e-10 * top(H))


def test_weyl_bracket_of_h_equals_g_plus_r(case):
    """H = G + (H − G) with G ⪰ 0: λ_G + λ_min(R) ≤ λ_H ≤ λ_G + λ_R and λ_R ≤ λ_H."""
    _, _, _, H, G, _, res = case
    m = res.metrics
    eps = 1e-9 * m["lambda_H"]
    assert m["lambda_G"] + m["lambda_R_min"] - eps <= m["lambda_H"]
    assert m["lambda_H"] <= m["lambda_G"] + m["lambda_R"] + eps
    assert m["lambda_R"] <= m["lambda_H"] + eps
    assert torch.linalg.eigvalsh(G)[0].item() >= -1e-12 * top(G)  # the premise G ⪰ 0


def test_layer_sharpness_is_top_of_dense_diagonal_block(case):
    _, problem, _, H, _, _, res = case
    slices = problem.layout.group_slices()
    assert len(slices) >= 2
    for name, s in slices.items():
        got = res.metrics[f"layer_sharpness_{name}"]
        truth = top(H[s, s])
        assert got == pytest.approx(truth, rel=REL, abs=1e-10 * top(H)), name
        assert got <= res.metrics["lambda_H"] * (1 + 1e-9)  # Cauchy interlacing


def test_zeta_is_overlap_ratio(case):
    _, _, _, _, G, em2, res = case
    m = res.metrics
    assert m["EM2"] == em2
    assert m["zeta"] == pytest.approx(top(G) / em2, rel=REL)
    assert 0 < m["zeta"] <= 1
    # λ_1(G) = ζ · E‖M‖² exactly (docs/methods.md §4)
    assert m["zeta"] * m["EM2"] == pytest.approx(m["lambda_G"], rel=1e-14)


def test_zeta_absent_without_em2():
    problem, theta = make_problem("mlp-tanh-ce")
    m = GaussNewtonProbe(layers=False, residual=False)(problem, theta).metrics
    assert "zeta" not in m and "EM2" not in m
    assert set(m) == {
        "lambda_H",
        "lambda_G",
        "matvecs_H",
        "matvecs_G",
        "converged_H",
        "converged_G",
        "eig_converged",
        "eig_residual_max",
    }


def test_zeta_above_one_warns():
    problem, theta = make_problem("mlp-tanh-ce")
    probe = GaussNewtonProbe(layers=False, residual=False)
    lam_G = probe(problem, theta).metrics["lambda_G"]
    with pytest.warns(RuntimeWarning, match="outside"):
        m = probe(problem, theta, m_norm_sq_mean=0.5 * lam_G).metrics
    assert m["zeta"] == pytest.approx(2.0)  # kept, not clipped


def test_warm_start_saves_products_on_nearby_theta():
    problem, theta = make_problem("mlp-tanh-ce")
    probe = GaussNewtonProbe()
    first = probe(problem, theta)
    g = problem.gradient(theta)
    theta2 = theta - 0.05 * g  # one GD step
    cold = probe(problem, theta2)
    warm = probe(problem, theta2, warm=first.warm)
    assert warm.n_matvecs < cold.n_matvecs
    for key in ("H", "G", "R"):
        assert warm.metrics[f"matvecs_{key}"] < cold.metrics[f"matvecs_{key}"], key
    for name in ("lambda_H", "lambda_G", "lambda_R"):
        assert warm.metrics[name] == pytest.approx(cold.metrics[name], rel=1e-8)
    # the warm dict round-trips through a checkpoint
    saved = {k: v.clone() for k, v in warm.warm.items()}
    again = probe(problem, theta2, warm=saved)
    assert again.metrics["lambda_H"] == pytest.approx(warm.metrics["lambda_H"], rel=1e-8)


def test_partial_warm_dict_and_bad_warm():
    problem, theta = make_problem("mlp-tanh-ce")
    probe = GaussNewtonProbe(layers=False)
    res = probe(problem, theta, warm={"H": probe(problem, theta).warm["H"]})
    assert res.metrics["eig_converged"] == 1.0
    with pytest.raises(ValueError, match="layer_0"):
        probe(problem, theta, warm={"layer_0": torch.zeros(problem.size, dtype=F64)})
    with pytest.raises(ValueError, match=r"warm\['G'\]"):
        probe(problem, theta, warm={"G": torch.zeros(problem.size - 1, 3, dtype=F64)})


def test_invalid_arguments():
    problem, theta = make_problem("mlp-tanh-ce")
    for kw in ({"tol": 0.0}, {"tol": 1.5}, {"method": "qr"}, {"seed": -1}):
        with pytest.raises(ValueError):
            GaussNewtonProbe(solver=EigSpec(**kw))
    with pytest.raises(ValueError, match="EigSpec"):
        GaussNewtonProbe(solver=1e-6)
    probe = GaussNewtonProbe(layers=False, residual=False)
    with pytest.raises(ValueError, match="shape"):
        probe(problem, theta[:-1])
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="m_norm_sq_mean"):
            probe(problem, theta, m_norm_sq_mean=bad)


def test_nonconvergence_is_reported():
    problem, theta = make_problem("mlp-tanh-ce")
    starved = EigSpec(max_iter=1, tol=1e-15, verify_steps=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = GaussNewtonProbe(solver=starved, layers=False, residual=False)(problem, theta)
    assert any(
        issubclass(w.category, NonConvergenceWarning) and "Gauss–Newton probe" in str(w.message)
        for w in caught
    )
    assert res.metrics["eig_converged"] == 0.0
    assert res.metrics["lambda_H"] > 0  # values kept
