"""Tiny float64 problems shared by the operator and solver tests (docs/architecture.md, Tests)."""

from __future__ import annotations

import torch
from torch import nn

from eoslab.problem import Problem


def _mlp(act, d_in=5, width=6, n_out=3, depth=3):
    layers, d = [], d_in
    for _ in range(depth - 1):
        layers += [nn.Linear(d, width), act()]
        d = width
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(nn.Flatten(), *layers)


def _cnn():
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(3, 2, 3, stride=2),
        nn.ELU(),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, 3),
    )


def _deep_linear(depth=5, width=4):
    layers = [nn.Flatten(), nn.Linear(5, width, bias=False)]
    layers += [nn.Linear(width, width, bias=False) for _ in range(depth - 2)]
    layers.append(nn.Linear(width, 3, bias=False))
    return nn.Sequential(*layers)


CASES = {
    "mlp-tanh-ce": dict(model=lambda: _mlp(nn.Tanh), criterion="cross_entropy", input=(5,)),
    "mlp-relu-mse": dict(model=lambda: _mlp(nn.ReLU), criterion="mse", input=(5,)),
    "mlp-elu-ce-ragged": dict(
        model=lambda: _mlp(nn.ELU), criterion="cross_entropy", input=(5,), chunk_size=7
    ),
    "cnn-ce": dict(model=_cnn, criterion="cross_entropy", input=(1, 6, 6), chunk_size=8),
    "deep-linear-mse": dict(model=_deep_linear, criterion="mse", input=(5,)),
}


def make_problem(name: str, *, N: int = 20, seed: int = 0, dtype=torch.float64, chunk_size=None):
    """Build case ``name`` with seeded data and init; returns (problem, θ)."""
    case = CASES[name]
    torch.manual_seed(seed)
    model = case["model"]().to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    X = torch.randn(N, *case["input"], generator=g, dtype=dtype)
    y = torch.randint(0, 3, (N,), generator=g)
    cs = chunk_size if chunk_size is not None else case.get("chunk_size")
    problem = Problem(model, case["criterion"], X, y, chunk_size=cs)
    return problem, problem.initial_theta()


def dense_hessian(problem: Problem, theta: torch.Tensor) -> torch.Tensor:
    """∇²L by torch.func.hessian of the whole-batch loss (the truth)."""

    def L(t):
        return problem.criterion.per_sample(problem.forward(t, problem.X), problem.y).mean()

    return torch.func.hessian(L)(theta)


def dense_ggn(problem: Problem, theta: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ J_nᵀ H_ℓ J_n from explicit per-sample Jacobians (the truth)."""
    J = torch.func.jacrev(lambda t: problem.forward(t, problem.X))(theta)  # [N, o, P]
    f = problem.forward(theta, problem.X).detach()
    Hl = problem.criterion.output_hessian(f, problem.y)  # [N, o, o]
    return torch.einsum("nop,noq,nqr->pr", J, Hl, J) / problem.N
