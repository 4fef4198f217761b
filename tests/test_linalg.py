import numpy as np
import pytest
import torch
from cases import CASES, dense_ggn, dense_hessian, make_problem

from eoslab.linalg import (
    DenseOperator,
    GaussNewtonOperator,
    HessianOperator,
    LinearCombination,
    ProjectedOperator,
    RestrictedOperator,
    ScaledOperator,
    residual_operator,
    to_scipy,
)
from eoslab.problem import Problem

TOL = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture(params=sorted(CASES))
def case(request):
    problem, theta = make_problem(request.param)
    # move away from init so CE output Hessians and residuals are generic
    theta = theta + 0.3 * torch.randn(
        theta.shape, generator=torch.Generator().manual_seed(3), dtype=theta.dtype
    )
    return problem, theta


@pytest.mark.parametrize("cache", [True, False])
def test_hessian_matches_dense_truth(case, cache):
    problem, theta = case
    H = HessianOperator(problem, theta, cache=cache)
    assert H.cached is cache
    Hd = H.to_dense()
    torch.testing.assert_close(Hd, dense_hessian(problem, theta), **TOL)
    torch.testing.assert_close(Hd, Hd.T, **TOL)
    assert H.n_applied == problem.size


def test_vectorized_hessian_equals_loop(case):
    problem, theta = case
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(problem.size, 5, dtype=problem.dtype, generator=gen)
    a = HessianOperator(problem, theta).matmat(V)
    b = HessianOperator(problem, theta, vectorize=True).matmat(V)
    torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("cache", [True, False])
def test_ggn_matches_dense_truth_and_is_psd(case, cache):
    problem, theta = case
    G = GaussNewtonOperator(problem, theta, cache=cache).to_dense()
    torch.testing.assert_close(G, dense_ggn(problem, theta), **TOL)
    torch.testing.assert_close(G, G.T, **TOL)
    evals = torch.linalg.eigvalsh(G)
    assert evals.min() > -1e-10 * evals.max().abs()


def test_residual_completes_hessian(case):
    problem, theta = case
    H = HessianOperator(problem, theta)
    G = GaussNewtonOperator(problem, theta)
    R = residual_operator(H, G)
    torch.testing.assert_close(G.to_dense() + R.to_dense(), H.to_dense(), **TOL)


def test_chunk_size_invariance_of_operators():
    p1, theta = make_problem("mlp-elu-ce-ragged", chunk_size=20)
    p2, _ = make_problem("mlp-elu-ce-ragged", chunk_size=3)  # ragged: 20 = 6*3 + 2
    V = torch.randn(p1.size, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for cls in (HessianOperator, GaussNewtonOperator):
        for cache in (True, False):
            torch.testing.assert_close(
                cls(p1, theta).matmat(V), cls(p2, theta, cache=cache).matmat(V), **TOL
            )


def test_memory_budget_falls_back_to_recompute():
    problem, theta = make_problem("mlp-tanh-ce")
    H = HessianOperator(problem, theta, memory_budget=1)
    assert not H.cached and H.graph_bytes > 1 and H.gradient is None
    H2 = HessianOperator(problem, theta)
    assert H2.cached and H2.graph_bytes < H2.memory_budget
    torch.testing.assert_close(H2.gradient, problem.gradient(theta), **TOL)
    torch.testing.assert_close(H2.loss, problem.loss(theta), **TOL)
    torch.testing.assert_close(H.to_dense(), H2.to_dense(), **TOL)


def test_mse_linear_regression_closed_form():
    # f = W x + b, ℓ = ½‖f − e_y‖²: H = (1/N) Σ [x;1][x;1]ᵀ ⊗ I, with θ ordered (W row-major, b)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).double()
    X = torch.randn(30, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    problem = Problem(model, "mse", X, y, chunk_size=7)
    theta = problem.initial_theta()
    H = HessianOperator(problem, theta).to_dense()
    Xa = torch.cat([X, torch.ones(30, 1, dtype=X.dtype)], 1)
    C = Xa.T @ Xa / 30  # [5, 5]
    # parameter order: W[o, d] at o*4 + d, then b[o] at 12 + o
    idx = lambda o, d: o * 4 + d if d < 4 else 12 + o  # noqa: E731
    truth = torch.zeros(15, 15, dtype=torch.float64)
    for o in range(3):
        for d in range(5):
            for e in range(5):
                truth[idx(o, d), idx(o, e)] = C[d, e]
    torch.testing.assert_close(H, truth, **TOL)
    torch.testing.assert_close(GaussNewtonOperator(problem, theta).to_dense(), truth, **TOL)


def test_compositions_and_restriction():
    problem, theta = make_problem("mlp-tanh-ce")
    H = HessianOperator(problem, theta)
    Hd = H.to_dense()
    torch.testing.assert_close(ScaledOperator(H, -2.0).to_dense(), -2.0 * Hd, **TOL)
    torch.testing.assert_close(
        LinearCombination([(1.0, H), (0.5, DenseOperator(Hd))]).to_dense(), 1.5 * Hd, **TOL
    )
    Q, _ = torch.linalg.qr(torch.randn(problem.size, 3, dtype=torch.float64))
    Pr = torch.eye(problem.size, dtype=torch.float64) - Q @ Q.T
    torch.testing.assert_close(ProjectedOperator(H, Q).to_dense(), Pr @ Hd @ Pr, **TOL)
    for name, sl in problem.layout.group_slices().items():
        block = RestrictedOperator(H, sl).to_dense()
        torch.testing.assert_close(block, Hd[sl, sl], **TOL, msg=f"layer {name}")
    idx = torch.tensor([0, 5, 9])
    torch.testing.assert_close(RestrictedOperator(H, idx).to_dense(), Hd[idx][:, idx], **TOL)


def test_operator_shape_errors_and_counts():
    problem, theta = make_problem("mlp-tanh-ce")
    H = HessianOperator(problem, theta)
    with pytest.raises(ValueError, match=r"acts on \[P=.*, k\] blocks"):
        H.matmat(torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="expects dtype torch.float64"):
        H.matmat(torch.zeros(problem.size, 2))
    with pytest.raises(ValueError, match="θ must have shape"):
        HessianOperator(problem, theta[:-1])
    H.matmat(torch.zeros(problem.size, 3, dtype=torch.float64))
    H.matvec(torch.zeros(problem.size, dtype=torch.float64))
    assert H.n_applied == 4


def test_scipy_adapter_matches():
    problem, theta = make_problem("mlp-relu-mse")
    H = HessianOperator(problem, theta)
    A = to_scipy(H)
    Hd = H.to_dense().numpy()
    v = np.random.default_rng(0).standard_normal(problem.size)
    np.testing.assert_allclose(A.matvec(v), Hd @ v, rtol=1e-10, atol=1e-12)
    M = np.random.default_rng(1).standard_normal((problem.size, 3))
    np.testing.assert_allclose(A.matmat(M), Hd @ M, rtol=1e-10, atol=1e-12)
