"""Matrix-free curvature operators on flat parameter vectors (see ``docs/architecture.md``)."""

from eoslab.linalg.base import DenseOperator, Operator
from eoslab.linalg.curvature import (
    GaussNewtonOperator,
    HessianOperator,
    LinearCombination,
    ProjectedOperator,
    RestrictedOperator,
    ScaledOperator,
    default_memory_budget,
    residual_operator,
)
from eoslab.linalg.scipy_adapter import to_scipy

__all__ = [
    "DenseOperator",
    "GaussNewtonOperator",
    "HessianOperator",
    "LinearCombination",
    "Operator",
    "ProjectedOperator",
    "RestrictedOperator",
    "ScaledOperator",
    "default_memory_budget",
    "residual_operator",
    "to_scipy",
]
