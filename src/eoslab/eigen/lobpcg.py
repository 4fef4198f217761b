"""Matrix-free LOBPCG (``METHODS.md`` §6), the block solver of eoslab.

Locally optimal block preconditioned conjugate gradient (Knyazev 2001) without a
preconditioner, in the robust form of Duersch, Shao, Yang & Gu (2018): each iteration does
a Rayleigh–Ritz step on the span of the current block X, the residuals W = AX − XΛ of the
pairs that have not converged, and the previous search directions P:

    S = orth([X, W, P]),   S A Sᵀ = C Θ Cᵀ,   X ← Cᵀ_{:m} S,   P ← (C_{:m} on the W,P part)ᵀ S.

``torch.lobpcg`` needs an explicit (dense or sparse) matrix; this one only calls
``op.matmat``. Choices that keep it fast at P in the millions:

- guard vectors: the block has m = k + guard columns; only the first k must converge.
- soft locking: converged pairs stay in X (so the others remain orthogonal to them) but
  leave the residual block, so the operator is applied only to residuals still needed.
- AX and AP are updated by the same linear combinations as X and P; A is never re-applied
  to them. Each iteration costs |W| products plus O(|S|² P) matmul work.
- orthonormalisation by two SVQB passes (rank-revealing, never breaks down); P is dropped
  (a restart) when it has become linearly dependent on [X, W].
"""

from __future__ import annotations

import torch

from eoslab.eigen._common import apply, check_args, dense_small, orthonormalize, ritz, start_block
from eoslab.eigen.result import EigResult, converged_mask, finish
from eoslab.linalg.base import Operator


