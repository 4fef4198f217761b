"""Lanczos eigensolvers: an own thick-restart Lanczos in torch and ARPACK via SciPy.

``METHODS.md`` §6: "Lanczos (thick-restart or via scipy's ARPACK ``eigsh`` on a
LinearOperator)". Both take the common signature of :mod:`eoslab.eigen` and return an
:class:`~eoslab.eigen.result.EigResult` whose residuals are computed from products with A.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from eoslab.eigen._ortho import (
    apply_rows,
    as_rows,
    check_problem,
    generator,
    order,
    orthonormal_rows,
    random_rows,
    residual_rows,
    sym,
    threshold,
)
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


def _start_vector(op: Operator, v0, k: int, gen: torch.Generator, *, method: str) -> torch.Tensor:
    """Unit start vector [P]: the sum of v0's first k columns, orthonormalised, or noise.

    If the warm vectors x_1..x_j (j ≤ k) span an invariant subspace of A, the Krylov space
    of Σ x_i contains it after j steps (for distinct eigenvalues), so a warm start from the
    previous eigenvectors recovers them after about j products and then refines them.
    Columns beyond k (guard vectors of a block solver) are not used: they are rough Ritz
    vectors whose directions a single Krylov space would first have to resolve.
    """
    v = None
    if v0 is not None:
        Vt = orthonormal_rows(as_rows(v0, op, method=method)[:k])
        if Vt.shape[0]:
            v = Vt.sum(dim=0)
    if v is None:
        v = random_rows(1, op, gen)[0]
    return v / torch.linalg.vector_norm(v)


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
    max_j |θ_j| / tol with the max over all Ritz values seen (``METHODS.md`` §6).

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

    If the Krylov space becomes invariant (β_j ≈ 0) the expansion continues from a seeded
    random vector orthogonal to V.

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
    P, dtype, device = op.size, op.dtype, op.device
    ncv = _check_ncv(ncv, k, P, method=method)
    if not isinstance(verify_steps, int) or isinstance(verify_steps, bool) or verify_steps < 0:
        raise ValueError(
            f"{method}: verify_steps must be a non-negative integer, got {verify_steps!r}"
        )
    n_keep = min(k + (ncv - k) // 2, ncv - 1) if ncv > k else k
    n_guard = max(2, k // 4)
    eps = torch.finfo(dtype).eps
    gen = generator(op, seed)

    Vt = torch.empty(ncv + 1, P, dtype=dtype, device=device)  # basis rows
    AVt = torch.empty(ncv, P, dtype=dtype, device=device)  # their products
    T = torch.zeros(ncv, ncv, dtype=dtype, device=device)  # upper triangle of V A Vᵀ
    Vt[0] = _start_vector(op, v0, k, gen, method=method)
    j = 0  # basis vectors whose products are known; Vt[j] is the next to expand
    n_cycles = 1
    n_matvecs = 0
    complete = False  # basis spans R^P: Ritz pairs are exact
    verify_left = -1  # steps left in the multiplicity check (0: check finished)
    scale = torch.zeros((), dtype=dtype, device=device)  # running max |θ| (≤ ‖A‖)
    key_ref = None
    ref_q, stalled, note = math.inf, 0, None  # stagnation of the product residuals
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
        if norms[0] < norms[1] / 2**0.5:  # DGKS: cancellation, so one more full pass
            h2 = Q @ w
            w = w - h2 @ Q
            h += h2
            beta = torch.linalg.vector_norm(w)
            norms[0] = float(beta)
        T[: j + 1, j] = h
        j += 1
        fresh = False
        if j >= P:  # the basis spans R^P
            beta = torch.zeros((), dtype=dtype, device=device)
            complete = True
        elif norms[0] <= 64 * eps * norms[2]:
            # span(V) is invariant under A: continue from a random direction orthogonal to it
            beta = torch.zeros((), dtype=dtype, device=device)
            Vt[j] = orthonormal_rows(random_rows(1, op, gen), against=Vt[:j])[0]
            fresh = True
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
        thr = threshold(theta[:k], scale, tol, dtype)
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
            if bool((_key(theta[:k], which) > key_ref).any()):
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
            key_ref = _key(theta[:k], which) + thr
            _restart(Vt, AVt, T, Y, theta, j, k)
            Vt[k] = orthonormal_rows(random_rows(1, op, gen), against=Vt[:k])[0]
            j, verify_left = k, steps
            ref_q, stalled = math.inf, 0
            n_cycles += 1
            continue
        if full:  # thick restart, continuing from the residual direction v_{j+1}
            n_cycles += 1
            _restart(Vt, AVt, T, Y, theta, j, n_keep)
            Vt[n_keep] = Vt[j]
            j = n_keep

    return make_result(
        eigenvalues=theta[:k],
        eigenvectors=Xt[:k].T,
        residuals=rnorm,
        converged=conv,
        n_matvecs=n_matvecs,
        n_iter=n_cycles,
        method=method,
        which=which,
        tol=tol,
        block=Xt.T,
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


def _key(theta: torch.Tensor, which: str) -> torch.Tensor:
    """The quantity ``which`` maximises: θ (LA), −θ (SA) or |θ| (LM)."""
    return theta if which == "LA" else (-theta if which == "SA" else theta.abs())


def _restart(Vt, AVt, T, Y, theta, j: int, nk: int) -> None:
    """Keep the nk most wanted Ritz vectors (and products) as the first rows, T ← diag(θ)."""
    Vt[:nk] = Y[:, :nk].mT @ Vt[:j]
    AVt[:nk] = Y[:, :nk].mT @ AVt[:j]
    T.zero_()
    T[:nk, :nk] = torch.diag(theta[:nk])


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
) -> EigResult:
    r"""k eigenpairs with ARPACK's implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``).

    Runs ``eigsh`` on ``to_scipy(op)`` (vectors cross to the host as float64; the operator
    computes in its own dtype and device), then applies A once more to the k returned
    vectors, as one block, to compute the residuals ‖A x_i − λ_i x_i‖ that the result
    reports and tests: pair i has converged when it is ≤ tol · max(|λ_i|, ε_floor),
    ε_floor = 128 ε_mach max_j |λ_j| / tol in op's dtype (``METHODS.md`` §6). ARPACK's own
    test, ‖r_i‖ ≤ tol·|θ_i| on its Lanczos estimates, is given the same tol.

    If ARPACK stops at its restart limit the pairs it did converge are completed to k by a
    Rayleigh–Ritz step on them plus seeded random vectors; those pairs fail the test.

    Args:
        op: symmetric operator on R^P.
        k: number of eigenpairs, 1 ≤ k ≤ P − 1 (ARPACK's limit).
        which: ``'LA'`` (default), ``'SA'`` or ``'LM'``.
        v0: start vectors [P] or [P, j]; ARPACK takes one start vector, the normalised sum
            of the orthonormalised columns (as :func:`lanczos`). Default: seeded noise, so
            the result depends on ``seed`` only.
        tol: relative residual tolerance.
        max_iter: ARPACK's limit on implicit restarts (``maxiter``).
        seed: seed of the start vector.
        ncv: Lanczos basis size, k < ncv ≤ P; default min(max(2k + 1, 20), P).

    Returns:
        :class:`~eoslab.eigen.result.EigResult` with ``method='arpack'``; ``n_matvecs``
        counts ARPACK's products plus the k of the residual block, ``n_iter`` the products
        ARPACK asked for (it does not report its restart count).

    Raises:
        ValueError: for bad k (including k ≥ P), which, tol, max_iter, ncv, or v0.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    method = "arpack"
    k = check_problem(
        op, k, which=which, tol=tol, max_iter=max_iter, method=method, k_max=op.size - 1
    )
    P, dtype, device = op.size, op.dtype, op.device
    ncv = _check_ncv(ncv, k, P, method=method)
    gen = generator(op, seed)
    v_start = _start_vector(op, v0, k, gen, method=method)
    lin = to_scipy(op)
    before = op.n_applied
    try:
        lam_np, vec_np = eigsh(
            lin,
            k=k,
            which=which,
            v0=v_start.detach().to("cpu", torch.float64).numpy(),
            ncv=ncv,
            maxiter=max_iter,
            tol=tol,
        )
    except ArpackNoConvergence as err:
        lam_np, vec_np = err.eigenvalues, err.eigenvectors
    n_arpack = op.n_applied - before

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
    conv = rnorm <= threshold(theta, theta.abs().max(), tol, dtype)
    return make_result(
        eigenvalues=theta,
        eigenvectors=Xt.T,
        residuals=rnorm,
        converged=conv,
        n_matvecs=op.n_applied - before,
        n_iter=n_arpack,
        method=method,
        which=which,
        tol=tol,
    )
