"""Integrators of the gradient flow and step-size controllers (``METHODS.md`` §2, §3, §7).

Every integrator has the protocol of :class:`Integrator`: ``init_state(problem, θ_0)``, then
``step(problem, θ_t, state) -> StepResult`` (θ_{t+1}, the new state as a dict of tensors,
the step length, L(θ_t), ‖g(θ_t)‖, gradient and Hessian-vector product counts, extra
scalars), and ``threshold(lr)``, the edge-of-stability threshold on λ for the step ``lr``.

========================  ===========================================  ====================
name                      update                                       threshold(η)
========================  ===========================================  ====================
``gd``                    θ − η g                                      2/η
``heavy_ball``            θ − η g + β(θ_t − θ_{t−1})                   (2 + 2β)/η
``nesterov``              b = βb + g, θ − η(g + βb)                    (2 + 2β)/((1 + 2β)η)
``euler``                 = ``gd`` (bit for bit)                       2/η
``rk4``                   classical Runge–Kutta of dθ/dt = −g          z*/η, z* ≈ 2.7853
``exp_euler``             exponential Euler in the top-k eigenbasis    2/τ (bulk)
========================  ===========================================  ====================

Step sizes: :class:`Constant` or :class:`SharpnessAdaptive` (η_t = min(η_max, c/λ_1(θ_t)),
the "exact flow" of ``METHODS.md`` §3). :func:`build_integrator` builds any of them from
plain config values.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from eoslab.dynamics.base import Integrator, StepResult
from eoslab.dynamics.exp_euler import ExponentialEuler, phi
from eoslab.dynamics.momentum import GradientDescent, HeavyBall, Nesterov
from eoslab.dynamics.runge_kutta import (
    EULER,
    RK4,
    ButcherTableau,
    RungeKutta,
    euler,
    real_stability_limit,
    rk4,
    stability_polynomial,
)
from eoslab.dynamics.stepsize import (
    Constant,
    SharpnessAdaptive,
    StepChoice,
    StepSize,
    as_step_size,
)

#: Integrator constructors by registry name (each builds an :class:`Integrator`).
INTEGRATORS: dict[str, Callable[..., Integrator]] = {
    "gd": GradientDescent,
    "heavy_ball": HeavyBall,
    "nesterov": Nesterov,
    "euler": euler,
    "rk4": rk4,
    "exp_euler": ExponentialEuler,
}

_MOMENTUM = ("heavy_ball", "nesterov")


def build_integrator(
    name: str,
    *,
    lr: float | None = None,
    momentum: float = 0.9,
    lr_max: float | None = None,
    c: float | None = None,
    k: int | None = None,
    tau_max: float | None = None,
    adaptive: bool = False,
    tol: float = 1e-6,
    method: str = "lanczos",
    max_iter: int | None = None,
    seed: int = 0,
    criterion: str = "residual",
) -> Integrator:
    """Build the integrator ``name`` from plain config values.

    Step size of ``gd``, ``heavy_ball``, ``nesterov``, ``euler``, ``rk4``:

    - ``adaptive=False``: the constant η = ``lr`` (required); ``lr_max`` and ``c`` must be
      left unset.
    - ``adaptive=True``: η_t = min(η_max, c/λ_1(θ_t)) (``METHODS.md`` §3; paper: η_max = 0.001,
      c = 0.5) with η_max = ``lr_max``, or ``lr`` when ``lr_max`` is not given (if both are
      given they must agree); ``c`` is required.

    ``exp_euler`` takes ``lr`` as its dimensionless η (required), ``k`` (default
    ``problem.n_outputs``) and ``tau_max`` (default inf); it chooses its own step, so
    ``adaptive``, ``lr_max`` and ``c`` must be left unset. ``k`` and ``tau_max`` belong to
    ``exp_euler`` only; ``momentum`` (β) is read by ``heavy_ball`` and ``nesterov`` only.
    ``tol``, ``method``, ``max_iter``, ``seed`` and ``criterion`` configure the eigensolve of
    the adaptive step or of ``exp_euler`` and are not used otherwise
    (:class:`~eoslab.dynamics.stepsize.TrackedSolve`; ``method="block_power",
    criterion="eigenvalue_change"`` is Lowell 2024 §7.1's procedure).

    Args:
        name: a key of :data:`INTEGRATORS`.
        lr: the step η (or the dimensionless η of ``exp_euler``).
        momentum: β of ``heavy_ball`` / ``nesterov``, 0 ≤ β < 1.
        lr_max: η_max of the adaptive step.
        c: the target η_t λ_1 of the adaptive step.
        k: exactly integrated directions of ``exp_euler``.
        tau_max: largest step of ``exp_euler``.
        adaptive: use :class:`SharpnessAdaptive` instead of :class:`Constant`.
        tol: eigensolver tolerance.
        method: eigensolver name (a key of :data:`eoslab.eigen.SOLVERS`).
        max_iter: eigensolver iteration limit (None: its default).
        seed: eigensolver seed.
        criterion: eigensolver stopping rule, ``"residual"`` or ``"eigenvalue_change"``
            (block_power only).

    Returns:
        The :class:`Integrator`.

    Raises:
        ValueError: naming the field that is unknown, missing, out of range or not used by
            ``name``.
    """
    if name not in INTEGRATORS:
        raise ValueError(f"unknown integrator name={name!r}; choose one of {sorted(INTEGRATORS)}")
    if not isinstance(adaptive, bool):
        raise ValueError(f"adaptive must be True or False, got {adaptive!r}")
    eig = dict(tol=tol, method=method, max_iter=max_iter, seed=seed, criterion=criterion)

    if name == "exp_euler":
        for field, value in (("lr_max", lr_max), ("c", c)):
            if value is not None:
                raise ValueError(
                    f"{field} is not used by exp_euler (it takes τ = min(tau_max, lr/λ_(k+1)))"
                )
        if adaptive:
            raise ValueError("adaptive=True is not used by exp_euler: it chooses its own step τ")
        if lr is None:
            raise ValueError("lr (the dimensionless η of exp_euler) is required")
        return ExponentialEuler(lr, k, tau_max=math.inf if tau_max is None else tau_max, **eig)

    for field, value in (("k", k), ("tau_max", tau_max)):
        if value is not None:
            raise ValueError(f"{field} is only used by exp_euler, not by {name}")
    if adaptive:
        if c is None:
            raise ValueError("c is required with adaptive=True (η_t = min(lr_max, c/λ_1))")
        if lr_max is None and lr is None:
            raise ValueError("lr_max (or lr) is required with adaptive=True")
        if lr_max is not None and lr is not None and lr != lr_max:
            raise ValueError(
                f"lr={lr!r} and lr_max={lr_max!r} disagree; with adaptive=True give lr_max"
            )
        step: StepSize = SharpnessAdaptive(lr if lr_max is None else lr_max, c, **eig)
    else:
        for field, value in (("lr_max", lr_max), ("c", c)):
            if value is not None:
                raise ValueError(f"{field} is only used with adaptive=True")
        if lr is None:
            raise ValueError(f"lr is required for {name} with a constant step")
        step = Constant(lr)
    if name in _MOMENTUM:
        return INTEGRATORS[name](step, beta=momentum)
    return INTEGRATORS[name](step)


__all__ = [
    "EULER",
    "INTEGRATORS",
    "RK4",
    "ButcherTableau",
    "Constant",
    "ExponentialEuler",
    "GradientDescent",
    "HeavyBall",
    "Integrator",
    "Nesterov",
    "RungeKutta",
    "SharpnessAdaptive",
    "StepChoice",
    "StepResult",
    "StepSize",
    "as_step_size",
    "build_integrator",
    "euler",
    "phi",
    "real_stability_limit",
    "rk4",
    "stability_polynomial",
]
