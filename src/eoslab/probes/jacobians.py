"""Gauss–Newton quantities of any architecture from per-sample Jacobians (``docs/methods.md`` §4).

‖M_x‖² = λ_1(M_x M_xᵀ) with M_x = H^{1/2} J_x per sample (Lowell 2024 Eq. 3), and each module's
share c_ℓ(x) = λ_1(M_ℓ M_ℓᵀ) of it (``docs/methods.md`` §4.4, §5.8), from ``jacrev`` over
samples in chunks sized to a memory budget. The MLP-only layerwise decomposition
(:mod:`eoslab.probes.layerwise`) computes ‖M_x‖² in its own, cheaper way.
"""

from __future__ import annotations

import torch
from torch.func import jacrev, vmap

from eoslab.linalg import default_memory_budget
from eoslab.problem import Problem

__all__ = ["per_layer_c", "per_sample_m_norm_sq"]


def _resolve_chunk(problem: Problem, chunk_size, memory_budget, per_sample_bytes) -> int:
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        return min(int(chunk_size), problem.N)
    budget = default_memory_budget(problem.device) if memory_budget is None else memory_budget
    return max(1, min(problem.chunk_size, int(budget // max(per_sample_bytes, 1))))


def _chunks(problem: Problem, chunk: int):
    for start in range(0, problem.N, chunk):
        stop = min(start + chunk, problem.N)
        yield problem.X[start:stop], problem.y[start:stop]


# --------------------------------------------------------------------------- generic path


def _generic(problem, theta, chunk_size, memory_budget, groups: dict[str, slice] | None):
    """‖M_x‖² [N] and, if ``groups``, λ_1(M_g M_gᵀ) [N] per group, from per-sample J_x."""
    if theta.shape != (problem.size,):
        raise ValueError(f"theta must have shape [{problem.size}], got {tuple(theta.shape)}")
    theta = theta.detach()
    n, P = problem.n_outputs, problem.size
    chunk = _resolve_chunk(problem, chunk_size, memory_budget, 4 * n * P * theta.element_size())

    def f_one(t, x):  # one sample x [...] → f [n_out]
        return problem.forward(t, x.unsqueeze(0)).squeeze(0)

    jac = vmap(jacrev(f_one), in_dims=(None, 0))
    m_sq, per_group = [], {g: [] for g in groups or {}}
    for Xc, yc in _chunks(problem, chunk):
        J = jac(theta, Xc).detach()  # [B, n, P]
        with torch.no_grad():
            Hs = problem.criterion.output_hessian_sqrt(problem.forward(theta, Xc), yc)
            M = Hs @ J  # [B, n, P]
            del J
            G = M @ M.mT
            m_sq.append(torch.linalg.eigvalsh(0.5 * (G + G.mT))[:, -1].clamp_min(0))
            for g, sl in (groups or {}).items():
                Mg = M[:, :, sl]
                Gg = Mg @ Mg.mT
                per_group[g].append(torch.linalg.eigvalsh(0.5 * (Gg + Gg.mT))[:, -1].clamp_min(0))
    return torch.cat(m_sq), {g: torch.cat(v) for g, v in per_group.items()}


def per_sample_m_norm_sq(
    problem: Problem,
    theta: torch.Tensor,
    *,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> torch.Tensor:
    """‖M_x‖² = λ_1(H^{1/2} J_x J_xᵀ H^{1/2}) for every training sample, any architecture.

    ``docs/methods.md`` §4, Lowell 2024 Eq. 3: M_x = H_ℓ(x)^{1/2} J_x with J_x = ∂f(x;θ)/∂θ
    [n_out, P]; E‖M_x‖² is the denominator of the overlap ratio ζ = λ_1(G)/E‖M_x‖².
    Per-sample Jacobians come from ``torch.func.vmap`` over ``jacrev`` of the one-sample
    forward pass (one VJP per output), so it works for CNNs and residual networks too; for
    MLPs :func:`layerwise_stats` gives the same values far more cheaply.

    Memory per chunk of B samples: about 4·B·n_out·P values (J_x, M_x and ``jacrev``'s
    workspace) plus the activations of B one-sample passes; the default chunk is
    ``problem.chunk_size`` lowered to fit ``memory_budget``.

    Args:
        problem: the training problem (any model).
        theta: θ [P].
        chunk_size: samples per chunk (default: see above).
        memory_budget: bytes for the default chunk size (default: 4 GiB on the CPU, half
            the free memory on a GPU).

    Returns:
        [N] tensor of ‖M_x‖², in data-set order.

    Raises:
        ValueError: if θ is not [P] or ``chunk_size`` is not a positive integer.
    """
    return _generic(problem, theta, chunk_size, memory_budget, None)[0]


def per_layer_c(
    problem: Problem,
    theta: torch.Tensor,
    *,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> dict[str, torch.Tensor]:
    """Per-sample layer shares c_g(x) = λ_1(H^{1/2} J_{θ_g} J_{θ_g}ᵀ H^{1/2}), any architecture.

    θ_g is the parameter group of one module (its weight and bias; the contiguous slices of
    :meth:`~eoslab.params.ParamLayout.group_slices`), so M_x M_xᵀ = Σ_g M_g M_gᵀ with
    M_g = H^{1/2} J_{θ_g} and ‖M_x‖² ≤ Σ_g c_g(x) (Lowell 2024 Eq. 4 and 8). For an MLP,
    group g = layer ℓ and c_g = s_ℓ‖A_ℓ‖² = c_ℓ of :func:`layerwise_stats`. For convolutional
    networks this is as far as the decomposition goes: each conv or linear module is a
    "layer", but there is no A_ℓ = A_{ℓ+1} K_ℓ factorisation with an n_out × w_ℓ pre-activation
    Jacobian shared by all positions, hence no α, γ or components (I)–(V).

    Memory as :func:`per_sample_m_norm_sq` (one Jacobian pass serves every group).

    Args:
        problem: the training problem (any model).
        theta: θ [P].
        chunk_size: samples per chunk (default: ``problem.chunk_size`` within the budget).
        memory_budget: bytes for the default chunk size.

    Returns:
        ``{group name: [N] tensor of c_g(x)}`` in θ order (e.g. ``"layers.0"``, …).

    Raises:
        ValueError: if θ is not [P] or ``chunk_size`` is not a positive integer.
    """
    return _generic(problem, theta, chunk_size, memory_budget, problem.layout.group_slices())[1]
