"""Solvers never report a wrong pair as converged (issue 13, items 8–11).

Dense float64 truths: exactly repeated eigenvalues (ARPACK keeps one Krylov vector per
eigenspace), warm starts from an exactly invariant subspace (a block that never sees λ_1),
a tolerance below the dtype's residual floor, and zero operators (a literal one and H − G of
a one-layer linear model).
"""

import warnings

import pytest
import torch
from test_eigen import spectrum_op, wanted

import eoslab.eigen as eigen
from eoslab.eigen import (
    SOLVERS,
    EigResult,
    NonConvergenceWarning,
    arpack,
    block_power,
    lanczos,
    lobpcg,
)
from eoslab.linalg import DenseOperator, GaussNewtonOperator, HessianOperator, residual_operator
from eoslab.problem import Problem

F64, F32 = torch.float64, torch.float32


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices: threads only add overhead (as in test_eigen.py)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _uniform(n, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)


def multiplets(P=120):
    """±1.940 (×4), ±1.382 (×10), ±1.267 (×10), the rest in [−0.15, 0.15]: issue 13 item 8."""
    top = torch.tensor([1.940] * 4 + [1.382] * 10 + [1.267] * 10, dtype=F64)
    return torch.cat([top, -top, _uniform(P - 48, -0.15, 0.15, 0)])


def linear_model(*, d=29, n_out=4, N=64, criterion="mse", seed=0, dtype=F64):
    """A one-layer linear model f = W x + b: with MSE its Hessian is C ⊗ I, every eigenvalue of
    the input second moment C = E[x̃ x̃ᵀ] repeated n_out times, and H − G = 0."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torch.nn.Linear(d, n_out).to(dtype)
    X = torch.randn(N, d, generator=g, dtype=dtype)
    y = torch.randint(0, n_out, (N,), generator=g)
    problem = Problem(model, criterion, X, y)
    return problem, problem.initial_theta()


def assert_true_or_flagged(res, lam, which, *, rtol=1e-6):
    """Every pair flagged converged carries the dense truth's eigenvalue at its position."""
    want = wanted(lam, which, res.k)
    right = (res.eigenvalues.to(F64) - want).abs() <= rtol * want.abs() + 1e-12
    assert bool((right | ~res.converged).all()), (res.eigenvalues, want, res.converged)


# ------------------------------------------------ item 8: ARPACK on exact multiplicities


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("which", ["LA", "SA"])
def test_arpack_finds_every_copy_of_multiplicity_4_and_10(which, seed):
    """ARPACK alone returns [1.94, 1.94, 1.382, 1.382, 1.267, 1.267], all flagged converged."""
    lam = multiplets()
    op = spectrum_op(lam, seed=1)
    res = arpack(op, 6, which=which, seed=seed)
    assert_true_or_flagged(res, lam, which)
    assert res.all_converged  # and the check's continuation does converge
    assert res.n_matvecs == op.n_applied


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("which", ["LA", "SA"])
def test_arpack_on_a_linear_model_hessian(which, seed):
    """H = C ⊗ I₄ of a one-layer linear model (P = 120): every eigenvalue has multiplicity 4."""
    problem, theta = linear_model()
    H = HessianOperator(problem, theta)
    lam = torch.linalg.eigvalsh(H.to_dense())
    assert torch.allclose(lam[:4], lam[0].expand(4), rtol=1e-12)  # the premise: a quadruplet
    H.reset_count()
    res = arpack(H, 6, which=which, seed=seed)
    assert_true_or_flagged(res, lam, which)
    assert res.all_converged
    assert res.n_matvecs == H.n_applied


@pytest.mark.parametrize("seed", [0, 1])
def test_arpack_lm_continues_with_lanczos(seed):
    """'LM' has no LOBPCG continuation; the Lanczos one must find the copies too. By
    magnitude the top 8 are ±1.94 (×4 each); ARPACK alone returns two ±1.382 among them."""
    op = spectrum_op(multiplets(), seed=1)
    res = arpack(op, 8, which="LM", seed=seed)
    assert res.all_converged
    torch.testing.assert_close(res.eigenvalues.abs(), torch.full((8,), 1.94, dtype=F64))


def test_arpack_without_the_check_is_what_misses_copies():
    """verify_steps=0 gives ARPACK's own answer back: one copy short, flagged converged."""
    lam = multiplets()
    op = spectrum_op(lam, seed=1)
    bare = arpack(op, 6, verify_steps=0)
    assert bare.all_converged
    assert not torch.allclose(bare.eigenvalues, wanted(lam, "LA", 6), rtol=1e-6)


# ------------------------------------------------ item 9: invariant warm starts


