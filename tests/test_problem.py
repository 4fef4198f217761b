import pytest
import torch
from cases import CASES, make_problem
from torch import nn

from eoslab.losses import MSE, CrossEntropy, get_criterion
from eoslab.params import ParamLayout
from eoslab.problem import Problem


def test_layout_round_trip():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    layout = ParamLayout.from_module(model)
    theta = layout.flatten(model)
    assert theta.shape == (3 * 4 + 4 + 4 * 2 + 2,)
    d = layout.unflatten(theta)
    for name, p in model.named_parameters():
        assert torch.equal(d[name], p.detach())
    assert layout.group_slices() == {"0": slice(0, 16), "2": slice(16, 26)}
    assert torch.equal(theta[layout.slice_of("2.bias")], model[2].bias.detach())
    with pytest.raises(ValueError, match=r"θ must have shape \[26\]"):
        layout.unflatten(theta[:-1])


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_and_gradient_match_autograd(name):
    problem, theta = make_problem(name)
    t = theta.clone().requires_grad_(True)
    f = problem.forward(t, problem.X)
    ref = problem.criterion.per_sample(f, problem.y).mean()
    (g_ref,) = torch.autograd.grad(ref, t)
    loss, g = problem.loss_and_gradient(theta)
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(problem.loss(theta), loss, rtol=1e-13, atol=0)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 20])
def test_chunk_size_invariance(chunk_size):
    problem, theta = make_problem("mlp-tanh-ce", chunk_size=None)
    other, _ = make_problem("mlp-tanh-ce", chunk_size=chunk_size)
    l1, g1 = problem.loss_and_gradient(theta)
    l2, g2 = other.loss_and_gradient(theta)
    torch.testing.assert_close(l1, l2, rtol=1e-14, atol=0)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(problem.outputs(theta), other.outputs(theta))


def test_criteria_values_and_hessians():
    torch.manual_seed(0)
    f = torch.randn(6, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (6,))
    ce = CrossEntropy()
    torch.testing.assert_close(
        ce.per_sample(f, y), nn.functional.cross_entropy(f, y, reduction="none")
    )
    mse = MSE()
    onehot = nn.functional.one_hot(y, 4).to(f.dtype)
    torch.testing.assert_close(mse.per_sample(f, y), 0.5 * ((f - onehot) ** 2).sum(-1))
    for crit in (ce, mse):
        H = crit.output_hessian(f, y)
        for n in range(6):
            Hn = torch.func.hessian(
                lambda fn, n=n, crit=crit: crit.per_sample(fn[None], y[n : n + 1])[0]
            )(f[n])
            torch.testing.assert_close(H[n], Hn)
        S = crit.output_hessian_sqrt(f, y)
        torch.testing.assert_close(S @ S, H, atol=1e-12, rtol=1e-10)
        U = torch.randn(6, 4, dtype=torch.float64)
        torch.testing.assert_close(crit.hessian_matmul(f, y, U), (H @ U[..., None])[..., 0])
    with pytest.raises(ValueError, match="unknown criterion 'hinge'"):
        get_criterion("hinge")


def test_problem_errors():
    model = nn.Linear(3, 2).double()
    X = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="X has 4 samples but y has 3"):
        Problem(model, "mse", X, torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="integer class labels"):
        Problem(model, "mse", X, torch.zeros(4))
    with pytest.raises(ValueError, match="model parameters are torch.float64 but X is"):
        Problem(model, "mse", X.float(), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        Problem(model, "mse", X, torch.zeros(4, dtype=torch.int64), chunk_size=0)


def test_problem_is_pure():
    problem, theta = make_problem("mlp-tanh-ce")
    before = [p.detach().clone() for p in problem.model.parameters()]
    problem.loss_and_gradient(theta + 1.0)
    for p, b in zip(problem.model.parameters(), before):
        assert torch.equal(p, b) and p.grad is None
    assert problem.check_deterministic(theta)
    assert 0.0 <= problem.accuracy(theta).item() <= 1.0
