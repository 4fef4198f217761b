"""Step-size controllers: constant η or η_t = min(η_max, c/λ_1(θ_t)) (``docs/methods.md`` §3, §7).

A controller is asked for the step at θ_t by :meth:`StepSize.choose`, which returns a
:class:`StepChoice`: the step, scalars to log, the Hessian-vector products it spent, the
controller's part of the integrator state (e.g. the warm-start vector of its eigensolver),
and L(θ_t), g(θ_t) when it computed them as by-products (the Hessian graph of
:class:`~eoslab.linalg.HessianOperator` yields both), so that the integrator need not
evaluate the gradient again. ``controller(problem, θ, state)`` is the short form returning
``(lr, info, n_matvecs)``.

Controllers are stateless objects; their state is a dict of tensors that the integrator
merges into its own state dict under the controller's keys (:attr:`StepSize.state_keys`).
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

from eoslab.dynamics.base import check_positive
from eoslab.eigen import NonConvergenceWarning
from eoslab.eigen.spec import EigSpec
from eoslab.linalg import HessianOperator
from eoslab.problem import Problem

__all__ = [
    "DEFAULT_C",
    "STEP_SOLVER",
    "Constant",
    "SharpnessAdaptive",
    "StepChoice",
    "StepSize",
    "as_step_size",
]

#: The per-step eigensolve of the adaptive step and of exponential Euler: verified Lanczos
#: at a relative residual of 1e-6. The step is a function of λ_1 (or of the top-(k+1) pairs
#: and the gradient's coordinates in them), so its error is of the order of tol; 1e-6 keeps
#: the integrators' own error below the dynamics they resolve, and a warm start along the
#: trajectory makes it cheap (a few products per step on the benchmark problems).
STEP_SOLVER = EigSpec(tol=1e-6)

#: Default c of the adaptive step η_t = min(η_max, c/λ_1) (Lowell 2022's exact flow: 0.5).
DEFAULT_C = 0.5


@dataclass(frozen=True)
class StepChoice:
    """A controller's answer at θ_t.

    Attributes:
        lr: the step η_t.
        info: scalars to log (e.g. ``{"sharpness": λ_1}``).
        n_matvecs: Hessian-vector products spent choosing η_t.
        state: the controller's new state entries (tensors only), merged into the
            integrator's state.
        loss: L(θ_t) if the controller computed it as a by-product, else None.
        gradient: g(θ_t) [P] if the controller computed it as a by-product, else None.
    """

    lr: float
    info: dict[str, float] = field(default_factory=dict)
    n_matvecs: int = 0
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    loss: torch.Tensor | None = None
    gradient: torch.Tensor | None = None


class StepSize(ABC):
    """A step-size controller for the gradient-flow integrators.

    Attributes:
        state_keys: the keys of the integrator state this controller owns.
        adaptive: True when η_t depends on θ_t.
    """

    state_keys: tuple[str, ...] = ()
    adaptive: bool = False

    def init_state(self, problem: Problem, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """The controller's state before the first step (``{}`` unless overridden)."""
        return {}

    @abstractmethod
    def choose(
        self, problem: Problem, theta: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> StepChoice:
        """The step at θ_t [P] given the integrator state (the controller reads its own keys).

        Returns:
            A :class:`StepChoice` carrying the step and the controller's new state.
        """

    def __call__(
        self, problem: Problem, theta: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[float, dict[str, float], int]:
        """``(lr, info, n_matvecs)`` of :meth:`choose` (its new state is dropped)."""
        c = self.choose(problem, theta, state)
        return c.lr, c.info, c.n_matvecs


class Constant(StepSize):
    """η_t = lr for every step (``docs/methods.md`` §2).

    Args:
        lr: the step size η > 0.
    """

    def __init__(self, lr: float):
        self.lr = check_positive(lr, "lr", owner="Constant")

    def choose(self, problem, theta, state):
        """``StepChoice(lr)``: no products, no state."""
        return StepChoice(lr=self.lr)

    def __repr__(self) -> str:
        return f"Constant(lr={self.lr!r})"


class SharpnessAdaptive(StepSize):
    """η_t = min(η_max, c / λ_1(θ_t)), with λ_1 recomputed every step (``docs/methods.md`` §3, §7).

    This is the "exact flow" of Lowell 2022 (paper: η_max = 0.001, c = 0.5) and the adaptive
    Euler step of ``docs/methods.md`` §7; RK4 can use it for "a step chosen from λ_1". With
    c < 2 every direction satisfies η_t λ_i ≤ c < 2, so GD stays below the edge of stability.

    λ_1 comes from ``eigsh(HessianOperator(problem, θ), 1, which="LA")``, warm-started from
    the previous step's vector(s), kept in the state under ``"sharpness_v"`` ([P, m]; absent
    before the first step, when the solve starts from seeded noise). The Hessian graph's L
    and g are handed to the integrator, so the step needs no further gradient at θ_t. If
    λ_1 ≤ 0 (no positive curvature), η_t = η_max. A solve that does not converge to ``tol``
    emits :class:`~eoslab.eigen.NonConvergenceWarning` and sets ``info["sharpness_converged"]``
    to 0.0; its Ritz value is still used.

    Args:
        lr_max: η_max > 0.
        c: the target η_t λ_1 > 0.
        solver: the eigensolve of λ_1 (:class:`~eoslab.eigen.EigSpec`, ``which="LA"``);
            default :data:`STEP_SOLVER`.
    """

    state_keys = ("sharpness_v", "sharpness_lam")
    adaptive = True

    def __init__(
        self,
        lr_max: float,
        c: float,
        *,
        solver: EigSpec = STEP_SOLVER,
    ):
        owner = "SharpnessAdaptive"
        self.lr_max = check_positive(lr_max, "lr_max", owner=owner)
        self.c = check_positive(c, "c", owner=owner)
        self.solve = TrackedSolve("sharpness", solver, owner=owner)

    def choose(self, problem, theta, state):
        """λ_1 by a warm-started eigensolve; η_t = min(η_max, c/λ_1) (η_max if λ_1 ≤ 0)."""
        op = HessianOperator(problem, theta)
        res, new_state = self.solve(op, 1, state)
        lam = float(res.eigenvalues[0])
        converged = res.all_converged
        if not converged:
            warnings.warn(
                f"SharpnessAdaptive: λ_1 = {lam:.6g} did not converge to tol={res.tol:g} "
                f"({res.n_matvecs} products); the step uses it anyway",
                NonConvergenceWarning,
                stacklevel=3,
            )
        lr = self.lr_max
        if lam > 0 and math.isfinite(lam):
            lr = min(self.lr_max, self.c / lam)
        return StepChoice(
            lr=lr,
            info={"sharpness": lam, "sharpness_converged": float(converged)},
            n_matvecs=res.n_matvecs,
            state=new_state,
            loss=op.loss,
            gradient=op.gradient,
        )

    def __repr__(self) -> str:
        return (
            f"SharpnessAdaptive(lr_max={self.lr_max!r}, c={self.c!r}, "
            f"solver={self.solve.spec.describe()!r})"
        )


def as_step_size(step_size: StepSize | float, *, owner: str) -> StepSize:
    """A :class:`StepSize` as given, or :class:`Constant` for a number."""
    if isinstance(step_size, StepSize):
        return step_size
    try:
        return Constant(step_size)
    except ValueError:
        raise ValueError(
            f"{owner}: step_size must be a StepSize or a positive finite lr, got {step_size!r}"
        ) from None


# ------------------------------------------------------------------ eigensolver helpers


class TrackedSolve:
    """The top-m eigenpairs of H(θ_t) at every step, warm-started from the previous step.

    Used by :class:`SharpnessAdaptive` and :class:`~eoslab.dynamics.exp_euler.ExponentialEuler`
    (``docs/methods.md`` §6.7, §7). A call starts from the previous call's block, kept in the
    integrator state under ``KEY_v`` ([P, m']). Under ``criterion="eigenvalue_change"``
    (block power, Lowell 2024 §7.1: stop when max|ΔΛ| < tol·max|Λ|) it also keeps the previous
    eigenvalues under ``KEY_lam`` and hands them to the solver as ``theta0``, so that along a
    slowly moving trajectory one block product can suffice; the default spec (Lanczos,
    residual tolerance) verifies every pair instead.

    Args:
        key: prefix of the two state keys.
        spec: the eigensolve (:class:`~eoslab.eigen.EigSpec`); its ``which`` must be ``"LA"``.
        owner: name used in error messages.

    Raises:
        ValueError: if ``spec`` is not an EigSpec or does not ask for ``which="LA"``.
    """

    def __init__(self, key: str, spec: EigSpec, *, owner: str):
        if not isinstance(spec, EigSpec):
            raise ValueError(f"{owner}: solver must be an eoslab.eigen.EigSpec, got {spec!r}")
        if spec.which != "LA":
            raise ValueError(f"{owner}: the step needs the top eigenpairs, which='LA'")
        self.key = key
        self.spec = spec

    def __call__(self, op, m: int, state: dict[str, torch.Tensor]):
        """``(result, new_state)``: the top-m pairs of ``op``, warm-started from ``state``."""
        res = self.spec.solve(
            op, m, v0=state.get(f"{self.key}_v"), theta0=state.get(f"{self.key}_lam")
        )
        new_state = {f"{self.key}_v": own_copy(res.warm_start)}
        if not self.spec.verified:
            new_state[f"{self.key}_lam"] = own_copy(res.eigenvalues)
        return res, new_state


def own_copy(block: torch.Tensor) -> torch.Tensor:
    """A detached contiguous copy (safetensors needs contiguous tensors that own their data)."""
    return block.detach().clone(memory_format=torch.contiguous_format)
