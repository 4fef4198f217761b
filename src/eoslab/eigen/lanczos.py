"""Lanczos eigensolvers: an own thick-restart Lanczos in torch and ARPACK via SciPy.

``docs/methods.md`` §6.3 (thick-restart Lanczos) and §6.4 (ARPACK through a SciPy
LinearOperator). Both take the common signature of :mod:`eoslab.eigen` and return an
:class:`~eoslab.eigen.result.EigResult` whose residuals are computed from products with A.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from eoslab.eigen._ortho import (
    Run,
    applied_tol,
    apply_rows,
    as_rows,
    check_block_size,
    check_problem,
    check_verify_steps,
    generator,
    order,
    orthonormal_rows,
    random_rows,
    residual_rows,
    sym,
    threshold,
    wanted_key,
)
from eoslab.eigen._verify import find_missed
from eoslab.eigen.lobpcg import _lobpcg_solve
from eoslab.eigen.result import EigResult, make_result
from eoslab.linalg.base import Operator
from eoslab.linalg.scipy_adapter import to_scipy

__all__ = ["arpack", "lanczos"]


def _check_ncv(ncv: int | None, k: int, P: int, *, method: str) -> int:
    """Basis size: given (k < ncv ≤ P, or ncv = P when k = P) or min(max(2k + 1, 20), P)."""
    if ncv is None:
        return min(max(2 * k + 1, 20), P)
    if not isinstance(ncv, int) or isinstance(ncv, bool):
        raise ValueError(f"{method}: ncv must be an integer, got {ncv!r}")
    if not (k < ncv <= P or ncv == k == P):
        raise ValueError(f"{method}: ncv must satisfy k={k} < ncv <= P={P}, got {ncv}")
    return ncv


def _start_vector(
    op: Operator, v0, k: int, gen: torch.Generator, *, method: str
) -> tuple[torch.Tensor, bool]:
    """Unit start vector [P]: the sum of v0's first k columns, orthonormalised, or noise.

    If the warm vectors x_1..x_j (j ≤ k) span an invariant subspace of A, the Krylov space
    of Σ x_i contains it after j steps (for distinct eigenvalues), so a warm start from the
    previous eigenvectors recovers them after about j products and then refines them.
    Columns beyond k (guard vectors of a block solver) are not used: they are rough Ritz
    vectors whose directions a single Krylov space would first have to resolve.

    Returns:
        The vector and whether it is seeded noise (no usable ``v0``).
    """
    v = None
    if v0 is not None:
        Vt = orthonormal_rows(as_rows(v0, op, method=method)[:k])
        if Vt.shape[0]:
            v = Vt.sum(dim=0)
    noise = v is None
    if noise:
        v = random_rows(1, op, gen)[0]
    return v / torch.linalg.vector_norm(v), noise


def _zero_rows(op: Operator, Vt: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k orthonormal rows for the eigenvectors of A = 0: Vt's rows padded with seeded noise."""
    pad = random_rows(max(k - Vt.shape[0], 0), op, gen)
    return orthonormal_rows(torch.cat([Vt[:k], pad]), k, gen=gen)


