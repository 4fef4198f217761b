"""Thick-restart Lanczos (Wu & Simon 2000) and ARPACK, ``METHODS.md`` §6.

Both find eigenpairs at one end of the spectrum (``'LA'``, ``'SA'``) or of largest magnitude
(``'LM'``) from single-vector Krylov spaces. Lanczos keeps the whole basis V [ncv, P] and
its products AV, re-orthogonalises every new vector against the basis with matmuls
(classical Gram–Schmidt with the DGKS second pass), and restarts by keeping the best Ritz
vectors ("thick" restart). Keeping AV makes the
reported residuals exact products rather than estimates, at 2·ncv·P memory.
"""

from __future__ import annotations

import numpy as np
import torch

from eoslab.eigen._common import apply, check_args, dense_small, order, start_block
from eoslab.eigen.result import EigResult, converged_mask, finish
from eoslab.linalg.base import Operator


def lanczos(
    op: Operator,
    k: int,
    *,
    which: str = "LA",
    v0: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_iter: int = 100,
    seed: int = 0,
    ncv: int | None = None,
) -> EigResult:
    """Thick-restart Lanczos with full re-orthogonalisation.

    Args:
        op: symmetric operator on R^P.
        k: number of eigenpairs.
        which: ``'LA'``, ``'SA'`` or ``'LM'``.
        v0: warm start [P, j] (e.g. a previous ``warm_start``). The Krylov space grows
            from the sum of its columns, which contains each of their directions.
        tol: pair i has converged when ‖A v_i − λ_i v_i‖ ≤ tol · |λ_i|.
        max_iter: maximum number of restarts.
        seed: seed of the random start vector.
        ncv: basis size before a restart; default max(2k + 1, k + 20), at most P.

    Returns:
        :class:`EigResult`.
    """
    check_args(op, k, which, tol)
    P = op.size
    ncv = min(ncv or max(2 * k + 1, k + 20), P)
    start = op.n_applied
    if ncv <= k + 2 or P <= 3 * ncv // 2:
        lam, Xt, AXt = dense_small(op, k, which)
        return finish(
            lam=lam,
            Xt=Xt,
            AXt=AXt,
            k=k,
            tol=tol,
            which=which,
            method="lanczos",
            n_matvecs=op.n_applied - start,
            n_iter=0,
        )
    g = torch.Generator(device=op.device).manual_seed(int(seed) + 1)
    V = torch.zeros(ncv + 1, P, dtype=op.dtype, device=op.device)
    AV = torch.zeros(ncv, P, dtype=op.dtype, device=op.device)
    T = torch.zeros(ncv, ncv, dtype=op.dtype, device=op.device)
    j0 = 0  # basis vectors whose products are known at the start of a cycle
    if v0 is not None:
        # warm start: a Krylov space grown from the sum of the previous vectors contains
        # each of their directions; the thick-restart structure A V = V T + β v eᵀ holds
        v0 = torch.as_tensor(v0, device=op.device).to(op.dtype).reshape(P, -1)
        V[0] = start_block(op, 1, v0.sum(1), seed)[0]
    else:
        V[0] = start_block(op, 1, None, seed)[0]
    keep = min(k + (ncv - k) // 2, ncv - 1)
    stride = max(1, (ncv - k) // 8)
    done = False
    for it in range(1, max_iter + 1):
        for j in range(j0, ncv):
            w = apply(op, V[j : j + 1])[0]
            AV[j] = w
            # CGS with a DGKS test (as ARPACK): a second pass only when the first removed
            # more than 1 − 1/√2 of the norm. At P in the millions each pass reads the
            # whole basis, which costs as much as a Hessian-vector product.
            # The three-term part (v_j, v_{j−1}) goes first, cheaply, so the full pass only
            # removes round-off and the DGKS test then nearly always skips the second pass.
            lo = max(0, j - 1)
            h = torch.zeros(j + 1, dtype=w.dtype, device=w.device)
            h[lo:] = V[lo : j + 1] @ w
            w = w - h[lo:] @ V[lo : j + 1]
            wnorm = w.norm()
            h1 = V[: j + 1] @ w
            w = w - h1 @ V[: j + 1]
            h = h + h1
            beta = w.norm()
            if float(beta) < 0.7071 * float(wnorm):
                h2 = V[: j + 1] @ w
                w = w - h2 @ V[: j + 1]
                h = h + h2
                beta = w.norm()
            T[: j + 1, j] = h
            T[j, : j + 1] = h
            if float(beta) <= torch.finfo(op.dtype).eps * float(h.abs().max().clamp_min(1e-300)):
                # invariant subspace found: continue from a fresh orthogonal direction
                w = torch.randn(P, generator=g, dtype=op.dtype, device=op.device)
                for _ in range(2):
                    w = w - (V[: j + 1] @ w) @ V[: j + 1]
                beta = torch.zeros((), dtype=op.dtype, device=op.device)
                V[j + 1] = w / w.norm()
            else:
                V[j + 1] = w / beta
            if j + 1 < ncv:
                T[j + 1, j] = T[j, j + 1] = beta
            if j + 1 >= k and j + 1 < ncv and (j + 1 - k) % stride == 0:
                # cheap mid-cycle test: Ritz residual estimates |β_j y_{j,i}| from T alone
                th, Yj = torch.linalg.eigh(T[: j + 1, : j + 1])
                idx = order(th, which)[:k]
                est = beta.abs() * Yj[j, idx].abs()
                if bool(converged_mask(th[idx], est, tol / 2).all()):
                    Xt = Yj[:, idx].T @ V[: j + 1]
                    AXt = Yj[:, idx].T @ AV[: j + 1]
                    theta = th[idx]
                    rn = (AXt - theta[:, None] * Xt).norm(dim=1)
                    if bool(converged_mask(theta, rn, tol).all()):
                        done = True
                        break
        if done:
            break
        theta, Y = torch.linalg.eigh((T + T.T) / 2)
        idx = order(theta, which)
        theta, Y = theta[idx], Y[:, idx]
        # residual of Ritz pair i is |β_m y_{m,i}|, exact in exact arithmetic; check with
        # true products (AV is stored) on the k wanted pairs
        Xt = Y[:, :k].T @ V[:ncv]
        AXt = Y[:, :k].T @ AV
        rn = (AXt - theta[:k, None] * Xt).norm(dim=1)
        if bool(converged_mask(theta[:k], rn, tol).all()) or it == max_iter:
            break
        # thick restart: keep the best `keep` Ritz vectors, continue from v_{m+1}
        Yk = Y[:, :keep]
        V[:keep] = Yk.T @ V[:ncv]
        AV[:keep] = Yk.T @ AV
        V[keep] = V[ncv]
        T.zero_()
        T[:keep, :keep] = torch.diag(theta[:keep])
        # coupling of v_{m+1} to the kept vectors: ⟨v_{m+1}, A y_i⟩ = β_m y_{m,i}
        s = V[keep] @ AV[:keep].T
        T[keep, :keep] = s
        T[:keep, keep] = s
        j0 = keep
    return finish(
        lam=theta,
        Xt=Xt,
        AXt=AXt,
        k=k,
        tol=tol,
        which=which,
        method="lanczos",
        n_matvecs=op.n_applied - start,
        n_iter=it,
    )


def arpack(
    op: Operator,
    k: int,
    *,
    which: str = "LA",
    v0: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_iter: int | None = None,
    seed: int = 0,
    ncv: int | None = None,
) -> EigResult:
    """ARPACK's implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``) on the operator.

    ARPACK's own stopping rule is on Ritz estimates; the residuals reported here are
    recomputed with one block product of the returned vectors (counted in ``n_matvecs``),
    and convergence is judged on them with the same rule as the other solvers.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    from eoslab.linalg.scipy_adapter import to_scipy

    check_args(op, k, which, tol)
    P = op.size
    start = op.n_applied
    if k >= P - 1:
        lam, Xt, AXt = dense_small(op, k, which)
        return finish(
            lam=lam,
            Xt=Xt,
            AXt=AXt,
            k=k,
            tol=tol,
            which=which,
            method="arpack",
            n_matvecs=op.n_applied - start,
            n_iter=0,
        )
    rng = np.random.default_rng(seed)
    start_vec = (
        torch.as_tensor(v0).reshape(P, -1).sum(1).double().cpu().numpy()
        if v0 is not None
        else rng.standard_normal(P)
    )
    try:
        vals, vecs = eigsh(
            to_scipy(op),
            k=k,
            which=which,
            v0=start_vec,
            tol=tol * 1e-2,
            maxiter=max_iter,
            ncv=ncv,
        )
    except ArpackNoConvergence as err:
        vals, vecs = err.eigenvalues, err.eigenvectors
    lam = torch.as_tensor(vals, device=op.device).to(op.dtype)
    Xt = torch.as_tensor(vecs.T.copy(), device=op.device).to(op.dtype)
    idx = order(lam, which)
    lam, Xt = lam[idx], Xt[idx]
    if lam.shape[0] < k:  # ARPACK returned fewer converged pairs: pad as unconverged
        pad = k - lam.shape[0]
        lam = torch.cat([lam, torch.full((pad,), float("nan"), dtype=lam.dtype, device=lam.device)])
        Xt = torch.cat([Xt, torch.zeros(pad, P, dtype=Xt.dtype, device=Xt.device)])
    AXt = op.matmat(Xt.T).T
    return finish(
        lam=lam,
        Xt=Xt,
        AXt=AXt,
        k=k,
        tol=tol,
        which=which,
        method="arpack",
        n_matvecs=op.n_applied - start,
        n_iter=0,
    )
