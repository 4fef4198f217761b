"""The cusp scan: the loss along the top Hessian eigenvector through θ* (``docs/methods.md`` §3).

At the snapshot θ* of peak λ_1, Lowell 2022 plots

    ΔL(s) = L(θ* + s h_1) − L(θ*),   s on a grid in [−s_max, s_max]  (paper: s_max = 0.003),

which shows whether the loss is a smooth parabola (curvature λ_1 at s = 0) or has a cusp
there. A quadratic model predicts ΔL(s) ≈ s (h_1 · g) + ½ λ_1 s².

Vectorisation: the grid points are evaluated ``batch_size`` at a time, each batch in one
pass over the data with ``torch.func.vmap`` over the stacked points [B, P]; memory is B
forward passes of one data chunk (no autograd graph) plus B copies of θ.
"""

from __future__ import annotations

import torch

from eoslab.eigen.spec import EigSpec
from eoslab.problem import Problem

__all__ = ["CUSP_SOLVER", "cusp_grid", "cusp_scan"]

#: The eigensolve of the scan direction h_1 at θ*: verified Lanczos at a relative residual
#: of 1e-8. The direction's error angle is about tol·λ_1/gap; along a wrong direction the
#: scan mixes in curvature λ_2 and the gradient's other coordinates, so the tighter tol keeps
#: ΔL(s) on the grid (|s| ≤ 3e-3, ΔL ~ λ_1 s²/2) accurate to well below the shape it shows.
#: One top-1 solve per run, so its cost does not matter.
CUSP_SOLVER = EigSpec(tol=1e-8)


def cusp_grid(s_max: float, n: int, *, dtype: torch.dtype, device=None) -> torch.Tensor:
    """n equispaced points from −s_max to s_max, symmetric to the last bit.

    s_j = s_max (2j − (n − 1)) / (n − 1), j = 0..n−1: the integers are exact, so the grid
    is exactly symmetric and contains s = 0 exactly when n is odd.

    Raises:
        ValueError: if n < 2 or s_max is not positive and finite.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"the cusp grid needs an integer n ≥ 2 points, got {n!r}")
    s_max = float(s_max)
    if not (0 < s_max < float("inf")):
        raise ValueError(f"s_max must be positive and finite, got {s_max}")
    j = torch.arange(n, dtype=torch.int64, device=device)
    return (2 * j - (n - 1)).to(dtype) * (s_max / (n - 1))


def cusp_scan(
    problem: Problem,
    theta: torch.Tensor,
    direction: torch.Tensor,
    s_max: float,
    *,
    n: int = 61,
    batch_size: int = 16,
    vectorize: bool = True,
) -> dict[str, torch.Tensor]:
    """ΔL(s) = L(θ + s h) − L(θ) on :func:`cusp_grid` (``docs/methods.md`` §3, Lowell 2022).

    ``direction`` is normalised to h = direction / ‖direction‖ so that s is a distance in
    parameter space (a solver's h_1 is already a unit vector to round-off). The sign of an
    eigenvector is arbitrary, so ΔL(s) for −h_1 is the mirror image of that for h_1.

    L(θ) is evaluated by the same (batched) code path as the grid points, so the two terms of
    each difference share their round-off and ΔL(0) = 0 exactly when 0 is on the grid (odd n).

    Args:
        problem: the training problem.
        theta: θ* [P].
        direction: the scan direction [P] (typically the top eigenvector h_1 at θ*).
        s_max: half-width of the grid (paper: 0.003).
        n: number of grid points (odd, so that s = 0 is one of them; default 61).
        batch_size: grid points per vectorised data pass (bounds memory).
        vectorize: evaluate each batch with ``torch.func.vmap``; False: one point at a time
            (for models whose operations have no batching rule).

    Returns:
        ``{"s": [n], "dL": [n], "loss": 0-d L(θ*)}`` as tensors on θ's device.

    Raises:
        ValueError: for shapes other than [P], a zero direction, or a bad grid.
    """
    P = problem.size
    for name, v in (("theta", theta), ("direction", direction)):
        if v.shape != (P,):
            raise ValueError(f"{name} must have shape [{P}], got {tuple(v.shape)}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    norm = torch.linalg.vector_norm(direction)
    if not bool(norm > 0):
        raise ValueError("the cusp-scan direction is zero")
    h = direction / norm  # [P]
    s = cusp_grid(s_max, n, dtype=theta.dtype, device=theta.device)  # [n]
    zero = n // 2 if n % 2 == 1 else None
    s_eval = s if zero is not None else torch.cat([s, s.new_zeros(1)])
    loss_of = torch.func.vmap(problem.loss) if vectorize else None
    losses = []
    for start in range(0, s_eval.shape[0], batch_size):
        sb = s_eval[start : start + batch_size]  # [B]
        thetas = theta + sb[:, None] * h  # [B, P]
        if vectorize:
            losses.append(loss_of(thetas))
        else:
            losses.append(torch.stack([problem.loss(t) for t in thetas]))
    losses = torch.cat(losses)  # [n] or [n + 1]
    L0 = losses[zero] if zero is not None else losses[-1]
    return {"s": s, "dL": losses[:n] - L0, "loss": L0}