def lanczos(
    op: Operator,
    k: int,
    *,
    which: str = "LA",
    v0: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_iter: int = 300,
    seed: int = 0,
    ncv: int | None = None,
    verify_steps: int = 8,
) -> EigResult:
    r"""k eigenpairs by thick-restart Lanczos with full reorthogonalisation.

    Lanczos builds an orthonormal basis V = [v_1 … v_j] of a Krylov space with

        A V_j = V_j T_j + β_j v_{j+1} e_jᵀ,   T_j = V_jᵀ A V_j,

    and takes Ritz pairs (θ_i, V_j y_i) from T_j = Y diag(θ) Yᵀ; the residual of pair i is
    |β_j e_jᵀ y_i| without a further product. Every new vector is reorthogonalised against
    the whole basis by classical Gram–Schmidt done as matmuls (h = V w, w ← w − Vᵀ h):
    after the three-term recurrence has removed the large components along v_j and v_{j−1},
    one full pass, and a second one whenever it cancelled more than 1 − 1/√2 of the norm
    (the DGKS criterion of "twice is enough", so CGS2 where needed), keep V orthonormal to
    working precision at about half the passes over the basis of plain CGS2; the
    coefficients fill column j of T_j. When the basis reaches ``ncv`` vectors it is
    thick-restarted (Wu & Simon 2000, "Thick-restart Lanczos method for large symmetric
    eigenvalue problems", SIAM J. Matrix Anal. Appl. 22(2)): the l = k + ⌊(ncv − k)/2⌋ most
    wanted Ritz vectors and the residual direction v_{j+1} are kept,

        V ← [V Y_{:, 1..l}, v_{j+1}],   T ← diag(θ_1..θ_l) bordered by the couplings
        s_i = β_j e_jᵀ y_i (filled in by the next step's Gram–Schmidt coefficients),

    and the expansion continues from v_{j+1}. The products A v_i of all basis vectors are
    kept (and rotated with V at a restart), so the returned residuals ‖A x_i − θ_i x_i‖ are
    computed from products, not from the estimate. Convergence is tested after every step
    once the basis has k vectors: pair i has converged when the estimate, and then the
    residual from products, is ≤ tol · max(|θ_i|, ε_floor), ε_floor = 128 ε_mach
    max_j |θ_j| / tol with the max over all Ritz values seen (``docs/methods.md`` §6).

    Rounding floor: the estimate rests on the Lanczos relation, which holds only to the
    operator's own rounding error (in float32 a Hessian product can carry an error near
    1e-4·λ_1 once λ_1 is small). Whenever the estimates are below tolerance the residuals
    are computed from products; if ncv − l such checks in a row (about a restart cycle's
    worth) have not brought the worst residual 10 % below where that run of checks began,
    the solver stops and reports the pairs as not converged, with that reason, instead of
    spending its remaining budget. The count starts again when the wanted pairs change
    (multiplicity check).

    Repeated eigenvalues: a single Krylov space holds one vector of each eigenspace, so
    Lanczos alone finds one copy of a repeated eigenvalue (ARPACK has the same weakness).
    After convergence this solver therefore runs a multiplicity check: it keeps the k
    converged pairs, continues for ``verify_steps`` steps from a seeded random vector
    orthogonal to them, and accepts the result only if no Ritz value better than the k-th
    (by ``which``, beyond its tolerance) appears; otherwise it iterates on, now with the
    missed copy in the basis, and checks again. Eigenvalues that are distinct but much
    closer to each other than to the rest of a dense spectrum can still be missed by any
    Krylov method; :func:`~eoslab.eigen.lobpcg` (a block method) is the safer choice then.

    The check has the detection power of ``verify_steps`` Krylov steps (see
    :mod:`eoslab.eigen._verify`): a missed copy at a clustered end of the spectrum can need
    more (measured: the 'SA' end of a linear model's Hessian, every eigenvalue ×4, k = 6,
    found all copies for 6 of 12 seeds with 8 steps and 12 of 12 with 16).

    If the Krylov space becomes invariant (β_j ≈ 0) the expansion continues from a seeded
    random vector orthogonal to V; the convergence test waits until that vector has been
    expanded, except when the space became invariant right after expanding a random vector
    (an operator of low rank, whose every further random direction lies in its null space:
    waiting there ran to ``max_iter``, 27,011 products for rank 3 in R^40).

    Zero operator: once a product of a seeded random vector is exactly zero and so was
    every product before it, A = 0 almost surely; the solver then returns eigenvalues 0,
    orthonormal vectors, residuals 0, converged, after that product (the first one on a
    cold start; a warm start vector in the null space costs one more).

    Tolerance floor: a tol below 128 ε_mach of op's dtype is raised to it (no stricter
    residual test can be applied), with a :class:`~eoslab.eigen.result.ToleranceFloorWarning`
    once per process; ``EigResult.tol`` is the tolerance applied, ``requested_tol`` the one
    asked for.

    Warm start: the start vector is the normalised sum of the first k orthonormalised
    columns of ``v0``. If they span an invariant subspace the Krylov space contains it
    after as many steps, so previous eigenvectors are recovered after about k products. A
    single Krylov space cannot reuse k vectors the way a block method does: on clustered
    spectra the gain is small, and :func:`~eoslab.eigen.lobpcg` is the solver to warm-start.

    Args:
        op: symmetric operator on R^P (only ``op.matmat`` is called, one vector at a time).
        k: number of eigenpairs, 1 ≤ k ≤ P.
        which: ``'LA'`` (default), ``'SA'`` or ``'LM'``.
        v0: start vectors [P] or [P, j] (see warm start above); default seeded noise.
        tol: relative residual tolerance (see above).
        max_iter: maximum number of restart cycles (each adds ncv − l vectors).
        seed: seed of the random vectors (start, multiplicity check, invariant subspaces).
        ncv: basis size, k < ncv ≤ P; default min(max(2k + 1, 20), P) (ARPACK's rule).
        verify_steps: Lanczos steps of the multiplicity check (0 disables it); default 8.

    Returns:
        :class:`~eoslab.eigen.result.EigResult` with ``method='lanczos'``; ``n_iter`` is
        the number of restart cycles begun (1 if no restart was needed; the multiplicity
        check counts as one), ``n_matvecs`` the number of Lanczos steps. Up to
        max(2, k // 4) further Ritz vectors are kept for ``warm_start``.

    Raises:
        ValueError: for bad k, which, tol, max_iter, ncv, verify_steps, or a v0 without P
            rows.
    """
    method = "lanczos"
    k = check_problem(op, k, which=which, tol=tol, max_iter=max_iter, method=method)
    ncv = _check_ncv(ncv, k, op.size, method=method)
    verify_steps = check_verify_steps(verify_steps, method=method)
    requested_tol, tol = tol, applied_tol(tol, op.dtype, method=method)
    gen = generator(op, seed)
    v_start, noise = _start_vector(op, v0, k, gen, method=method)
    run = _lanczos_solve(
        op,
        k,
        which=which,
        v_start=v_start,
        noise=noise,
        tol=tol,
        max_iter=max_iter,
        gen=gen,
        ncv=ncv,
        verify_steps=verify_steps,
        method=method,
    )
    return run.result(k, method=method, which=which, tol=tol, requested_tol=requested_tol)


