"""Integrators of the gradient flow and step-size controllers (``docs/methods.md`` §2, §3, §7).

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
the "exact flow" of ``docs/methods.md`` §3). :func:`build_integrator` builds any of them from
plain config values.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from eoslab.dynamics.base import Integrator, StepResult
from eoslab.dynamics.exp_euler import ExponentialEuler, phi
from eoslab.dynamics.momentum import DEFAULT_MOMENTUM, GradientDescent, HeavyBall, Nesterov
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
    DEFAULT_C,
    STEP_SOLVER,
    Constant,
    SharpnessAdaptive,
    StepChoice,
    StepSize,
    as_step_size,
)
from eoslab.eigen.spec import EigSpec

#: Integrator constructors by registry name (each builds an :class:`Integrator`).
INTEGRATORS: dict[str, Callable[..., Integrator]] = {
    "gd": GradientDescent,
    "heavy_ball": HeavyBall,
    "nesterov": Nesterov,
    "euler": euler,
    "rk4": rk4,
    "exp_euler": ExponentialEuler,
}

#: The optimizer fields each integrator reads: the one place where this is decided. The run
#: config refuses a field an integrator would ignore (:func:`unused_fields`), and
#: :func:`build_integrator` applies the same table. ``c`` and ``solver`` belong to the
#: adaptive step (:data:`ADAPTIVE_FIELDS`) of the integrators that can take one.
READS: dict[str, frozenset[str]] = {
    "gd": frozenset({"lr", "adaptive"}),
    "euler": frozenset({"lr", "adaptive"}),
    "rk4": frozenset({"lr", "adaptive"}),
    "heavy_ball": frozenset({"lr", "momentum"}),
    "nesterov": frozenset({"lr", "momentum"}),
    "exp_euler": frozenset({"lr", "n_exact", "tau_max", "solver"}),
}
#: Fields read only with ``adaptive=True`` (by the integrators whose READS has "adaptive").
ADAPTIVE_FIELDS = frozenset({"c", "solver"})


def reads(name: str, adaptive: bool = False) -> frozenset[str]:
    """The fields integrator ``name`` reads (with an adaptive step if ``adaptive``).

    Raises:
        ValueError: for an unknown name.
    """
    if name not in READS:
        raise ValueError(f"unknown integrator name={name!r}; choose one of {sorted(READS)}")
    fields = READS[name]
    return fields | ADAPTIVE_FIELDS if adaptive and "adaptive" in fields else fields


def unused_fields(name: str, adaptive: bool, given: dict[str, object]) -> list[str]:
    """The keys of ``given`` (fields set away from their defaults) that ``name`` ignores."""
    used = reads(name, adaptive) | {"name"}
    return sorted(k for k in given if k not in used)


def build_integrator(
    name: str,
    *,
    lr: float | None = None,
    momentum: float | None = None,
    c: float | None = None,
    n_exact: int | None = None,
    tau_max: float | None = None,
    adaptive: bool = False,
    solver: EigSpec | None = None,
) -> Integrator:
    """Build the integrator ``name`` from plain config values (``docs/methods.md`` §7).

    Which integrator reads which field is the table :data:`READS` (plus
    :data:`ADAPTIVE_FIELDS` with ``adaptive=True``); a field it does not read must be left
    unset. The values:

    - ``lr``: the constant step η of ``gd``, ``heavy_ball``, ``nesterov``, ``euler``, ``rk4``;
      with ``adaptive=True`` the η_max of η_t = min(η_max, c/λ_1(θ_t)) (``docs/methods.md``
      §3.7; paper: η_max = 0.001, c = 0.5); for ``exp_euler`` the dimensionless η < 2 of
      τ = min(τ_max, η/λ_{k+1}). Required.
    - ``momentum``: β of ``heavy_ball``/``nesterov`` (default :data:`DEFAULT_MOMENTUM`).
    - ``c``: the adaptive step's target η_t λ_1 (default :data:`DEFAULT_C`).
    - ``n_exact``: k of ``exp_euler``, the directions integrated exactly (default
      ``problem.n_outputs``, as Lowell 2024).
    - ``tau_max``: the largest step τ of ``exp_euler`` (default inf).
    - ``solver``: the per-step eigensolve of the adaptive step or of ``exp_euler``
      (:class:`~eoslab.eigen.EigSpec`; default :data:`STEP_SOLVER`).

    Returns:
        The :class:`Integrator`.

    Raises:
        ValueError: naming the field that is unknown, missing, out of range or not read by
            ``name``.
    """
    if not isinstance(adaptive, bool):
        raise ValueError(f"adaptive must be True or False, got {adaptive!r}")
    given = dict(momentum=momentum, c=c, n_exact=n_exact, tau_max=tau_max, solver=solver)
    given = {k: v for k, v in given.items() if v is not None}
    if adaptive:
        given["adaptive"] = True
    unused = unused_fields(name, adaptive, given)
    if unused:
        later = "adaptive" in READS[name] and set(unused) <= ADAPTIVE_FIELDS
        raise ValueError(
            f"{', '.join(unused)}: not used by {name}" + (" unless adaptive=True" if later else "")
        )
    if lr is None:
        raise ValueError(f"lr is required for {name}")
    spec = STEP_SOLVER if solver is None else solver
    if name == "exp_euler":
        tau = math.inf if tau_max is None else tau_max
        return ExponentialEuler(lr, n_exact, tau_max=tau, solver=spec)
    if adaptive:
        step: StepSize = SharpnessAdaptive(lr, DEFAULT_C if c is None else c, solver=spec)
    else:
        step = Constant(lr)
    if name in ("heavy_ball", "nesterov"):
        beta = DEFAULT_MOMENTUM if momentum is None else momentum
        return INTEGRATORS[name](step, beta=beta)
    return INTEGRATORS[name](step)


__all__ = [
    "ADAPTIVE_FIELDS",
    "DEFAULT_C",
    "DEFAULT_MOMENTUM",
    "EULER",
    "INTEGRATORS",
    "READS",
    "RK4",
    "STEP_SOLVER",
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
    "reads",
    "unused_fields",
    "euler",
    "phi",
    "real_stability_limit",
    "rk4",
    "stability_polynomial",
]
