"""Curvature operators of a :class:`~eoslab.problem.Problem` at a point θ.

- :class:`HessianOperator`: H = ∇²L (``docs/methods.md`` §1).
- :class:`GaussNewtonOperator`: G = E_x[J_xᵀ H_ℓ(x) J_x] (``docs/methods.md`` §4; Lowell 2024,
  Eq. 2).
- :func:`residual_operator`: R = H − G.

Products reuse the autograd graph of the first-order computation at θ: the graph of
g(θ) (for H) or of f(X; θ) (for G) is built once with ``create_graph=True`` and every
product is one extra backward pass over it. Measured on the benchmark MLPs this costs
0.5–1.5 gradients per vector, against about 2–3 for forward-over-reverse
``torch.func.jvp(grad)``, which redoes the forward pass each time. When the graph of all
chunks would exceed ``memory_budget`` bytes (measured on the first chunk with saved-tensor
hooks), the operator falls back to rebuilding the graph chunk by chunk on every block
product: same result to round-off, bounded memory, about one extra gradient per block.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from eoslab.linalg.base import Operator
from eoslab.problem import Problem

#: Default bytes of autograd graph an operator may keep alive on the CPU.
DEFAULT_CPU_MEMORY_BUDGET = 4 * 2**30


def default_memory_budget(device: torch.device) -> int:
    """Graph-cache budget: 4 GiB on the CPU, half the free memory on a CUDA device."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    return DEFAULT_CPU_MEMORY_BUDGET


class _SavedBytes:
    """Counts the bytes of distinct storages autograd saves while active (for budgets)."""

    def __init__(self):
        self.bytes = 0
        self._seen: set[int] = set()

    def _pack(self, t: torch.Tensor):
        if t.device.type != "meta":
            st = t.untyped_storage()
            key = st.data_ptr()
            if key not in self._seen:
                self._seen.add(key)
                self.bytes += st.nbytes()
        return t

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


class _GraphOperator(Operator):
    """Shared machinery: build a first-order graph per chunk, reuse it for products.

    Subclasses implement ``_build(leaf, X, y) -> state`` (inside ``enable_grad``) and
    ``_apply(state, leaf, v) -> [P]`` (one vector, un-normalised chunk sum), and
    ``_merge(states) -> state`` to join the cached chunk states into one graph.
    """

    def __init__(
        self,
        problem: Problem,
        theta: torch.Tensor,
        *,
        cache: bool | str = "auto",
        memory_budget: int | None = None,
    ):
        if theta.shape != (problem.size,):
            raise ValueError(f"θ must have shape [{problem.size}], got {tuple(theta.shape)}")
        super().__init__(problem.size, dtype=problem.dtype, device=problem.device)
        if cache not in ("auto", True, False):
            raise ValueError(f"cache must be 'auto', True or False, got {cache!r}")
        self.problem = problem
        self.theta = theta.detach()
        self.memory_budget = (
            default_memory_budget(self.device) if memory_budget is None else int(memory_budget)
        )
        self._leaf = self.theta.clone().requires_grad_(True)
        self._state = None
        self.graph_bytes = None
        if cache is False:
            return
        chunks = list(problem.chunks())
        with _SavedBytes() as counter, torch.enable_grad():
            first = self._build(self._leaf, *chunks[0])
        self.graph_bytes = counter.bytes * len(chunks)
        if cache is True or self.graph_bytes <= self.memory_budget:
            with torch.enable_grad():
                states = [first] + [self._build(self._leaf, Xc, yc) for Xc, yc in chunks[1:]]
            self._state = self._merge(states)

    @property
    def cached(self) -> bool:
        """True when the first-order graph of every chunk is held in memory."""
        return self._state is not None

    @abstractmethod
    def _build(self, leaf, X, y):
        """The first-order graph of one chunk at ``leaf`` (called under ``enable_grad``)."""

    @abstractmethod
    def _merge(self, states):
        """Join the cached graphs of all chunks into one state."""

    @abstractmethod
    def _apply(self, state, leaf, v):
        """The product of one vector v [P] on a built state."""

    def _apply_block(self, state, leaf, Vt, out_t):
        for j in range(Vt.shape[0]):
            out_t[j] += self._apply(state, leaf, Vt[j])

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:  # [P, k] -> [P, k]
        # Work on rows of a [k, P] block: a column of a row-major [P, k] block is strided
        # and at P = 2.6M strided reads/writes cost as much as the product. The result is
        # returned as a [P, k] view of [k, P] storage, which matmul consumes at no cost;
        # solvers that allocate their blocks the same way never pay for a transpose.
        Vt = V.T if V.T.is_contiguous() else V.T.contiguous()  # [k, P]
        out_t = torch.zeros_like(Vt)
        if self._state is not None:
            self._apply_block(self._state, self._leaf, Vt, out_t)
        else:
            for Xc, yc in self.problem.chunks():
                leaf = self.theta.clone().requires_grad_(True)
                with torch.enable_grad():
                    state = self._build(leaf, Xc, yc)
                self._apply_block(state, leaf, Vt, out_t)
                del state
        return out_t.T


