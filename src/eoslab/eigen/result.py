"""The one result type of every eigensolver (``METHODS.md`` §6)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch


class ConvergenceError(RuntimeError):
    """Raised by :meth:`EigResult.require_converged` when some pair did not converge."""


class NonConvergenceWarning(RuntimeWarning):
    """Emitted whenever a solver returns before every requested pair has converged."""


@dataclass(frozen=True)
class EigResult:
    """Eigenpairs of a symmetric operator with their quality.

    Attributes:
        eigenvalues: [k], ordered by the ``which`` criterion: descending for ``'LA'``,
            ascending for ``'SA'``, descending |λ| for ``'LM'``.
        eigenvectors: [P, k], orthonormal columns (a view of row-major [k, P] storage).
        residuals: [k], ‖A v_i − λ_i v_i‖₂ from the solver's final products.
        converged: [k] bool, residual_i ≤ tol · max(|λ_i|, floor) (METHODS.md §6).
        n_matvecs: operator applications used (vectors, so a block of m counts m).
        n_iter: iterations (restarts for Lanczos) used.
        method: solver name.
        which: ``'LA'``, ``'SA'`` or ``'LM'``.
        tol: relative residual tolerance used.
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
    _basis: torch.Tensor | None = field(default=None, repr=False)

    @property
    def k(self) -> int:
        """Number of eigenpairs returned."""
        return int(self.eigenvalues.shape[0])

    @property
    def all_converged(self) -> bool:
        """True when every returned pair met the tolerance."""
        return bool(self.converged.all())

    def require_converged(self) -> EigResult:
        """Return self, or raise :class:`ConvergenceError` naming the pairs that failed."""
        if not self.all_converged:
            bad = (~self.converged).nonzero().flatten().tolist()
            detail = ", ".join(
                f"#{i + 1}: λ={self.eigenvalues[i].item():.6g}, "
                f"residual={self.residuals[i].item():.2e}"
                for i in bad[:10]
            )
            raise ConvergenceError(
                f"{self.method} ({self.which}, tol={self.tol:g}) left {len(bad)} of {self.k} "
                f"pairs unconverged after {self.n_iter} iterations and {self.n_matvecs} "
                f"products: {detail}"
            )
        return self

    @property
    def warm_start(self) -> torch.Tensor:
        """Vectors to pass as ``v0`` on the next call (eigenvectors plus guard vectors)."""
        return self._basis if self._basis is not None else self.eigenvectors


def finish(
    *,
    lam: torch.Tensor,
    Xt: torch.Tensor,
    AXt: torch.Tensor,
    k: int,
    tol: float,
    which: str,
    method: str,
    n_matvecs: int,
    n_iter: int,
    basis: torch.Tensor | None = None,
) -> EigResult:
    """Build an :class:`EigResult` from Ritz values/vectors (rows) and their products.

    Computes residuals ‖A x − λ x‖, convergence flags, and warns when some pair failed.
    """
    lam, Xt, AXt = lam[:k], Xt[:k], AXt[:k]
    res = (AXt - lam[:, None] * Xt).norm(dim=1)
    conv = res <= tol * _scale(lam)
    result = EigResult(
        eigenvalues=lam,
        eigenvectors=Xt.T,
        residuals=res,
        converged=conv,
        n_matvecs=int(n_matvecs),
        n_iter=int(n_iter),
        method=method,
        which=which,
        tol=float(tol),
        _basis=None if basis is None else basis.T,
    )
    if not result.all_converged:
        warnings.warn(
            f"{method}: {int((~conv).sum())} of {k} eigenpairs did not reach tol={tol:g} "
            f"within {n_iter} iterations; check EigResult.converged",
            NonConvergenceWarning,
            stacklevel=3,
        )
    return result


def _scale(lam: torch.Tensor) -> torch.Tensor:
    """max(|λ_i|, 1e-12 · max_j |λ_j|): the floor keeps zero eigenvalues testable."""
    a = lam.abs()
    return torch.clamp(a, min=1e-12 * float(a.max()) if a.numel() else 0.0)


def converged_mask(lam: torch.Tensor, rnorm: torch.Tensor, tol: float) -> torch.Tensor:
    """residual_i ≤ tol · max(|λ_i|, floor) (METHODS.md §6; Bauer–Fike bounds |Δλ_i| by it)."""
    return rnorm <= tol * _scale(lam)
