"""Criteria ℓ(f, y) and their output Hessians H_ℓ = ∂²ℓ/∂f² (``docs/methods.md`` §1, §4).

- Cross-entropy: ℓ = logsumexp(f) − f_y; H_ℓ = diag(p) − p pᵀ with p = softmax(f).
- MSE on one-hot **(choice, docs/methods.md §1)**: ℓ = ½‖f − onehot(y)‖², summed over outputs,
  so H_ℓ = I.

Every criterion returns *per-sample* values; the mean over the data set is taken by
:class:`eoslab.problem.Problem`, which weights chunks exactly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Criterion(ABC):
    """A per-sample loss with its output Hessian and the symmetric square root of it."""

    name: str = ""

    @abstractmethod
    def per_sample(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """ℓ(f_n, y_n) for every sample: f [N, n_out], y [N] int → [N]."""

    @abstractmethod
    def output_hessian(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """H_ℓ(f_n) [N, n_out, n_out]."""

    def output_hessian_sqrt(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The PSD square root H_ℓ^{1/2} [N, n_out, n_out] (``docs/methods.md`` §4).

        Computed from the eigendecomposition of H_ℓ, with eigenvalues clamped at 0 so that
        round-off never produces a NaN.
        """
        H = self.output_hessian(f, y)
        evals, evecs = torch.linalg.eigh(H)
        return (evecs * evals.clamp_min(0).sqrt().unsqueeze(-2)) @ evecs.transpose(-1, -2)

    def hessian_matmul(self, f: torch.Tensor, y: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        """H_ℓ(f_n) u_n for every sample without forming H_ℓ: U [..., N, n_out] → same shape."""
        return (self.output_hessian(f, y) @ U.unsqueeze(-1)).squeeze(-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CrossEntropy(Criterion):
    """Softmax cross-entropy ℓ = logsumexp(f) − f_y; H_ℓ = diag(p) − ppᵀ."""

    name = "cross_entropy"

    def per_sample(self, f, y):
        """ℓ_n = logsumexp(f_n) − f_{n, y_n} = −log softmax(f_n)_{y_n}.

        Computed through ``log_softmax``: its first and second derivatives keep 1 − p_y
        accurate when p_y → 1. Written as logsumexp − f_y, the double backward forms
        1 − p_y by cancellation; measured on ``mlp-eos`` in float32 after 200 GD steps (loss
        6e-5), that made Hessian-vector products 3.4× less accurate (3.3e-3 vs 9.5e-4
        relative to float64).
        """
        return -torch.log_softmax(f, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)

    def output_hessian(self, f, y):
        """diag(p) − p pᵀ with p = softmax(f)."""
        p = torch.softmax(f, dim=-1)
        return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)

    def hessian_matmul(self, f, y, U):
        """(diag(p) − ppᵀ) u = p ⊙ u − p (p·u), O(n_out) per sample."""
        p = torch.softmax(f, dim=-1)
        return p * U - p * (p * U).sum(-1, keepdim=True)


class MSE(Criterion):
    """Squared error on one-hot targets ℓ = ½‖f − onehot(y)‖² (docs/methods.md §1.2); H_ℓ = I."""

    name = "mse"

    def per_sample(self, f, y):
        """ℓ_n = ½ Σ_o (f_{n,o} − [o = y_n])²."""
        target = torch.nn.functional.one_hot(y, f.shape[-1]).to(f.dtype)
        return 0.5 * ((f - target) ** 2).sum(-1)

    def output_hessian(self, f, y):
        """The identity, broadcast to [N, n_out, n_out]."""
        eye = torch.eye(f.shape[-1], dtype=f.dtype, device=f.device)
        return eye.expand(f.shape[0], -1, -1)

    def output_hessian_sqrt(self, f, y):
        """I^{1/2} = I."""
        return self.output_hessian(f, y)

    def hessian_matmul(self, f, y, U):
        """I u = u."""
        return U


CRITERIA: dict[str, type[Criterion]] = {
    "cross_entropy": CrossEntropy,
    "ce": CrossEntropy,
    "mse": MSE,
}


def get_criterion(name: str | Criterion) -> Criterion:
    """Look up a criterion by config name (``cross_entropy``/``ce``, ``mse``)."""
    if isinstance(name, Criterion):
        return name
    try:
        return CRITERIA[name]()
    except KeyError:
        raise ValueError(f"unknown criterion {name!r}; known: {sorted(CRITERIA)}") from None
