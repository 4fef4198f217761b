"""Kernels shared by the eigensolvers (``docs/methods.md`` §6).

Argument checks, start blocks, orthonormalisation, Rayleigh–Ritz ordering, the
convergence test and the tolerance actually applied.

Storage convention: a block of m vectors is kept **row-major as Vt [m, P]** (each vector
contiguous) and handed to operators as the [P, m] view ``Vt.T``. At P in the millions this
makes selecting, appending and overwriting vectors contiguous memory operations, and the
Gram products ``Vt @ Wt.T`` and combinations ``C @ Vt`` are plain matmuls that BLAS reads
without copies (see ``docs/design-notes.md``).
"""

from __future__ import annotations

import operator as _operator
import warnings
from dataclasses import dataclass

import torch

from eoslab.eigen.result import ToleranceFloorWarning
from eoslab.linalg.base import Operator

WHICH = ("LA", "SA", "LM")
_WHICH_WORDS = {"LA": "largest algebraic", "SA": "smallest algebraic", "LM": "largest magnitude"}

#: Absolute floor of the convergence test in units of round-off of max_j |θ_j|.
FLOOR_ULPS = 128.0


def check_problem(
    op: Operator,
    k: int,
    *,
    which: str,
    tol: float,
    max_iter: int,
    method: str,
    allowed: tuple[str, ...] = WHICH,
    k_max: int | None = None,
) -> int:
    """Validate the arguments shared by every solver; return k as an int.

    Raises:
        ValueError: naming the offending argument: a non-symmetric or non-float operator,
            k outside 1..k_max (default P), ``which`` not in ``allowed``, tol ≤ 0 or not
            finite, max_iter < 1.
    """
    if not getattr(op, "symmetric", True):
        raise ValueError(f"{method}: the operator must be symmetric (op.symmetric is False)")
    if not op.dtype.is_floating_point:
        raise ValueError(f"{method}: the operator must have a real floating dtype, got {op.dtype}")
    P = op.size
    k_max = P if k_max is None else k_max
    try:
        k = _operator.index(k)
    except TypeError:
        raise ValueError(f"{method}: k must be an integer, got {k!r}") from None
    if not 1 <= k <= k_max:
        limit = "P" if k_max == P else f"{k_max} (= P − {P - k_max})"
        raise ValueError(
            f"{method}: k must satisfy 1 <= k <= {limit} for an operator of size P={P}, got k={k}"
        )
    if which not in allowed:
        known = ", ".join(f"{w!r} ({_WHICH_WORDS[w]})" for w in allowed)
        raise ValueError(f"{method}: which={which!r} is not supported; use one of {known}")
    if not (isinstance(tol, (int, float)) and 0 < float(tol) < float("inf")):
        raise ValueError(f"{method}: tol must be a positive finite number, got {tol!r}")
    try:
        max_iter = _operator.index(max_iter)
    except TypeError:
        raise ValueError(f"{method}: max_iter must be an integer, got {max_iter!r}") from None
    if max_iter < 1:
        raise ValueError(f"{method}: max_iter must be at least 1, got {max_iter}")
    return k


def check_verify_steps(verify_steps: int, *, method: str) -> int:
    """``verify_steps`` (Lanczos steps of the missed-eigenvalue check) if a non-negative int.

    Raises:
        ValueError: otherwise.
    """
    if not isinstance(verify_steps, int) or isinstance(verify_steps, bool) or verify_steps < 0:
        raise ValueError(
            f"{method}: verify_steps must be a non-negative integer, got {verify_steps!r}"
        )
    return verify_steps


#: (method, dtype, tol) already warned about by :func:`applied_tol` in this process.
_FLOOR_WARNED: set[tuple[str, torch.dtype, float]] = set()


