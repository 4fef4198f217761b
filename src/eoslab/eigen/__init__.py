"""Eigensolvers for symmetric operators, one signature and one result type (METHODS.md §6).

``eigsh(op, k)`` runs the default, thick-restart Lanczos; ``method=`` picks another from
``SOLVERS``. Lanczos is the default because curvature products are applied one vector at a
time (see ``docs/design-notes.md``), so block methods gain nothing per product, and on the
benchmark problems Lanczos needed 2–3× fewer products than LOBPCG, cold and warm.
"""

from __future__ import annotations

from eoslab.eigen.lanczos import arpack, lanczos
from eoslab.eigen.lobpcg import lobpcg
from eoslab.eigen.power import block_power
from eoslab.eigen.result import ConvergenceError, EigResult, NonConvergenceWarning

SOLVERS = {
    "lobpcg": lobpcg,
    "lanczos": lanczos,
    "arpack": arpack,
    "block_power": block_power,
}


def eigsh(op, k: int, *, method: str = "lanczos", **kwargs) -> EigResult:
    """k eigenpairs of the symmetric operator ``op`` with the named solver.

    Keyword arguments (``which``, ``v0``, ``tol``, ``max_iter``, ``seed`` and the solver's
    own options) are passed on unchanged; see each solver.
    """
    try:
        solver = SOLVERS[method]
    except KeyError:
        raise ValueError(f"unknown eigensolver {method!r}; known: {sorted(SOLVERS)}") from None
    return solver(op, k, **kwargs)


__all__ = [
    "SOLVERS",
    "ConvergenceError",
    "EigResult",
    "NonConvergenceWarning",
    "arpack",
    "block_power",
    "eigsh",
    "lanczos",
    "lobpcg",
]
