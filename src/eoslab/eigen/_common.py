"""Shared pieces of the eigensolvers: argument checks, start blocks, orthonormalisation.

Blocks are kept as rows ([m, P], contiguous) and handed to operators as [P, m] views, so
that neither side ever copies a transpose (see ``docs/design-notes.md``).
"""

from __future__ import annotations

import torch

from eoslab.linalg.base import Operator

WHICH = ("LA", "SA", "LM")


def check_args(op: Operator, k: int, which: str, tol: float, allowed=WHICH) -> None:
    """Raise ValueError for k outside 1..P, an unknown ``which`` or a non-positive tol."""
    if not isinstance(k, int) or k < 1 or k > op.size:
        raise ValueError(f"k must be an integer in 1..P={op.size}, got {k!r}")
    if which not in allowed:
        raise ValueError(f"which must be one of {allowed}, got {which!r}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol!r}")


def apply(op: Operator, Xt: torch.Tensor) -> torch.Tensor:
    """A applied to the rows of Xt [m, P] → rows [m, P]."""
    return op.matmat(Xt.T).T.contiguous()


def start_block(op: Operator, m: int, v0: torch.Tensor | None, seed: int) -> torch.Tensor:
    """An orthonormal [m, P] start block: the columns of ``v0`` first, then seeded noise."""
    g = torch.Generator(device=op.device).manual_seed(int(seed))
    Xt = torch.randn(m, op.size, generator=g, dtype=op.dtype, device=op.device)
    if v0 is not None:
        v0 = torch.as_tensor(v0, device=op.device).to(op.dtype)
        if v0.dim() == 1:
            v0 = v0[:, None]
        if v0.shape[0] != op.size:
            raise ValueError(f"v0 must have P={op.size} rows, got {tuple(v0.shape)}")
        n = min(m, v0.shape[1])
        Xt[:n] = v0[:, :n].T
    return orthonormalize(Xt)


def orthonormalize(Wt: torch.Tensor, against: torch.Tensor | None = None, *, passes: int = 2):
    """Orthonormal rows spanning Wt [m, P] (minus ``against`` rows, assumed orthonormal).

    SVQB (Stathopoulos & Wu 2002; Duersch et al. 2018): with G = W Wᵀ = U diag(e) Uᵀ,
    W ← diag(e)^{-1/2} Uᵀ W, dropping directions with e below round-off, so a rank-deficient
    block shrinks instead of blowing up. Two passes, each preceded by block Gram–Schmidt
    against ``against``, give orthogonality to working precision. Cost: O(m² P) in matmuls.
    """
    eps = torch.finfo(Wt.dtype).eps
    for _ in range(passes):
        if against is not None and against.shape[0]:
            Wt = Wt - (Wt @ against.T) @ against
        G = Wt @ Wt.T
        G = (G + G.T) / 2
        e, U = torch.linalg.eigh(G)
        keep = e > e.max().clamp_min(0) * eps * Wt.shape[0] * 10
        if not bool(keep.any()):
            return Wt[:0]
        e, U = e[keep], U[:, keep]
        Wt = (U / e.sqrt()).T @ Wt
    return Wt


def ritz(Xt: torch.Tensor, AXt: torch.Tensor):
    """Rayleigh–Ritz on an orthonormal block: eigh of T = X A Xᵀ (symmetrised)."""
    T = Xt @ AXt.T
    T = (T + T.T) / 2
    return torch.linalg.eigh(T)


def order(lam: torch.Tensor, which: str) -> torch.Tensor:
    """Permutation putting ``lam`` in ``which`` order (LA: descending, SA: ascending, LM: |λ|)."""
    if which == "LA":
        return torch.argsort(lam, descending=True)
    if which == "SA":
        return torch.argsort(lam)
    return torch.argsort(lam.abs(), descending=True)


def dense_small(op: Operator, k: int, which: str):
    """Exact eigenpairs for small P: materialise A (P products) and call eigh.

    Used when the iterative method's subspace would not fit in R^P (e.g. k near P).
    Returns (λ, X rows, AX rows) in ``which`` order.
    """
    A = op.to_dense()
    A = (A + A.T) / 2
    lam, V = torch.linalg.eigh(A)
    idx = order(lam, which)
    lam, Xt = lam[idx], V[:, idx].T.contiguous()
    return lam, Xt, Xt @ A
