"""Gradient projections onto the top and bulk Hessian subspaces, and real loss changes.

Lowell 2022 telemetry (``docs/methods.md`` §3). With orthonormal top eigenvectors h_1..h_k of H
and the top subspace span(h_1..h_m), m = n_c − 1 (the paper's convention):

    d_i = h_i · g,   P_top g = Σ_{i ≤ m} d_i h_i,   P_bulk g = g − P_top g,

and the *real* (not Taylor) loss changes of a GD step restricted to each part,

    ΔL_top  = L(θ − η P_top g)  − L(θ),
    ΔL_bulk = L(θ − η P_bulk g) − L(θ),
    ΔL_full = L(θ − η g)        − L(θ).

To second order ΔL ≈ η Σ_i d_i² (½ η λ_i − 1) (``docs/methods.md`` §2): a top direction with
ρ_i > 1 raises the loss, which is why ΔL_top turns positive at the edge of stability.
"""

from __future__ import annotations

import numpy as np
import torch

from eoslab.problem import Problem

__all__ = ["loss_changes", "project", "projection_metrics", "table1"]


def project(g: torch.Tensor, H_top: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split g into its top-subspace and bulk parts (``docs/methods.md`` §3).

    P_top g = H_top H_topᵀ g and P_bulk g = g − P_top g, so the two parts are orthogonal
    and sum to g exactly (by construction, to round-off).

    Args:
        g: gradient [P].
        H_top: orthonormal columns spanning the top subspace, [P, m] (m = 0 allowed).

    Returns:
        (P_top g [P], P_bulk g [P]).

    Raises:
        ValueError: if the shapes do not match.
    """
    if g.dim() != 1 or H_top.dim() != 2 or H_top.shape[0] != g.shape[0]:
        raise ValueError(
            f"project needs g [P] and H_top [P, m], got {tuple(g.shape)} and {tuple(H_top.shape)}"
        )
    top = H_top @ (H_top.T @ g)  # [P]
    return top, g - top


def projection_metrics(
    g: torch.Tensor, eigenvectors: torch.Tensor, n_top: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """‖P_top g‖, ‖P_bulk g‖ and |d_i| = |h_i · g| for i = 1..k (``docs/methods.md`` §3).

    Args:
        g: gradient [P].
        eigenvectors: orthonormal top-k eigenvectors of H, [P, k], by descending λ.
        n_top: m, the dimension of the top subspace (its first m columns), 0 ≤ m ≤ k.

    Returns:
        (``{"proj_top", "proj_bulk", "d_1", …, "d_k"}`` as 0-d tensors, P_top g [P]); the
        projection is returned too so that :func:`loss_changes` reuses it.

    Raises:
        ValueError: if n_top is out of range or the shapes do not match.
    """
    if g.dim() != 1 or eigenvectors.dim() != 2 or eigenvectors.shape[0] != g.shape[0]:
        raise ValueError(
            f"projection_metrics needs g [P] and eigenvectors [P, k], got {tuple(g.shape)} "
            f"and {tuple(eigenvectors.shape)}"
        )
    k = eigenvectors.shape[1]
    if not 0 <= n_top <= k:
        raise ValueError(f"n_top must lie in [0, k={k}], got {n_top}")
    d = eigenvectors.T @ g  # [k]
    top = eigenvectors[:, :n_top] @ d[:n_top]  # [P], P_top g from the same coefficients
    bulk = g - top
    out = {
        "proj_top": torch.linalg.vector_norm(top),
        "proj_bulk": torch.linalg.vector_norm(bulk),
    }
    d_abs = d.abs()
    out.update({f"d_{i + 1}": d_abs[i] for i in range(k)})
    return out, top


def loss_changes(
    problem: Problem,
    theta: torch.Tensor,
    g: torch.Tensor,
    top_part: torch.Tensor,
    lr: float,
    *,
    loss: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Real loss changes of a GD step along the top part, the bulk part and all of g.

    ΔL_top = L(θ − η P_top g) − L(θ), ΔL_bulk = L(θ − η P_bulk g) − L(θ) with
    P_bulk g = g − P_top g, and ΔL_full = L(θ − η g) − L(θ) (``docs/methods.md`` §3): three loss
    evaluations through :meth:`Problem.loss`, the same forward path as L(θ) itself, so
    the round-off of the two terms of each difference is correlated.

    Args:
        problem: the training problem.
        theta: θ [P].
        g: the gradient at θ [P].
        top_part: P_top g [P] (see :func:`project`).
        lr: the step η.
        loss: L(θ) if already known (e.g. a by-product of the Hessian operator); else it is
            evaluated, a fourth loss evaluation.

    Returns:
        ``{"dL_top", "dL_bulk", "dL_full"}`` as 0-d tensors.

    Raises:
        ValueError: if the vectors are not all [P].
    """
    P = problem.size
    for name, v in (("theta", theta), ("g", g), ("top_part", top_part)):
        if v.shape != (P,):
            raise ValueError(f"{name} must have shape [{P}], got {tuple(v.shape)}")
    L0 = problem.loss(theta) if loss is None else loss
    bulk = g - top_part
    return {
        "dL_top": problem.loss(theta - lr * top_part) - L0,
        "dL_bulk": problem.loss(theta - lr * bulk) - L0,
        "dL_full": problem.loss(theta - lr * g) - L0,
    }


def table1(
    dL_top,
    dL_bulk,
    rho_top,
    *,
    threshold: float = 0.7,
    min_probes: int = 3,
    ddof: int = 1,
) -> dict[str, float | int] | None:
    """One run's entry of Lowell 2022, Table 1: ΔL_top and ΔL_bulk near the edge of stability.

    Over the probes i of one run with ρ_{n_c−1}(i) > ``threshold`` (strictly; a NaN ρ, from a
    negative eigenvalue, never qualifies), the mean and standard deviation of ΔL_top and
    ΔL_bulk (``docs/methods.md`` §3). A run with fewer than ``min_probes`` such probes is omitted,
    as in the paper: the function returns None. **(choice)** The standard deviation is the
    sample one (``ddof=1``); the paper does not say which.

    Args:
        dL_top: ΔL_top per probe, [n] (array-like or tensor).
        dL_bulk: ΔL_bulk per probe, [n].
        rho_top: ρ_{n_c−1} per probe, [n] (the ``rho_{n_top}`` metric).
        threshold: ρ above which a probe counts as at the edge of stability (paper: 0.7).
        min_probes: fewest qualifying probes for a run to be reported (paper: 3).
        ddof: delta degrees of freedom of the standard deviation.

    Returns:
        ``{"dL_top_mean", "dL_top_std", "dL_bulk_mean", "dL_bulk_std", "n_probes"}`` as
        floats, or None when fewer than ``min_probes`` probes qualify.

    Raises:
        ValueError: if the three inputs are not 1-D of one length, or min_probes < 1.
    """
    top, bulk, r = (_as_numpy(a) for a in (dL_top, dL_bulk, rho_top))
    if not (top.ndim == bulk.ndim == r.ndim == 1 and top.shape == bulk.shape == r.shape):
        raise ValueError(
            f"table1 needs three 1-D arrays of one length, got shapes {top.shape}, "
            f"{bulk.shape}, {r.shape}"
        )
    if not isinstance(min_probes, int) or min_probes < 1:
        raise ValueError(f"min_probes must be a positive integer, got {min_probes!r}")
    with np.errstate(invalid="ignore"):
        keep = r > threshold  # NaN compares False
    n = int(keep.sum())
    if n < min_probes:
        return None
    return {
        "dL_top_mean": float(np.mean(top[keep])),
        "dL_top_std": float(np.std(top[keep], ddof=ddof)),
        "dL_bulk_mean": float(np.mean(bulk[keep])),
        "dL_bulk_std": float(np.std(bulk[keep], ddof=ddof)),
        "n_probes": n,
    }


def _as_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
    return np.asarray(a, dtype=np.float64)
