"""Layerwise decomposition of the Gauss–Newton sharpness (``docs/methods.md`` §4–5; Lowell 2024).

Notation (``docs/methods.md`` §5). An MLP computes z_ℓ = ω_ℓ W_ℓ a_{ℓ−1} + b_ℓ, a_ℓ = σ(z_ℓ),
a_0 = x (flattened), f = z_L for ℓ = 1..L, where ω_ℓ is the layer's fixed forward multiplier
(``MLP.weight_multipliers``: 1 in the standard parametrisation, gain/√fan_in in the NTK
one; written ω here so as not to clash with the share c_ℓ below). Per sample x:

- output Hessian H = ∂²ℓ/∂f² and its PSD square root H^{1/2} (``docs/methods.md`` §4);
- pre-activation Jacobians J_{z_ℓ} = ∂f/∂z_ℓ [n_out, w_ℓ] and A_ℓ = H^{1/2} J_{z_ℓ};
- layerwise Jacobians K_ℓ = ∂z_{ℓ+1}/∂z_ℓ = ω_{ℓ+1} W_{ℓ+1} diag(σ'(z_ℓ)) [w_{ℓ+1}, w_ℓ],
  so that A_L = H^{1/2} and A_ℓ = A_{ℓ+1} K_ℓ (Lowell 2024 Eq. 5);
- s_ℓ = [layer ℓ has a bias] + ω_ℓ² ‖a_{ℓ−1}‖² and c_ℓ = s_ℓ ‖A_ℓ‖² (Eq. 4);
- ‖M_x‖² = λ_1(M_x M_xᵀ) with M_x = H^{1/2} J_x (Eq. 3).

**Why s_ℓ carries ω_ℓ² (NTK parametrisation).** The parameters are the *stored* W_ℓ and b_ℓ.
Since z_ℓ = ω_ℓ W_ℓ a_{ℓ−1} + b_ℓ, ∂f/∂(W_ℓ)_{ij} = ω_ℓ (J_{z_ℓ})_{:,i} (a_{ℓ−1})_j and
∂f/∂b_ℓ = J_{z_ℓ}. Layer ℓ's block of J_x J_xᵀ is therefore
Σ_{ij} ω_ℓ² (J_{z_ℓ})_{:,i} (J_{z_ℓ})_{:,i}ᵀ (a_{ℓ−1})_j² + J_{z_ℓ} J_{z_ℓ}ᵀ
= (1 + ω_ℓ²‖a_{ℓ−1}‖²) J_{z_ℓ} J_{z_ℓ}ᵀ, and the block of M_x M_xᵀ is s_ℓ A_ℓ A_ℓᵀ; without a
bias the 1 is absent. Summing the blocks, M_x M_xᵀ = Σ_ℓ s_ℓ A_ℓ A_ℓᵀ (the weight-space
blocks are disjoint), so ‖M_x‖² ≤ Σ_ℓ c_ℓ (Eq. 8). The multiplier of K_ℓ is the *forward*
one, ω_{ℓ+1}, because K_ℓ differentiates z_{ℓ+1} with respect to z_ℓ.

Aggregates, with E = (1/N) Σ_n over all N training samples:

- C_ℓ = E c_ℓ, E s_ℓ, E‖A_ℓ‖², E‖K_ℓ‖², E‖M‖² (``EM2``) and Σ_ℓ C_ℓ (Eq. 8: E‖M‖² ≤ Σ C_ℓ);
- alignment ratios (Eq. 6) α_k = α(A_{k+1}, K_k) = E‖A_{k+1}K_k‖² / (E‖A_{k+1}‖² E‖K_k‖²),
  where A_{k+1}K_k = A_k, so E‖A_k‖² = α_k E‖A_{k+1}‖² E‖K_k‖² holds exactly;
- coupling factors γ_ℓ = E[s_ℓ‖A_ℓ‖²] / (E s_ℓ E‖A_ℓ‖²), so C_ℓ = γ_ℓ E s_ℓ E‖A_ℓ‖²;
- the five components (Eq. 7, ``docs/methods.md`` §5 exact telescoping form), for ℓ < L:

      C_ℓ = C_L · Π_k (E s_k / E s_{k+1}) · Π_k E‖K_k‖² · (γ_ℓ / γ_L) · Π_k α_k,  k = ℓ..L−1
            (I)         (II)                   (III)          (IV)         (V)

  The identity is exact (up to round-off) by the two lines above, whatever the accuracy of
  the ‖K_k‖² estimates, because α_k is defined with the same E‖K_k‖².

The alignment product V_ℓ = Π_{k=ℓ}^{L−1} α_k (component (V); V_L = 1) is the factor that
Lowell 2024 finds growing; :func:`counterfactual_sharpness` freezes it.

Spectral norms. ‖A_ℓ‖² = λ_1(A_ℓA_ℓᵀ) and ‖M_x‖² come from n_out × n_out ``eigvalsh``
per sample (exact). ‖K_ℓ‖² = λ_1(K_ℓᵀK_ℓ) = λ_1(D Q D) with D = diag(σ'(z_ℓ)) and
Q = ω_{ℓ+1}² W_{ℓ+1}ᵀW_{ℓ+1} shared by all samples: exact (batched ``eigvalsh`` of the
smaller of K Kᵀ, KᵀK) when min(w_ℓ, w_{ℓ+1}) ≤ ``exact_width``, otherwise a batched block
subspace iteration with Rayleigh–Ritz on v ↦ d ⊙ (Q (d ⊙ v)) — one GEMM with Q for the whole
chunk per iteration — stopped per sample when the relative residual ‖KᵀK u − θ u‖ ≤
tol_eff · θ, tol_eff = max(tol, 128 ε_mach) (the eigen package's round-off floor,
``docs/methods.md`` §6). Samples that do not converge within ``max_iter`` are reported with a
:class:`~eoslab.eigen.NonConvergenceWarning` and ``K_converged = False``, never silently.

For networks that are not MLPs (convolutional, residual) the pre-activation structure is not
available; :func:`per_sample_m_norm_sq` and :func:`per_layer_c` compute the generic
Gauss–Newton quantities ‖M_x‖² and c_g(x) = λ_1(H^{1/2} J_{θ_g} J_{θ_g}ᵀ H^{1/2}) per
parameter group g (one module's weight and bias) from explicit per-sample Jacobians.

Everything here is a pure function of θ (``docs/architecture.md`` rule 2) and returns values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp

from eoslab.eigen import NonConvergenceWarning
from eoslab.probes.jacobians import _chunks, _resolve_chunk
from eoslab.problem import Problem

__all__ = ["COMPONENT_NAMES", "LayerwiseStats", "is_mlp", "layerwise_stats"]

#: Names of the five components of C_ℓ (Eq. 7), in the order of ``LayerwiseStats.components``.
COMPONENT_NAMES = ("I", "II", "III", "IV", "V")

#: Default block size of the subspace iteration for ‖K_ℓ‖² (guard vectors speed convergence).
DEFAULT_BLOCK_SIZE = 8

#: Default iteration cap of the subspace iteration for ‖K_ℓ‖².
DEFAULT_MAX_ITER = 500


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class LayerwiseStats:
    """Per-sample and aggregate layerwise quantities of an MLP at θ (``docs/methods.md`` §5).

    Layers are indexed ℓ = 1..L in the text and 0..L−1 in the tensors. All tensors are on
    θ's device and in its dtype (flags: bool).

    Attributes:
        depth: L, the number of Linear layers.
        widths: (w_1, …, w_L), the layer output widths (w_L = n_out).
        s: [N, L] s_ℓ = [bias] + ω_ℓ²‖a_{ℓ−1}‖².
        A_norm_sq: [N, L] ‖A_ℓ‖² = λ_1(A_ℓA_ℓᵀ), A_ℓ = H^{1/2} J_{z_ℓ}.
        c: [N, L] c_ℓ = s_ℓ ‖A_ℓ‖², the layer's share of ‖M_x‖².
        K_norm_sq: [N, L−1] ‖K_ℓ‖², K_ℓ = ∂z_{ℓ+1}/∂z_ℓ.
        M_norm_sq: [N] ‖M_x‖² = λ_1(Σ_ℓ s_ℓ A_ℓA_ℓᵀ).
        Es: [L] E s_ℓ.
        EA: [L] E‖A_ℓ‖².
        C: [L] C_ℓ = E c_ℓ.
        EK: [L−1] E‖K_ℓ‖².
        EM2: 0-d E‖M_x‖².
        alpha: [L−1] α_ℓ = E‖A_ℓ‖² / (E‖A_{ℓ+1}‖² E‖K_ℓ‖²) (Eq. 6).
        gamma: [L] γ_ℓ = C_ℓ / (E s_ℓ E‖A_ℓ‖²).
        components: [L−1, 5] the factors (I)–(V) of C_ℓ (Eq. 7), columns in
            :data:`COMPONENT_NAMES` order; their row product equals ``C[:-1]``.
        alignment_product: [L] V_ℓ = Π_{k=ℓ}^{L−1} α_k (component (V)), V_L = 1.
        K_method: per ℓ < L, ``"exact"`` or ``"iterative"``.
        K_converged: [L−1] bool, every sample's ‖K_ℓ‖² converged (always True when exact).
        K_residual: [L−1] largest relative residual ‖KᵀKu − θu‖/θ over samples (0 when
            exact).
        K_iterations: per ℓ < L, the largest number of iterations any chunk used (0 when
            exact).
    """

    depth: int
    widths: tuple[int, ...]
    s: torch.Tensor
    A_norm_sq: torch.Tensor
    c: torch.Tensor
    K_norm_sq: torch.Tensor
    M_norm_sq: torch.Tensor
    Es: torch.Tensor
    EA: torch.Tensor
    C: torch.Tensor
    EK: torch.Tensor
    EM2: torch.Tensor
    alpha: torch.Tensor
    gamma: torch.Tensor
    components: torch.Tensor
    alignment_product: torch.Tensor
    K_method: tuple[str, ...]
    K_converged: torch.Tensor
    K_residual: torch.Tensor
    K_iterations: tuple[int, ...]

    @property
    def n_samples(self) -> int:
        """N, the number of samples averaged over."""
        return int(self.M_norm_sq.shape[0])

    @property
    def sum_C(self) -> torch.Tensor:
        """Σ_ℓ C_ℓ, the upper bound of E‖M_x‖² (Eq. 8)."""
        return self.C.sum()

    @property
    def all_converged(self) -> bool:
        """True when every iterative ‖K_ℓ‖² estimate converged."""
        return bool(self.K_converged.all())

    def metrics(self) -> dict[str, float]:
        """A flat ``{name: float}`` dict for the analysis store (layers 1-based).

        Names:

        - ``C_ℓ`` (ℓ = 1..L): C_ℓ = E[s_ℓ‖A_ℓ‖²];
        - ``Es_ℓ``: E s_ℓ; ``EA_ℓ``: E‖A_ℓ‖²; ``gamma_ℓ``: γ_ℓ (ℓ = 1..L);
        - ``EK_ℓ``: E‖K_ℓ‖²; ``alpha_ℓ``: α_ℓ (ℓ = 1..L−1);
        - ``compℓ_I`` … ``compℓ_V`` (ℓ = 1..L−1): the five factors of C_ℓ (Eq. 7):
          (I) output C_L, (II) activation ratios E s_ℓ/E s_L, (III) layerwise norms
          Π E‖K_k‖², (IV) coupling γ_ℓ/γ_L, (V) alignment Π α_k;
        - ``EM2``: E‖M_x‖²; ``sum_C``: Σ_ℓ C_ℓ (≥ ``EM2``);
        - ``K_converged``: 1.0 if every ‖K_ℓ‖² estimate converged, else 0.0;
          ``K_max_residual``: the largest relative residual of those estimates.
        """
        L = self.depth
        C, Es, EA, gamma = (t.tolist() for t in (self.C, self.Es, self.EA, self.gamma))
        EK, alpha, comps = self.EK.tolist(), self.alpha.tolist(), self.components.tolist()
        out: dict[str, float] = {}
        for i in range(L):
            out[f"C_{i + 1}"] = C[i]
        for i in range(L):
            out[f"Es_{i + 1}"] = Es[i]
            out[f"EA_{i + 1}"] = EA[i]
            out[f"gamma_{i + 1}"] = gamma[i]
        for i in range(L - 1):
            out[f"EK_{i + 1}"] = EK[i]
            out[f"alpha_{i + 1}"] = alpha[i]
            for name, value in zip(COMPONENT_NAMES, comps[i]):
                out[f"comp{i + 1}_{name}"] = value
        out["EM2"] = float(self.EM2)
        out["sum_C"] = float(self.sum_C)
        out["K_converged"] = 1.0 if self.all_converged else 0.0
        out["K_max_residual"] = float(self.K_residual.max()) if L > 1 else 0.0
        return out


# --------------------------------------------------------------------------- MLP structure


@dataclass(frozen=True)
class _MLPLayer:
    weight: str  # parameter name of W_ℓ
    bias: str | None  # parameter name of b_ℓ, or None
    multiplier: float  # ω_ℓ
    d_in: int
    d_out: int


_NOT_MLP = (
    "layerwise_stats needs a fully connected network: an eoslab.models.MLP, or a model with "
    "linear_layers(), an elementwise activation_fn and forward(x, return_preactivations=True); "
    "got {name}. For convolutional (and other non-MLP) networks only the generic Gauss–Newton "
    "quantities are available: per_sample_m_norm_sq and per_layer_c."
)


def is_mlp(model: torch.nn.Module) -> bool:
    """True when ``model`` has the shape :func:`layerwise_stats` needs (see ``_NOT_MLP``).

    The one test of "is this a fully connected network" used by the run loop, ``eoslab
    analyze`` and the layerwise probe itself: ``linear_layers()`` and an ``activation_fn``.
    """
    return callable(getattr(model, "linear_layers", None)) and hasattr(model, "activation_fn")


def _mlp_layers(problem: Problem) -> tuple[list[_MLPLayer], Callable]:
    """The Linear layers of ``problem.model`` (names in θ, multipliers) and σ."""
    model = problem.model
    name = type(model).__name__
    if not is_mlp(model):
        raise ValueError(_NOT_MLP.format(name=name))
    sigma = model.activation_fn
    linears = list(model.linear_layers())
    if not linears or not callable(sigma):
        raise ValueError(_NOT_MLP.format(name=name))
    multipliers = tuple(getattr(model, "weight_multipliers", (1.0,) * len(linears)))
    if len(multipliers) != len(linears):
        raise ValueError(
            f"{name}.weight_multipliers has {len(multipliers)} entries for "
            f"{len(linears)} linear layers"
        )
    module_names = {id(m): n for n, m in model.named_modules()}
    params = set(problem.layout.names)
    layers = []
    for lin, mult in zip(linears, multipliers):
        if not isinstance(lin, nn.Linear):
            raise ValueError(_NOT_MLP.format(name=name))
        prefix = module_names[id(lin)]
        w, b = f"{prefix}.weight", f"{prefix}.bias"
        if w not in params:
            raise ValueError(f"layerwise_stats: the weight {w!r} is not a trainable parameter")
        if lin.bias is not None and b not in params:
            raise ValueError(f"layerwise_stats: the bias {b!r} is not a trainable parameter")
        layers.append(
            _MLPLayer(
                weight=w,
                bias=b if lin.bias is not None else None,
                multiplier=float(mult),
                d_in=lin.in_features,
                d_out=lin.out_features,
            )
        )
    for prev, nxt in zip(layers[:-1], layers[1:]):
        if prev.d_out != nxt.d_in:
            raise ValueError(
                f"{name}: linear layers of widths {prev.d_out} → {nxt.d_in} do not chain"
            )
    if layers[-1].d_out != problem.n_outputs:
        raise ValueError(
            f"{name}: the last linear layer has {layers[-1].d_out} outputs, the model "
            f"{problem.n_outputs}"
        )
    return layers, sigma


def _sigma_prime(sigma: Callable, z: torch.Tensor) -> torch.Tensor:
    """σ'(z) elementwise, as the forward-mode derivative along the all-ones tangent."""
    return jvp(sigma, (z,), (torch.ones_like(z),))[1]