def applied_tol(tol: float, dtype: torch.dtype, *, method: str, stacklevel: int = 3) -> float:
    """The relative tolerance a residual test in ``dtype`` can apply: max(tol, 128 ε_mach).

    :func:`threshold` bounds the residual of pair i by max(tol·|θ_i|, 128 ε_mach max_j |θ_j|),
    so for the largest pair no tol below 128 ε_mach (float32: 1.5e-5, float64: 2.8e-14) is
    ever applied, and a smaller request would only be reported, not met. Such a request is
    raised to the floor (which leaves every threshold unchanged) and warned about with
    :class:`~eoslab.eigen.result.ToleranceFloorWarning` once per process per
    (method, dtype, tol).
    """
    tol = float(tol)
    floor = FLOOR_ULPS * torch.finfo(dtype).eps
    if tol >= floor:
        return tol
    key = (method, dtype, tol)
    if key not in _FLOOR_WARNED:
        _FLOOR_WARNED.add(key)
        warnings.warn(
            f"{method}: tol={tol:g} is below what a residual computed in {dtype} can show "
            f"(128 ε_mach = {floor:.3g} relative to the largest eigenvalue); applying "
            f"tol={floor:.3g} instead (EigResult.tol; the request is kept as requested_tol). "
            "Use float64 for a tighter tolerance. Warned once per method, dtype and tol.",
            ToleranceFloorWarning,
            stacklevel=stacklevel,
        )
    return floor


