"""Probes against dense truths (docs/methods.md §2–3): spectrum, ρ, projections, ΔL, cusp scan."""

import functools
import math
import warnings

import numpy as np
import pytest
import torch
from cases import dense_hessian, make_problem
from torch import nn

import eoslab.probes.suite as suite_module
from eoslab.eigen import EigSpec, NonConvergenceWarning
from eoslab.linalg import HessianOperator
from eoslab.probes import (
    ProbeResult,
    ProbeSuite,
    cusp_grid,
    cusp_scan,
    loss_changes,
    project,
    projection_metrics,
    rho,
    table1,
)
from eoslab.problem import Problem

F64 = torch.float64
LR = 0.1
THRESHOLD = 2 / LR


pytestmark = pytest.mark.usefixtures("one_thread")


class _Scale(nn.Module):
    """f ↦ diag(c) f with a fixed buffer c, to split the I_c ⊗ Σ degeneracy of a linear model."""

    def __init__(self, c):
        super().__init__()
        self.register_buffer("c", c)

    def forward(self, f):
        return f * self.c


def quadratic(N=30, d=5, n_out=3, seed=0):
    """Bias-free linear model f = diag(c) W x with MSE: L is exactly quadratic in θ = vec(W).

    H = (1/N) Σ_n (c cᵀ ⊙ I) ⊗ x_n x_nᵀ = diag(c²) ⊗ XᵀX/N in row-major vec(W) order.
    """
    g = torch.Generator().manual_seed(seed)
    c = torch.tensor([1.0, 1.6, 2.3], dtype=F64)[:n_out]
    model = nn.Sequential(nn.Linear(d, n_out, bias=False), _Scale(c)).to(F64)
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(n_out, d, generator=g, dtype=F64))
    X = torch.randn(N, d, generator=g, dtype=F64) * torch.linspace(0.5, 2.0, d, dtype=F64)
    y = torch.randint(0, n_out, (N,), generator=g)
    problem = Problem(model, "mse", X, y)
    H = torch.kron(torch.diag(c**2), X.T @ X / N)
    return problem, problem.initial_theta(), H


def lam(metrics, k, name="lambda"):
    return torch.tensor([metrics[f"{name}_{i + 1}"] for i in range(k)], dtype=F64)


def probe(problem, theta, suite, **kw):
    kw.setdefault("lr", LR)
    kw.setdefault("threshold", THRESHOLD)
    kw.setdefault("theta0", torch.zeros_like(theta))
    return suite(problem, theta, **kw)


# ---------------------------------------------------------------- quadratic: exact truths


def test_quadratic_hessian_is_known():
    problem, theta, H = quadratic()
    torch.testing.assert_close(dense_hessian(problem, theta), H, atol=1e-13, rtol=0)


def test_quadratic_spectrum_and_rho():
    problem, theta, H = quadratic()
    k = 6
    res = probe(problem, theta, ProbeSuite(k=k, n_top=2, solver=EigSpec(tol=1e-10)))
    m = res.metrics
    truth = torch.linalg.eigvalsh(H).flip(0)[:k]
    torch.testing.assert_close(lam(m, k), truth, atol=1e-8, rtol=0)
    torch.testing.assert_close(lam(m, k, "rho"), LR * lam(m, k) / 2, atol=1e-14, rtol=1e-14)
    assert m["sharpness"] == m["lambda_1"]
    assert m["threshold"] == THRESHOLD
    assert m["eig_converged"] == 1.0 and m["eig_residual_max"] <= 1e-10
    assert m["eig_matvecs"] == res.n_matvecs == res.eig.n_matvecs > 0
    assert (res.n_grads, res.n_losses) == (1, 3)


def test_complete_basis_projections_sum_to_gradient_norm():
    problem, theta, _ = quadratic()
    P = problem.size
    n_top = 2
    m = probe(problem, theta, ProbeSuite(k=P, n_top=n_top, solver=EigSpec(tol=1e-10))).metrics
    g = problem.gradient(theta)
    g2 = float(g @ g)
    d = lam(m, P, "d")
    assert math.isclose(m["grad_norm"] ** 2, g2, rel_tol=1e-12)
    assert math.isclose(float(d @ d), g2, rel_tol=1e-10)
    assert math.isclose(m["proj_top"] ** 2 + m["proj_bulk"] ** 2, g2, rel_tol=1e-10)
    assert math.isclose(m["proj_top"] ** 2, float(d[:n_top] @ d[:n_top]), rel_tol=1e-10)
    assert m["n_top"] == n_top


