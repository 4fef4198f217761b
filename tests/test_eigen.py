"""Eigensolvers against dense truths (torch.linalg.eigh) on built spectra (docs/methods.md §6)."""

import dataclasses
import warnings

import pytest
import torch
from cases import make_problem

from eoslab.eigen import (
    DEFAULT_METHOD,
    SOLVERS,
    ConvergenceError,
    EigResult,
    NonConvergenceWarning,
    arpack,
    block_power,
    eigsh,
    lanczos,
    lobpcg,
)
from eoslab.linalg import DenseOperator, HessianOperator, Operator

F64, F32 = torch.float64, torch.float32


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These matrices are tiny (P ≤ 400): threading only adds overhead, and on a loaded
    machine OpenMP barriers in thousands of small ops cost seconds."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


DTYPES = [F64, F32]
ALL_WHICH = {lobpcg: ("LA", "SA"), lanczos: ("LA", "SA", "LM"), arpack: ("LA", "SA", "LM")}


# ---------------------------------------------------------------- constructed spectra


def spectrum_op(lam, *, seed=0, dtype=F64):
    """A = Q diag(λ) Qᵀ with a seeded random orthogonal Q, built in float64, then cast."""
    g = torch.Generator().manual_seed(seed)
    P = lam.numel()
    Q, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=F64))
    A = (Q * lam.to(F64)) @ Q.T
    return DenseOperator(((A + A.T) / 2).to(dtype))


def _rand(n, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)


def separated(P=200, seed=0):
    """Top 20 decaying geometrically from 10 (gaps ≥ 2.5%), bulk in [−0.5, 0.5]."""
    return torch.cat([10 * 0.8 ** torch.arange(20, dtype=F64), _rand(P - 20, -0.5, 0.5, seed)])


def clustered(P=300, seed=0):
    """Top 20 within 10% of λ_1 = 10, bulk in [−1, 3], and λ_min = −12 with |λ_min| > λ_20."""
    top = torch.linspace(10.0, 9.05, 20, dtype=F64)
    return torch.cat([top, _rand(P - 21, -1.0, 3.0, seed), torch.tensor([-12.0], dtype=F64)])


def negative(P=200, seed=0):
    """Mostly negative spectrum: smallest −8, −7.5, …; largest are small positives."""
    low = -8 + 0.5 * torch.arange(10, dtype=F64)
    return torch.cat([low, _rand(P - 10, -2.0, 0.5, seed)])


def repeated(P=150, seed=0):
    """5 (×3), 4 (×2), 3, then a bulk in [−1, 1] and a repeated negative pair −6, −6."""
    head = torch.tensor([5.0, 5.0, 5.0, 4.0, 4.0, 3.0, -6.0, -6.0], dtype=F64)
    return torch.cat([head, _rand(P - 8, -1.0, 1.0, seed)])


def wanted(lam, which, k):
    """The k eigenvalues ``which`` asks for, in EigResult order."""
    if which == "LM":
        idx = torch.argsort(lam, descending=True, stable=True)
        return lam[idx][torch.argsort(lam[idx].abs(), descending=True, stable=True)][:k]
    return torch.sort(lam, descending=which == "LA").values[:k]


def true_subspace(op, which, k):
    """Orthonormal basis [P, k] of the wanted invariant subspace of the float64 matrix."""
    lam, U = torch.linalg.eigh(op.A.to(F64))
    if which == "LA":
        idx = torch.argsort(lam, descending=True)
    elif which == "SA":
        idx = torch.argsort(lam)
    else:
        idx = torch.argsort(lam.abs(), descending=True)
    return U[:, idx[:k]]