def lobpcg(
    op: Operator,
    k: int,
    *,
    which: str = "LA",
    v0: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_iter: int = 200,
    seed: int = 0,
    block_size: int | None = None,
) -> EigResult:
    """The k algebraically largest (or smallest) eigenpairs of a symmetric operator.

    Args:
        op: symmetric operator on R^P.
        k: number of eigenpairs.
        which: ``'LA'`` (largest algebraic, default) or ``'SA'`` (smallest algebraic).
            ``'LM'`` is not a Rayleigh-quotient extremum; use :func:`block_power` or
            :func:`lanczos` for it.
        v0: start vectors [P, j] (e.g. the previous result's ``warm_start``); padded with
            seeded random vectors up to the block size.
        tol: pair i has converged when ‖A v_i − λ_i v_i‖ ≤ tol · |λ_i|, which bounds the
            eigenvalue error by tol · |λ_i| (Bauer–Fike).
        max_iter: iteration limit; stopping there returns unconverged flags and warns.
        seed: seed of the random start vectors.
        block_size: m ≥ k; default k + max(3, k // 4).

    Returns:
        :class:`EigResult` with ``warm_start`` holding all m block vectors.

    Raises:
        ValueError: for k outside 1..P, ``which`` not in {'LA', 'SA'}, or tol ≤ 0.
    """
    check_args(op, k, which, tol, allowed=("LA", "SA"))
    P = op.size
    m = block_size if block_size is not None else k + max(3, k // 4)
    if m < k:
        raise ValueError(f"block_size must be at least k={k}, got {m}")
    start = op.n_applied
    sign = 1.0 if which == "LA" else -1.0
    if 3 * m >= P:
        lam, Xt, AXt = dense_small(op, k, which)
        return finish(
            lam=lam,
            Xt=Xt,
            AXt=AXt,
            k=k,
            tol=tol,
            which=which,
            method="lobpcg",
            n_matvecs=op.n_applied - start,
            n_iter=0,
        )

    Xt = start_block(op, m, v0, seed)  # [m, P]
    AXt = apply(op, Xt) * sign
    theta, C = ritz(Xt, AXt)
    C = C.flip(1)  # descending
    theta = theta.flip(0)
    Xt, AXt = C.T @ Xt, C.T @ AXt
    Pt = APt = None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007
        Rt = AXt - theta[:, None] * Xt
        rnorm = Rt.norm(dim=1)
        conv = converged_mask(theta[:k], rnorm[:k], tol)
        if bool(conv.all()):
            break
        active = torch.cat([~conv, torch.ones(m - k, dtype=torch.bool, device=conv.device)])
        Wt = orthonormalize(Rt[active], against=Xt)
        if Wt.shape[0] == 0:
            break  # residuals lie in span(X): nothing left to improve
        AWt = apply(op, Wt) * sign
        blocks, ablocks = [Xt, Wt], [AXt, AWt]
        if Pt is not None:
            Pn, APn = _orth_directions(Pt, APt, blocks, ablocks)
            if Pn.shape[0]:
                blocks.append(Pn)
                ablocks.append(APn)
        # Gram matrices block by block: concatenating [X, W, P] would copy 3m long rows
        T, B = _gram(blocks, ablocks)
        ev, Cfull = _gen_eigh(T, B)
        theta = ev[:m]
        C = Cfull[:, :m]
        nx = Xt.shape[0]
        # P_new = C_Wᵀ W + C_Pᵀ P and X_new = C_Xᵀ X + P_new (same for the products)
        offs = [0]
        for blk in blocks:
            offs.append(offs[-1] + blk.shape[0])
        Pt = APt = None
        for b in range(1, len(blocks)):
            Cb = C[offs[b] : offs[b + 1]].T
            Pt = Cb @ blocks[b] if Pt is None else Pt.addmm_(Cb, blocks[b])
            APt = Cb @ ablocks[b] if APt is None else APt.addmm_(Cb, ablocks[b])
        Xt = torch.addmm(Pt, C[:nx].T, Xt)
        AXt = torch.addmm(APt, C[:nx].T, AXt)
    else:
        n_iter = max_iter
    return finish(
        lam=theta * sign,
        Xt=Xt,
        AXt=AXt * sign,
        k=k,
        tol=tol,
        which=which,
        method="lobpcg",
        n_matvecs=op.n_applied - start,
        n_iter=n_iter,
        basis=Xt,
    )


def _orth_directions(Pt, APt, blocks, ablocks):
    """Orthonormalise directions P against orthonormal blocks, carrying AP along.

    Two Gram–Schmidt passes P ← P − Σ_b c_b S_b (coefficients accumulated, so that
    AP ← AP − Σ_b c_b (A S_b) uses products already known), then SVQB P ← T P with
    T = diag(e)^{-1/2} Uᵀ from the Gram matrix, dropping dependent directions (a partial
    restart). No operator applications.
    """
    coefs = [torch.zeros(Pt.shape[0], S.shape[0], dtype=Pt.dtype, device=Pt.device) for S in blocks]
    P1 = Pt
    for _ in range(2):
        cs = [P1 @ S.T for S in blocks]
        P1 = P1.clone() if P1 is Pt else P1
        for c, S, acc in zip(cs, blocks, coefs):
            P1.addmm_(c, S, alpha=-1)
            acc += c
    AP1 = APt.clone()
    for c, AS in zip(coefs, ablocks):
        AP1.addmm_(c, AS, alpha=-1)
    G = P1 @ P1.T
    e, U = torch.linalg.eigh((G + G.T) / 2)
    keep = e > e.max().clamp_min(0) * 1e3 * torch.finfo(e.dtype).eps
    T = (U[:, keep] / e[keep].sqrt()).T
    return T @ P1, T @ AP1


def _gram(blocks, ablocks):
    """T = S A Sᵀ and B = S Sᵀ for S = [blocks] from the upper block triangle only."""
    sizes = [b.shape[0] for b in blocks]
    n = sum(sizes)
    ref = blocks[0]
    T = torch.empty(n, n, dtype=ref.dtype, device=ref.device)
    B = torch.empty(n, n, dtype=ref.dtype, device=ref.device)
    offs = [0]
    for sz in sizes:
        offs.append(offs[-1] + sz)
    for i, Si in enumerate(blocks):
        ri = slice(offs[i], offs[i + 1])
        for j in range(i, len(blocks)):
            rj = slice(offs[j], offs[j + 1])
            T[ri, rj] = Si @ ablocks[j].T
            B[ri, rj] = Si @ blocks[j].T
            if j != i:
                T[rj, ri] = T[ri, rj].T
                B[rj, ri] = B[ri, rj].T
    return (T + T.T) / 2, (B + B.T) / 2


def _gen_eigh(T: torch.Tensor, B: torch.Tensor):
    """Eigenpairs of the pencil (T, B), descending; B ≈ I after orthonormalisation.

    Solved as the standard problem of L⁻¹ T L⁻ᵀ with B = LLᵀ, which absorbs the small loss
    of orthogonality between the blocks of S that float32 round-off leaves.
    """
    L, info = torch.linalg.cholesky_ex(B)
    if int(info) != 0:
        ev, V = torch.linalg.eigh(T)
        return ev.flip(0), V.flip(1)
    eye = torch.eye(B.shape[0], dtype=B.dtype, device=B.device)
    Linv = torch.linalg.solve_triangular(L, eye, upper=False)
    M = Linv @ T @ Linv.T
    ev, V = torch.linalg.eigh((M + M.T) / 2)
    C = Linv.T @ V
    return ev.flip(0), C.flip(1)
