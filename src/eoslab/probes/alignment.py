"""Alignment ratios and the counterfactual sharpness of Lowell 2024 (``docs/methods.md`` §5).

Pure functions of sampled matrices and of the stored layerwise components: α(A, B)
(Eq. 6) and λ̃_1(G), the Gauss–Newton sharpness with the alignment component (V) frozen
(``docs/methods.md`` §5.6).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["alignment_ratio", "counterfactual_sharpness"]


def alignment_ratio(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Alignment ratio of two random matrices from samples (Lowell 2024 Eq. 6).

        α(A, B) = E‖AB‖² / (E‖A‖² · E‖B‖²),

    with ‖·‖ the spectral norm and E the mean over the leading (sample) dimension. α = 1
    when A and B are independent of the sample and A's top right singular vector is B's top
    left one; it can exceed 1 when ‖A‖ and ‖B‖ are positively correlated over samples.

    Args:
        A: [N, m, p] samples of A.
        B: [N, p, q] samples of B.

    Returns:
        0-d tensor α(A, B).

    Raises:
        ValueError: on shapes that do not chain.
    """
    if A.dim() != 3 or B.dim() != 3 or A.shape[0] != B.shape[0] or A.shape[2] != B.shape[1]:
        raise ValueError(
            f"A [N, m, p] and B [N, p, q] expected, got {tuple(A.shape)} and {tuple(B.shape)}"
        )

    def sq(X):
        return torch.linalg.matrix_norm(X, ord=2).square().mean()

    return sq(A @ B) / (sq(A) * sq(B))


def counterfactual_sharpness(
    C: torch.Tensor | Sequence,
    V: torch.Tensor | Sequence,
    V_ref: torch.Tensor | Sequence,
    zeta: torch.Tensor | Sequence | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sharpness with the alignment factor frozen at a reference time (``docs/methods.md`` §5).

        λ̃_1(G)(t) = ζ(t) · Σ_ℓ C_ℓ(t) · V_ℓ(t_0) / V_ℓ(t),   stable step η̃ = 2 / λ̃_1(G),

    where V_ℓ = Π_{k=ℓ}^{L−1} α_k is component (V) of C_ℓ (Eq. 7) and t_0 the reference
    snapshot (in Lowell 2024, the end of the 10-step transient); it combines Eq. 3, 4, 7 and 8
    with E‖M‖² ≈ Σ_ℓ C_ℓ. The output layer has no alignment factor (V_L = 1): pass V with L
    columns (last = 1) or with L − 1 columns (then V_L = 1 is implied).

    Args:
        C: [..., L] C_ℓ(t) per snapshot (leading dims: snapshots).
        V: [..., L] or [..., L−1] V_ℓ(t).
        V_ref: [L] or [L−1] V_ℓ(t_0) (same convention as V).
        zeta: [...] overlap ratio ζ(t) (or a scalar).

    Returns:
        (λ̃_1 [...], 2/λ̃_1 [...]) as tensors (``inf`` step where λ̃_1 ≤ 0 is not possible
        with positive inputs; it is left to IEEE arithmetic).

    Raises:
        ValueError: if the layer dimensions disagree.
    """
    C = torch.as_tensor(C)
    dtype = C.dtype if C.is_floating_point() else torch.float64
    C = C.to(dtype)
    V = torch.as_tensor(V, dtype=dtype, device=C.device)
    V_ref = torch.as_tensor(V_ref, dtype=dtype, device=C.device)
    zeta = torch.as_tensor(zeta, dtype=dtype, device=C.device)
    L = C.shape[-1]
    if V.shape[-1] != V_ref.shape[-1]:
        raise ValueError(f"V has {V.shape[-1]} layers but V_ref has {V_ref.shape[-1]}")
    if V.shape[-1] == L - 1:
        V = torch.cat([V, V.new_ones(*V.shape[:-1], 1)], dim=-1)
        V_ref = torch.cat([V_ref, V_ref.new_ones(*V_ref.shape[:-1], 1)], dim=-1)
    elif V.shape[-1] != L:
        raise ValueError(f"C has {L} layers; V must have {L} or {L - 1}, got {V.shape[-1]}")
    lam = zeta * (C * V_ref / V).sum(-1)
    return lam, 2.0 / lam
