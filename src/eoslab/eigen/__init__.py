"""Eigensolvers for symmetric operators: one signature, one result type (``docs/methods.md`` §6).

Every solver is called as ``solver(op, k, *, which="LA", v0=None, tol=1e-4, max_iter=...,
seed=0, <its own keyword-only options>)`` on an :class:`~eoslab.linalg.base.Operator` and
returns an :class:`EigResult`: eigenvalues in ``which`` order, orthonormal eigenvectors
[P, k], residuals ‖A v − λ v‖ from products, convergence flags (with a
:class:`NonConvergenceWarning` whenever one is false) and the operator applications used.
No solver reports a wrong pair as converged where a check can tell: a tol below the dtype's
residual floor is raised to it (:class:`ToleranceFloorWarning`, ``EigResult.tol`` is the
tolerance applied), a zero operator is recognised from its first block of products, and
after convergence a few Lanczos steps on the operator deflated against the converged
vectors look for a wanted eigenvalue the solver missed (``verify_steps``; see
:mod:`eoslab.eigen._verify`).

:func:`eigsh` dispatches by name through the plain dict :data:`SOLVERS`; the upper layers
hold a frozen :class:`EigSpec` (method, which, tol, max_iter, seed, stopping rule, check
steps), validated once, and call :meth:`EigSpec.solve`. The default,
:data:`DEFAULT_METHOD`, is thick-restart Lanczos: on the CPU curvature products cost the
same per vector alone or in blocks (``docs/design-notes.md``), and on the benchmark Hessians
(``benchmarks/bench_curvature.py``, mlp-small, k = 20) Lanczos needed 190 products cold at
initialisation against LOBPCG's 444, and 55 against 47 warm after 200 GD steps. LOBPCG is
the block method: the one to warm-start along a trajectory and to use when products are
cheaper in blocks (GPU) or eigenvalues are repeated.
"""

from __future__ import annotations

from eoslab.eigen.lanczos import arpack, lanczos
from eoslab.eigen.lobpcg import lobpcg
from eoslab.eigen.power import block_power
from eoslab.eigen.result import (
    ConvergenceError,
    EigResult,
    NonConvergenceWarning,
    ToleranceFloorWarning,
)
from eoslab.eigen.spec import CRITERIA, DEFAULT_METHOD, EigSpec
from eoslab.linalg.base import Operator

#: Solvers by name, for configs and :func:`eigsh`.
SOLVERS = {
    "lanczos": lanczos,
    "lobpcg": lobpcg,
    "arpack": arpack,
    "block_power": block_power,
}


def eigsh(op: Operator, k: int, *, method: str = DEFAULT_METHOD, **options) -> EigResult:
    """k eigenpairs of the symmetric operator ``op`` with the solver named ``method``.

    Args:
        op: symmetric operator on R^P.
        k: number of eigenpairs.
        method: a key of :data:`SOLVERS` (default :data:`DEFAULT_METHOD`).
        **options: keyword arguments of that solver (``which``, ``v0``, ``tol``,
            ``max_iter``, ``seed`` and its own options), passed on unchanged; one the solver
            does not take raises TypeError there.

    Returns:
        The solver's :class:`EigResult`.

    Raises:
        ValueError: for an unknown ``method`` (and whatever the solver raises).
    """
    try:
        solver = SOLVERS[method]
    except KeyError:
        raise ValueError(
            f"unknown eigensolver method={method!r}; choose one of {sorted(SOLVERS)}"
        ) from None
    return solver(op, k, **options)


__all__ = [
    "CRITERIA",
    "DEFAULT_METHOD",
    "EigSpec",
    "SOLVERS",
    "ConvergenceError",
    "EigResult",
    "NonConvergenceWarning",
    "ToleranceFloorWarning",
    "arpack",
    "block_power",
    "eigsh",
    "lanczos",
    "lobpcg",
]