class HessianOperator(_GraphOperator):
    """H = ∇²L(θ) (docs/methods.md §1) as a matrix-free operator.

    Hv = ∂(gᵀv)/∂θ, computed as one backward pass over the cached graph of
    g = Σ_n ∇ℓ_n (``create_graph=True``), divided by N.

    Args:
        problem: the training problem.
        theta: the point θ [P].
        cache: keep the graph of all chunks (``True``), never (``False``), or when its
            measured size fits ``memory_budget`` (``"auto"``).
        memory_budget: bytes of graph allowed (default: :func:`default_memory_budget`).
        vectorize: push a block through one ``is_grads_batched`` (vmap) backward instead of
            one backward per column. Measured slower on CPU for MLPs; may pay on GPUs.

    Attributes:
        loss: L(θ) when the graph is cached (free by-product), else None.
        gradient: g(θ) [P] when the graph is cached, else None.
    """

    def __init__(self, problem, theta, *, cache="auto", memory_budget=None, vectorize=False):
        self.vectorize = vectorize
        super().__init__(problem, theta, cache=cache, memory_budget=memory_budget)
        self.loss = self.gradient = None
        if self._state is not None:
            s, g = self._state
            self.loss = s.detach()
            self.gradient = g.detach()

    def _build(self, leaf, X, y):
        # the 1/N weight goes into the graph, so products need no extra scaling pass
        s = self.problem.chunk_loss_sum(leaf, X, y) / self.problem.N
        (g,) = torch.autograd.grad(s, leaf, create_graph=True)
        return s, g

    def _merge(self, states):
        if len(states) == 1:
            return states[0]
        return sum(s for s, _ in states), sum(g for _, g in states)

    def _apply(self, state, leaf, v):
        return torch.autograd.grad(state[1], leaf, v, retain_graph=True)[0]

    def _apply_block(self, state, leaf, Vt, out_t):
        if self.vectorize and Vt.shape[0] > 1:
            (HVt,) = torch.autograd.grad(
                state[1], leaf, Vt, retain_graph=True, is_grads_batched=True
            )
            out_t += HVt
        else:
            super()._apply_block(state, leaf, Vt, out_t)


class GaussNewtonOperator(_GraphOperator):
    """G = (1/N) Σ_n J_nᵀ H_ℓ(f_n) J_n (docs/methods.md §4; Lowell 2024 Eq. 2).

    Gv: J v by the double-VJP trick (J v = ∂/∂u ⟨Jᵀu, v⟩ on the cached graph of f), the
    output-space product H_ℓ (J v) in closed form (:meth:`Criterion.hessian_matmul`), then
    Jᵀ(·) by one VJP: two backward passes per vector over one cached forward graph.
    """

    def _build(self, leaf, X, y):
        f = self.problem.forward(leaf, X)
        u = torch.zeros_like(f, requires_grad=True)
        (Jt_u,) = torch.autograd.grad(f, leaf, u, create_graph=True)
        return f, u, Jt_u, y

    def _merge(self, states):
        if len(states) == 1:
            return states[0]
        f = torch.cat([s[0] for s in states])
        # one dummy per chunk keeps the graphs separate; Jᵀu sums over chunks
        us = [s[1] for s in states]
        return f, us, sum(s[2] for s in states), torch.cat([s[3] for s in states])

    def _apply(self, state, leaf, v):
        f, u, Jt_u, y = state
        us = u if isinstance(u, list) else [u]
        Jv = torch.autograd.grad(Jt_u, us, v, retain_graph=True)
        Jv = torch.cat(Jv) if len(Jv) > 1 else Jv[0]
        q = self.problem.criterion.hessian_matmul(f.detach(), y, Jv) / self.problem.N
        return torch.autograd.grad(f, leaf, q, retain_graph=True)[0]