def test_quadratic_loss_changes_are_exact():
    """On a quadratic, L(θ − η p) − L(θ) = −η g·p + ½ η² pᵀHp exactly; with p = g it is
    η Σ_i d_i² (½ η λ_i − 1) (docs/methods.md §2), and it equals direct evaluation of L."""
    problem, theta, H = quadratic()
    P = problem.size
    res = probe(problem, theta, ProbeSuite(k=P, n_top=2, solver=EigSpec(tol=1e-10)))
    m = res.metrics
    g = problem.gradient(theta)
    V = res.eig.eigenvectors
    top = V[:, :2] @ (V[:, :2].T @ g)
    L0 = problem.loss(theta)
    for name, p in (("dL_top", top), ("dL_bulk", g - top), ("dL_full", g)):
        direct = float(problem.loss(theta - LR * p) - L0)
        taylor = float(-LR * (g @ p) + 0.5 * LR**2 * (p @ H @ p))
        assert math.isclose(m[name], direct, rel_tol=1e-12, abs_tol=1e-15), name
        assert math.isclose(m[name], taylor, rel_tol=1e-9), name
    lam_all, d = lam(m, P), lam(m, P, "d")
    assert math.isclose(m["dL_full"], float(LR * (d**2 @ (LR * lam_all / 2 - 1))), rel_tol=1e-9)


# ---------------------------------------------------------------- small MLP against dense H


def test_mlp_against_dense_hessian():
    problem, theta = make_problem("mlp-tanh-ce")
    k, n_top = 3, 2
    res = probe(
        problem, theta, ProbeSuite(k=k, solver=EigSpec(tol=1e-10))
    )  # n_top = n_outputs − 1 = 2
    m = res.metrics
    evals, evecs = torch.linalg.eigh(dense_hessian(problem, theta))
    evals, evecs = evals.flip(0)[:k], evecs.flip(1)[:, :k]
    torch.testing.assert_close(lam(m, k), evals, atol=1e-8, rtol=0)
    loss, g = problem.loss_and_gradient(theta)
    assert math.isclose(m["loss"], float(loss), rel_tol=1e-14)
    assert math.isclose(m["grad_norm"], float(g.norm()), rel_tol=1e-12)
    torch.testing.assert_close(lam(m, k, "d"), (evecs.T @ g).abs(), atol=1e-8, rtol=0)
    top, bulk = project(g, evecs[:, :n_top])
    assert m["n_top"] == n_top
    assert math.isclose(m["proj_top"], float(top.norm()), rel_tol=1e-7)
    assert math.isclose(m["proj_bulk"], float(bulk.norm()), rel_tol=1e-7)
    ref = loss_changes(problem, theta, g, top, LR)
    for name in ("dL_top", "dL_bulk", "dL_full"):
        assert math.isclose(m[name], float(ref[name]), rel_tol=1e-7, abs_tol=1e-14), name
    assert math.isclose(m["accuracy"], float(problem.accuracy(theta)), rel_tol=0)


def test_negative_eigenvalues_give_nan_rho():
    r = rho(torch.tensor([4.0, 0.0, -1.0], dtype=F64), 8.0)
    assert r[0] == 0.5 and r[1] == 0 and torch.isnan(r[2])
    with pytest.raises(ValueError, match="threshold"):
        rho(torch.ones(2), 0.0)
    problem, theta = make_problem("mlp-tanh-ce")
    P = problem.size
    m = probe(problem, theta, ProbeSuite(k=P, solver=EigSpec(tol=1e-8))).metrics
    lam_all, rho_all = lam(m, P), lam(m, P, "rho")
    assert (lam_all < 0).any() and (lam_all > 0).any()
    assert torch.equal(torch.isnan(rho_all), lam_all < 0)
    ok = lam_all >= 0
    torch.testing.assert_close(rho_all[ok], lam_all[ok] / THRESHOLD, atol=0, rtol=1e-15)


