"""The one result type of every eigensolver, and how solvers report failure.

Every solver in :mod:`eoslab.eigen` returns an :class:`EigResult`: Ritz values and vectors,
the residual norm of every pair computed from the solver's final products, convergence flags,
and the number of operator applications used — the solver contract of ``docs/methods.md``
§6.1.

A solver that stops before all requested pairs converged returns the flags ``False`` for the
pairs that failed *and* emits :class:`NonConvergenceWarning`; :meth:`EigResult.require_converged`
turns that into a :class:`ConvergenceError` for callers that cannot use a partial answer.

A tolerance below what the operator's dtype can deliver (the residual floor of
:func:`eoslab.eigen._ortho.threshold`, 128 ε_mach relative to the largest |θ|) is raised to
that floor; the solver warns once per process with :class:`ToleranceFloorWarning` and the
result reports the tolerance actually applied (``tol``) next to the one asked for
(``requested_tol``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

__all__ = ["ConvergenceError", "EigResult", "NonConvergenceWarning", "ToleranceFloorWarning"]


class ConvergenceError(RuntimeError):
    """Raised by :meth:`EigResult.require_converged` when some eigenpair did not converge."""


class NonConvergenceWarning(RuntimeWarning):
    """Emitted whenever a solver returns before every requested eigenpair has converged."""


class ToleranceFloorWarning(RuntimeWarning):
    """Emitted (once per process per method, dtype and tol) when tol is below the dtype's floor.

    The residual test cannot be stricter than 128 ε_mach relative to the largest Ritz value
    (round-off of a computed residual), so tol is raised to that floor, which the result then
    reports as ``EigResult.tol`` (``EigResult.requested_tol`` keeps the requested value).
    """


@dataclass(frozen=True)
class EigResult:
    """Eigenpairs of a symmetric operator A together with their quality.

    Order of the pairs: by the ``which`` criterion, most wanted first:

    - ``'LA'``: algebraically descending, λ_1 ≥ λ_2 ≥ … (the ``docs/architecture.md`` convention);
    - ``'SA'``: algebraically ascending, λ_1 ≤ λ_2 ≤ … (the smallest first);
    - ``'LM'``: descending magnitude, |λ_1| ≥ |λ_2| ≥ … (signs kept).

    Convergence of pair i means (``docs/methods.md`` §6)

        ‖A v_i − λ_i v_i‖₂ ≤ tol · max(|λ_i|, ε_floor),
        ε_floor = (128 ε_mach / tol) · max_j |θ_j|,

    i.e. a relative residual test with an absolute floor of 128 units of round-off of the
    largest Ritz value θ_j the solver saw (the residual of a computed vector cannot be smaller
    than a few ε_mach·‖A‖). By the Bauer–Fike theorem a symmetric A then has an eigenvalue
    within ‖r_i‖ ≤ tol·|λ_i| of λ_i (for pairs above the floor).

    Attributes:
        eigenvalues: [k] Ritz values, in ``which`` order (see above).
        eigenvectors: [P, k] orthonormal Ritz vectors (possibly a transposed view of
            row-major [k, P] storage; never copy it to make it contiguous without need).
        residuals: [k] ‖A v_i − λ_i v_i‖₂ computed from the final block products (for
            LOBPCG the products A V are carried along by the same linear combinations as V,
            so they agree with a fresh product up to round-off accumulated over the run).
        converged: [k] bool tensor, the solver's convergence test per pair.
        n_matvecs: number of operator applications, counted in vectors (a block of m columns
            counts m); equals the increase of ``op.n_applied`` during the call.
        n_iter: iterations of the method (see each solver for what one iteration is).
        method: solver name (a key of :data:`eoslab.eigen.SOLVERS`).
        which: ``'LA'``, ``'SA'`` or ``'LM'``.
        tol: the relative tolerance the flags refer to, as applied: the requested tol, or
            the dtype's floor 128 ε_mach when the request was below it (see
            :class:`ToleranceFloorWarning`).
        requested_tol: the tolerance the caller asked for (equal to ``tol`` unless it was
            below the floor; defaults to ``tol`` when not given).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    residuals: torch.Tensor
    converged: torch.Tensor
    n_matvecs: int
    n_iter: int
    method: str
    which: str
    tol: float
    requested_tol: float | None = None
    # The solver's whole block [P, m] (its first k columns are ``eigenvectors``), kept for
    # warm starts; a view of row-major storage, so handing it back costs no copy.
    _block: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.requested_tol is None:
            object.__setattr__(self, "requested_tol", self.tol)

    @property
    def k(self) -> int:
        """Number of eigenpairs returned."""
        return int(self.eigenvalues.shape[0])

    @property
    def all_converged(self) -> bool:
        """True when every returned pair passed the convergence test."""
        return bool(self.converged.all())

    def require_converged(self) -> EigResult:
        """Return ``self`` if every pair converged, else raise :class:`ConvergenceError`.

        Raises:
            ConvergenceError: naming each failed pair (1-based index), its Ritz value and
                its residual.
        """
        if self.all_converged:
            return self
        bad = (~self.converged).nonzero().flatten().tolist()
        lam = self.eigenvalues.detach().cpu().tolist()
        res = self.residuals.detach().cpu().tolist()
        shown = ", ".join(f"#{i + 1} (λ={lam[i]:.6g}, residual={res[i]:.2e})" for i in bad[:8])
        more = f" and {len(bad) - 8} more" if len(bad) > 8 else ""
        asked = f", requested {self.requested_tol:g}" if self.requested_tol != self.tol else ""
        raise ConvergenceError(
            f"{self.method} (which={self.which!r}, tol={self.tol:g}{asked}) did not converge for "
            f"{len(bad)} of {self.k} eigenpairs after {self.n_iter} iterations and "
            f"{self.n_matvecs} operator applications: {shown}{more}"
        )

    @property
    def warm_start(self) -> torch.Tensor:
        """Vectors to pass as ``v0`` to the next call on a nearby operator, [P, m].

        The k eigenvectors followed by the solver's m − k guard Ritz vectors, if it kept any
        (block solvers keep their whole block: converging the k-th pair needs the guard
        directions too, so handing them back saves iterations). No copy is made.
        """
        return self.eigenvectors if self._block is None else self._block