def _exact_eigvecs(op):
    lam, U = torch.linalg.eigh(op.A)
    return lam.flip(0), U.flip(1)


def _separated_top(P=150):
    return torch.cat([10 * 0.8 ** torch.arange(12, dtype=F64), _uniform(P - 12, -0.5, 0.5, 3)])


@pytest.mark.parametrize("cols", ["k", "m"], ids=["v0-k-columns", "v0-whole-block"])
@pytest.mark.parametrize("solver", [lobpcg, block_power], ids=lambda f: f.__name__)
def test_warm_start_from_eigenvectors_2_to_k1_recovers_lambda_1(solver, cols):
    """Started from the exact eigenvectors 2…k+1 (or 2…m+1, a whole exactly invariant block)
    both returned λ_2… as the top k, converged after one block."""
    lam = _separated_top()
    op = spectrum_op(lam, seed=2)
    k, m = 5, 7
    _, U = _exact_eigvecs(op)
    v0 = U[:, 1 : 1 + (k if cols == "k" else m)]
    res = solver(op, k, v0=v0, block_size=m, max_iter=2000)
    assert res.all_converged
    torch.testing.assert_close(res.eigenvalues, wanted(lam, "LA", k), rtol=1e-6, atol=0)
    assert res.n_matvecs == op.n_applied


@pytest.mark.parametrize("solver", [lobpcg, block_power], ids=lambda f: f.__name__)
def test_warm_start_recovers_lambda_1_with_which_sa(solver):
    lam = -_separated_top()
    op = spectrum_op(lam, seed=2)
    _, U = torch.linalg.eigh(op.A)  # ascending: the 'SA' order
    res = solver(op, 4, which="SA", v0=U[:, 1:7], block_size=6, max_iter=2000)
    assert res.all_converged
    torch.testing.assert_close(res.eigenvalues, wanted(lam, "SA", 4), rtol=1e-6, atol=0)


@pytest.mark.parametrize("solver", [lobpcg, block_power], ids=lambda f: f.__name__)
def test_the_check_is_what_recovers_lambda_1(solver):
    """With verify_steps=0 the invariant warm start still traps the block (the random guard
    alone cannot help: every wanted pair has converged before it is iterated)."""
    lam = _separated_top()
    op = spectrum_op(lam, seed=2)
    _, U = _exact_eigvecs(op)
    trapped = solver(op, 5, v0=U[:, 1:8], block_size=7, verify_steps=0)
    torch.testing.assert_close(trapped.eigenvalues, lam[1:6], rtol=1e-6, atol=0)


def test_warm_start_block_always_carries_a_random_guard_direction():
    from eoslab.eigen._ortho import generator, start_rows

    op = spectrum_op(_separated_top(), seed=2)
    _, U = _exact_eigvecs(op)
    v0 = U[:, :7]
    Vt, n_rand = start_rows(op, 7, v0, generator(op, 0), method="t", guard=1)
    assert n_rand == 1
    outside = Vt.T - v0 @ (v0.T @ Vt.T)  # the block leaves span(v0) by a whole direction
    assert torch.linalg.matrix_norm(outside, ord=2) > 0.9
    for solver in (lobpcg, block_power):  # and the solvers use it: the block leaves span(v0)
        res = solver(op, 5, v0=v0, block_size=7, verify_steps=0)
        guard = res.warm_start[:, 5:]
        assert torch.linalg.matrix_norm(guard - v0 @ (v0.T @ guard), ord=2) > 1e-3


def test_find_missed_directly():
    """The shared check: nothing on the true top k, λ_1's direction on eigenvectors 2…k+1."""
    from eoslab.eigen._ortho import generator, threshold
    from eoslab.eigen._verify import find_missed

    op = spectrum_op(_separated_top(), seed=2)
    ev, U = _exact_eigvecs(op)
    k = 5

    def run(first):
        lam_k = ev[first + k - 1]
        thr = threshold(lam_k[None], ev[0], 1e-4, F64)[0]
        op.reset_count()
        Xt = U[:, first : first + k].T.contiguous()
        found, n = find_missed(
            op, Xt, key_ref=lam_k + thr, which="LA", steps=8, gen=generator(op, 0)
        )
        assert n == op.n_applied <= 8
        return found, lam_k

    found, _ = run(0)
    assert found is None
    found, lam_k = run(1)
    assert found is not None and float(found.theta[0]) > float(lam_k)
    u = found.rows[0]
    assert abs(float(u @ U[:, 0])) > 0.9  # mostly λ_1's eigenvector
    assert float((U[:, 1 : k + 1].T @ u).abs().max()) < 1e-12  # orthogonal to the block
    torch.testing.assert_close(found.products[0], op.A @ u)