def test_warm_start_uses_fewer_matvecs():
    problem, theta = make_problem("mlp-tanh-ce")
    suite = ProbeSuite(k=5, solver=EigSpec(tol=1e-6))
    first = probe(problem, theta, suite)
    theta1 = theta - 0.05 * problem.gradient(theta)
    cold = probe(problem, theta1, suite)
    warm = probe(problem, theta1, suite, v0=first.eig.warm_start)
    assert warm.n_matvecs < cold.n_matvecs
    torch.testing.assert_close(lam(warm.metrics, 5), lam(cold.metrics, 5), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- metric sets and options


def test_metric_names_and_test_metrics_only_with_test_problem():
    problem, theta = make_problem("mlp-tanh-ce")
    k = 3
    theta0 = theta + 0.1
    res = probe(problem, theta, ProbeSuite(k=k), theta0=theta0)
    expected = {
        "loss", "accuracy", "grad_norm", "theta_norm", "dist_init", "threshold", "sharpness",
        "eig_residual_max", "eig_converged", "eig_matvecs", "proj_top", "proj_bulk",
        "dL_top", "dL_bulk", "dL_full", "n_top",
    }  # fmt: skip
    expected |= {f"{p}_{i}" for p in ("lambda", "rho", "d") for i in range(1, k + 1)}
    assert set(res.metrics) == expected
    assert all(isinstance(v, float) for v in res.metrics.values())
    assert math.isclose(res.metrics["dist_init"], 0.1 * problem.size**0.5, rel_tol=1e-12)
    assert math.isclose(res.metrics["theta_norm"], float(theta.norm()), rel_tol=1e-14)

    gen = torch.Generator().manual_seed(7)
    X_test = torch.randn(11, 5, generator=gen, dtype=F64)
    y_test = torch.randint(0, 3, (11,), generator=gen)
    test_problem = problem.with_data(X_test, y_test)
    m = probe(problem, theta, ProbeSuite(k=k, test_problem=test_problem)).metrics
    assert set(m) == expected | {"test_loss", "test_accuracy"}
    assert math.isclose(m["test_loss"], float(test_problem.loss(theta)), rel_tol=1e-14)
    assert m["test_accuracy"] == float(test_problem.accuracy(theta))


def test_parts_can_be_switched_off():
    problem, theta = make_problem("mlp-tanh-ce")
    res = probe(problem, theta, ProbeSuite(spectrum=False, projections=False, loss_changes=False))
    assert res.eig is None and (res.n_matvecs, res.n_grads, res.n_losses) == (0, 1, 0)
    assert set(res.metrics) == {
        "loss", "accuracy", "grad_norm", "theta_norm", "dist_init", "threshold"
    }  # fmt: skip
    m = probe(problem, theta, ProbeSuite(k=3, spectrum=False, loss_changes=False)).metrics
    assert "lambda_1" not in m and "dL_top" not in m
    assert {"proj_top", "d_3", "n_top", "eig_converged"} <= set(m)


def test_uncached_operator_falls_back_to_loss_and_gradient(monkeypatch):
    problem, theta = make_problem("mlp-elu-ce-ragged")
    suite = ProbeSuite(k=3, solver=EigSpec(tol=1e-10))
    cached = probe(problem, theta, suite).metrics
    monkeypatch.setattr(
        suite_module, "HessianOperator", functools.partial(HessianOperator, cache=False)
    )
    uncached = probe(problem, theta, suite).metrics
    assert uncached.keys() == cached.keys()
    for name, value in cached.items():
        assert math.isclose(uncached[name], value, rel_tol=1e-7, abs_tol=1e-12), name


def test_nonconvergence_is_flagged_and_warned():
    problem, theta = make_problem("mlp-tanh-ce")
    suite = ProbeSuite(k=5, solver=EigSpec(tol=1e-12, max_iter=1))
    with pytest.warns(NonConvergenceWarning) as record:
        res = probe(problem, theta, suite)
    assert any("probe eigensolve" in str(w.message) for w in record)
    assert res.metrics["eig_converged"] == 0.0
    assert res.metrics["eig_residual_max"] > 1e-12
    assert all(math.isfinite(res.metrics[f"lambda_{i}"]) for i in range(1, 6))


def test_converged_probe_does_not_warn():
    problem, theta = make_problem("mlp-tanh-ce")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonConvergenceWarning)
        probe(problem, theta, ProbeSuite(k=3))


def test_invalid_arguments():
    problem, theta = make_problem("mlp-tanh-ce")
    with pytest.raises(ValueError, match="k=200"):
        probe(problem, theta, ProbeSuite(k=200))
    with pytest.raises(ValueError, match="n_top"):
        ProbeSuite(k=3, n_top=4)
    with pytest.raises(ValueError, match="n_top"):
        probe(problem, theta, ProbeSuite(k=1))  # n_top = 3 − 1 = 2 > k
    with pytest.raises(ValueError, match="method: one of .* got 'qr'"):
        ProbeSuite(solver=EigSpec(method="qr"))
    with pytest.raises(ValueError, match="EigSpec"):
        ProbeSuite(solver="lanczos")
    with pytest.raises(ValueError, match="which"):
        ProbeSuite(solver=EigSpec(which="SA"))
    with pytest.raises(ValueError, match="threshold"):
        probe(problem, theta, ProbeSuite(k=3), threshold=0.0)
    with pytest.raises(ValueError, match="theta"):
        probe(problem, theta[:-1], ProbeSuite(k=3))
    with pytest.raises(ValueError, match="eigenvectors"):
        projection_metrics(theta, torch.zeros(3, 2, dtype=F64), 1)


