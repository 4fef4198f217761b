"""Flat parameter vectors θ ⇄ named parameter dicts.

``docs/architecture.md`` rule 1: θ is one flat tensor at every boundary. This module is the one
place where a flat θ [P] is turned into the ``{name: tensor}`` dict that
``torch.func.functional_call`` needs, and back. Order is ``named_parameters()`` order
(``docs/methods.md`` §1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ParamLayout:
    """Names, shapes and offsets of a module's parameters inside the flat θ.

    Attributes:
        names: parameter names in ``named_parameters()`` order.
        shapes: their shapes.
        offsets: start index of each parameter in θ; ``offsets[i] + numels[i]`` is its end.
        numels: number of entries of each parameter.
    """

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    offsets: tuple[int, ...]
    numels: tuple[int, ...]

    @classmethod
    def from_module(cls, module: nn.Module) -> ParamLayout:
        """Read the layout of ``module``'s trainable parameters."""
        names, shapes, offsets, numels = [], [], [], []
        offset = 0
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            names.append(name)
            shapes.append(p.shape)
            offsets.append(offset)
            numels.append(p.numel())
            offset += p.numel()
        if not names:
            raise ValueError(f"{type(module).__name__} has no trainable parameters")
        return cls(tuple(names), tuple(shapes), tuple(offsets), tuple(numels))

    @property
    def size(self) -> int:
        """P, the total number of parameters."""
        return self.offsets[-1] + self.numels[-1]

    def flatten(self, params: dict[str, torch.Tensor] | nn.Module) -> torch.Tensor:
        """Concatenate parameters into one flat θ [P] (a copy, detached from modules).

        Args:
            params: a ``{name: tensor}`` dict or a module with this layout.
        """
        if isinstance(params, nn.Module):
            params = dict(params.named_parameters())
        missing = [n for n in self.names if n not in params]
        if missing:
            raise KeyError(f"parameters missing from the dict: {missing}")
        return torch.cat([params[n].detach().reshape(-1) for n in self.names])

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split θ [P] into ``{name: view}`` with the parameters' shapes (no copy).

        Works on any tensor whose last dimension is P is *not* supported: θ must be 1-D, so
        that autograd and ``vmap`` see plain views.
        """
        if theta.dim() != 1 or theta.shape[0] != self.size:
            raise ValueError(f"θ must have shape [{self.size}], got {tuple(theta.shape)}")
        return {
            n: theta.narrow(0, o, k).view(s)
            for n, o, k, s in zip(self.names, self.offsets, self.numels, self.shapes)
        }

    def slice_of(self, name: str) -> slice:
        """The slice of θ holding parameter ``name``."""
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i] + self.numels[i])

    def group_slices(self) -> dict[str, slice]:
        """Contiguous slices of θ per module (``'0.weight'`` and ``'0.bias'`` → ``'0'``).

        The parameters of one module are contiguous in ``named_parameters()`` order, so each
        group is one slice: the layer blocks used for per-layer sharpness (``docs/methods.md`` §5).
        """
        groups: dict[str, slice] = {}
        for n, o, k in zip(self.names, self.offsets, self.numels):
            prefix = n.rsplit(".", 1)[0] if "." in n else n
            if prefix in groups:
                g = groups[prefix]
                if g.stop != o:
                    raise ValueError(f"parameters of module {prefix!r} are not contiguous")
                groups[prefix] = slice(g.start, o + k)
            else:
                groups[prefix] = slice(o, o + k)
        return groups

    def load_into(self, module: nn.Module, theta: torch.Tensor) -> None:
        """Copy θ into ``module``'s parameters (for export only; library code stays pure)."""
        with torch.no_grad():
            for name, view in self.unflatten(theta).items():
                module.get_parameter(name).copy_(view)