def _check_structure(
    layers: list[_MLPLayer],
    sigma: Callable,
    params: dict[str, torch.Tensor],
    a0: torch.Tensor,
    zs: list[torch.Tensor],
    name: str,
) -> None:
    """Verify z_ℓ = ω_ℓ W_ℓ σ(z_{ℓ−1}) + b_ℓ and that σ is elementwise (first chunk only)."""
    tol = 1e3 * torch.finfo(a0.dtype).eps
    a = a0
    for i, (layer, z) in enumerate(zip(layers, zs)):
        W = params[layer.weight]
        b = params[layer.bias] if layer.bias is not None else None
        z_rec = F.linear(a, W * layer.multiplier, b)
        scale = float(z.abs().max()) if z.numel() else 1.0
        if z_rec.shape != z.shape or not torch.allclose(z_rec, z, rtol=tol, atol=tol * scale):
            raise ValueError(
                f"{name}: pre-activation {i + 1} is not ω W a + b of the previous activation; "
                + _NOT_MLP.format(name=name)
            )
        if i < len(layers) - 1:
            t = torch.linspace(-1.0, 1.0, z.shape[-1], dtype=z.dtype, device=z.device).expand_as(z)
            d = _sigma_prime(sigma, z)
            dt = jvp(sigma, (z,), (t,))[1]
            if not torch.allclose(dt, d * t, rtol=tol, atol=tol * float(d.abs().max() + 1)):
                raise ValueError(
                    f"{name}: the activation is not elementwise; " + _NOT_MLP.format(name=name)
                )
            a = sigma(z)