@pytest.mark.parametrize("solver", [lobpcg, block_power, arpack], ids=lambda f: f.__name__)
def test_the_check_costs_at_most_verify_steps_products(solver):
    lam = _separated_top()
    op = spectrum_op(lam, seed=4)
    kw = {"max_iter": 2000} if solver is block_power else {}
    bare = solver(op, 5, verify_steps=0, **kw)
    checked = solver(op, 5, **kw)
    assert checked.all_converged
    assert bare.n_matvecs < checked.n_matvecs <= bare.n_matvecs + 8
    torch.testing.assert_close(checked.eigenvalues, bare.eigenvalues, rtol=0, atol=0)


def test_power_eigenvalue_change_runs_no_check():
    """Lowell's heuristic stays one block product per solve along a trajectory."""
    lam = _separated_top()
    op = spectrum_op(lam, seed=4)
    kw = dict(which="LM", criterion="eigenvalue_change", tol=1e-8)
    a = block_power(op, 3, verify_steps=8, **kw)
    b = block_power(op, 3, verify_steps=0, **kw)
    assert a.n_matvecs == b.n_matvecs == 5 * a.n_iter


@pytest.mark.parametrize("solver", [lobpcg, block_power, arpack], ids=lambda f: f.__name__)
def test_verify_steps_is_checked(solver):
    op = spectrum_op(_separated_top())
    with pytest.raises(ValueError, match="verify_steps must be a non-negative integer"):
        solver(op, 2, verify_steps=-1)


# ------------------------------------------------ item 10: tolerance below the floor


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_float32_tolerance_below_the_floor_warns_once_and_reports_what_it_applied(
    method, monkeypatch
):
    from eoslab.eigen import _ortho

    monkeypatch.setattr(_ortho, "_FLOOR_WARNED", set())
    lam = _separated_top()
    op = spectrum_op(lam, seed=5, dtype=F32)
    which = "LM" if method == "block_power" else "LA"
    floor = 128 * torch.finfo(F32).eps
    kw = dict(method=method, which=which, tol=1e-9, max_iter=3000)
    with pytest.warns(eigen.ToleranceFloorWarning, match="tol=1e-09 is below"):
        res = eigen.eigsh(op, 4, **kw)
    assert res.tol == pytest.approx(floor) and res.requested_tol == 1e-9
    assert res.all_converged
    # the flags refer to the applied tolerance: residuals within tol · max|θ|
    assert bool((res.residuals <= res.tol * res.eigenvalues.abs().max()).all())
    with warnings.catch_warnings():  # once per process per (method, dtype, tol)
        warnings.simplefilter("error", eigen.ToleranceFloorWarning)
        again = eigen.eigsh(op, 4, **kw)
    assert again.tol == res.tol
    with pytest.warns(eigen.ToleranceFloorWarning):  # another tol warns again
        eigen.eigsh(op, 4, **{**kw, "tol": 1e-10})


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_attainable_tolerance_is_reported_unchanged(method):
    op = spectrum_op(_separated_top(), seed=5)
    which = "LM" if method == "block_power" else "LA"
    with warnings.catch_warnings():
        warnings.simplefilter("error", eigen.ToleranceFloorWarning)
        res = eigen.eigsh(op, 3, method=method, which=which, tol=1e-9, max_iter=3000)
    assert res.tol == res.requested_tol == 1e-9


def test_eig_result_stays_backward_compatible():
    x = torch.eye(3, dtype=F64)[:, :2]
    res = EigResult(
        eigenvalues=torch.ones(2, dtype=F64),
        eigenvectors=x,
        residuals=torch.zeros(2, dtype=F64),
        converged=torch.tensor([True, False]),
        n_matvecs=4,
        n_iter=1,
        method="lanczos",
        which="LA",
        tol=1e-4,
    )
    assert res.requested_tol == res.tol == 1e-4
    assert res.warm_start is x and not res.all_converged
    with pytest.raises(eigen.ConvergenceError, match=r"tol=0.0001\) did not converge"):
        res.require_converged()


# ------------------------------------------------ item 11: zero operators


def _check_zero(res, op, k, block):
    assert res.all_converged
    assert torch.equal(res.eigenvalues.abs(), torch.zeros(k, dtype=op.dtype))
    assert torch.equal(res.residuals, torch.zeros(k, dtype=op.dtype))
    V = res.eigenvectors
    torch.testing.assert_close(V.T @ V, torch.eye(k, dtype=op.dtype), rtol=0, atol=1e-12)
    assert res.n_matvecs == op.n_applied <= block


