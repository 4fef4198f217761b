"""Gradient descent and its momentum variants (``docs/methods.md`` §2).

- :class:`GradientDescent`: θ_{t+1} = θ_t − η_t g(θ_t); stable on a quadratic iff λ < 2/η.
- :class:`HeavyBall`: θ_{t+1} = θ_t − η_t g_t + β(θ_t − θ_{t−1}); stable iff λ < (2 + 2β)/η.
- :class:`Nesterov`: b_t = β b_{t−1} + g_t, θ_{t+1} = θ_t − η_t (g_t + β b_t) (PyTorch's form,
  gradient at θ_t); stable iff λ < (2 + 2β)/((1 + 2β) η).

All three take a :class:`~eoslab.dynamics.stepsize.StepSize` (or a number for a constant step),
so that η_t = min(η_max, c/λ_1) works with every one of them.
"""

from __future__ import annotations

import numbers
from abc import abstractmethod

import torch

from eoslab.dynamics.base import (
    Integrator,
    StepResult,
    check_theta,
    require_state,
    summary,
)
from eoslab.dynamics.stepsize import StepChoice, StepSize, as_step_size
from eoslab.problem import Problem

__all__ = ["DEFAULT_MOMENTUM", "GradientDescent", "HeavyBall", "Nesterov"]


def first_gradient(
    problem: Problem, theta: torch.Tensor, choice: StepChoice
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L(θ), g(θ)): the controller's by-products when it has them, else one evaluation."""
    if choice.gradient is not None and choice.loss is not None:
        return choice.loss, choice.gradient
    return problem.loss_and_gradient(theta)


#: Default β of heavy ball and Nesterov (Cohen et al. 2021's experiments use 0.9).
DEFAULT_MOMENTUM = 0.9


def check_beta(beta, *, owner: str) -> float:
    """β as a float if 0 ≤ β < 1, else a ValueError naming ``beta``."""
    ok = isinstance(beta, numbers.Real) and not isinstance(beta, bool) and 0 <= beta < 1
    if not ok:
        raise ValueError(f"{owner}: beta (momentum) must satisfy 0 <= beta < 1, got {beta!r}")
    return float(beta)


class _FirstOrder(Integrator):
    """Shared init/bookkeeping of the methods that take one gradient per step."""

    #: key of the integrator's own state tensor (None: no state of its own)
    buffer: str | None = None

    def __init__(self, step_size: StepSize | float):
        self.step_size = as_step_size(step_size, owner=self.name)

    def init_state(self, problem, theta):
        """Zeros for the momentum buffer (if any) plus the step-size controller's state."""
        check_theta(problem, theta, owner=self.name)
        state = dict(self.step_size.init_state(problem, theta))
        if self.buffer is not None:
            state[self.buffer] = torch.zeros_like(theta)
        return state

    def step(self, problem, theta, state):
        """One step; see the class docstring for the update."""
        check_theta(problem, theta, owner=self.name)
        buf = None if self.buffer is None else require_state(state, self.buffer, owner=self.name)
        choice = self.step_size.choose(problem, theta, state)
        loss, g = first_gradient(problem, theta, choice)
        theta_new, buf_new = self._update(theta, g, buf, choice.lr)
        new_state = dict(choice.state)
        if self.buffer is not None:
            new_state[self.buffer] = buf_new
        loss_f, gnorm = summary(loss, g)
        return StepResult(
            theta=theta_new,
            state=new_state,
            lr=choice.lr,
            loss=loss_f,
            grad_norm=gnorm,
            n_grads=1,
            n_matvecs=choice.n_matvecs,
            info=dict(choice.info),
        )

    @abstractmethod
    def _update(self, theta, g, buf, lr):
        """(θ_{t+1}, new buffer) from θ_t, g(θ_t), the method's buffer and the step η_t."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(step_size={self.step_size!r})"


class GradientDescent(_FirstOrder):
    """Gradient descent θ_{t+1} = θ_t − η_t g(θ_t) (``docs/methods.md`` §2).

    Bit for bit the same arithmetic as the explicit Euler method of
    :func:`~eoslab.dynamics.runge_kutta.euler` with the same step sizes.

    Args:
        step_size: a :class:`~eoslab.dynamics.stepsize.StepSize`, or η for a constant step.
    """

    name = "gd"

    def _update(self, theta, g, buf, lr):
        return theta - lr * g, None

    def threshold(self, lr: float) -> float:
        """2/η: GD on a quadratic is stable iff ηλ < 2."""
        return 2.0 / lr


class _Momentum(_FirstOrder):
    """A first-order method with a momentum β (heavy ball, Nesterov)."""

    def __init__(self, step_size: StepSize | float, beta: float = DEFAULT_MOMENTUM):
        super().__init__(step_size)
        self.beta = check_beta(beta, owner=self.name)


class HeavyBall(_Momentum):
    """Polyak's heavy ball θ_{t+1} = θ_t − η_t g_t + β(θ_t − θ_{t−1}) (``docs/methods.md`` §2).

    The state holds the previous displacement d_t = θ_t − θ_{t−1} under ``"velocity"``
    (zeros at the start), and the step is d_{t+1} = β d_t − η_t g_t, θ_{t+1} = θ_t + d_{t+1}.
    With a constant η this equals PyTorch's SGD momentum (dampening 0, nesterov False).

    Args:
        step_size: a :class:`~eoslab.dynamics.stepsize.StepSize`, or η for a constant step.
        beta: momentum β, 0 ≤ β < 1.
    """

    name = "heavy_ball"
    buffer = "velocity"

    def _update(self, theta, g, buf, lr):
        d = self.beta * buf - lr * g
        return theta + d, d

    def threshold(self, lr: float) -> float:
        """(2 + 2β)/η (Cohen et al.; the root −1 of r² − (1 + β − ηλ) r + β)."""
        return (2.0 + 2.0 * self.beta) / lr

    def __repr__(self) -> str:
        return f"HeavyBall(step_size={self.step_size!r}, beta={self.beta!r})"


class Nesterov(_Momentum):
    """Nesterov momentum in PyTorch's form (``docs/methods.md`` §2).

        b_t = β b_{t−1} + g(θ_t),   θ_{t+1} = θ_t − η_t (g(θ_t) + β b_t),

    with b_0 = 0 kept in the state under ``"momentum_buffer"``. The gradient is taken at θ_t,
    so L(θ_t) comes for free. For constant η it equals
    θ_{t+1} = θ_t + β(θ_t − θ_{t−1}) − η((1 + β) g_t − β g_{t−1}); on a quadratic with
    curvature λ the characteristic polynomial r² − (1 + β)(1 − ηλ) r + β(1 − ηλ) has the root
    −1 at ηλ = (2 + 2β)/(1 + 2β), the stability limit.

    Args:
        step_size: a :class:`~eoslab.dynamics.stepsize.StepSize`, or η for a constant step.
        beta: momentum β, 0 ≤ β < 1.
    """

    name = "nesterov"
    buffer = "momentum_buffer"

    def _update(self, theta, g, buf, lr):
        b = self.beta * buf + g
        return theta - lr * (g + self.beta * b), b

    def threshold(self, lr: float) -> float:
        """(2 + 2β)/((1 + 2β) η)."""
        return (2.0 + 2.0 * self.beta) / ((1.0 + 2.0 * self.beta) * lr)

    def __repr__(self) -> str:
        return f"Nesterov(step_size={self.step_size!r}, beta={self.beta!r})"
