"""The missed-eigenvalue check shared by the block solvers and ARPACK (``docs/methods.md`` §6).

A solver whose k pairs pass the residual test has found k eigenpairs, but not necessarily
the k *wanted* ones: a single Krylov space holds one vector per eigenspace (ARPACK on
repeated eigenvalues), and a block started from an exactly invariant subspace never sees
the directions outside it (LOBPCG or block power warm-started from eigenvectors 2…k+1).
No residual can show either failure. :func:`find_missed` looks for such an eigenvalue with a
few Lanczos steps on the operator deflated against the converged block,

    A_X = (I − X Xᵀ) A (I − X Xᵀ),   X = [x_1 … x_k] (the converged Ritz vectors),

started from a seeded random vector orthogonal to X, the Krylov vectors kept orthogonal to
X and to each other by two Gram–Schmidt passes (CGS2). Its Ritz values are Rayleigh
quotients of vectors orthogonal to X; if X spans the wanted invariant subspace they stay at
or below λ_{k+1} (by ``which``), so a Ritz value θ' with

    key(θ') > key(θ_k) + thr_k,   key = θ ('LA'), −θ ('SA'), |θ| ('LM'),

(thr_k the k-th pair's residual bound from :func:`~eoslab.eigen._ortho.threshold`) proves
that a wanted eigenvalue was missed: A has an eigenvalue at least as good as θ' outside
span(X). The solver then brings that Ritz vector into its block and iterates again.

The random start has a component along every eigenvector of A_X, so an extreme eigenvalue
of A_X that stands out from the rest of its spectrum (a missed outlier λ_1) separates after
a few steps. If the Krylov space becomes invariant the check is exact and stops early
(after one product for a zero operator). Cost: at most ``steps`` single-vector products,
one host sync each, run once per converged solve (and again after each enrichment).

Detection power: a few Krylov steps resolve an extreme eigenvalue of A_X only to a
fraction of its spectral spread. For Lanczos from a random start on a positive
semi-definite n × n matrix, P(θ'_s < (1 − ε) λ_max) ≤ 1.648 √n e^{−√ε (2s − 1)}
(Kuczyński & Woźniakowski 1992), so s steps guarantee only ε ≈ (ln(1.648 √n / δ) / 2s)²
at failure probability δ. In practice the default 8 steps find a missed λ_1 of a Hessian
and a missing copy of a well separated multiplet (issue 13's spectra), but a missed copy
at the clustered bottom of a linear model's Hessian (next eigenvalue 3 % of the spread
away, P = 120) needed about 16 (Lanczos' own check: 6 of 12 seeds found with 8 steps, 12
of 12 with 16). Raise ``verify_steps`` where the wanted end of the spectrum is clustered.

:func:`~eoslab.eigen.lanczos.lanczos` runs the same check inside its own Krylov basis
(``verify_steps``), where the new vectors join the basis directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from eoslab.eigen._ortho import (
    apply_rows,
    order,
    orthonormal_rows,
    random_rows,
    wanted_key,
)
from eoslab.linalg.base import Operator

__all__ = ["Missed", "find_missed"]


@dataclass(frozen=True)
class Missed:
    """Directions the check found, best first.

    Attributes:
        rows: [q, P] orthonormal Ritz vectors of A_X (orthogonal to the checked block X).
        products: [q, P] their products A·rows (combinations of the check's products; no
            further application of A is needed to use them).
        theta: [q] their Ritz values, each better than the k-th pair by more than thr_k.
    """

    rows: torch.Tensor
    products: torch.Tensor
    theta: torch.Tensor


def find_missed(
    op: Operator,
    Xt: torch.Tensor,
    *,
    key_ref: torch.Tensor | float,
    which: str,
    steps: int,
    gen: torch.Generator,
    max_new: int = 1,
) -> tuple[Missed | None, int]:
    """Lanczos on A deflated against the rows of Xt: a direction better than ``key_ref``?

    Args:
        op: the symmetric operator A.
        Xt: [k, P] orthonormal rows, the converged wanted Ritz vectors.
        key_ref: key(θ_k) + thr_k (see the module docstring), a scalar.
        which: ``'LA'``, ``'SA'`` or ``'LM'``.
        steps: maximal number of Lanczos steps (= products); 0 disables the check.
        gen: the solver's seeded generator (the start vector is drawn from it).
        max_new: at most this many directions are returned.

    Returns:
        (``Missed`` or None when no Ritz value beat ``key_ref``, products used).

    Raises:
        ValueError: if the operator returned non-finite values.
    """
    P, dtype, device = op.size, op.dtype, op.device
    steps = min(int(steps), P - Xt.shape[0])  # A_X acts on a space of dimension P − k
    if steps <= 0:
        return None, 0
    eps = torch.finfo(dtype).eps
    Q = torch.empty(steps + 1, P, dtype=dtype, device=device)  # Krylov rows, orthogonal to X
    AQ = torch.empty(steps, P, dtype=dtype, device=device)  # their products A q_j
    T = torch.zeros(steps, steps, dtype=dtype, device=device)  # upper triangle of Q A Qᵀ
    q = orthonormal_rows(random_rows(1, op, gen), against=Xt)
    if q.shape[0] == 0:  # the random vector lay in span(X) to round-off (k ≈ P)
        return None, 0
    Q[0] = q[0]
    n = 0
    for j in range(steps):
        w = apply_rows(op, Q[j : j + 1])[0]
        AQ[j] = w
        n = j + 1
        Qj = Q[:n]
        h = torch.zeros(n, dtype=dtype, device=device)
        for _ in range(2):  # CGS2 against the Krylov rows and X (deflation)
            c = Qj @ w
            w = w - c @ Qj
            w = w - (Xt @ w) @ Xt
            h += c
        T[:n, j] = h
        beta = torch.linalg.vector_norm(w)
        b, a = torch.stack([beta, torch.linalg.vector_norm(AQ[j])]).tolist()  # the step's sync
        if not math.isfinite(a):
            raise ValueError(
                "the operator returned non-finite values during the missed-eigenvalue check"
            )
        if n == steps or b <= 64 * eps * a:  # done, or the Krylov space is invariant
            break
        Q[n] = w / beta
    Tn = T[:n, :n]
    theta, Y = torch.linalg.eigh(torch.triu(Tn) + torch.triu(Tn, 1).mT)
    idx = order(theta, which)
    theta, Y = theta[idx], Y[:, idx]
    n_better = int((wanted_key(theta, which) > key_ref).sum())  # host sync
    if n_better == 0:
        return None, n
    Yb = Y[:, : min(n_better, max_new)]
    return Missed(rows=Yb.mT @ Q[:n], products=Yb.mT @ AQ[:n], theta=theta[: Yb.shape[1]]), n