def check(res, op, lam, which, k, *, rtol=1e-4):
    """All the properties an EigResult must have on a constructed spectrum."""
    eps = torch.finfo(op.dtype).eps
    A = op.A.to(F64)
    anorm = lam.abs().max()
    assert isinstance(res, EigResult)
    assert res.which == which and res.k == k and res.all_converged, res.residuals
    assert res.converged.dtype == torch.bool and res.converged.shape == (k,)
    assert res.eigenvalues.dtype == op.dtype and res.eigenvectors.dtype == op.dtype
    assert res.n_matvecs == op.n_applied
    # eigenvalues
    want = wanted(lam, which, k)
    got = res.eigenvalues.to(F64)
    err = (got - want).abs()
    assert torch.all(err <= rtol * want.abs() + 100 * eps * anorm), (got, want)
    # orthonormal eigenvectors
    V = res.eigenvectors.to(F64)
    assert V.shape == (op.size, k)
    orth = (V.T @ V - torch.eye(k, dtype=F64)).abs().max()
    assert orth < (1e-10 if op.dtype == F64 else 2e-5), orth
    # the residual field is ‖A v − λ v‖ of the returned pairs
    r = torch.linalg.vector_norm(A @ V - V * got, dim=0)
    torch.testing.assert_close(res.residuals.to(F64), r, rtol=1e-3, atol=200 * eps * anorm)
    # the same invariant subspace (projectors, so clusters and multiplets are fine):
    # ‖sin Θ‖ ≤ ‖R‖ / gap (Davis–Kahan) with gap ≥ 0.05 on these spectra
    U = true_subspace(op, which, k)
    sin = torch.linalg.matrix_norm(V - U @ (U.T @ V), ord=2)
    assert sin <= 20 * (float(r.max()) + 100 * eps * float(anorm)) / 0.05 + 1e-12, sin


