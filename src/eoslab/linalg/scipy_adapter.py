"""Adapter from an eoslab :class:`~eoslab.linalg.base.Operator` to SciPy.

Lets SciPy's solvers (ARPACK ``eigsh``, ``lobpcg``, ``cg``) run on any eoslab operator.
Vectors cross the boundary as float64 NumPy arrays on the host; the operator still computes
in its own dtype and device (``docs/methods.md`` §6.4).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator

from eoslab.linalg.base import Operator


def to_scipy(op: Operator) -> LinearOperator:
    """Wrap ``op`` as a ``scipy.sparse.linalg.LinearOperator`` of dtype float64.

    Args:
        op: any eoslab operator.

    Returns:
        A LinearOperator whose ``matvec``/``matmat`` call ``op.matmat`` (and so count in
        ``op.n_applied``).
    """

    def _apply(X: np.ndarray) -> np.ndarray:
        X2 = np.asarray(X).reshape(op.size, -1)
        V = torch.as_tensor(np.ascontiguousarray(X2), device=op.device).to(op.dtype)
        out = op.matmat(V).detach().to("cpu", torch.float64).numpy()
        return out.reshape(X.shape) if np.ndim(X) == 1 else out

    return LinearOperator(
        shape=op.shape,
        matvec=_apply,
        matmat=_apply,
        rmatvec=_apply if op.symmetric else None,
        dtype=np.float64,
    )
