"""The training problem as pure functions of a flat θ: loss, gradient and outputs.

``docs/methods.md`` §1: L(θ) = (1/N) Σ_n ℓ(f(x_n; θ), y_n) over the full training set. The data
are processed in fixed chunks; each chunk contributes the *sum* of its per-sample losses and
the total is divided by N once, so a ragged last chunk is weighted exactly and results do
not depend on the chunk size beyond round-off.

Design note (measured, see ``benchmarks/``): the gradient is taken with
``torch.autograd.grad`` on a detached leaf copy of θ rather than ``torch.func.grad``; on the
benchmark MLPs it is up to 2× faster in float64 and equally pure (no module state, no
``.grad`` writes, no ``.backward()``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.func import functional_call

from eoslab.losses import Criterion, get_criterion
from eoslab.params import ParamLayout


class Problem:
    """A model, a criterion and a full-batch data set; every method is a function of θ.

    Args:
        model: any ``nn.Module``; only its structure and buffers are used, never its
            parameters' values (those come from θ), and it is never modified.
        criterion: a :class:`~eoslab.losses.Criterion` or its name (``"cross_entropy"``,
            ``"mse"``).
        X: inputs [N, ...] on the device and in the dtype of the computation.
        y: integer class labels [N].
        chunk_size: samples per chunk (default: all N in one chunk).

    Attributes:
        layout: the :class:`~eoslab.params.ParamLayout` mapping θ to named parameters.
        n_outputs: number of network outputs (read from one forward pass).
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: str | Criterion,
        X: torch.Tensor,
        y: torch.Tensor,
        *,
        chunk_size: int | None = None,
    ):
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
        if X.shape[0] == 0:
            raise ValueError("the data set is empty")
        if y.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
        self.model = model
        self.criterion = get_criterion(criterion)
        self.X = X
        self.y = y.to(device=X.device, dtype=torch.int64)
        self.N = X.shape[0]
        self.chunk_size = min(chunk_size or self.N, self.N)
        self.layout = ParamLayout.from_module(model)
        self.buffers = {n: b for n, b in model.named_buffers()}
        p0 = next(p for p in model.parameters() if p.requires_grad)
        if p0.dtype != X.dtype:
            raise ValueError(f"model parameters are {p0.dtype} but X is {X.dtype}; use one dtype")
        self.dtype = X.dtype
        self.device = X.device
        with torch.no_grad():
            self.n_outputs = int(self.forward(self.initial_theta(), X[:1]).shape[-1])

    @property
    def size(self) -> int:
        """P, the number of parameters."""
        return self.layout.size

    def initial_theta(self) -> torch.Tensor:
        """A flat copy θ [P] of the model's current parameters."""
        return self.layout.flatten(self.model).to(device=self.device, dtype=self.dtype)

    def chunks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (X_chunk, y_chunk) in order; the last chunk may be shorter."""
        for start in range(0, self.N, self.chunk_size):
            stop = min(start + self.chunk_size, self.N)
            yield self.X[start:stop], self.y[start:stop]

    @property
    def n_chunks(self) -> int:
        """Number of chunks, ⌈N / chunk_size⌉."""
        return -(-self.N // self.chunk_size)

    def forward(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """f(X; θ) [n, n_out] through ``torch.func.functional_call``."""
        params = self.layout.unflatten(theta)
        if self.buffers:
            params = {**params, **self.buffers}
        return functional_call(self.model, params, (X,))

    def chunk_loss_sum(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor):
        """Σ_{n ∈ chunk} ℓ(f(x_n; θ), y_n): the un-normalised loss of one chunk."""
        return self.criterion.per_sample(self.forward(theta, X), y).sum()

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        """L(θ) = (1/N) Σ_n ℓ_n (docs/methods.md §1), a 0-dim tensor (no host sync)."""
        with torch.no_grad():
            total = sum(self.chunk_loss_sum(theta, Xc, yc) for Xc, yc in self.chunks())
        return total / self.N

    def loss_and_gradient(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L(θ), g = ∇L(θ) [P]) in one pass over the data."""
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        g = torch.zeros_like(theta)
        for Xc, yc in self.chunks():
            leaf = theta.detach().requires_grad_(True)
            with torch.enable_grad():
                s = self.chunk_loss_sum(leaf, Xc, yc)
                (gc,) = torch.autograd.grad(s, leaf)
            total += s.detach()
            g += gc
        return total / self.N, g / self.N

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        """g = ∇L(θ) [P]."""
        return self.loss_and_gradient(theta)[1]

    def outputs(self, theta: torch.Tensor) -> torch.Tensor:
        """Network outputs on the whole data set, [N, n_out]."""
        with torch.no_grad():
            return torch.cat([self.forward(theta, Xc) for Xc, _ in self.chunks()])

    def accuracy(self, theta: torch.Tensor) -> torch.Tensor:
        """Fraction of samples whose arg-max output equals the label (0-dim tensor)."""
        with torch.no_grad():
            hits = sum((self.forward(theta, Xc).argmax(-1) == yc).sum() for Xc, yc in self.chunks())
        return hits.to(self.dtype) / self.N

    def with_data(self, X: torch.Tensor, y: torch.Tensor) -> Problem:
        """The same model and criterion on other data (e.g. a test set)."""
        return Problem(self.model, self.criterion, X, y, chunk_size=self.chunk_size)

    def check_deterministic(self, theta: torch.Tensor) -> bool:
        """True when two evaluations of L and g at θ agree bit for bit.

        Non-determinism (some GPU kernels) makes resumed runs drift; the run loop reports it.
        """
        l1, g1 = self.loss_and_gradient(theta)
        l2, g2 = self.loss_and_gradient(theta)
        return bool(torch.equal(l1, l2) and torch.equal(g1, g2))
