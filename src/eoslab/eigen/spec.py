"""One frozen, validated description of an eigensolve: :class:`EigSpec` (``docs/methods.md`` §6).

The upper layers (probes, integrators, the Gauss–Newton probe, ``eoslab analyze``, the cusp
scan) do not pass solver options around one by one: each holds an :class:`EigSpec`, checked
once when it is made, and calls :meth:`EigSpec.solve`. Each of them names its own default
spec once, next to its code (:data:`eoslab.probes.DEFAULT_SOLVER`, ``DEFAULT_GN_SOLVER``,
:data:`eoslab.dynamics.STEP_SOLVER`, :data:`eoslab.probes.CUSP_SOLVER`), and the run config
spells the same fields the same way everywhere (``probe.solver``, ``optimizer.solver``,
``probe.gauss_newton_solver``). :func:`eoslab.eigen.eigsh` stays the call for users.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from eoslab.eigen.result import EigResult
from eoslab.linalg.base import Operator

__all__ = ["CRITERIA", "DEFAULT_METHOD", "EigSpec"]

#: The solver :func:`eoslab.eigen.eigsh` and :class:`EigSpec` use when no method is given:
#: thick-restart Lanczos (see :mod:`eoslab.eigen` for the measurements behind the choice).
DEFAULT_METHOD = "lanczos"

#: Stopping rules: the verified residual test (every solver) or Lowell 2024 §7.1's
#: relative eigenvalue change between iterations (block power only, not verified).
CRITERIA = ("residual", "eigenvalue_change")

#: ``which`` values each solver can do (LOBPCG maximises a Rayleigh quotient: no 'LM').
_WHICH = {"lobpcg": ("LA", "SA")}
_ALL_WHICH = ("LA", "SA", "LM")


@dataclass(frozen=True)
class EigSpec:
    """How to compute eigenpairs: solver, target, tolerance, budget, seed, stopping rule.

    Attributes:
        method: a key of :data:`eoslab.eigen.SOLVERS`; default ``"lanczos"``
            (:data:`eoslab.eigen.DEFAULT_METHOD`).
        which: ``"LA"`` (largest algebraic, the sharpness), ``"SA"`` or ``"LM"``.
        tol: the tolerance of the stopping rule, 0 < tol < 1: the relative residual
            ‖A v − λ v‖ ≤ tol·|λ| (``docs/methods.md`` §6.2), or the relative eigenvalue change
            of ``criterion="eigenvalue_change"``.
        max_iter: the solver's iteration limit; None keeps the solver's own default.
        seed: seed of the solver's random vectors (start block, guard and check vectors).
        criterion: ``"residual"`` or ``"eigenvalue_change"`` (``block_power`` only).
        verify_steps: Lanczos steps of the check for a missed wanted eigenvalue after
            convergence (``docs/methods.md`` §6.3); 0 switches it off.

    Raises:
        ValueError: naming the field, for any value the solver could not use.
    """

    method: str = DEFAULT_METHOD
    which: str = "LA"
    tol: float = 1e-4
    max_iter: int | None = None
    seed: int = 0
    criterion: str = "residual"
    verify_steps: int = 8

    def __post_init__(self) -> None:
        from eoslab.eigen import SOLVERS  # the registry imports the solvers, not this module

        if self.method not in SOLVERS:
            raise ValueError(f"method: one of {sorted(SOLVERS)}, got {self.method!r}")
        allowed = _WHICH.get(self.method, _ALL_WHICH)
        if self.which not in allowed:
            raise ValueError(f"which: {self.method} takes one of {allowed}, got {self.which!r}")
        tol = self.tol
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
            raise ValueError(f"tol: a number in (0, 1), got {tol!r}")
        object.__setattr__(self, "tol", float(tol))
        for name, low in (("max_iter", 1), ("seed", 0), ("verify_steps", 0)):
            value = getattr(self, name)
            if value is None and name == "max_iter":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                none = " or None" if name == "max_iter" else ""
                raise ValueError(f"{name}: an integer ≥ {low}{none}, got {value!r}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion: one of {CRITERIA}, got {self.criterion!r}")
        if self.criterion == "eigenvalue_change" and self.method != "block_power":
            raise ValueError(
                "criterion: 'eigenvalue_change' is block_power's rule; set method: block_power "
                f"(got {self.method!r})"
            )

    @property
    def verified(self) -> bool:
        """True when converged pairs have passed the residual test (not the heuristic rule)."""
        return self.criterion == "residual"

    def replace(self, **changes: Any) -> EigSpec:
        """A copy with ``changes`` applied, validated again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (config and JSON form)."""
        return dataclasses.asdict(self)

    def solve(
        self,
        op: Operator,
        k: int,
        *,
        v0: torch.Tensor | None = None,
        theta0: torch.Tensor | None = None,
    ) -> EigResult:
        """k eigenpairs of ``op`` as this spec says (``docs/methods.md`` §6).

        Args:
            op: a symmetric operator.
            k: number of pairs.
            v0: warm-start block [P] or [P, j] (e.g. a previous ``EigResult.warm_start``).
            theta0: the previous call's eigenvalues, compared with the first iteration under
                ``criterion="eigenvalue_change"`` (ignored otherwise).

        Returns:
            The solver's :class:`~eoslab.eigen.EigResult`.
        """
        from eoslab.eigen import SOLVERS

        options: dict[str, Any] = dict(
            which=self.which, v0=v0, tol=self.tol, seed=self.seed, verify_steps=self.verify_steps
        )
        if self.max_iter is not None:
            options["max_iter"] = self.max_iter
        if self.method == "block_power":
            options["criterion"] = self.criterion
            if theta0 is not None and self.criterion == "eigenvalue_change":
                options["theta0"] = theta0
        return SOLVERS[self.method](op, k, **options)

    def describe(self) -> str:
        """A short human-readable form, e.g. ``lanczos LA tol=1e-04``."""
        extra = "" if self.verified else f" ({self.criterion}, unverified)"
        it = "" if self.max_iter is None else f" max_iter={self.max_iter}"
        tol = f"{self.tol:.0e}" if math.log10(self.tol).is_integer() else f"{self.tol:g}"
        return f"{self.method} {self.which} tol={tol}{it}{extra}"