# ---------------------------------------------------------------- cusp scan


def test_cusp_scan_matches_direct_evaluation():
    problem, theta = make_problem("mlp-relu-mse")
    h = torch.randn(problem.size, generator=torch.Generator().manual_seed(3), dtype=F64)
    s_max, n = 0.05, 11
    out = cusp_scan(problem, theta, 2.5 * h, s_max, n=n, batch_size=4)
    s, dL = out["s"], out["dL"]
    assert s.shape == dL.shape == (n,)
    assert s[0] == -s_max and s[-1] == s_max and s[n // 2] == 0
    assert torch.equal(s, -s.flip(0))
    assert dL[n // 2] == 0
    u = h / h.norm()
    L0 = problem.loss(theta)
    direct = torch.stack([problem.loss(theta + si * u) - L0 for si in s])
    torch.testing.assert_close(dL, direct, atol=1e-14, rtol=1e-12)
    looped = cusp_scan(problem, theta, h, s_max, n=n, vectorize=False)
    torch.testing.assert_close(looped["dL"], dL, atol=1e-14, rtol=1e-12)
    even = cusp_scan(problem, theta, h, s_max, n=10, batch_size=3)
    assert even["s"].shape == (10,) and not (even["s"] == 0).any()
    ref = torch.stack([problem.loss(theta + si * u) - L0 for si in even["s"]])
    torch.testing.assert_close(even["dL"], ref, atol=1e-14, rtol=1e-12)


def test_cusp_scan_on_quadratic_is_the_parabola():
    """ΔL(s) = s d_1 + ½ λ_1 s² exactly on a quadratic, with h_1 the top eigenvector."""
    problem, theta, H = quadratic()
    evals, evecs = torch.linalg.eigh(H)
    h1, lam1 = evecs[:, -1], evals[-1]
    g = problem.gradient(theta)
    out = cusp_scan(problem, theta, h1, 0.003, n=21)
    s = out["s"]
    torch.testing.assert_close(out["dL"], s * (h1 @ g) + 0.5 * lam1 * s**2, atol=1e-15, rtol=1e-9)


def test_cusp_grid_checks():
    assert torch.equal(cusp_grid(1.0, 3, dtype=F64), torch.tensor([-1.0, 0.0, 1.0], dtype=F64))
    for bad in (dict(s_max=0.0, n=5), dict(s_max=1.0, n=1), dict(s_max=float("inf"), n=5)):
        with pytest.raises(ValueError):
            cusp_grid(dtype=F64, **bad)
    problem, theta = make_problem("mlp-tanh-ce")
    with pytest.raises(ValueError, match="zero"):
        cusp_scan(problem, theta, torch.zeros_like(theta), 0.1)


# ---------------------------------------------------------------- Lowell 2022 Table 1


def test_table1_rules():
    top = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    bulk = [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]
    # ρ exactly at the threshold and NaN (negative λ) do not qualify: two probes only
    r = [0.5, 0.7, 0.71, float("nan"), 0.9, 0.2]
    assert table1(top, bulk, r) is None
    assert table1(top, bulk, r, min_probes=2)["n_probes"] == 2
    r = [0.5, 0.8, 0.71, float("nan"), 0.9, 1.2]
    out = table1(torch.tensor(top), np.array(bulk), torch.tensor(r))
    sel = np.array([2.0, 3.0, 5.0, 6.0])
    assert out["n_probes"] == 4
    assert math.isclose(out["dL_top_mean"], sel.mean())
    assert math.isclose(out["dL_top_std"], sel.std(ddof=1))
    assert math.isclose(out["dL_bulk_mean"], -sel.mean())
    assert math.isclose(out["dL_bulk_std"], sel.std(ddof=1))
    assert table1(top, bulk, r, threshold=1.0) is None
    with pytest.raises(ValueError, match="1-D"):
        table1(top, bulk[:-1], r)


def test_probe_result_is_frozen():
    problem, theta = make_problem("mlp-tanh-ce")
    res = probe(problem, theta, ProbeSuite(k=2, n_top=1))
    assert isinstance(res, ProbeResult)
    with pytest.raises(AttributeError):
        res.n_grads = 2
