"""Gauss–Newton decomposition of the sharpness at θ (``docs/methods.md`` §4–5; Lowell 2024 Eq. 2–3).

The Hessian splits into the Gauss–Newton matrix and a residual (``docs/methods.md`` §4):

    H = G + R,   G = E_x[J_xᵀ H_ℓ(x) J_x] = E_x[M_xᵀ M_x],   R = H − G,
    M_x = H_ℓ(x)^{1/2} J_x,
    λ_1(G) = ζ · E‖M_x‖²,   ζ = λ_1(E[MᵀM]) / E[‖M‖²] ∈ (0, 1],

with ‖M_x‖² = λ_1(M_x M_xᵀ). :class:`GaussNewtonProbe` measures the top eigenvalues of H, G
and R (and, optionally, the bottom one of R), the per-layer sharpness λ_1(H_ℓℓ) of each
module's diagonal block of H (``docs/methods.md`` §5), and ζ when the caller supplies E‖M_x‖²
(the layerwise analysis computes it). Every eigensolve is warm-started from the previous
call's vectors, which is what makes the probe cheap along a trajectory
(``docs/architecture.md`` rule 10). Like every probe it returns values and writes nothing
(``docs/architecture.md`` rule 4).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from eoslab.eigen import EigResult, NonConvergenceWarning
from eoslab.eigen.spec import EigSpec
from eoslab.linalg import (
    GaussNewtonOperator,
    HessianOperator,
    Operator,
    RestrictedOperator,
    residual_operator,
)
from eoslab.problem import Problem

__all__ = ["DEFAULT_GN_SOLVER", "GaussNewtonProbe", "GaussNewtonResult"]

#: The probe's eigensolves: verified Lanczos at a relative residual of 1e-6, tighter than the
#: spectrum probe's (:data:`eoslab.probes.DEFAULT_SOLVER`): λ_1(H) and λ_1(G) are often within
#: a few percent of each other at the edge of stability, and ζ and the Weyl bracket
#: λ_1(G) + λ_min(R) ≤ λ_1(H) ≤ λ_1(G) + λ_1(R) are read from differences and ratios of them.
#: Only top-1 pairs are solved, for which warm-started Lanczos converges in a few products.
DEFAULT_GN_SOLVER = EigSpec(tol=1e-6)

#: Warm-start key of the operator whose top eigenvalue is layer ``name``'s sharpness.
_LAYER_PREFIX = "layer_"


@dataclass(frozen=True)
class GaussNewtonResult:
    """What one :class:`GaussNewtonProbe` call returns; the run loop writes it.

    Attributes:
        metrics: flat scalar telemetry, ``{name: float}`` (names in :class:`GaussNewtonProbe`).
        warm: warm-start blocks ``{operator key: [P_op, m] tensor}`` (keys ``'H'``, ``'G'``,
            ``'R'``, ``'R_min'``, ``'layer_<module>'``, for the operators solved); pass the
            dict as ``warm=`` to the next call. Plain detached tensors that own their
            storage, so the dict can be saved in a checkpoint as it is.
        eigs: the eigensolve of each operator, by the same keys (top pair of each).
        n_matvecs: operator applications summed over all eigensolves (one product with R
            counts once here, though it costs a Hessian and a Gauss–Newton product).
        n_hessian_products: Hessian-vector products spent (by the H, R and layer solves;
            a layer-block product is one full Hessian product).
        n_ggn_products: Gauss–Newton-vector products spent (by the G and R solves).
    """

    metrics: dict[str, float]
    warm: dict[str, torch.Tensor]
    eigs: dict[str, EigResult]
    n_matvecs: int
    n_hessian_products: int
    n_ggn_products: int


class GaussNewtonProbe:
    """λ_1 of H, G = E[J_xᵀ H_ℓ J_x], R = H − G, layer sharpness, ζ (``docs/methods.md`` §4–5).

    One call builds the Hessian operator H once (its graph of g is shared by the H, R and
    layer solves) and the Gauss–Newton operator G once, and solves for the top eigenpair of
    each requested operator with ``which='LA'``:

    - ``lambda_H`` = λ_1(H), the sharpness; ``lambda_G`` = λ_1(G) ≥ 0;
    - ``lambda_R`` = λ_1(H − G) (with ``residual``), and ``lambda_R_min`` = λ_min(H − G)
      (with ``residual_min``, ``which='SA'``). By Weyl's inequalities, with G ⪰ 0,

          λ_1(G) + λ_min(R) ≤ λ_1(H) ≤ λ_1(G) + λ_1(R),   λ_1(R) ≤ λ_1(H);

    - ``layer_sharpness_<module>`` = λ_1(H_SS) for the parameter block S of each module
      (:meth:`~eoslab.params.ParamLayout.group_slices`; module names as in
      ``named_parameters()``, e.g. ``layer_sharpness_0`` for ``0.weight``/``0.bias``), with
      ``layers``. By Cauchy interlacing each is ≤ λ_1(H);
    - ``EM2`` = E_x‖M_x‖² and ``zeta`` = ζ = λ_1(G) / E‖M_x‖² when ``m_norm_sq_mean`` is
      given (Lowell 2024 Eq. 3, ``docs/methods.md`` §4). ζ ∈ (0, 1] exactly; a value outside
      (0, 1 + slack] means E‖M‖² does not belong to this θ and problem and is reported with
      a ``RuntimeWarning`` (the value is kept);
    - per operator key (``H``, ``G``, ``R``, ``R_min``, ``layer_<module>``):
      ``matvecs_<key>`` (operator applications of its solve) and ``converged_<key>``
      (1.0 or 0.0); overall ``eig_converged`` (1.0 when every solve converged) and
      ``eig_residual_max`` = max over solves of ‖A v − λ v‖ / |λ|.

    A solve that does not converge keeps its values, sets its flags to 0.0 and emits a
    :class:`~eoslab.eigen.NonConvergenceWarning` naming it (besides the solver's own).

    Args:
        solver: the eigensolve of every operator (:class:`~eoslab.eigen.EigSpec`; default
            :data:`DEFAULT_GN_SOLVER`); its ``which`` is set per operator (``"SA"`` for
            λ_min(H − G), ``"LA"`` otherwise).
        layers: measure the per-layer sharpness of every module with parameters.
        residual: measure λ_1(H − G).
        residual_min: also measure λ_min(H − G) (one more solve; each R product costs one
            Hessian and one Gauss–Newton product).

    Raises:
        ValueError: for invalid options (naming the option).
    """

    def __init__(
        self,
        *,
        solver: EigSpec = DEFAULT_GN_SOLVER,
        layers: bool = True,
        residual: bool = True,
        residual_min: bool = False,
    ):
        if not isinstance(solver, EigSpec):
            raise ValueError(f"solver must be an eoslab.eigen.EigSpec, got {solver!r}")
        self.solver = solver.replace(which="LA")
        self._specs = {"LA": self.solver}
        if residual_min:
            self._specs["SA"] = solver.replace(which="SA")
        self.layers = bool(layers)
        self.residual = bool(residual)
        self.residual_min = bool(residual_min)

    def operator_keys(self, problem: Problem) -> list[str]:
        """Keys of the operators a call on ``problem`` solves, in solve order (warm-dict keys)."""
        keys = ["H", "G"]
        if self.residual:
            keys.append("R")
        if self.residual_min:
            keys.append("R_min")
        if self.layers:
            keys += [_LAYER_PREFIX + name for name in problem.layout.group_slices()]
        return keys

    def __call__(
        self,
        problem: Problem,
        theta: torch.Tensor,
        *,
        warm: dict[str, torch.Tensor] | None = None,
        m_norm_sq_mean: float | None = None,
    ) -> GaussNewtonResult:
        """Probe at θ.

        Args:
            problem: the training problem.
            theta: θ [P].
            warm: the previous call's :attr:`GaussNewtonResult.warm` (or a subset of it),
                ``{key: [P_op, m] or [P_op]}``; operators without an entry start cold.
            m_norm_sq_mean: E_x‖M_x‖² at this θ (``docs/methods.md`` §4), > 0; enables ``EM2``
                and ``zeta``.

        Returns:
            :class:`GaussNewtonResult`.

        Raises:
            ValueError: for θ not of shape [P], a ``warm`` key this probe does not solve
                (naming it and the known keys), a warm block with the wrong number of rows,
                or an ``m_norm_sq_mean`` that is not positive and finite.
        """
        P = problem.size
        if theta.shape != (P,):
            raise ValueError(f"theta must have shape [{P}], got {tuple(theta.shape)}")
        keys = self.operator_keys(problem)
        warm = {} if warm is None else dict(warm)
        unknown = sorted(set(warm) - set(keys))
        if unknown:
            raise ValueError(
                f"warm has keys {unknown} that this probe does not solve; known keys: {keys}"
            )
        if m_norm_sq_mean is not None:
            m_norm_sq_mean = float(m_norm_sq_mean)
            if not (m_norm_sq_mean > 0 and math.isfinite(m_norm_sq_mean)):
                raise ValueError(
                    f"m_norm_sq_mean = E‖M_x‖² must be positive and finite, got {m_norm_sq_mean}"
                )

        theta = theta.detach()
        H = HessianOperator(problem, theta)
        G = GaussNewtonOperator(problem, theta)
        ops: dict[str, tuple[Operator, str]] = {"H": (H, "LA"), "G": (G, "LA")}
        if self.residual or self.residual_min:
            R = residual_operator(H, G)
            if self.residual:
                ops["R"] = (R, "LA")
            if self.residual_min:
                ops["R_min"] = (R, "SA")
        if self.layers:
            for name, index in problem.layout.group_slices().items():
                ops[_LAYER_PREFIX + name] = (RestrictedOperator(H, index), "LA")

        eigs: dict[str, EigResult] = {}
        for key, (op, which) in ops.items():
            v0 = warm.get(key)
            if v0 is not None:
                v0 = _check_warm(key, v0, op)
            eigs[key] = self._specs[which].solve(op, 1, v0=v0)

        m = self._metrics(eigs, m_norm_sq_mean, theta.dtype)
        self._warn(eigs, m, m_norm_sq_mean, theta.dtype)
        return GaussNewtonResult(
            metrics=m,
            warm={key: _own(e.warm_start) for key, e in eigs.items()},
            eigs=eigs,
            n_matvecs=sum(e.n_matvecs for e in eigs.values()),
            n_hessian_products=H.n_applied,
            n_ggn_products=G.n_applied,
        )

    def _metrics(
        self, eigs: dict[str, EigResult], m_norm_sq_mean: float | None, dtype: torch.dtype
    ) -> dict[str, float]:
        """All metrics as floats, one host sync for the eigenvalues (architecture rule 10).

        ``docs/architecture.md`` rule 10.
        """
        value_names = {"H": "lambda_H", "G": "lambda_G", "R": "lambda_R", "R_min": "lambda_R_min"}
        names, values = [], []
        for key, e in eigs.items():
            if key.startswith(_LAYER_PREFIX):
                names.append("layer_sharpness_" + key[len(_LAYER_PREFIX) :])
            else:
                names.append(value_names[key])
            values.append(e.eigenvalues[0].to(dtype))
        rel = [
            (e.residuals[0] / e.eigenvalues[0].abs().clamp_min(torch.finfo(dtype).tiny)).to(dtype)
            for e in eigs.values()
        ]
        floats = torch.stack(values + rel).tolist()
        m = dict(zip(names, floats[: len(names)]))
        if m_norm_sq_mean is not None:
            m["EM2"] = m_norm_sq_mean
            m["zeta"] = m["lambda_G"] / m_norm_sq_mean
        for key, e in eigs.items():
            m[f"matvecs_{key}"] = float(e.n_matvecs)
        for key, e in eigs.items():
            m[f"converged_{key}"] = 1.0 if e.all_converged else 0.0
        m["eig_converged"] = 1.0 if all(e.all_converged for e in eigs.values()) else 0.0
        m["eig_residual_max"] = max(floats[len(names) :])
        return m

    def _warn(
        self,
        eigs: dict[str, EigResult],
        m: dict[str, float],
        m_norm_sq_mean: float | None,
        dtype: torch.dtype,
    ) -> None:
        """Never silent: unconverged solves and a ζ outside (0, 1] are warned about."""
        bad = [key for key, e in eigs.items() if not e.all_converged]
        if bad:
            warnings.warn(
                f"Gauss–Newton probe ({self.solver.describe()}): the eigensolves of "
                f"{bad} did not converge (max relative residual {m['eig_residual_max']:.2e}); "
                "values kept, their converged_* flags and eig_converged = 0",
                NonConvergenceWarning,
                stacklevel=3,
            )
        if m_norm_sq_mean is None:
            return
        # The Ritz value λ_G never exceeds λ_1(G) (Rayleigh quotient), so ζ > 1 can only come
        # from an E‖M‖² that belongs to another θ or problem, beyond round-off of its sum.
        slack = max(self.solver.tol, 1024 * torch.finfo(dtype).eps)
        zeta = m["zeta"]
        if not 0 < zeta <= 1 + slack:
            warnings.warn(
                f"ζ = λ_1(G) / E‖M‖² = {m['lambda_G']:.6g} / {m_norm_sq_mean:.6g} = {zeta:.6g} "
                f"lies outside (0, 1] (slack {slack:.1e}); docs/methods.md §4 makes ζ ∈ (0, 1] "
                "exact, "
                "so E‖M_x‖² was probably computed at another θ or on other data",
                RuntimeWarning,
                stacklevel=3,
            )


def _check_warm(key: str, v0: torch.Tensor, op: Operator) -> torch.Tensor:
    """A warm block as [P_op, m] in the operator's dtype and device, or a ValueError naming it."""
    if not isinstance(v0, torch.Tensor):
        raise ValueError(f"warm[{key!r}] must be a tensor, got {type(v0).__name__}")
    if v0.dim() not in (1, 2) or v0.shape[0] != op.size:
        raise ValueError(
            f"warm[{key!r}] must have shape [{op.size}] or [{op.size}, m], got {tuple(v0.shape)}"
        )
    return v0.detach().to(device=op.device, dtype=op.dtype)


def _own(block: torch.Tensor) -> torch.Tensor:
    """A detached copy owning its storage: a checkpoint of a view saves its whole base."""
    return block.detach().clone()