# --------------------------------------------------------------------------- ‖K‖²


def _top_eig_dqd_exact(Wt: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """λ_1(D Q D) per sample exactly, Q = Wtᵀ Wt, D = diag(d): [w_out, w], [B, w] → [B].

    Uses the smaller Gram matrix: KᵀK = D Q D [B, w, w] or K Kᵀ = Wt D² Wtᵀ
    [B, w_out, w_out] (the latter as one GEMM d² @ (Wt_i ⊙ Wt_k)ᵀ).
    """
    w_out, w = Wt.shape
    if w <= w_out:
        Q = Wt.T @ Wt  # [w, w]
        G = d.unsqueeze(-1) * Q * d.unsqueeze(-2)  # [B, w, w]
    else:
        outer = (Wt.unsqueeze(1) * Wt.unsqueeze(0)).reshape(w_out * w_out, w)  # [o², w]
        G = (d.square() @ outer.T).reshape(-1, w_out, w_out)  # [B, o, o]
    G = 0.5 * (G + G.mT)
    return torch.linalg.eigvalsh(G)[:, -1].clamp_min(0)


def _top_eig_dqd_iterative(
    Q: torch.Tensor, d: torch.Tensor, V0: torch.Tensor, *, tol: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """λ_1(D Q D) per sample by block subspace iteration with Rayleigh–Ritz.

    Per iteration, with the block stored as rows Vt [B, k, w] (orthonormal rows):
    Y = D Q D V (one GEMM [B·k, w] @ Q for the chunk), T = Vᵀ Y = S diag(θ) Sᵀ,
    u = V s_1, r = ‖Y s_1 − θ_1 u‖, then V ← orth(Y). A sample converges when
    r ≤ max(tol, 128 ε) · θ_1; its θ_1 is frozen then, so the answer for one sample does not
    depend on which other samples share its chunk.

    Args:
        Q: [w, w] symmetric PSD, shared by all samples.
        d: [B, w] diagonal of D per sample.
        V0: [k, w] orthonormal start rows, shared by all samples.
        tol: relative residual tolerance.
        max_iter: iteration cap.

    Returns:
        (λ_1 [B], relative residual [B], converged [B] bool, iterations used).
    """
    B, w = d.shape
    k = V0.shape[0]
    tol_eff = max(tol, 128 * torch.finfo(d.dtype).eps)
    tiny = torch.finfo(d.dtype).tiny
    dr = d.unsqueeze(1)  # [B, 1, w]
    Vt = V0.expand(B, k, w)  # [B, k, w]
    lam = torch.zeros(B, dtype=d.dtype, device=d.device)
    res = torch.zeros_like(lam)
    done = torch.zeros(B, dtype=torch.bool, device=d.device)
    n_iter = 0
    for it in range(1, max_iter + 1):
        n_iter = it
        Yt = dr * ((dr * Vt).reshape(B * k, w) @ Q).reshape(B, k, w)  # [B, k, w], Q symmetric
        T = Vt @ Yt.mT  # [B, k, k]
        evals, S = torch.linalg.eigh(0.5 * (T + T.mT))
        theta = evals[:, -1]
        s1 = S[:, :, -1:]  # [B, k, 1]
        r = torch.linalg.vector_norm(
            (Yt.mT @ s1).squeeze(-1) - theta.unsqueeze(-1) * (Vt.mT @ s1).squeeze(-1), dim=-1
        )
        rel = r / theta.clamp_min(tiny)
        ok = r <= tol_eff * theta.clamp_min(0)
        new = ok & ~done
        lam = torch.where(new, theta, lam)
        res = torch.where(new, rel, res)
        done = done | ok
        if bool(done.all()):
            break
        Vt = torch.linalg.qr(Yt.mT).Q.mT  # [B, k, w]
    lam = torch.where(done, lam, theta)
    res = torch.where(done, res, rel)
    return lam.clamp_min(0), res, done, n_iter


def _start_rows(w: int, k: int, seed: int, layer: int, like: torch.Tensor) -> torch.Tensor:
    """Seeded orthonormal start rows [k, w] (drawn on the CPU in float64: device-independent)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + layer)
    R = torch.randn(w, k, generator=g, dtype=torch.float64)
    return torch.linalg.qr(R).Q.T.contiguous().to(like)


# --------------------------------------------------------------------------- chunking


def _per_sample_bytes_layerwise(layers, n, itemsize, exact_width, block_size) -> int:
    widths = [layer.d_out for layer in layers]
    w_max = max([layers[0].d_in, *widths])
    k_ws = 0
    for layer, nxt in zip(layers[:-1], layers[1:]):
        m = min(layer.d_out, nxt.d_out)
        k_ws = max(
            k_ws, m * m if m <= exact_width else 5 * min(block_size, layer.d_out) * layer.d_out
        )
    per = 3 * sum(widths) + layers[0].d_in + 3 * n * w_max + (len(layers) + 2) * n * n + k_ws
    return per * itemsize


# --------------------------------------------------------------------------- MLP path


def layerwise_stats(
    problem: Problem,
    theta: torch.Tensor,
    *,
    chunk_size: int | None = None,
    exact_width: int = 64,
    tol: float = 1e-8,
    max_iter: int = DEFAULT_MAX_ITER,
    block_size: int = DEFAULT_BLOCK_SIZE,
    seed: int = 0,
    memory_budget: int | None = None,
) -> LayerwiseStats:
    r"""The layerwise decomposition of E‖M_x‖² for an MLP at θ (``docs/methods.md`` §5).

    One forward pass per chunk (``functional_call(..., return_preactivations=True)``) gives
    z_1..z_L; then, per sample, s_ℓ = [bias] + ω_ℓ²‖a_{ℓ−1}‖², the backward recursion
    A_L = H^{1/2}, A_ℓ = (A_{ℓ+1} ω_{ℓ+1}W_{ℓ+1}) ⊙ σ'(z_ℓ) (Lowell 2024 Eq. 5; one GEMM per
    layer for the chunk), ‖A_ℓ‖² = λ_1(A_ℓA_ℓᵀ), ‖M_x‖² = λ_1(Σ_ℓ s_ℓ A_ℓA_ℓᵀ) (n_out × n_out
    ``eigvalsh``, exact) and ‖K_ℓ‖² (exact or iterative, see the module docstring). σ' is the
    forward-mode derivative of ``model.activation_fn`` (any elementwise σ: tanh, relu, elu,
    gelu, softplus, identity, …). Aggregates and the five components (I)–(V) (Eq. 7) follow
    from the per-sample values; see :class:`LayerwiseStats`.

    Memory per chunk of B samples (widths w_0 = input dim, w_1..w_L = n_out = n), in units
    of the dtype's bytes: about B·(3Σ_ℓ w_ℓ + w_0 + 3n·max_ℓ w_ℓ + (L+2)n² + W_K), where
    W_K = m² for an exact ‖K_ℓ‖² (m = min(w_ℓ, w_{ℓ+1}) ≤ ``exact_width``) or ≈ 5·k·w_ℓ for the
    iterative one (block k), plus the weights and Q_ℓ = W_{ℓ+1}ᵀW_{ℓ+1} [w_ℓ, w_ℓ].

    Args:
        problem: the training problem; ``problem.model`` must be an MLP (see Raises).
        theta: θ [P].
        chunk_size: samples per chunk. Default: ``problem.chunk_size``, lowered if needed so
            that one chunk's estimate above fits ``memory_budget``. Results do not depend on
            it beyond round-off.
        exact_width: ‖K_ℓ‖² is computed exactly when min(w_ℓ, w_{ℓ+1}) ≤ this.
        tol: relative residual tolerance of the iterative ‖K_ℓ‖² (floored at 128 ε_mach).
        max_iter: iteration cap of the iterative ‖K_ℓ‖².
        block_size: block size k of the subspace iteration (capped at w_ℓ).
        seed: seed of the iteration's start block (shared by all samples and chunks).
        memory_budget: bytes for the default chunk size (default: 4 GiB on the CPU, half
            the free memory on a GPU).

    Returns:
        A :class:`LayerwiseStats`.

    Raises:
        ValueError: if the model is not an MLP (no ``linear_layers()``/elementwise
            ``activation_fn``, e.g. a CNN: use :func:`per_sample_m_norm_sq` and
            :func:`per_layer_c`), if θ is not [P], or on a non-positive option.

    Warns:
        NonConvergenceWarning: if some iterative ‖K_ℓ‖² did not converge in ``max_iter``
            (``K_converged`` is then False for that layer).
    """
    layers, sigma = _mlp_layers(problem)
    if theta.shape != (problem.size,):
        raise ValueError(f"theta must have shape [{problem.size}], got {tuple(theta.shape)}")
    for opt, value in (("max_iter", max_iter), ("block_size", block_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{opt} must be a positive integer, got {value!r}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol!r}")
    L = len(layers)
    n = problem.n_outputs
    model_name = type(problem.model).__name__
    theta = theta.detach()
    per_sample = _per_sample_bytes_layerwise(
        layers, n, theta.element_size(), exact_width, block_size
    )
    chunk = _resolve_chunk(problem, chunk_size, memory_budget, per_sample)

    params = problem.layout.unflatten(theta)
    full = {**params, **problem.buffers}
    W_eff = [params[layer.weight] * layer.multiplier for layer in layers]  # ω_ℓ W_ℓ
    exact = [min(layers[i].d_out, layers[i + 1].d_out) <= exact_width for i in range(L - 1)]
    Q = [None if exact[i] else W_eff[i + 1].T @ W_eff[i + 1] for i in range(L - 1)]
    V0 = [
        None
        if exact[i]
        else _start_rows(layers[i].d_out, min(block_size, layers[i].d_out), seed, i, theta)
        for i in range(L - 1)
    ]

    out_s, out_A, out_K, out_M = [], [], [], []
    K_res = [[] for _ in range(L - 1)]
    K_ok = [[] for _ in range(L - 1)]
    K_it = [0] * (L - 1)
    first = True
    with torch.no_grad():
        for Xc, yc in _chunks(problem, chunk):
            try:
                f, zs = functional_call(problem.model, full, (Xc,), {"return_preactivations": True})
            except TypeError as err:
                raise ValueError(_NOT_MLP.format(name=model_name)) from err
            zs = list(zs)
            if len(zs) != L:
                raise ValueError(
                    f"{model_name} returned {len(zs)} pre-activations for {L} linear layers"
                )
            B = Xc.shape[0]
            a0 = Xc.reshape(B, -1)
            if first:
                _check_structure(layers, sigma, params, a0, zs, model_name)
                first = False
            # s_ℓ = [bias] + ω_ℓ²‖a_{ℓ−1}‖²
            s = torch.empty(B, L, dtype=theta.dtype, device=theta.device)
            d = []
            a = a0
            for i, layer in enumerate(layers):
                s[:, i] = layer.multiplier**2 * a.square().sum(-1) + (
                    1.0 if layer.bias is not None else 0.0
                )
                if i < L - 1:
                    d.append(_sigma_prime(sigma, zs[i]))  # [B, w_ℓ]
                    a = sigma(zs[i])
            # A_L = H^{1/2}; A_ℓ = (A_{ℓ+1} ω W_{ℓ+1}) ⊙ σ'(z_ℓ)
            A = problem.criterion.output_hessian_sqrt(f, yc)  # [B, n, n]
            A_sq = torch.empty(B, L, dtype=theta.dtype, device=theta.device)
            MMt = torch.zeros(B, n, n, dtype=theta.dtype, device=theta.device)
            for i in range(L - 1, -1, -1):
                if i < L - 1:
                    A = (A.reshape(B * n, -1) @ W_eff[i + 1]).reshape(B, n, -1) * d[i].unsqueeze(1)
                G = A @ A.mT  # [B, n, n]
                G = 0.5 * (G + G.mT)
                A_sq[:, i] = torch.linalg.eigvalsh(G)[:, -1].clamp_min(0)
                MMt = MMt + s[:, i, None, None] * G
            M_sq = torch.linalg.eigvalsh(MMt)[:, -1].clamp_min(0)
            # ‖K_ℓ‖²
            K_sq = torch.empty(B, L - 1, dtype=theta.dtype, device=theta.device)
            for i in range(L - 1):
                if exact[i]:
                    K_sq[:, i] = _top_eig_dqd_exact(W_eff[i + 1], d[i])
                    K_res[i].append(torch.zeros(B, dtype=theta.dtype, device=theta.device))
                    K_ok[i].append(torch.ones(B, dtype=torch.bool, device=theta.device))
                else:
                    lam, res, ok, it = _top_eig_dqd_iterative(
                        Q[i], d[i], V0[i], tol=tol, max_iter=max_iter
                    )
                    K_sq[:, i] = lam
                    K_res[i].append(res)
                    K_ok[i].append(ok)
                    K_it[i] = max(K_it[i], it)
            out_s.append(s)
            out_A.append(A_sq)
            out_K.append(K_sq)
            out_M.append(M_sq)

    s = torch.cat(out_s)
    A_sq = torch.cat(out_A)
    K_sq = torch.cat(out_K)
    M_sq = torch.cat(out_M)
    K_residual = torch.stack([torch.cat(r).max() for r in K_res]) if L > 1 else s.new_zeros(0)
    K_conv = (
        torch.stack([torch.cat(o).all() for o in K_ok])
        if L > 1
        else torch.zeros(0, dtype=torch.bool, device=s.device)
    )
    if L > 1 and not bool(K_conv.all()):
        bad = [i + 1 for i in range(L - 1) if not bool(K_conv[i])]
        n_bad = [int((~torch.cat(K_ok[i - 1])).sum()) for i in bad]
        warnings.warn(
            f"layerwise_stats: ‖K_ℓ‖² did not converge to tol={tol:g} within "
            f"max_iter={max_iter} for layers {bad} ({n_bad} of {problem.N} samples; largest "
            f"relative residuals {[float(K_residual[i - 1]) for i in bad]}); K_converged is "
            f"False for them",
            NonConvergenceWarning,
            stacklevel=2,
        )
    return _aggregate(
        layers=layers,
        s=s,
        A_sq=A_sq,
        K_sq=K_sq,
        M_sq=M_sq,
        K_method=tuple("exact" if e else "iterative" for e in exact),
        K_converged=K_conv,
        K_residual=K_residual,
        K_iterations=tuple(K_it),
    )


def _suffix_prod(x: torch.Tensor) -> torch.Tensor:
    """[Π_{k≥i} x_k for each i] of a 1-D tensor."""
    return torch.flip(torch.cumprod(torch.flip(x, (0,)), 0), (0,))


def _aggregate(*, layers, s, A_sq, K_sq, M_sq, K_method, K_converged, K_residual, K_iterations):
    """Means over samples, α, γ and the five components (Eq. 6–7)."""
    c = s * A_sq  # [N, L]
    Es, EA, C, EK = s.mean(0), A_sq.mean(0), c.mean(0), K_sq.mean(0)
    alpha = EA[:-1] / (EA[1:] * EK)  # α_k = E‖A_{k+1}K_k‖² / (E‖A_{k+1}‖² E‖K_k‖²)
    gamma = C / (Es * EA)
    if len(layers) > 1:
        comp_I = C[-1].expand(len(layers) - 1)
        comp_II = _suffix_prod(Es[:-1] / Es[1:])
        comp_III = _suffix_prod(EK)
        comp_IV = gamma[:-1] / gamma[-1]
        comp_V = _suffix_prod(alpha)
        components = torch.stack([comp_I, comp_II, comp_III, comp_IV, comp_V], dim=1)
        V = torch.cat([comp_V, comp_V.new_ones(1)])
    else:
        components = s.new_zeros(0, 5)
        V = s.new_ones(1)
    return LayerwiseStats(
        depth=len(layers),
        widths=tuple(layer.d_out for layer in layers),
        s=s,
        A_norm_sq=A_sq,
        c=c,
        K_norm_sq=K_sq,
        M_norm_sq=M_sq,
        Es=Es,
        EA=EA,
        C=C,
        EK=EK,
        EM2=M_sq.mean(),
        alpha=alpha,
        gamma=gamma,
        components=components,
        alignment_product=V,
        K_method=K_method,
        K_converged=K_converged,
        K_residual=K_residual,
        K_iterations=K_iterations,
    )
