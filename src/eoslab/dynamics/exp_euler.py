"""Exponential Euler in the top-k Hessian eigenbasis (``docs/methods.md`` §7, Lowell 2024 §7.2).

With the top-(k+1) eigenpairs (λ_i, h_i) of H at θ_t, split the gradient as
g = Σ_{i≤k} c_i h_i + r (c_i = h_i·g). A step of length τ integrates the top-k directions
of the linearised flow exactly and the rest with Euler:

    θ_{t+1} = θ_t − τ Σ_{i≤k} c_i φ(λ_i τ) h_i − τ r,   φ(z) = (1 − e^{−z})/z, φ(0) = 1,

    τ = min(τ_max, η / λ_{k+1}),

with η < 2 a dimensionless learning rate, so every direction outside the top k has
τλ ≤ η < 2 and the residual Euler step is stable. On a quadratic L the top-k part is the
exact flow; with k = P there is no residual and one step of any length τ = τ_max is exact.
"""

from __future__ import annotations

import math
import warnings

import torch

from eoslab.dynamics.base import Integrator, StepResult, check_positive, check_theta, summary
from eoslab.dynamics.stepsize import STEP_SOLVER, TrackedSolve
from eoslab.eigen import NonConvergenceWarning
from eoslab.eigen.spec import EigSpec
from eoslab.linalg import HessianOperator

__all__ = ["ExponentialEuler", "phi"]


def phi(z: torch.Tensor) -> torch.Tensor:
    """φ(z) = (1 − e^{−z})/z = −expm1(−z)/z for z > 0, and 1 for z ≤ 0.

    ``expm1`` keeps full relative accuracy for small z (no cancellation in 1 − e^{−z}), and
    φ(0) = 1 is its limit. Non-positive z take φ = 1, a plain Euler step, because φ grows
    like e^{|z|}/|z| for negative z (``docs/methods.md`` §7, choice).
    """
    pos = z > 0
    safe = torch.where(pos, z, torch.ones_like(z))
    return torch.where(pos, -torch.expm1(-safe) / safe, torch.ones_like(z))


