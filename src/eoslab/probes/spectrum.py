"""Top of the Hessian spectrum and the stability ratios ρ_i (``docs/methods.md`` §2.1, §3.2).

GD with step η is stable along the eigenvector h_i of H iff η λ_i < 2; the ratio to the edge is

    ρ_i = η / η*_i = η λ_i / 2 = λ_i / threshold,   threshold = 2 / η   (docs/methods.md §2),

and for momentum the threshold is the matching one ((2 + 2β)/η for heavy ball, …), passed in
by the caller. A negative λ_i has no edge of stability: its ρ_i is NaN, as in Lowell 2022
(``docs/methods.md`` §6).
"""

from __future__ import annotations

import torch

from eoslab.eigen import EigResult

__all__ = ["eig_quality_metrics", "rho", "spectrum_metrics"]


def rho(eigenvalues: torch.Tensor, threshold: float) -> torch.Tensor:
    """Stability ratios ρ_i = λ_i / threshold, NaN where λ_i < 0 (``docs/methods.md`` §2).

    For GD threshold = 2/η, so ρ_i = η λ_i / 2: ρ_i ≪ 1 stable, ρ_i ≈ 1 at the edge of
    stability, ρ_i > 1 unstable along h_i.

    Args:
        eigenvalues: λ [k] (any order; the order is kept).
        threshold: the optimizer's EoS threshold, > 0 (2/η for GD).

    Returns:
        ρ [k] in the dtype of ``eigenvalues``; NaN for negative eigenvalues (λ_i = 0 gives 0).

    Raises:
        ValueError: if ``threshold`` is not a positive finite number.
    """
    threshold = _check_threshold(threshold)
    r = eigenvalues / threshold
    return torch.where(eigenvalues < 0, torch.full_like(r, float("nan")), r)


def eig_quality_metrics(eig: EigResult) -> dict[str, torch.Tensor]:
    """How far an eigensolve can be trusted: always reported with any probe that solved.

    - ``eig_residual_max`` = max_i ‖H h_i − λ_i h_i‖ / |λ_i| (|λ_i| floored at the dtype's
      smallest normal number, so an exact zero eigenvalue gives a large, finite ratio);
    - ``eig_converged`` = 1 when every pair passed the solver's test, else 0;
    - ``eig_matvecs`` = Hessian-vector products the solve used.

    Returns:
        ``{name: 0-d tensor}`` (no host sync here).
    """
    lam = eig.eigenvalues
    tiny = torch.finfo(lam.dtype).tiny
    rel = eig.residuals / lam.abs().clamp_min(tiny)
    return {
        "eig_residual_max": rel.max(),
        "eig_converged": eig.converged.all().to(lam.dtype),
        "eig_matvecs": torch.tensor(float(eig.n_matvecs), dtype=lam.dtype, device=lam.device),
    }


def spectrum_metrics(eig: EigResult, threshold: float) -> dict[str, torch.Tensor]:
    """``lambda_i``, ``rho_i`` (i = 1..k) and ``sharpness`` = λ_1 (``docs/methods.md`` §2–3).

    Args:
        eig: top-k eigenpairs of H, eigenvalues descending (``which='LA'``).
        threshold: the optimizer's EoS threshold (2/η for GD), > 0.

    Returns:
        ``{name: 0-d tensor}``, 1-based names in descending order of λ.
    """
    lam = eig.eigenvalues
    r = rho(lam, threshold)
    out = {f"lambda_{i + 1}": lam[i] for i in range(lam.shape[0])}
    out.update({f"rho_{i + 1}": r[i] for i in range(lam.shape[0])})
    out["sharpness"] = lam[0]
    return out


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not (t > 0 and t != float("inf")):
        raise ValueError(
            f"threshold must be a positive finite number (2/η for GD), got {threshold}"
        )
    return t