def _lanczos_solve(
    op: Operator,
    k: int,
    *,
    which: str,
    v_start: torch.Tensor,
    noise: bool,
    tol: float,
    max_iter: int,
    gen: torch.Generator,
    ncv: int,
    verify_steps: int,
    method: str,
) -> Run:
    """The thick-restart Lanczos iteration of :func:`lanczos` on checked arguments.

    ``v_start`` is the unit start vector, ``noise`` whether it is seeded noise (then an
    exactly zero first product means A = 0).
    """
    P, dtype, device = op.size, op.dtype, op.device
    n_keep = min(k + (ncv - k) // 2, ncv - 1) if ncv > k else k
    n_guard = max(2, k // 4)
    eps = torch.finfo(dtype).eps

    Vt = torch.empty(ncv + 1, P, dtype=dtype, device=device)  # basis rows
    AVt = torch.empty(ncv, P, dtype=dtype, device=device)  # their products
    T = torch.zeros(ncv, ncv, dtype=dtype, device=device)  # upper triangle of V A Vᵀ
    Vt[0] = v_start
    j = 0  # basis vectors whose products are known; Vt[j] is the next to expand
    n_cycles = 1
    n_matvecs = 0
    complete = False  # basis spans R^P: Ritz pairs are exact
    verify_left = -1  # steps left in the multiplicity check (0: check finished)
    scale = torch.zeros((), dtype=dtype, device=device)  # running max |θ| (≤ ‖A‖)
    key_ref = None
    ref_q, stalled, note = math.inf, 0, None  # stagnation of the product residuals
    all_zero = True  # every product so far was exactly zero
    while True:
        # one Lanczos step: expand Vt[j]
        w = apply_rows(op, Vt[j : j + 1])[0]  # [P]
        n_matvecs += 1
        AVt[j] = w
        lo = max(j - 1, 0)
        L = Vt[lo : j + 1]  # v_{j−1}, v_j: the three-term recurrence first
        c = L @ w
        w = w - c @ L
        Q = Vt[: j + 1]
        h = Q @ w  # then full reorthogonalisation against the whole basis
        w_in = torch.linalg.vector_norm(w)
        w = w - h @ Q
        h[lo : j + 1] += c
        beta = torch.linalg.vector_norm(w)
        norms = torch.stack([beta, w_in, torch.linalg.vector_norm(AVt[j])]).tolist()
        if not math.isfinite(norms[2]):
            raise ValueError(
                f"{method}: the operator returned non-finite values (product {n_matvecs}); "
                "is θ finite (a diverged run?)"
            )
        all_zero = all_zero and norms[2] == 0
        if all_zero and noise:  # A applied to a seeded random vector gave exactly 0: A = 0
            zeros = torch.zeros(k, dtype=dtype, device=device)
            return Run(
                theta=zeros,
                Xt=_zero_rows(op, Vt[: j + 1], k, gen),
                rnorm=zeros.clone(),
                conv=torch.ones(k, dtype=torch.bool, device=device),
                n_matvecs=n_matvecs,
                n_iter=n_cycles,
            )
        if norms[0] < norms[1] / 2**0.5:  # DGKS: cancellation, so one more full pass
            h2 = Q @ w
            w = w - h2 @ Q
            h += h2
            beta = torch.linalg.vector_norm(w)
            norms[0] = float(beta)
        T[: j + 1, j] = h
        j += 1
        expanded_noise = noise  # the vector just expanded was a seeded random one
        fresh = noise = False
        if j >= P:  # the basis spans R^P
            beta = torch.zeros((), dtype=dtype, device=device)
            complete = True
        elif norms[0] <= 64 * eps * norms[2]:
            # span(V) is invariant under A: continue from a random direction orthogonal to it.
            # Its Ritz pairs are exact, but a span grown from a start vector can lack wanted
            # eigenvalues, so the new direction is expanded before the next convergence test
            # (fresh) -- unless the span became invariant on a random direction already: then
            # A maps every direction outside V into span(V) + that direction (e.g. a null
            # space), and waiting would only repeat this forever.
            beta = torch.zeros((), dtype=dtype, device=device)
            Vt[j] = orthonormal_rows(random_rows(1, op, gen), against=Vt[:j])[0]
            fresh, noise = not expanded_noise, True
        else:
            Vt[j] = w / beta

        if j < min(k, P) and not complete:
            continue
        if verify_left > 0:  # multiplicity check under way: expand before looking
            verify_left -= 1
            if j == ncv or complete:
                verify_left = 0
            if verify_left > 0:
                continue
        # Rayleigh–Ritz on the current basis
        Tj = T[:j, :j]
        theta, Y = torch.linalg.eigh(torch.triu(Tj) + torch.triu(Tj, 1).mT)
        idx = order(theta, which)
        theta, Y = theta[idx], Y[:, idx]
        scale = torch.maximum(scale, theta.abs().max())
        thr = threshold(theta[:k], scale, tol, dtype, op)
        est = (beta * Y[j - 1, :k]).abs()
        full = j == ncv
        out_of_budget = full and n_cycles >= max_iter
        done = False
        if complete or out_of_budget or (not fresh and bool((est <= thr).all())):
            Xt = Y[:, : min(k + n_guard, j)].mT @ Vt[:j]
            AXt = Y[:, :k].mT @ AVt[:j]
            rnorm = torch.linalg.vector_norm(residual_rows(AXt, Xt[:k], theta[:k]), dim=1)
            conv = rnorm <= thr
            if complete or out_of_budget:
                break
            done = bool(conv.all())
            if not done:
                # The estimates say converged but the residuals from products do not: the
                # Lanczos relation holds only to the operator's rounding error. Stop once a
                # whole cycle of such checks has not reduced the worst residual by 10 %.
                q = float((rnorm / thr).max())
                ref_q, stalled = _stall_step(q, ref_q=ref_q, stalled=stalled)
                if stalled >= ncv - n_keep:
                    note = (
                        f"the residuals from products stopped decreasing at {q:.3g} × tol while "
                        f"the Lanczos estimates are below tol: the operator's own rounding "
                        f"error (float32?) sets this floor; loosen tol or use float64"
                    )
                    break
        if verify_left == 0:  # the multiplicity check has just finished
            if bool((wanted_key(theta[:k], which) > key_ref).any()):
                verify_left = -1  # it found a missed eigenvalue: converge, then check again
                ref_q, stalled = math.inf, 0  # the wanted pairs changed
            elif done:
                break
        elif done and verify_steps == 0:
            break
        if done and verify_left < 0:
            # Multiplicity check: keep the k converged pairs and continue from a random
            # direction orthogonal to them. A copy of a wanted eigenvalue that the Krylov
            # space missed shows up as a new Ritz value better than the k-th.
            steps = min(verify_steps, ncv - k)
            key_ref = wanted_key(theta[:k], which) + thr
            _restart(Vt, AVt, T, Y, theta, j, k)
            Vt[k] = orthonormal_rows(random_rows(1, op, gen), against=Vt[:k])[0]
            j, verify_left, noise = k, steps, True
            ref_q, stalled = math.inf, 0
            n_cycles += 1
            continue
        if full:  # thick restart, continuing from the residual direction v_{j+1}
            n_cycles += 1
            _restart(Vt, AVt, T, Y, theta, j, n_keep)
            Vt[n_keep] = Vt[j]
            j = n_keep

    return Run(
        theta=theta[:k],
        Xt=Xt,
        rnorm=rnorm,
        conv=conv,
        n_matvecs=n_matvecs,
        n_iter=n_cycles,
        note=note,
    )


def _stall_step(q: float, *, ref_q: float, stalled: int) -> tuple[float, int]:
    """One check of the stall rule: ``(ref_q, stalled)`` after a worst residual ratio q.

    A check that brings q 10 % below the window's reference ``ref_q`` starts a new window
    (reference q, count 0); any other check adds one to the count.
    """
    if q <= 0.9 * ref_q:
        return q, 0
    return ref_q, stalled + 1


def _restart(Vt, AVt, T, Y, theta, j: int, nk: int) -> None:
    """Keep the nk most wanted Ritz vectors (and products) as the first rows, T ← diag(θ)."""
    Vt[:nk] = Y[:, :nk].mT @ Vt[:j]
    AVt[:nk] = Y[:, :nk].mT @ AVt[:j]
    T.zero_()
    T[:nk, :nk] = torch.diag(theta[:nk])


class _ZeroProduct(Exception):
    """Raised inside ARPACK when its first product is exactly zero, to stop it there."""


def _watch_first_product(lin):
    """The SciPy operator ``lin`` whose first product raises :class:`_ZeroProduct` if zero.

    The check reads the product ARPACK asked for (already a host array), so it costs no
    operator application and no device sync of its own.
    """
    from scipy.sparse.linalg import LinearOperator

    seen = False

    def apply(X):
        nonlocal seen
        out = lin.matvec(X) if np.ndim(X) == 1 else lin.matmat(X)
        if not seen:
            seen = True
            if not np.any(out):
                raise _ZeroProduct
        return out

    return LinearOperator(shape=lin.shape, matvec=apply, matmat=apply, dtype=lin.dtype)


def arpack(
    op: Operator,
    k: int,
    *,
    which: str = "LA",
    v0: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_iter: int = 1000,
    seed: int = 0,
    ncv: int | None = None,
    verify_steps: int = 8,
) -> EigResult:
    r"""k eigenpairs with ARPACK's implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``).

    Runs ``eigsh`` on ``to_scipy(op)`` (vectors cross to the host as float64; the operator
    computes in its own dtype and device), then applies A once more to the k returned
    vectors, as one block, to compute the residuals ‖A x_i − λ_i x_i‖ that the result
    reports and tests: pair i has converged when it is ≤ tol · max(|λ_i|, ε_floor),
    ε_floor = 128 ε_mach max_j |λ_j| / tol in op's dtype (``docs/methods.md`` §6). ARPACK's own
    test, ‖r_i‖ ≤ tol·|θ_i| on its Lanczos estimates, is given the same tol.

    If ARPACK stops at its restart limit the pairs it did converge are completed to k by a
    Rayleigh–Ritz step on them plus seeded random vectors; those pairs fail the test.

    Missed-eigenvalue check: a single Krylov space holds one vector of each eigenspace, so
    on exactly repeated eigenvalues ARPACK returns converged pairs that are not the k
    wanted ones (e.g. two copies each of the top three eigenvalues when the largest has
    multiplicity 4), and no residual shows it. Once all k pairs pass the test,
    ``verify_steps`` Lanczos steps on (I − XXᵀ) A (I − XXᵀ), X the k returned vectors, from
    a seeded random vector orthogonal to X (:func:`eoslab.eigen._verify.find_missed`) look
    for a Ritz value θ' better than θ_k by more than the k-th residual bound thr_k
    (θ' > θ_k + thr_k for ``'LA'``, θ' < θ_k − thr_k for ``'SA'``, |θ'| > |θ_k| + thr_k for
    ``'LM'``). If one appears, the solve continues with a method that holds repeated
    eigenvalues and runs the same check when it converges, and returns its answer:
    :func:`~eoslab.eigen.lobpcg` (``'LA'``, ``'SA'``; a block of m = k + max(2, k // 4)
    holds up to m copies) started from the found directions padded with seeded noise, or for
    ``'LM'`` :func:`lanczos` (with its multiplicity check) from their sum plus noise.
    ARPACK's own vectors are not reused: they span a Krylov space that systematically lacks
    the missed copies, and a block started from them converges before its noise brings the
    copies in (measured on a linear model's Hessian, 'SA', 12 seeds: 6 right from ARPACK's
    vectors, 12 from the found directions and noise, for about the cost of a cold LOBPCG
    solve). Cost when nothing was missed: at most ``verify_steps`` products.

    Zero operator: ARPACK's first product is watched; if it is exactly zero and the start
    vector was seeded noise, A = 0 almost surely and the result (eigenvalues 0, orthonormal
    vectors, residuals 0, converged) is returned after that one product. A warm start
    vector in the null space of A instead restarts ARPACK once from seeded noise.

    Tolerance floor: a tol below 128 ε_mach of op's dtype is raised to it (for ARPACK's
    own test too), with a :class:`~eoslab.eigen.result.ToleranceFloorWarning` once per
    process; ``EigResult.tol`` is the tolerance applied, ``requested_tol`` the one asked for.

    Args:
        op: symmetric operator on R^P.
        k: number of eigenpairs, 1 ≤ k ≤ P − 1 (ARPACK's limit).
        which: ``'LA'`` (default), ``'SA'`` or ``'LM'``.
        v0: start vectors [P] or [P, j]; ARPACK takes one start vector, the normalised sum
            of the orthonormalised columns (as :func:`lanczos`). Default: seeded noise, so
            the result depends on ``seed`` only.
        tol: relative residual tolerance.
        max_iter: ARPACK's limit on implicit restarts (``maxiter``); also the iteration
            limit of a continuation.
        seed: seed of the start vector and of the check.
        ncv: Lanczos basis size, k < ncv ≤ P; default min(max(2k + 1, 20), P).
        verify_steps: Lanczos steps of the missed-eigenvalue check (0 disables it); default
            8.

    Returns:
        :class:`~eoslab.eigen.result.EigResult` with ``method='arpack'``; ``n_matvecs``
        counts ARPACK's products, the k of the residual block, the check's and those of a
        continuation; ``n_iter`` the products ARPACK asked for (it does not report its
        restart count) plus the continuation's iterations (LOBPCG) or restart cycles
        (Lanczos), if there was one.

    Raises:
        ValueError: for bad k (including k ≥ P), which, tol, max_iter, ncv, verify_steps, or
            v0.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    method = "arpack"
    k = check_problem(
        op, k, which=which, tol=tol, max_iter=max_iter, method=method, k_max=op.size - 1
    )
    P, dtype, device = op.size, op.dtype, op.device
    ncv = _check_ncv(ncv, k, P, method=method)
    verify_steps = check_verify_steps(verify_steps, method=method)
    requested_tol, tol = tol, applied_tol(tol, dtype, method=method)
    gen = generator(op, seed)
    v_start, noise = _start_vector(op, v0, k, gen, method=method)
    before = op.n_applied
    names = dict(method=method, which=which, tol=tol, requested_tol=requested_tol)
    while True:
        try:
            lam_np, vec_np = eigsh(
                _watch_first_product(to_scipy(op)),
                k=k,
                which=which,
                v0=v_start.detach().to("cpu", torch.float64).numpy(),
                ncv=ncv,
                maxiter=max_iter,
                tol=tol,
            )
        except ArpackNoConvergence as err:
            lam_np, vec_np = err.eigenvalues, err.eigenvectors
        except _ZeroProduct:
            if noise:  # A times a seeded random vector is exactly 0: A = 0
                zeros = torch.zeros(k, dtype=dtype, device=device)
                return make_result(
                    eigenvalues=zeros,
                    eigenvectors=_zero_rows(op, v_start[None], k, gen).T,
                    residuals=zeros.clone(),
                    converged=torch.ones(k, dtype=torch.bool, device=device),
                    n_matvecs=op.n_applied - before,
                    n_iter=op.n_applied - before,
                    **names,
                )
            v_start, noise = _start_vector(op, None, k, gen, method=method)  # v0 ⊂ null(A)
            continue
        break
    n_iter = op.n_applied - before

    Xt = torch.as_tensor(np.ascontiguousarray(vec_np.T), device=device).to(dtype)  # [k', P]
    if Xt.shape[0] < k:  # ARPACK gave up: complete the block, the extra pairs stay unconverged
        Xt = orthonormal_rows(torch.cat([Xt, random_rows(k - Xt.shape[0], op, gen)]), k, gen=gen)
        AXt = apply_rows(op, Xt)
        theta, Y = torch.linalg.eigh(sym(Xt @ AXt.mT))
        Xt, AXt = Y.mT @ Xt, Y.mT @ AXt
    else:
        theta = torch.as_tensor(lam_np, device=device).to(dtype)
        AXt = apply_rows(op, Xt)
    idx = order(theta, which)
    theta, Xt, AXt = theta[idx], Xt[idx], AXt[idx]
    rnorm = torch.linalg.vector_norm(residual_rows(AXt, Xt, theta), dim=1)
    thr = threshold(theta, theta.abs().max(), tol, dtype, op)
    conv = rnorm <= thr
    note = None
    if verify_steps and bool(conv.all()):
        found, _ = find_missed(
            op,
            Xt,
            key_ref=wanted_key(theta[k - 1], which) + thr[k - 1],
            which=which,
            steps=verify_steps,
            gen=gen,
            max_new=k,
        )
        if found is not None:
            # Continue, from the found directions and seeded noise, with a method that can
            # hold repeated eigenvalues. ARPACK's vectors are not reused: they span a Krylov
            # space that systematically lacks the missed copies, and a block started from
            # them converges before its noise has brought those copies in.
            if which == "LM":  # LOBPCG has no 'LM': thick-restart Lanczos (own check)
                start = found.rows.sum(dim=0)
                start = (
                    start / torch.linalg.vector_norm(start)
                    + _start_vector(op, None, k, gen, method=method)[0]
                )
                run = _lanczos_solve(
                    op,
                    k,
                    which=which,
                    v_start=start / torch.linalg.vector_norm(start),
                    noise=False,
                    tol=tol,
                    max_iter=max_iter,
                    gen=gen,
                    ncv=ncv,
                    verify_steps=verify_steps,
                    method=method,
                )
            else:
                run = _lobpcg_solve(
                    op,
                    k,
                    which=which,
                    v0=found.rows.T,
                    tol=tol,
                    max_iter=max_iter,
                    gen=gen,
                    m=check_block_size(None, k, P, method=method),
                    verify_steps=verify_steps,
                    method=method,
                )
            theta, Xt, rnorm, conv, note = run.theta, run.Xt[:k], run.rnorm, run.conv, run.note
            n_iter += run.n_iter
    return make_result(
        eigenvalues=theta,
        eigenvectors=Xt.T,
        residuals=rnorm,
        converged=conv,
        n_matvecs=op.n_applied - before,
        n_iter=n_iter,
        note=note,
        **names,
    )