BLOCK = {"lanczos": 1, "arpack": 1, "lobpcg": 5, "block_power": 5}  # k = 3: m = b = 5


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_zero_operator_returns_zeros_after_the_first_block(method, which):
    if method == "lobpcg" and which == "LM":
        pytest.skip("LOBPCG has no 'LM'")
    op = DenseOperator(torch.zeros(40, 40, dtype=F64))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonConvergenceWarning)
        res = eigen.eigsh(op, 3, method=method, which=which)
    _check_zero(res, op, 3, BLOCK[method])


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_residual_operator_of_a_linear_model_is_zero(method):
    """H − G of a one-layer linear model with MSE, N = 64: f is linear in θ, so H = G. The
    two products take different roads (double backward vs Jᵀ H_ℓ J) and agree bit for bit
    here because the 1/N of a power of two is exact; with N = 30 (or cross-entropy) they
    differ by round-off (~1e-16 ‖H‖), and that operator is not exactly zero."""
    problem, theta = linear_model(d=5, N=64)
    R = residual_operator(HessianOperator(problem, theta), GaussNewtonOperator(problem, theta))
    V = torch.randn(R.size, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(R.matmat(V), torch.zeros_like(V))  # the premise
    R.reset_count()
    which = "LM" if method == "block_power" else "LA"
    res = eigen.eigsh(R, 3, method=method, which=which)
    _check_zero(res, R, 3, BLOCK[method])


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_a_warm_start_in_the_null_space_is_not_a_zero_operator(method):
    """A v0 with A v0 = 0 exactly proves nothing about A: only a product of seeded noise can."""
    lam = torch.cat([torch.tensor([3.0, 2.0, 1.5], dtype=F64), torch.zeros(37, dtype=F64)])
    op = DenseOperator(torch.diag(lam))
    null = torch.eye(40, dtype=F64)[:, 10:13]
    assert torch.equal(op.A @ null, torch.zeros_like(null))
    which = "LM" if method == "block_power" else "LA"
    kw = {"block_size": 3} if method in ("lobpcg", "block_power") else {}  # m = k: no guard
    res = eigen.eigsh(op, 3, method=method, which=which, v0=null, max_iter=50, **kw)
    assert res.all_converged
    torch.testing.assert_close(res.eigenvalues, lam[:3], rtol=1e-6, atol=0)
    assert res.n_matvecs <= 60


@pytest.mark.parametrize("v0", [False, True], ids=["cold", "warm-in-null-space"])
def test_lanczos_on_a_low_rank_operator_stops_once_converged(v0):
    """Rank 3 in R^40: past the range every random direction lies in the null space, so each
    Krylov space is invariant at once. Lanczos used to wait for a non-invariant one before
    testing convergence and ran to max_iter (27,011 products at max_iter=3000)."""
    lam = torch.cat([torch.tensor([3.0, 2.0, 1.5], dtype=F64), torch.zeros(37, dtype=F64)])
    op = DenseOperator(torch.diag(lam))
    start = torch.eye(40, dtype=F64)[:, 10:13] if v0 else None
    res = lanczos(op, 3, v0=start, max_iter=20)
    assert res.all_converged and res.n_matvecs <= 20
    torch.testing.assert_close(res.eigenvalues, lam[:3], rtol=1e-10, atol=0)


@pytest.mark.parametrize("method", sorted(SOLVERS))
@pytest.mark.parametrize("criterion, N", [("cross_entropy", 30), ("mse", 30)])
def test_residual_operator_zero_up_to_round_off_converges_at_once(method, criterion, N):
    """With N = 30 or cross-entropy, H − G of a linear model is round-off (~1e-16 ‖H‖), not 0.

    Its products carry the round-off of H v and G v, so the residual floor is set by the terms
    (``LinearCombination.rounding_scale``): every solver accepts the round-off pairs after a
    block or two instead of spending its whole budget (2,349 Lanczos / 1,505 LOBPCG products
    before, then reported unconverged)."""
    problem, theta = linear_model(d=5, N=N, criterion=criterion)
    H = HessianOperator(problem, theta)
    R = residual_operator(H, GaussNewtonOperator(problem, theta))
    V = torch.randn(R.size, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    RV = R.matmat(V)
    assert not torch.equal(RV, torch.zeros_like(RV))  # the premise: not exactly zero
    scale = float(torch.linalg.matrix_norm(H.matmat(V), ord=2) / torch.linalg.matrix_norm(V, 2))
    assert float(RV.abs().max()) < 1e-14 * scale
    R.reset_count()
    which = "LM" if method == "block_power" else "LA"
    res = eigen.eigsh(R, 3, method=method, which=which)
    assert res.all_converged and res.n_matvecs <= 40, res.n_matvecs
    assert float(res.eigenvalues.abs().max()) < 1e-13 * scale
