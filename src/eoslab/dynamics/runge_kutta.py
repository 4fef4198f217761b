"""Explicit Runge–Kutta methods for the gradient flow dθ/dt = −g(θ) (``docs/methods.md`` §7).

A Butcher tableau (A strictly lower triangular, weights b) defines, for a step h,

    k_i = g(θ_t − h Σ_{j<i} a_ij k_j),   i = 1..s,
    θ_{t+1} = θ_t − h Σ_i b_i k_i.

:data:`EULER` (s = 1) is gradient descent; :data:`RK4` is the classical fourth-order method
that Cohen et al. use to follow the gradient flow. On the linear test equation y' = −λy one
step multiplies y by R(−hλ), with the stability polynomial R(z) = Σ_j γ_j z^j,
γ_0 = 1, γ_j = bᵀ A^{j−1} 1; the step is stable iff |R(−hλ)| ≤ 1, so the EoS threshold on λ
is z*/h with z* the end of the real stability interval (2 for Euler, ≈ 2.7853 for RK4;
computed from the tableau by :func:`real_stability_limit`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from eoslab.dynamics.base import Integrator, StepResult, check_theta, summary
from eoslab.dynamics.momentum import first_gradient
from eoslab.dynamics.stepsize import StepSize, as_step_size

__all__ = [
    "EULER",
    "RK4",
    "ButcherTableau",
    "RungeKutta",
    "euler",
    "real_stability_limit",
    "rk4",
    "stability_polynomial",
]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta scheme.

    Attributes:
        name: registry name of the integrator built on it (``"euler"``, ``"rk4"``).
        a: rows of the strictly lower triangular matrix A; row i has i entries a_i1..a_ii−1
            (row 1 is empty).
        b: the weights b_1..b_s (summing to 1 for a consistent method).
        order: the classical order of accuracy (documentation and tests).
    """

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int

    def __post_init__(self):
        s = len(self.b)
        if s < 1 or len(self.a) != s:
            raise ValueError(
                f"ButcherTableau {self.name!r}: a must have one row per weight "
                f"(len(b)={s}), got {len(self.a)} rows"
            )
        for i, row in enumerate(self.a):
            if len(row) != i:
                raise ValueError(
                    f"ButcherTableau {self.name!r}: row {i + 1} of a must have {i} entries "
                    f"(explicit scheme), got {len(row)}"
                )
        if abs(sum(self.b) - 1.0) > 1e-12:
            raise ValueError(f"ButcherTableau {self.name!r}: b must sum to 1, got {sum(self.b)}")

    @property
    def stages(self) -> int:
        """s, the number of gradient evaluations per step."""
        return len(self.b)


#: Explicit Euler, θ_{t+1} = θ_t − h g(θ_t): gradient descent.
EULER = ButcherTableau("euler", a=((),), b=(1.0,), order=1)

#: The classical fourth-order Runge–Kutta method.
RK4 = ButcherTableau(
    "rk4",
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    order=4,
)


def stability_polynomial(tableau: ButcherTableau) -> np.ndarray:
    """Coefficients γ_0..γ_s (ascending powers) of R(z) = 1 + z bᵀ(I − zA)⁻¹ 1.

    For an explicit scheme A is nilpotent, so R(z) = Σ_{j=0}^{s} γ_j z^j with γ_0 = 1 and
    γ_j = bᵀ A^{j−1} 1.
    """
    s = tableau.stages
    A = np.zeros((s, s))
    for i, row in enumerate(tableau.a):
        A[i, :i] = row
    b = np.asarray(tableau.b, dtype=np.float64)
    coeffs, v = [1.0], np.ones(s)
    for _ in range(s):
        coeffs.append(float(b @ v))
        v = A @ v
    return np.asarray(coeffs)