class LinearCombination(Operator):
    """Σ_i c_i A_i for operators of one size (e.g. R = H − G, docs/methods.md §4)."""

    def __init__(self, terms: list[tuple[float, Operator]]):
        if not terms:
            raise ValueError("LinearCombination needs at least one term")
        first = terms[0][1]
        for _, op in terms:
            if op.size != first.size or op.dtype != first.dtype:
                raise ValueError(
                    f"cannot combine operators of size/dtype {op.size}/{op.dtype} and "
                    f"{first.size}/{first.dtype}"
                )
        super().__init__(
            first.size,
            dtype=first.dtype,
            device=first.device,
            symmetric=all(op.symmetric for _, op in terms),
        )
        self.terms = terms
        self._term_scale: torch.Tensor | None = None

    def _matmat(self, V):
        out = None
        col = torch.linalg.vector_norm(V, dim=0).clamp_min(torch.finfo(V.dtype).tiny)
        big = torch.zeros((), dtype=V.dtype, device=V.device)
        for c, op in self.terms:
            term = op.matmat(V) * c
            # the largest term per unit vector: products of Σ c_i A_i carry its round-off
            big = torch.maximum(big, (torch.linalg.vector_norm(term, dim=0) / col).max())
            out = term if out is None else out + term
        self._term_scale = big if self._term_scale is None else torch.maximum(self._term_scale, big)
        return out

    def rounding_scale(self) -> torch.Tensor | None:
        """max of |c_i| ‖A_i v‖ / ‖v‖ over terms and products so far (≤ max_i ‖c_i A_i‖).

        R = H − G of a linear model is zero, but its products are the round-off of H v − G v:
        without this scale no residual test could accept them (``docs/methods.md`` §6.2).
        """
        return self._term_scale


def residual_operator(H: Operator, G: Operator) -> LinearCombination:
    """R = H − G, the part of the Hessian the Gauss–Newton matrix misses (docs/methods.md §4)."""
    return LinearCombination([(1.0, H), (-1.0, G)])


class ScaledOperator(Operator):
    """c A."""

    def __init__(self, op: Operator, c: float):
        super().__init__(op.size, dtype=op.dtype, device=op.device, symmetric=op.symmetric)
        self.op, self.c = op, c

    def _matmat(self, V):
        return self.op.matmat(V) * self.c


class ProjectedOperator(Operator):
    """(I − QQᵀ) A (I − QQᵀ): A with the span of the orthonormal columns Q [P, m] removed.

    Used for deflation and for the bulk subspace of docs/methods.md §3.
    """

    def __init__(self, op: Operator, Q: torch.Tensor):
        if Q.dim() != 2 or Q.shape[0] != op.size:
            raise ValueError(f"Q must be [P={op.size}, m], got {tuple(Q.shape)}")
        super().__init__(op.size, dtype=op.dtype, device=op.device, symmetric=op.symmetric)
        self.op, self.Q = op, Q

    def _project(self, V):
        return V - self.Q @ (self.Q.T @ V)

    def _matmat(self, V):
        return self._project(self.op.matmat(self._project(V)))


class RestrictedOperator(Operator):
    """The diagonal block A_SS of A for an index set S (e.g. one layer's parameters).

    A_SS v_S = (A [v_S; 0])_S: the block of the Hessian restricted to one layer, whose top
    eigenvalue is that layer's sharpness (docs/methods.md §5).

    Args:
        op: the full operator on R^P.
        index: a ``slice`` of θ (see :meth:`ParamLayout.group_slices`) or a 1-D index tensor.
    """

    def __init__(self, op: Operator, index: slice | torch.Tensor):
        if isinstance(index, slice):
            start, stop, step = index.indices(op.size)
            if step != 1 or stop <= start:
                raise ValueError(f"need a non-empty contiguous slice, got {index}")
            size = stop - start
        else:
            index = torch.as_tensor(index, device=op.device)
            if index.dim() != 1 or index.numel() == 0:
                raise ValueError("index must be a non-empty 1-D tensor")
            size = index.numel()
        super().__init__(size, dtype=op.dtype, device=op.device, symmetric=op.symmetric)
        self.op, self.index = op, index

    def _matmat(self, V):
        full = torch.zeros(self.op.size, V.shape[1], dtype=V.dtype, device=V.device)
        full[self.index] = V
        return self.op.matmat(full)[self.index]