CASES = [
    (solver, which, name)
    for solver, whiches in ALL_WHICH.items()
    for which in whiches
    for name in ("separated", "clustered", "negative")
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize(
    "solver,which,name", CASES, ids=[f"{s.__name__}-{w}-{n}" for s, w, n in CASES]
)
def test_constructed_spectra(solver, which, name, dtype):
    lam = {"separated": separated, "clustered": clustered, "negative": negative}[name]()
    op = spectrum_op(lam, seed=1, dtype=dtype)
    k = 20 if name != "negative" else 10
    check(solver(op, k, which=which), op, lam, which, k)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("which", ["LM", "LA"])
def test_block_power(which, dtype):
    lam = separated()
    op = spectrum_op(lam, seed=2, dtype=dtype)
    check(block_power(op, 8, which=which, max_iter=2000), op, lam, which, 8)


@pytest.mark.parametrize("solver", [lobpcg, lanczos, arpack, block_power], ids=lambda f: f.__name__)
def test_cluster_la_is_not_lm(solver):
    """Top 20 within 10% of λ_1 and |λ_min| > λ_20: 'LA' must skip −12, 'LM' must take it."""
    lam = clustered()
    op = spectrum_op(lam, seed=3)
    kw = {"max_iter": 5000} if solver is block_power else {}
    res = solver(op, 20, which="LA", **kw)
    check(res, op, lam, "LA", 20)
    assert res.eigenvalues.min() > 9.0
    if solver is lobpcg:
        with pytest.raises(ValueError, match="which='LM' is not supported"):
            solver(op, 3, which="LM")
        return
    op.reset_count()
    res = solver(op, 3, which="LM")
    check(res, op, lam, "LM", 3)
    torch.testing.assert_close(res.eigenvalues[0], torch.tensor(-12.0, dtype=F64))


@pytest.mark.parametrize("solver", [lobpcg, lanczos, block_power], ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_repeated_eigenvalues(solver, dtype):
    lam = repeated()
    op = spectrum_op(lam, seed=4, dtype=dtype)
    which = "LM" if solver is block_power else "LA"
    kw = {"max_iter": 3000} if solver is block_power else {}
    # k never splits a multiplet, so the wanted subspace is unique; by magnitude the
    # order is −6 (×2), 5 (×3), 4 (×2)
    for k in (3, 5, 6) if which == "LA" else (2, 5, 7):
        op.reset_count()
        check(solver(op, k, which=which, **kw), op, lam, which, k)
    if solver is not block_power:
        op.reset_count()
        check(solver(op, 2, which="SA"), op, lam, "SA", 2)


def test_lanczos_multiplicity_check_is_what_finds_copies():
    """Without the check, single-vector Lanczos finds one copy of the triple eigenvalue 5."""
    lam = repeated()
    op = spectrum_op(lam, seed=4)
    bare = lanczos(op, 3, verify_steps=0)
    assert bare.all_converged
    assert torch.allclose(bare.eigenvalues, torch.tensor([5.0, 4.0, 3.0], dtype=F64))
    checked = lanczos(op, 3)
    torch.testing.assert_close(checked.eigenvalues, torch.full((3,), 5.0, dtype=F64))


def test_arpack_returns_true_eigenpairs_on_repeated_spectrum():
    """ARPACK (like any single-vector Krylov method) may under-count a multiplet, but what it
    returns are converged eigenpairs; on this seed it finds the top 6 with multiplicity."""
    lam = repeated()
    op = spectrum_op(lam, seed=4)
    res = arpack(op, 6, tol=1e-10)
    check(res, op, lam, "LA", 6)


@pytest.mark.parametrize("solver", [lobpcg, lanczos, arpack, block_power], ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_k_near_p(solver, dtype):
    P = 40
    lam = torch.linspace(-3, 7, P, dtype=F64)
    op = spectrum_op(lam, seed=5, dtype=dtype)
    for which in ("LA", "SA") if solver is not block_power else ("LM",):
        op.reset_count()
        check(solver(op, P - 2, which=which), op, lam, which, P - 2)


@pytest.mark.parametrize("solver", [lobpcg, lanczos, arpack, block_power], ids=lambda f: f.__name__)
def test_tighter_tol_is_tighter(solver):
    lam = separated()
    op = spectrum_op(lam, seed=6)
    U = true_subspace(op, "LA", 5)
    kw = {"max_iter": 5000} if solver is block_power else {}
    errs = []
    for tol in (1e-3, 1e-10):
        res = solver(op, 5, tol=tol, **kw)
        assert res.all_converged
        rel = res.residuals / res.eigenvalues.abs()
        assert rel.max() <= tol
        V = res.eigenvectors
        errs.append(float(torch.linalg.matrix_norm(V - U @ (U.T @ V), ord=2)))
        torch.testing.assert_close(res.eigenvalues, wanted(lam, "LA", 5), rtol=tol, atol=0)
    assert errs[1] < 1e-9 and errs[1] < errs[0], errs


def perturbed(op, eps, seed=9):
    g = torch.Generator().manual_seed(seed)
    P = op.size
    E = torch.randn(P, P, generator=g, dtype=F64)
    return DenseOperator(op.A + eps * ((E + E.T) / 2 / P**0.5).to(op.dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize(
    "solver,k,spectrum",
    [
        (lobpcg, 20, clustered),
        (block_power, 20, clustered),
        (lanczos, 5, lambda: torch.cat([10 - 0.2 * torch.arange(20.0), _rand(280, 0, 5, 0)])),
        (arpack, 5, lambda: torch.cat([10 - 0.2 * torch.arange(20.0), _rand(280, 0, 5, 0)])),
    ],
    ids=["lobpcg", "block_power", "lanczos", "arpack"],
)
def test_warm_start_uses_fewer_products(solver, k, spectrum, dtype):
    lam = spectrum().to(F64)
    op = spectrum_op(lam, seed=7, dtype=dtype)
    which = "LM" if solver is block_power else "LA"
    kw = {"max_iter": 5000} if solver is block_power else {}
    first = solver(op, k, which=which, **kw)
    op2 = perturbed(op, 1e-3)
    cold = solver(op2, k, which=which, **kw)
    warm = solver(op2, k, which=which, v0=first.warm_start, **kw)
    assert cold.all_converged and warm.all_converged
    assert warm.n_matvecs == op2.n_applied - cold.n_matvecs
    assert warm.n_matvecs < cold.n_matvecs, (warm.n_matvecs, cold.n_matvecs)
    if solver is lobpcg:  # the block solver: a warm start costs a small fraction
        assert warm.n_matvecs <= 0.4 * cold.n_matvecs
    rtol = 1e-4 if dtype == F32 else 1e-6
    torch.testing.assert_close(warm.eigenvalues, cold.eigenvalues, rtol=rtol, atol=0)


@pytest.mark.parametrize("solver", [lobpcg, lanczos, arpack, block_power], ids=lambda f: f.__name__)
def test_non_convergence_is_never_silent(solver):
    op = spectrum_op(clustered(), seed=8)
    # ARPACK converges the top cluster within its first restart; its bottom end is harder
    which = {block_power: "LM", arpack: "SA"}.get(solver, "LA")
    with pytest.warns(NonConvergenceWarning, match="did not converge"):
        res = solver(op, 20, which=which, max_iter=1)
    assert not res.all_converged and not bool(res.converged.all())
    assert res.n_matvecs == op.n_applied
    with pytest.raises(ConvergenceError, match=r"did not converge for \d+ of 20 eigenpairs"):
        res.require_converged()
    failed = int((~res.converged).nonzero()[0, 0]) + 1
    with pytest.raises(ConvergenceError, match=f"#{failed} "):
        res.require_converged()


def test_bad_arguments_raise_clear_errors():
    op = spectrum_op(separated(P=50))
    for solver in SOLVERS.values():
        with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= .* P=50, got k=51"):
            solver(op, 51)
        with pytest.raises(ValueError, match="k must satisfy"):
            solver(op, 0)
        with pytest.raises(ValueError, match="which='XX' is not supported"):
            solver(op, 2, which="XX")
        with pytest.raises(ValueError, match="tol must be a positive"):
            solver(op, 2, tol=0.0)
        with pytest.raises(ValueError, match="max_iter must be at least 1"):
            solver(op, 2, max_iter=0)
        with pytest.raises(ValueError, match=r"v0 must have shape \[P=50\]"):
            solver(op, 2, v0=torch.ones(49, 2, dtype=F64))
    with pytest.raises(ValueError, match="'LA' .*'SA'"):
        lobpcg(op, 2, which="LM")
    with pytest.raises(ValueError, match="block_size must satisfy k=5 <= block_size"):
        lobpcg(op, 5, block_size=4)
    with pytest.raises(ValueError, match="block_size must satisfy"):
        block_power(op, 5, block_size=51)
    with pytest.raises(ValueError, match="ncv must satisfy k=5 < ncv"):
        lanczos(op, 5, ncv=5)
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= 49"):
        arpack(op, 50)
    with pytest.raises(ValueError, match="criterion must be one of"):
        block_power(op, 2, criterion="delta")
    with pytest.raises(ValueError, match="shift is only meaningful"):
        block_power(op, 2, which="LM", shift=1.0)
    with pytest.raises(ValueError, match="unknown eigensolver method='qr'"):
        eigsh(op, 2, method="qr")
    with pytest.raises(TypeError):
        eigsh(op, 2, method="lobpcg", ncv=10)  # options are not swallowed


def test_eigsh_dispatches_by_name():
    lam = separated()
    op = spectrum_op(lam)
    assert set(SOLVERS) == {"lobpcg", "lanczos", "arpack", "block_power"}
    res = eigsh(op, 4)
    assert res.method == DEFAULT_METHOD == "lanczos"
    check(res, op, lam, "LA", 4)
    for name in SOLVERS:
        op.reset_count()
        res = eigsh(op, 4, method=name, which="LM" if name == "block_power" else "LA")
        assert res.method == name and res.all_converged


@pytest.mark.parametrize("solver", [lobpcg, lanczos, arpack, block_power], ids=lambda f: f.__name__)
def test_randomness_comes_only_from_seed(solver):
    op = spectrum_op(separated())
    which = "LM" if solver is block_power else "LA"
    torch.manual_seed(123)
    a = solver(op, 5, which=which, seed=4)
    torch.manual_seed(999)
    torch.rand(10)
    b = solver(op, 5, which=which, seed=4)
    assert torch.equal(a.eigenvalues, b.eigenvalues) and a.n_matvecs == b.n_matvecs
    assert torch.equal(a.eigenvectors, b.eigenvectors)


@pytest.mark.parametrize("solver", [lobpcg, lanczos, arpack, block_power], ids=lambda f: f.__name__)
def test_v0_with_fewer_or_more_columns(solver):
    lam = separated()
    op = spectrum_op(lam)
    which = "LM" if solver is block_power else "LA"
    g = torch.Generator().manual_seed(1)
    for ncols in (1, 3, 60):
        op.reset_count()
        v0 = torch.randn(op.size, ncols, generator=g, dtype=F64)
        check(solver(op, 6, which=which, v0=v0), op, lam, which, 6)
    op.reset_count()  # a [P] vector works too, and so does a float32 v0 for a float64 op
    check(solver(op, 6, which=which, v0=v0[:, 0].float()), op, lam, which, 6)


def test_result_is_frozen_and_warm_start_carries_the_guard_block():
    lam = separated()
    op = spectrum_op(lam)
    res = lobpcg(op, 8, block_size=12)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.tol = 1.0
    assert res.require_converged() is res
    ws = res.warm_start
    assert ws.shape == (op.size, 12)
    torch.testing.assert_close(ws[:, :8], res.eigenvectors)
    torch.testing.assert_close(ws.T @ ws, torch.eye(12, dtype=F64), atol=1e-10, rtol=0)
    assert block_power(op, 4, which="LM").warm_start.shape == (op.size, 6)


def test_lobpcg_soft_locking_applies_a_only_to_active_residuals():
    """Guard columns never get products of their own; converged ones drop out."""
    lam = separated()
    op = spectrum_op(lam)
    res = lobpcg(op, 10, block_size=16, tol=1e-8)
    assert res.n_matvecs < 16 + 10 * res.n_iter  # strictly: some pairs locked early
    assert res.n_iter >= 3


def test_lobpcg_float32_stays_orthonormal_over_many_iterations():
    """A long float32 run on a cluster keeps [X, D] orthonormal (restart safeguard)."""
    lam = torch.cat([torch.linspace(1.0, 0.99, 10, dtype=F64), _rand(390, 0.0, 0.985, 3)])
    op = spectrum_op(lam, seed=11, dtype=F32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonConvergenceWarning)
        res = lobpcg(op, 10, tol=1e-6, max_iter=150)
    V = res.eigenvectors.double()
    assert (V.T @ V - torch.eye(10, dtype=F64)).abs().max() < 2e-5
    A = op.A.double()
    r = torch.linalg.vector_norm(A @ V - V * res.eigenvalues.double(), dim=0)
    torch.testing.assert_close(res.residuals.double(), r, rtol=1e-2, atol=1e-5)


def test_power_eigenvalue_change_criterion():
    lam = separated()
    op = spectrum_op(lam)
    res = block_power(op, 3, which="LM", criterion="eigenvalue_change", tol=1e-10)
    assert res.all_converged  # the paper's rule: max|ΔΛ| < tol·max|Λ| was met
    torch.testing.assert_close(res.eigenvalues, wanted(lam, "LM", 3), rtol=1e-8, atol=0)
    # the rule stops on eigenvalue stagnation; residuals are still reported honestly
    A = op.A
    V = res.eigenvectors
    torch.testing.assert_close(
        res.residuals, torch.linalg.vector_norm(A @ V - V * res.eigenvalues, dim=0)
    )
    loose = block_power(op, 3, which="LM", criterion="eigenvalue_change", tol=1e-2)
    assert loose.n_iter < res.n_iter


def test_power_eigenvalue_change_compares_the_first_iteration_with_theta0():
    """Along a trajectory (Lowell 2024 §7.1): warm-started from the previous call's vectors and
    given its eigenvalues, an unchanged operator is accepted after one block product."""
    lam = separated()
    op = spectrum_op(lam)
    prev = block_power(op, 3, which="LM", criterion="eigenvalue_change", tol=1e-10)
    kw = dict(which="LM", criterion="eigenvalue_change", tol=1e-6, v0=prev.warm_start)
    again = block_power(op, 3, theta0=prev.eigenvalues, **kw)
    assert again.n_iter == 1 and again.all_converged
    torch.testing.assert_close(again.eigenvalues, prev.eigenvalues, rtol=1e-9, atol=0)
    assert block_power(op, 3, **kw).n_iter == 2  # without θ0 the rule needs two iterations
    # estimates that moved by more than tol are not accepted on the first iteration
    moved = block_power(op, 3, theta0=prev.eigenvalues * 1.01, **kw)
    assert moved.n_iter >= 2 and moved.all_converged
    # θ0 is ignored by the residual rule
    assert block_power(op, 3, which="LM", theta0=prev.eigenvalues * 5).all_converged


def test_power_la_adaptive_shift_escapes_dominant_negative_eigenvalues():
    """Eight eigenvalues in [−9, −7] dominate |λ| and outnumber the block (b = 7): only the
    adaptive shift σ ← max(σ, −min θ) lets 'LA' find the top five."""
    lam = torch.cat(
        [5.0 - 0.2 * torch.arange(5.0), _rand(8, -9.0, -7.0, 1), _rand(187, -1.0, 2.0, 2)]
    ).to(F64)
    op = spectrum_op(lam, seed=13)
    res = block_power(op, 5, which="LA", max_iter=2000)
    check(res, op, lam, "LA", 5)
    # b = 7 products per iteration, plus at most 8 for the missed-eigenvalue check
    assert 7 * res.n_iter < res.n_matvecs <= 7 * res.n_iter + 8


def test_power_la_shift():
    lam = clustered()
    op = spectrum_op(lam, seed=12)
    res = block_power(op, 5, which="LA", shift=12.0, max_iter=5000)
    check(res, op, lam, "LA", 5)
    lam = negative()
    op = spectrum_op(lam, seed=12)
    check(block_power(op, 5, which="SA", max_iter=5000), op, lam, "SA", 5)


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_network_hessian_matches_dense_eigh(method):
    problem, theta = make_problem("mlp-tanh-ce", N=30)
    H = HessianOperator(problem, theta)
    evals = torch.linalg.eigvalsh(H.to_dense())
    H.reset_count()
    which = "LM" if method == "block_power" else "LA"
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonConvergenceWarning)
        res = eigsh(H, 3, method=method, which=which, tol=1e-8, max_iter=3000)
    torch.testing.assert_close(res.eigenvalues, wanted(evals, which, 3), rtol=1e-7, atol=1e-10)
    assert res.n_matvecs == H.n_applied


# ---------------------------------------------------------------- larger problem


class RotatedDiagonal(Operator):
    """A = H D Hᵀ with H a product of three Householder reflections, applied implicitly."""

    def __init__(self, lam, *, seed=0):
        super().__init__(lam.numel(), dtype=lam.dtype, device=lam.device)
        g = torch.Generator().manual_seed(seed)
        U = torch.randn(3, lam.numel(), generator=g, dtype=lam.dtype)
        self.U = U / torch.linalg.vector_norm(U, dim=1, keepdim=True)
        self.lam = lam

    def _reflect(self, V, order):
        for i in order:
            u = self.U[i][:, None]
            V = V - 2 * u @ (u.T @ V)
        return V

    def _matmat(self, V):
        Y = self._reflect(V, (0, 1, 2))  # Hᵀ V, H = H_0 H_1 H_2 (reflections are symmetric)
        return self._reflect(self.lam[:, None] * Y, (2, 1, 0))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("method", ["lobpcg", "lanczos"])
def test_large_rotated_diagonal(method, dtype):
    P = 20000
    lam = torch.cat([torch.linspace(10.0, 9.05, 20, dtype=F64), _rand(P - 20, -2.0, 8.0, 0)])
    op = RotatedDiagonal(lam.to(dtype))
    res = eigsh(op, 20, method=method)
    assert res.all_converged and res.n_matvecs == op.n_applied
    want = torch.sort(lam, descending=True).values[:20]
    torch.testing.assert_close(res.eigenvalues.double(), want, rtol=1e-4, atol=0)
    # eigenvectors are H e_i: rotate back and compare the top-20 coordinate block
    Y = op._reflect(res.eigenvectors, (0, 1, 2)).double()
    top = torch.argsort(lam, descending=True)[:20]
    assert torch.linalg.matrix_norm(Y[top], ord=-2) > 1 - 1e-3
    op2 = RotatedDiagonal((lam * (1 + 1e-3 * _rand(P, -1, 1, 1))).to(dtype))
    warm = eigsh(op2, 20, method=method, v0=res.warm_start)
    assert warm.all_converged
    if method == "lobpcg":
        assert warm.n_matvecs < 0.5 * res.n_matvecs


def test_lanczos_names_a_non_finite_operator():
    from eoslab.eigen import lanczos
    from eoslab.linalg.base import DenseOperator

    A = torch.eye(6, dtype=torch.float64)
    A[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        lanczos(DenseOperator(A), 2)


def test_lanczos_stops_at_the_operators_rounding_floor():
    """Products with an error above tol: stop within a few cycles, report why, not converged.

    A slightly non-symmetric perturbation E (‖E‖ ≈ 1e-5‖A‖, as rounding in a float32 product
    can be) keeps ‖(A+E)x − θx‖ near ‖E‖ while the tridiagonal estimate falls below tol.
    """
    lam = separated(P=200)
    op = spectrum_op(lam, seed=3)
    g = torch.Generator().manual_seed(5)
    E = 1e-5 * float(lam.abs().max()) * torch.randn(200, 200, generator=g, dtype=F64) / 200**0.5
    noisy = DenseOperator(op.A + E)  # declared symmetric, as a float32 Hessian product is
    with pytest.warns(NonConvergenceWarning, match="stopped decreasing"):
        res = lanczos(noisy, 3, tol=1e-7, max_iter=300)
    assert not res.all_converged
    assert res.n_matvecs < 100  # a few cycles, not the 300-cycle budget (2,700 products)
    # the pairs are still good to the floor: eigenvalues within ‖E‖ of the truth
    torch.testing.assert_close(res.eigenvalues, wanted(lam, "LA", 3), rtol=1e-4, atol=0)
    # and an exact operator at the same tolerance converges
    assert lanczos(op, 3, tol=1e-7).all_converged


def test_lanczos_stall_rule_spares_slow_but_steady_convergence():
    """The stop rule needs ncv − l checks without a 10 % drop since the window began.

    Products whose residual estimate is always below tol but whose real residual falls by 5 %
    per check (slow, steady) must not be stopped; a flat residual must be.
    """
    from eoslab.eigen.lanczos import _stall_step

    assert _stall_step(0.95, ref_q=1.0, stalled=0) == (1.0, 1)  # 5 %: window goes on
    ref, n = 1.0, 0
    for i in range(1, 60):  # steady 5 % per check: a 10 % drop every ~2 checks
        ref, n = _stall_step(0.95**i, ref_q=ref, stalled=n)
        assert n <= 2
    ref, n = 1.0, 0
    for _ in range(10):  # flat: the count only grows
        ref, n = _stall_step(0.99, ref_q=ref, stalled=n)
    assert (ref, n) == (1.0, 10)