def make_result(
    *,
    eigenvalues: torch.Tensor,
    eigenvectors: torch.Tensor,
    residuals: torch.Tensor,
    converged: torch.Tensor,
    n_matvecs: int,
    n_iter: int,
    method: str,
    which: str,
    tol: float,
    requested_tol: float | None = None,
    block: torch.Tensor | None = None,
    note: str | None = None,
    stacklevel: int = 3,
) -> EigResult:
    """Build an :class:`EigResult` and warn if any pair failed to converge.

    The single place where solvers hand back results, so that no solver can return an
    unconverged answer silently. ``tol`` is the tolerance applied, ``requested_tol`` the one
    asked for (default: ``tol``). ``note`` (why the solver stopped) is added to the warning.
    """
    result = EigResult(
        eigenvalues=eigenvalues,
        eigenvectors=eigenvectors,
        residuals=residuals,
        converged=converged.to(torch.bool),
        n_matvecs=int(n_matvecs),
        n_iter=int(n_iter),
        method=method,
        which=which,
        tol=float(tol),
        requested_tol=None if requested_tol is None else float(requested_tol),
        _block=block,
    )
    if not result.all_converged:
        n_bad = int((~result.converged).sum())
        worst = float((residuals / eigenvalues.abs().clamp_min(1e-300)).max())
        warnings.warn(
            f"{method}: {n_bad} of {result.k} eigenpairs (which={which!r}) did not converge to "
            f"tol={tol:g} in {n_iter} iterations ({n_matvecs} operator applications); worst "
            f"relative residual {worst:.2e}{'; ' + note if note else ''}. Check "
            f"EigResult.converged or call require_converged().",
            NonConvergenceWarning,
            stacklevel=stacklevel,
        )
    return result
