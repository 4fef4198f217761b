"""The stepper protocol of every integrator of the gradient flow (``docs/methods.md`` §2, §7).

An :class:`Integrator` advances θ by one step of an integrator of dθ/dt = −g(θ) (or of a
momentum method) and returns a :class:`StepResult`. Its state (momentum buffers, warm-start
blocks of eigensolvers) lives in a plain ``dict[str, torch.Tensor]`` that the caller owns: the
integrator never keeps anything between calls, so a run checkpointed with its state dict
(e.g. with safetensors) resumes bit-identically.

Cost accounting: ``n_grads`` counts full-batch gradient evaluations (a cached Hessian graph,
which yields L and g as by-products, counts as one) and ``n_matvecs`` Hessian-vector products.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

from eoslab.problem import Problem

__all__ = ["Integrator", "StepResult"]


@dataclass(frozen=True)
class StepResult:
    """What one step of an integrator did.

    Attributes:
        theta: θ_{t+1} [P], a new tensor (the input θ_t is never modified).
        state: the integrator state after the step; tensors only (0-d for scalars), so it can
            be checkpointed with safetensors and passed back to the next ``step``.
        lr: step length used this step (η_t, or τ for exponential Euler); the flow time
            t = Σ lr advances by it (``docs/methods.md`` §2).
        loss: L(θ_t) before the step, from the gradient evaluation the step made anyway.
        grad_norm: ‖g(θ_t)‖.
        n_grads: full-batch gradient evaluations spent in this step.
        n_matvecs: Hessian-vector products spent in this step.
        info: extra scalars worth logging (e.g. ``{"sharpness": λ_1}`` for adaptive steps).
    """

    theta: torch.Tensor
    state: dict[str, torch.Tensor]
    lr: float
    loss: float
    grad_norm: float
    n_grads: int
    n_matvecs: int
    info: dict[str, float] = field(default_factory=dict)


class Integrator(ABC):
    """One step of a discretisation of the gradient flow dθ/dt = −g(θ) or a momentum method.

    Attributes:
        name: registry name: ``"gd"``, ``"heavy_ball"``, ``"nesterov"``, ``"euler"``,
            ``"rk4"`` or ``"exp_euler"``.
    """

    name: str = ""

    def init_state(self, problem: Problem, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """The state before the first step (e.g. a zero momentum buffer; ``{}`` for GD).

        Args:
            problem: the training problem.
            theta: the initial point θ_0 [P].

        Returns:
            A dict of tensors on θ's device.
        """
        check_theta(problem, theta, owner=self.name)
        return {}

    @abstractmethod
    def step(
        self, problem: Problem, theta: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> StepResult:
        """Advance θ_t [P] by one step.

        Args:
            problem: the training problem.
            theta: the current point θ_t [P].
            state: the state returned by :meth:`init_state` or by the previous step.

        Returns:
            The :class:`StepResult` with θ_{t+1} and the new state.
        """

    @abstractmethod
    def threshold(self, lr: float) -> float:
        """The edge-of-stability threshold on λ for the step size ``lr`` (``docs/methods.md`` §2).

        A quadratic with curvature λ is stable under this integrator with step ``lr`` iff
        λ < threshold(lr).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# ------------------------------------------------------------------ shared helpers


def check_theta(problem: Problem, theta: torch.Tensor, *, owner: str) -> None:
    """Raise ValueError unless θ is a [P] tensor in the problem's dtype."""
    if not isinstance(theta, torch.Tensor) or theta.shape != (problem.size,):
        shape = tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__
        raise ValueError(f"{owner}: θ must be a tensor of shape [P={problem.size}], got {shape}")
    if theta.dtype != problem.dtype:
        raise ValueError(f"{owner}: θ has dtype {theta.dtype} but the problem is {problem.dtype}")


def require_state(state: dict[str, torch.Tensor], key: str, *, owner: str) -> torch.Tensor:
    """``state[key]``, or a ValueError telling the caller to start from ``init_state``."""
    try:
        return state[key]
    except KeyError:
        raise ValueError(
            f"{owner}: state has no {key!r} (keys: {sorted(state)}); start from init_state()"
        ) from None


def check_positive(value, name: str, *, owner: str, allow_inf: bool = False) -> float:
    """``value`` as a float if it is a real number > 0 (finite unless ``allow_inf``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = value > 0 and (allow_inf or math.isfinite(value)) and not math.isnan(value)
    if not ok:
        what = "a positive number (inf allowed)" if allow_inf else "a positive finite number"
        raise ValueError(f"{owner}: {name} must be {what}, got {value!r}")
    return value


def summary(loss: torch.Tensor, g: torch.Tensor, *extra: torch.Tensor) -> list[float]:
    """[L, ‖g‖, *extra] as Python floats with one host sync."""
    parts = [loss.detach().reshape(()), torch.linalg.vector_norm(g)]
    parts += [e.detach().reshape(()).to(g.dtype) for e in extra]
    return torch.stack(parts).tolist()