def check_block_size(block_size: int | None, k: int, P: int, *, method: str) -> int:
    """The block size m: ``block_size`` if given (k ≤ m ≤ P), else k + max(2, k // 4) ≤ P.

    Raises:
        ValueError: if ``block_size`` is not an integer in k..P.
    """
    if block_size is None:
        return min(k + max(2, k // 4), P)
    try:
        m = _operator.index(block_size)
    except TypeError:
        raise ValueError(f"{method}: block_size must be an integer, got {block_size!r}") from None
    if not k <= m <= P:
        raise ValueError(f"{method}: block_size must satisfy k={k} <= block_size <= P={P}, got {m}")
    return m


def as_rows(v0: torch.Tensor, op: Operator, *, method: str) -> torch.Tensor:
    """Start vectors ``v0`` ([P] or [P, j]) as contiguous rows [j, P] in op's dtype/device.

    Raises:
        ValueError: if ``v0`` does not have P rows or has non-finite entries.
    """
    v0 = torch.as_tensor(v0)
    if v0.dim() == 1:
        v0 = v0[:, None]
    if v0.dim() != 2 or v0.shape[0] != op.size:
        raise ValueError(
            f"{method}: v0 must have shape [P={op.size}] or [P, j], got {tuple(v0.shape)}"
        )
    Vt = v0.detach().T.to(device=op.device, dtype=op.dtype).contiguous()
    if not bool(torch.isfinite(Vt).all()):
        raise ValueError(f"{method}: v0 contains non-finite entries")
    return Vt


def generator(op: Operator, seed: int) -> torch.Generator:
    """A torch.Generator on op's device seeded with ``seed`` (the only source of randomness)."""
    return torch.Generator(device=op.device).manual_seed(int(seed))


def random_rows(n: int, op: Operator, gen: torch.Generator) -> torch.Tensor:
    """n seeded Gaussian rows [n, P] in op's dtype/device."""
    return torch.randn(n, op.size, generator=gen, dtype=op.dtype, device=op.device)


def apply_rows(op: Operator, Vt: torch.Tensor) -> torch.Tensor:
    """A applied to the rows of Vt [m, P] → contiguous rows [m, P] (one ``op.matmat`` call)."""
    out = op.matmat(Vt.T)
    out_t = out.T
    return out_t if out_t.is_contiguous() else out_t.contiguous()


def sym(G: torch.Tensor) -> torch.Tensor:
    """(G + Gᵀ)/2: removes the round-off asymmetry of a computed symmetric matrix."""
    return (G + G.mT) / 2


def drop_tolerance(dtype: torch.dtype, n: int) -> float:
    """Relative eigenvalue of a scaled Gram matrix below which a direction is round-off."""
    return 10.0 * max(n, 1) * torch.finfo(dtype).eps


def svqb_transform(G: torch.Tensor, *, tau: float) -> torch.Tensor:
    """SVQB (Stathopoulos & Wu 2002; Duersch et al. 2018, Alg. 2) from a Gram matrix.

    With D = diag(G)^{-1/2} and D G D = U diag(e) Uᵀ, the rows T V of
    T = diag(e_kept)^{-1/2} U_keptᵀ D are orthonormal, where directions with
    e < tau · max(e) (numerically dependent) are dropped. T has shape [n', n], n' ≤ n.
    Zero rows of V get weight zero, so they are dropped too.
    """
    d = torch.diagonal(G)
    scale = torch.where(d > 0, d.clamp_min(torch.finfo(G.dtype).tiny).rsqrt(), torch.zeros_like(d))
    e, U = torch.linalg.eigh(sym(G * scale[:, None] * scale[None, :]))
    keep = e > tau * e.max().clamp_min(0)
    n_keep = int(keep.sum())  # host sync: the block's numerical rank
    # eigh sorts ascending, so the kept directions are the last n_keep
    e, U = e[-n_keep:] if n_keep else e[:0], U[:, -n_keep:] if n_keep else U[:, :0]
    return (U * scale[:, None] / e.sqrt()).mT


def orthonormal_rows(
    Vt: torch.Tensor,
    m: int | None = None,
    *,
    against: torch.Tensor | None = None,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """An orthonormal basis (rows) of span(Vt) ⊖ span(against), padded to m rows if asked.

    Two passes of block classical Gram–Schmidt against ``against`` (orthonormal rows) and
    SVQB (:func:`svqb_transform`), i.e. CGS2 with a rank-revealing normalisation; directions
    lost to rank deficiency are replaced by seeded random rows when ``m`` and ``gen`` are
    given. Costs O((n + q) n P) in matmuls, no operator applications. Rows that are
    already orthonormal to within :func:`ortho_limit` (a warm start from a previous result)
    are returned as they are after one Gram product.
    """
    target = Vt.shape[0] if m is None else m
    Q = against
    out = Vt
    if (Q is None or Q.shape[0] == 0) and 0 < Vt.shape[0] == target:
        eye = torch.eye(target, dtype=Vt.dtype, device=Vt.device)
        if float((Vt @ Vt.mT - eye).abs().max()) <= ortho_limit(Vt.dtype, Vt.shape[1]):
            return Vt
    for _attempt in range(4):
        for _ in range(2):
            if Q is not None and Q.shape[0]:
                out = out - (out @ Q.mT) @ Q
            if out.shape[0] == 0:
                break
            out = svqb_transform(out @ out.mT, tau=drop_tolerance(out.dtype, out.shape[0])) @ out
        if out.shape[0] >= target or gen is None or m is None:
            return out[:target]
        # rank-deficient: fill with random directions orthogonal to what we have
        have = out if Q is None else torch.cat([Q, out])
        extra = torch.randn(
            target - out.shape[0], Vt.shape[1], generator=gen, dtype=Vt.dtype, device=Vt.device
        )
        for _ in range(2):
            extra = extra - (extra @ have.mT) @ have
            extra = (
                svqb_transform(extra @ extra.mT, tau=drop_tolerance(Vt.dtype, extra.shape[0]))
                @ extra
            )
        out = torch.cat([out, extra])
    if out.shape[0] < target:
        raise RuntimeError(f"could not build {target} orthonormal vectors in R^{Vt.shape[1]}")
    return out[:target]


def ortho_limit(dtype: torch.dtype, P: int) -> float:
    """Accepted deviation of a computed Gram matrix from I: 1000 ε · max(1, √P / 500).

    A Gram entry of two unit P-vectors carries ~√P ε of round-off itself (float64 at
    P = 2·10⁵ measures ~100 ε), so a stricter test would only measure its own error.
    """
    return 1e3 * torch.finfo(dtype).eps * max(1.0, P**0.5 / 500)


def start_rows(
    op: Operator,
    m: int,
    v0: torch.Tensor | None,
    gen: torch.Generator,
    *,
    method: str,
    guard: int = 0,
) -> tuple[torch.Tensor, int]:
    """Orthonormal start block [m, P]: the columns of ``v0`` first, padded with seeded noise.

    At most m − ``guard`` columns of ``v0`` are used, so a warm start keeps ``guard`` seeded
    random directions in the block: a block spanned by warm vectors alone can be exactly
    invariant and hide a larger eigenvalue from every later step. Dependent or zero columns
    are replaced by random directions too.

    Returns:
        The rows and the number of seeded random rows among them (m when ``v0`` is None).
    """
    Vt = torch.empty(0, op.size, dtype=op.dtype, device=op.device)
    if v0 is not None:
        Vt = as_rows(v0, op, method=method)[: max(m - guard, 0)]
    n_rand = m - Vt.shape[0]
    if n_rand > 0:
        Vt = torch.cat([Vt, random_rows(n_rand, op, gen)])
    return orthonormal_rows(Vt, m, gen=gen), n_rand


def order(theta: torch.Tensor, which: str) -> torch.Tensor:
    """Permutation putting Ritz values in ``which`` order, most wanted first.

    LA: descending θ; SA: ascending θ; LM: descending |θ| (ties broken by the larger θ).
    """
    if which == "LA":
        return torch.argsort(theta, descending=True, stable=True)
    if which == "SA":
        return torch.argsort(theta, stable=True)
    idx = torch.argsort(theta, descending=True, stable=True)
    return idx[torch.argsort(theta[idx].abs(), descending=True, stable=True)]


def wanted_key(theta: torch.Tensor, which: str) -> torch.Tensor:
    """The quantity ``which`` maximises: θ (LA), −θ (SA) or |θ| (LM)."""
    return theta if which == "LA" else (-theta if which == "SA" else theta.abs())


def threshold(
    theta: torch.Tensor,
    scale: torch.Tensor | float,
    tol: float,
    dtype: torch.dtype,
    op: Operator | None = None,
) -> torch.Tensor:
    """Residual bound per pair: tol · max(|θ_i|, ε_floor) with ε_floor = 128 ε_mach max|θ| / tol.

    Equivalently max(tol·|θ_i|, 128 ε_mach · scale), where ``scale`` = max_j |θ_j| over all
    Ritz values the solver has (an estimate of ‖A‖ from below). The floor is the attainable
    accuracy of a residual computed in ``dtype``; it only matters for pairs with
    |θ_i| < 128 ε_mach ‖A‖ / tol (float64, tol = 1e-4: |θ_i| < 2.8e-10 ‖A‖; float32:
    |θ_i| < 0.15 ‖A‖). Measured: LOBPCG in float32 on exact operators stalls at residuals of
    30–100 ε_mach ‖A‖, so a smaller floor would turn attainable answers into failures.
    ``docs/methods.md`` §6; see :class:`~eoslab.eigen.result.EigResult`.

    With ``op`` whose :meth:`~eoslab.linalg.base.Operator.rounding_scale` is known (a
    difference of larger operators, such as H − G), ``scale`` is at least that: its products
    carry the round-off of the terms, so a pair of an operator that is zero up to round-off
    (H − G of a linear model) passes with residuals at that floor instead of never.
    """
    floor = FLOOR_ULPS * torch.finfo(dtype).eps
    scale = torch.as_tensor(scale, dtype=theta.dtype, device=theta.device)
    terms = op.rounding_scale() if op is not None else None
    if terms is not None:
        scale = torch.maximum(scale, terms.to(dtype=theta.dtype, device=theta.device))
    floor = floor * scale
    return torch.maximum(tol * theta.abs(), floor)


def residual_rows(AXt: torch.Tensor, Xt: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Residual rows R = AX − diag(θ) X, [m, P], in one fused pass."""
    return torch.addcmul(AXt, Xt, theta[:, None], value=-1)


@dataclass
class Run:
    """What a solver's iteration hands to :func:`~eoslab.eigen.result.make_result`.

    ``theta`` [k] in ``which`` order, ``Xt`` [≥ k, P] rows (the k eigenvectors, then the
    kept guard vectors), ``rnorm`` and ``conv`` [k], the products and iterations used, and
    why the solver stopped early (or None).
    """

    theta: torch.Tensor
    Xt: torch.Tensor
    rnorm: torch.Tensor
    conv: torch.Tensor
    n_matvecs: int
    n_iter: int
    note: str | None = None

    def result(self, k: int, *, method: str, which: str, tol: float, requested_tol: float):
        """The :class:`~eoslab.eigen.EigResult` of this run (all rows kept for warm starts)."""
        from eoslab.eigen.result import make_result

        return make_result(
            eigenvalues=self.theta,
            eigenvectors=self.Xt[:k].T,
            residuals=self.rnorm,
            converged=self.conv,
            n_matvecs=self.n_matvecs,
            n_iter=self.n_iter,
            method=method,
            which=which,
            tol=tol,
            requested_tol=requested_tol,
            block=self.Xt.T,
            note=self.note,
            stacklevel=4,
        )