def real_stability_limit(tableau: ButcherTableau) -> float:
    """z* > 0, the end of the interval [0, z*] where |R(−z)| ≤ 1.

    The smallest positive real root of R(−z) = ±1 past which |R(−z)| exceeds 1, found with
    the companion-matrix roots of the two polynomials and polished by Newton's method in
    float64. Euler: z* = 2; RK4: z* ≈ 2.785293563405282 (the real root of
    z³ − 4z² + 12z − 24 = 0).
    """
    gamma = stability_polynomial(tableau)
    q = gamma * (-1.0) ** np.arange(gamma.size)  # R(−z), ascending powers
    P = np.polynomial.Polynomial

    def absR(z):
        return abs(P(q)(z))

    best = np.inf
    for sign in (1.0, -1.0):
        poly = P(q) - sign  # R(−z) ∓ 1
        dpoly = poly.deriv()
        for root in poly.roots():
            if abs(root.imag) > 1e-8 * max(1.0, abs(root.real)) or root.real <= 1e-12:
                continue
            z = float(root.real)
            for _ in range(4):
                d = dpoly(z)
                if d == 0:
                    break
                z -= poly(z) / d
            if absR(z * (1 + 1e-7)) > 1 and z < best:
                best = z
    if not np.isfinite(best):
        raise ValueError(f"ButcherTableau {tableau.name!r}: no finite real stability limit")
    return best


def weighted_sum(coeffs, ks: list[torch.Tensor]) -> torch.Tensor | None:
    """Σ_j c_j k_j over the non-zero c_j, without multiplying by c_j = 1 (None if empty).

    Skipping the unit weight keeps Euler's update θ − h k_1 the very arithmetic of GD.
    """
    acc = None
    for c, k in zip(coeffs, ks):
        if c == 0:
            continue
        term = k if c == 1 else c * k
        acc = term if acc is None else acc + term
    return acc


class RungeKutta(Integrator):
    """Explicit Runge–Kutta integration of dθ/dt = −g(θ) (``docs/methods.md`` §7).

        k_i = g(θ_t − h Σ_{j<i} a_ij k_j),   θ_{t+1} = θ_t − h Σ_i b_i k_i,

    with h = η_t from the step-size controller (constant, or min(η_max, c/λ_1(θ_t)) for a
    step chosen from λ_1). The first stage reuses the controller's gradient when it has one.
    Costs s gradients per step (``n_grads = s``); reports L(θ_t) from the first stage.

    Args:
        tableau: the scheme (:data:`EULER`, :data:`RK4` or another explicit tableau).
        step_size: a :class:`~eoslab.dynamics.stepsize.StepSize`, or h for a constant step.

    Attributes:
        name: the tableau's name.
        z_star: the real stability limit z* of the tableau (:func:`real_stability_limit`).
    """

    def __init__(self, tableau: ButcherTableau, step_size: StepSize | float):
        if not isinstance(tableau, ButcherTableau):
            raise ValueError(f"RungeKutta: tableau must be a ButcherTableau, got {tableau!r}")
        self.tableau = tableau
        self.name = tableau.name
        self.step_size = as_step_size(step_size, owner=self.name)
        self.z_star = real_stability_limit(tableau)

    def init_state(self, problem, theta):
        """The step-size controller's state (``{}`` for a constant step)."""
        check_theta(problem, theta, owner=self.name)
        return dict(self.step_size.init_state(problem, theta))

    def step(self, problem, theta, state):
        """One Runge–Kutta step; see the class docstring."""
        check_theta(problem, theta, owner=self.name)
        choice = self.step_size.choose(problem, theta, state)
        h = choice.lr
        loss, k1 = first_gradient(problem, theta, choice)
        ks = [k1]
        for row in self.tableau.a[1:]:
            incr = weighted_sum(row, ks)
            point = theta if incr is None else theta - h * incr
            ks.append(problem.gradient(point))
        theta_new = theta - h * weighted_sum(self.tableau.b, ks)
        loss_f, gnorm = summary(loss, k1)
        return StepResult(
            theta=theta_new,
            state=dict(choice.state),
            lr=h,
            loss=loss_f,
            grad_norm=gnorm,
            n_grads=self.tableau.stages,
            n_matvecs=choice.n_matvecs,
            info=dict(choice.info),
        )

    def threshold(self, lr: float) -> float:
        """z*/h: the linear test equation with curvature λ is stable iff hλ ≤ z*."""
        return self.z_star / lr

    def __repr__(self) -> str:
        return f"RungeKutta({self.name}, step_size={self.step_size!r})"


def euler(step_size: StepSize | float) -> RungeKutta:
    """Explicit Euler (= gradient descent, bit for bit) with the given step size."""
    return RungeKutta(EULER, step_size)


def rk4(step_size: StepSize | float) -> RungeKutta:
    """The classical fourth-order Runge–Kutta method with the given step size."""
    return RungeKutta(RK4, step_size)
