"""The Gauss–Newton (``docs/methods.md`` §4) and layerwise (§5) metrics of one θ, in one call.

Shared by the run loop (``probe.gauss_newton`` / ``probe.layerwise`` during training) and
``eoslab analyze`` (the same on stored snapshots afterwards, Lowell 2024's way), so that both
compute E‖M_x‖² once and hand it to the Gauss–Newton probe for ζ = λ_1(G) / E‖M_x‖².
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from eoslab.probes.gauss_newton import GaussNewtonProbe
from eoslab.probes.jacobians import per_sample_m_norm_sq
from eoslab.probes.layerwise import layerwise_stats
from eoslab.problem import Problem

__all__ = ["Decomposition", "decomposition"]


@dataclass(frozen=True)
class Decomposition:
    """Metrics of :func:`decomposition`, the Gauss–Newton probe's new warm blocks, its products."""

    metrics: dict[str, float]
    warm: dict[str, torch.Tensor]
    n_matvecs: int


def decomposition(
    problem: Problem,
    theta: torch.Tensor,
    *,
    gauss_newton: GaussNewtonProbe | None,
    layerwise: bool,
    warm: dict[str, torch.Tensor] | None = None,
    chunk_size: int | None = None,
) -> Decomposition:
    """Layerwise statistics (MLPs) and/or the Gauss–Newton probe at θ.

    With ``layerwise`` the five-factor decomposition of :func:`layerwise_stats` (whose E‖M_x‖²
    the Gauss–Newton probe then reuses); otherwise E‖M_x‖² comes from
    :func:`per_sample_m_norm_sq` when the Gauss–Newton probe needs it.

    Args:
        problem: the training problem.
        theta: θ [P].
        gauss_newton: the Gauss–Newton probe, or None to skip it.
        layerwise: compute the layerwise decomposition (the model must be an MLP).
        warm: the previous call's :attr:`Decomposition.warm` (Gauss–Newton warm starts).
        chunk_size: samples per chunk of the per-sample computations (None: by memory).

    Returns:
        :class:`Decomposition`.
    """
    metrics: dict[str, float] = {}
    em2 = None
    if layerwise:
        stats = layerwise_stats(problem, theta, chunk_size=chunk_size)
        metrics.update(stats.metrics())
        em2 = float(metrics["EM2"])
    if gauss_newton is None:
        return Decomposition(metrics, {}, 0)
    if em2 is None:
        em2 = float(per_sample_m_norm_sq(problem, theta, chunk_size=chunk_size).mean())
    res = gauss_newton(problem, theta, warm=warm or None, m_norm_sq_mean=em2)
    metrics.update(res.metrics)
    return Decomposition(metrics, res.warm, res.n_matvecs)
