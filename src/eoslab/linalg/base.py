"""The operator protocol: symmetric linear maps on R^P applied to [P, k] blocks.

Every curvature operator in eoslab (Hessian, Gauss–Newton, residual H − G, layer blocks,
sums and projections) implements :class:`Operator`. Eigensolvers only ever call
:meth:`Operator.matmat`, which counts the vectors it has been applied to in
``n_applied`` so that solvers can report the number of operator applications.

Source: ``docs/methods.md`` §4 (operators) and §6 (solvers act on blocks ``P × m``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Operator(ABC):
    """A linear operator A: R^P → R^P acting on blocks of column vectors.

    Subclasses implement :meth:`_matmat`. The public :meth:`matmat` checks shapes, counts
    applications and dispatches.

    Attributes:
        size: P, the dimension of the space.
        dtype: dtype of the vectors the operator accepts and returns.
        device: device of those vectors.
        symmetric: True when A = Aᵀ (all curvature operators are).
        n_applied: number of vectors A has been applied to since creation (or
            :meth:`reset_count`); a block of k columns counts k.
    """

    def __init__(
        self, size: int, *, dtype: torch.dtype, device: torch.device, symmetric: bool = True
    ):
        self.size = int(size)
        self.dtype = dtype
        self.device = torch.device(device)
        self.symmetric = symmetric
        self.n_applied = 0

    def rounding_scale(self) -> torch.Tensor | None:
        """A magnitude whose round-off every product of this operator may carry, or None.

        For an operator computed as a difference of larger terms (H − G) the products can be
        pure round-off of those terms even where A itself is (near) zero; the eigensolvers'
        residual floor (``docs/methods.md`` §6.2) then has to be set by the terms, not by the
        Ritz values. None (the default) means the products' own size is that scale.
        """
        return None

    @property
    def shape(self) -> tuple[int, int]:
        """(P, P)."""
        return (self.size, self.size)

    @abstractmethod
    def _matmat(self, V: torch.Tensor) -> torch.Tensor:  # [P, k] -> [P, k]
        """A V for a checked block V [P, k]; implemented by every operator."""

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """Apply A to every column of ``V``.

        Args:
            V: block of vectors, shape [P, k] (or [P], treated as k = 1).

        Returns:
            A V with the shape of ``V``.

        Raises:
            ValueError: if ``V`` does not have P rows or has the wrong dtype/device.
        """
        squeeze = V.dim() == 1
        if squeeze:
            V = V[:, None]
        if V.dim() != 2 or V.shape[0] != self.size:
            raise ValueError(
                f"{type(self).__name__} acts on [P={self.size}, k] blocks, got {tuple(V.shape)}"
            )
        if V.dtype != self.dtype:
            raise ValueError(f"{type(self).__name__} expects dtype {self.dtype}, got {V.dtype}")
        if V.device.type != self.device.type:
            raise ValueError(f"{type(self).__name__} lives on {self.device}, got {V.device}")
        if V.shape[1] == 0:
            return V.clone()
        out = self._matmat(V)
        self.n_applied += V.shape[1]
        return out[:, 0] if squeeze else out

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Apply A to one vector ``v`` of shape [P]."""
        return self.matmat(v.reshape(-1, 1))[:, 0]

    def __matmul__(self, V: torch.Tensor) -> torch.Tensor:
        return self.matmat(V)

    def reset_count(self) -> None:
        """Set ``n_applied`` back to zero."""
        self.n_applied = 0

    def to_dense(self, *, block: int = 256) -> torch.Tensor:
        """Materialise A as a dense [P, P] tensor by applying it to identity blocks.

        Meant for tests on tiny problems; costs P operator applications.
        """
        cols = []
        for start in range(0, self.size, block):
            stop = min(start + block, self.size)
            E = torch.zeros(self.size, stop - start, dtype=self.dtype, device=self.device)
            E[torch.arange(start, stop), torch.arange(stop - start)] = 1
            cols.append(self.matmat(E))
        return torch.cat(cols, dim=1)


class DenseOperator(Operator):
    """An explicit symmetric matrix as an :class:`Operator` (tests, small problems)."""

    def __init__(self, A: torch.Tensor, *, symmetric: bool = True):
        if A.dim() != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"DenseOperator needs a square matrix, got {tuple(A.shape)}")
        super().__init__(A.shape[0], dtype=A.dtype, device=A.device, symmetric=symmetric)
        self.A = A

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.A @ V