class ExponentialEuler(Integrator):
    """Exponential Euler in the top-k Hessian eigenbasis (``docs/methods.md`` §7).

    Update (see the module docstring): θ ← θ − τ Σ_{i≤k} c_i φ(λ_i τ) h_i − τ r with
    τ = min(τ_max, η/λ_{k+1}). Special cases:

    - λ_{k+1} ≤ 0: no curvature limit, τ = τ_max (a RuntimeError if τ_max = inf).
    - k = P: no residual direction and no λ_{k+1}; τ = τ_max, which must be finite. On a
      quadratic the step is then the exact flow map.
    - λ_i ≤ 0 for some i ≤ k: φ = 1 there (plain Euler, ``docs/methods.md`` choice).

    Cost per step: one Hessian graph (it yields L(θ_t) and g(θ_t), so ``n_grads = 1``) and the
    eigensolver's products (``n_matvecs``). If the graph does not fit the operator's memory
    budget, g comes from a separate evaluation (still reported as one gradient). The
    eigensolve is warm-started from the previous step's block, kept in the state under
    ``"exp_euler_v"`` ([P, m]; absent before the first step, when seeded noise is used).
    A solve that does not converge emits :class:`~eoslab.eigen.NonConvergenceWarning` and
    sets ``info["eig_converged"] = 0.0``; the step still uses its Ritz pairs.

    ``StepResult.lr`` is τ (the flow time advanced). ``info`` holds ``tau``, ``sharpness``
    (λ_1), ``lambda_next`` (λ_{k+1}, NaN when k = P), ``residual_norm`` (‖r‖) and
    ``eig_converged``.

    Args:
        lr: the dimensionless learning rate, 0 < η < 2 (η < 2 keeps the bulk stable).
        k: number of exactly integrated directions, 1 ≤ k ≤ P (None: ``problem.n_outputs``,
            as Lowell 2024).
        tau_max: upper limit τ_max > 0 of the step length (may be inf unless k = P).
        solver: the per-step eigensolve of the top k + 1 pairs
            (:class:`~eoslab.eigen.EigSpec`; default
            :data:`~eoslab.dynamics.stepsize.STEP_SOLVER`). ``EigSpec(method="block_power",
            criterion="eigenvalue_change")`` is Lowell 2024 §7.1's procedure (compare with the
            previous step's eigenvalues, kept under ``"exp_euler_lam"``; often one block
            product per step, not verified); see :class:`~eoslab.dynamics.stepsize.TrackedSolve`.
    """

    name = "exp_euler"

    def __init__(
        self,
        lr: float,
        k: int | None = None,
        *,
        tau_max: float = math.inf,
        solver: EigSpec = STEP_SOLVER,
    ):
        owner = self.name
        self.lr = check_positive(lr, "lr", owner=owner)
        if self.lr >= 2.0:
            raise ValueError(
                f"{owner}: lr must be the dimensionless η < 2 (every direction outside the top k "
                f"then has τλ ≤ η < 2, a stable Euler step), got {lr!r}"
            )
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise ValueError(f"{owner}: k must be a positive integer or None, got {k!r}")
        self.k = k
        self.tau_max = check_positive(tau_max, "tau_max", owner=owner, allow_inf=True)
        self.solve = TrackedSolve("exp_euler", solver, owner=owner)

    def n_top(self, problem) -> int:
        """k for this problem (``problem.n_outputs`` by default), checked against P and τ_max.

        Raises:
            ValueError: if k > P, or k = P with tau_max = inf (no step length).
        """
        k = problem.n_outputs if self.k is None else self.k
        if k > problem.size:
            raise ValueError(f"{self.name}: k={k} exceeds the parameter count P={problem.size}")
        if k == problem.size and math.isinf(self.tau_max):
            raise ValueError(
                f"{self.name}: k = P = {k} leaves no λ_(k+1) to set τ; give a finite tau_max"
            )
        return k

    def init_state(self, problem, theta):
        """``{}``: the warm-start block appears after the first step. Checks k and τ_max."""
        check_theta(problem, theta, owner=self.name)
        self.n_top(problem)
        return {}

    def step(self, problem, theta, state):
        """One exponential Euler step; see the class docstring."""
        check_theta(problem, theta, owner=self.name)
        k = self.n_top(problem)
        P = problem.size
        m = min(k + 1, P)
        op = HessianOperator(problem, theta)
        if op.gradient is not None:
            loss, g = op.loss, op.gradient
        else:
            loss, g = problem.loss_and_gradient(theta)
        res, new_state = self.solve(op, m, state)
        lam = res.eigenvalues  # [m], descending
        Hk = res.eigenvectors[:, :k]  # [P, k]
        c = Hk.T @ g  # [k]
        r = g - Hk @ c  # [P]

        lam_next = lam.new_full((), math.nan) if m == k else lam[k]
        loss_f, gnorm, sharpness, lam_next_f, r_norm = summary(
            loss, g, lam[0], lam_next, torch.linalg.vector_norm(r)
        )  # one host sync
        if m == k:
            tau = self.tau_max
        elif lam_next_f <= 0:
            if math.isinf(self.tau_max):
                raise RuntimeError(
                    f"{self.name}: λ_(k+1) = {lam_next_f:.6g} ≤ 0 gives no step length and "
                    f"tau_max = inf; give a finite tau_max"
                )
            tau = self.tau_max
        else:
            tau = min(self.tau_max, self.lr / lam_next_f)

        coef = c * phi(lam[:k] * tau)  # [k]
        theta_new = theta - tau * (Hk @ coef) - tau * r

        converged = res.all_converged
        if not converged:
            warnings.warn(
                f"{self.name}: the top-{m} eigensolve did not converge to tol={res.tol:g} "
                f"({res.n_matvecs} products); the step uses its Ritz pairs anyway",
                NonConvergenceWarning,
                stacklevel=2,
            )
        return StepResult(
            theta=theta_new,
            state=new_state,
            lr=tau,
            loss=loss_f,
            grad_norm=gnorm,
            n_grads=1,
            n_matvecs=res.n_matvecs,
            info={
                "tau": tau,
                "sharpness": sharpness,
                "lambda_next": lam_next_f,
                "residual_norm": r_norm,
                "eig_converged": float(converged),
            },
        )

    def threshold(self, lr: float) -> float:
        """2/τ for the step τ actually taken (``StepResult.lr``).

        The top-k directions are integrated exactly and have no stability limit; every other
        direction takes an Euler step of length τ, stable iff λ < 2/τ. With
        τ = η/λ_{k+1} this reads λ_{k+1} < 2 λ_{k+1}/η, i.e. η < 2.
        """
        return 2.0 / lr

    def __repr__(self) -> str:
        return (
            f"ExponentialEuler(lr={self.lr!r}, k={self.k!r}, tau_max={self.tau_max!r}, "
            f"solver={self.solve.spec.describe()!r})"
        )
