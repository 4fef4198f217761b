"""Block power iteration with QR (``METHODS.md`` §6; Lowell 2024 §7.1)."""

from __future__ import annotations

import torch

from eoslab.eigen._common import (
    apply,
    check_args,
    dense_small,
    order,
    orthonormalize,
    ritz,
    start_block,
)
from eoslab.eigen.result import EigResult, converged_mask, finish
from eoslab.linalg.base import Operator


def block_power(
    op: Operator,
    k: int,
    *,
    which: str = "LM",
    v0: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_iter: int = 1000,
    seed: int = 0,
    block_size: int | None = None,
    shift: float | None = None,
    criterion: str = "residual",
) -> EigResult:
    """Block power iteration V ← orth(A V) with a Rayleigh–Ritz step each iteration.

    Power iteration converges to the eigenvalues of largest magnitude, at rate
    |λ_{m+1}| / |λ_i| per iteration for a block of m. With ``which='LA'`` it runs on
    A + shift·I, which must make the wanted eigenvalues the largest in magnitude: pass
    ``shift`` ≥ |λ_min| (e.g. from a cheap ``'SA'`` solve); without it 'LA' is refused,
    because a negative eigenvalue larger in size than λ_k would be returned instead
    (the situation described in the benchmark problem of the curvature-engine issue).

    Args:
        op: symmetric operator on R^P.
        k: number of eigenpairs.
        which: ``'LM'`` (default) or ``'LA'`` (with ``shift``).
        v0: warm start [P, j] (the paper: 1–3 iterations along a trajectory).
        tol: residual tolerance (see :func:`lobpcg`), or the eigenvalue-change tolerance
            max|ΔΛ| < tol · max|Λ| of Lowell 2024 when ``criterion='eigenvalue_change'``.
        max_iter: iteration limit.
        seed: seed of the random start vectors.
        block_size: m ≥ k; default k + max(2, k // 4).
        shift: σ ≥ 0 added to the diagonal for ``which='LA'``.
        criterion: ``'residual'`` (default) or ``'eigenvalue_change'``.

    Returns:
        :class:`EigResult`; convergence flags always reflect the residual test.
    """
    check_args(op, k, which, tol, allowed=("LM", "LA"))
    if which == "LA" and shift is None:
        raise ValueError(
            "block_power finds the largest |λ|; for which='LA' pass shift >= |λ_min| "
            "(or use lobpcg/lanczos, which find algebraic extremes directly)"
        )
    if criterion not in ("residual", "eigenvalue_change"):
        raise ValueError(f"criterion must be 'residual' or 'eigenvalue_change', got {criterion!r}")
    sigma = float(shift or 0.0)
    m = block_size if block_size is not None else k + max(2, k // 4)
    if m < k:
        raise ValueError(f"block_size must be at least k={k}, got {m}")
    m = min(m, op.size)
    start = op.n_applied
    if 2 * m >= op.size:
        lam, Xt, AXt = dense_small(op, k, which)
        return finish(
            lam=lam,
            Xt=Xt,
            AXt=AXt,
            k=k,
            tol=tol,
            which=which,
            method="block_power",
            n_matvecs=op.n_applied - start,
            n_iter=0,
        )
    Vt = start_block(op, m, v0, seed)
    prev = None
    for it in range(1, max_iter + 1):
        AVt = apply(op, Vt) + sigma * Vt
        theta, C = ritz(Vt, AVt)
        idx = order(theta, "LM")
        theta, C = theta[idx], C[:, idx]
        Xt, AXt = C.T @ Vt, C.T @ AVt
        rn = (AXt[:k] - theta[:k, None] * Xt[:k]).norm(dim=1)
        if criterion == "residual":
            done = bool(converged_mask(theta[:k] - sigma, rn, tol).all())
        else:
            done = prev is not None and bool(
                (theta[:k] - prev).abs().max() < tol * theta[:k].abs().max()
            )
        prev = theta[:k]
        if done or it == max_iter:
            break
        Vt = orthonormalize(AXt)
        if Vt.shape[0] < m:  # the block lost rank: refill with fresh directions
            extra = start_block(op, m - Vt.shape[0], None, seed + it)
            Vt = torch.cat([Vt, orthonormalize(extra, against=Vt)])
    return finish(
        lam=theta - sigma,
        Xt=Xt,
        AXt=AXt - sigma * Xt,
        k=k,
        tol=tol,
        which=which,
        method="block_power",
        n_matvecs=op.n_applied - start,
        n_iter=it,
        basis=Xt,
    )
