"""Step-size controllers: a constant η, or η_t = min(η_max, c/λ_1(θ_t)) (``METHODS.md`` §3, §7).

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
from eoslab.eigen import SOLVERS, NonConvergenceWarning, eigsh
from eoslab.linalg import HessianOperator
from eoslab.problem import Problem

__all__ = ["Constant", "SharpnessAdaptive", "StepChoice", "StepSize", "as_step_size"]


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
    """η_t = lr for every step (``METHODS.md`` §2).

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
    """η_t = min(η_max, c / λ_1(θ_t)), with λ_1 recomputed every step (``METHODS.md`` §3, §7).

    This is the "exact flow" of Lowell 2022 (paper: η_max = 0.001, c = 0.5) and the adaptive
    Euler step of ``METHODS.md`` §7; RK4 can use it for "a step chosen from λ_1". With
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
        tol: relative residual tolerance of the eigensolve.
        method: eigensolver name (a key of :data:`eoslab.eigen.SOLVERS`).
        max_iter: the solver's iteration limit (None: its default).
        seed: seed of the solver's random vectors.
        criterion: the solver's stopping rule (see :class:`TrackedSolve`).
    """

    state_keys = ("sharpness_v", "sharpness_lam")
    adaptive = True

    def __init__(
        self,
        lr_max: float,
        c: float,
        *,
        tol: float = 1e-6,
        method: str = "lanczos",
        max_iter: int | None = None,
        seed: int = 0,
        criterion: str = "residual",
    ):
        owner = "SharpnessAdaptive"
        self.lr_max = check_positive(lr_max, "lr_max", owner=owner)
        self.c = check_positive(c, "c", owner=owner)
        self.solve = TrackedSolve(
            "sharpness",
            method=method,
            tol=tol,
            max_iter=max_iter,
            seed=seed,
            criterion=criterion,
            owner=owner,
        )

    def choose(self, problem, theta, state):
        """λ_1 by a warm-started eigensolve; η_t = min(η_max, c/λ_1) (η_max if λ_1 ≤ 0)."""
        op = HessianOperator(problem, theta)
        res, new_state = self.solve(op, 1, state)
        lam = float(res.eigenvalues[0])
        converged = res.all_converged
        if not converged:
            warnings.warn(
                f"SharpnessAdaptive: λ_1 = {lam:.6g} did not converge to tol={self.solve.tol:g} "
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
            f"SharpnessAdaptive(lr_max={self.lr_max!r}, c={self.c!r}, method={self.solve.method!r})"
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


def check_method(method: str, *, owner: str) -> str:
    """``method`` if it names an eigensolver, else a ValueError listing the choices."""
    if method not in SOLVERS:
        raise ValueError(f"{owner}: method must be one of {sorted(SOLVERS)}, got {method!r}")
    return method


def check_max_iter(max_iter: int | None, *, owner: str) -> int | None:
    """``max_iter`` if None or a positive integer, else a ValueError."""
    if max_iter is None:
        return None
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(f"{owner}: max_iter must be a positive integer or None, got {max_iter!r}")
    return max_iter


def solver_options(max_iter: int | None) -> dict[str, int]:
    """``{"max_iter": max_iter}`` when given, so that None keeps the solver's own default."""
    return {} if max_iter is None else {"max_iter": max_iter}


class TrackedSolve:
    """The top-m eigenpairs of H(θ_t) at every step, warm-started from the previous step.

    Used by :class:`SharpnessAdaptive` and :class:`~eoslab.dynamics.exp_euler.ExponentialEuler`
    (``METHODS.md`` §6–7). A call starts from the previous call's block, kept in the
    integrator state under ``KEY_v`` ([P, m']). With ``method="block_power"`` and
    ``criterion="eigenvalue_change"`` (Lowell 2024 §7.1: stop when max|ΔΛ| < tol·max|Λ|) it
    also keeps the previous eigenvalues under ``KEY_lam`` and hands them to the solver as
    ``theta0``, so that along a slowly moving trajectory one block product can suffice; the
    default (Lanczos, residual tolerance) verifies every pair instead.

    Args:
        key: prefix of the two state keys.
        method: eigensolver name (a key of :data:`eoslab.eigen.SOLVERS`).
        tol: the solver's tolerance (relative residual, or relative eigenvalue change).
        max_iter: the solver's iteration limit (None: its default).
        seed: seed of the solver's random vectors.
        criterion: ``"residual"`` (every solver) or ``"eigenvalue_change"`` (block_power).
        owner: name used in error messages.
    """

    def __init__(
        self,
        key: str,
        *,
        method: str = "lanczos",
        tol: float = 1e-6,
        max_iter: int | None = None,
        seed: int = 0,
        criterion: str = "residual",
        owner: str,
    ):
        self.key = key
        self.method = check_method(method, owner=owner)
        self.tol = check_positive(tol, "tol", owner=owner)
        self.max_iter = check_max_iter(max_iter, owner=owner)
        self.seed = int(seed)
        if criterion not in ("residual", "eigenvalue_change"):
            raise ValueError(
                f"{owner}: criterion must be 'residual' or 'eigenvalue_change', got {criterion!r}"
            )
        if criterion == "eigenvalue_change" and method != "block_power":
            raise ValueError(
                f"{owner}: criterion='eigenvalue_change' is block_power's rule, not {method!r}'s"
            )
        self.criterion = criterion

    def __call__(self, op, m: int, state: dict[str, torch.Tensor]):
        """``(result, new_state)``: the top-m pairs of ``op`` (``which="LA"``), warm start."""
        options = solver_options(self.max_iter)
        if self.criterion != "residual":
            options["criterion"] = self.criterion
            if f"{self.key}_lam" in state:
                options["theta0"] = state[f"{self.key}_lam"]
        res = eigsh(
            op,
            m,
            method=self.method,
            which="LA",
            v0=state.get(f"{self.key}_v"),
            tol=self.tol,
            seed=self.seed,
            **options,
        )
        new_state = {f"{self.key}_v": own_copy(res.warm_start)}
        if self.criterion != "residual":
            new_state[f"{self.key}_lam"] = own_copy(res.eigenvalues)
        return res, new_state


def own_copy(block: torch.Tensor) -> torch.Tensor:
    """A detached contiguous copy (safetensors needs contiguous tensors that own their data)."""
    return block.detach().clone(memory_format=torch.contiguous_format)
