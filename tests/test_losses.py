"""Criteria: accuracy of cross-entropy derivatives near interpolation in float32."""

import torch

from eoslab.losses import CrossEntropy


def _hvp(crit, f, y, u):
    f = f.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(crit.per_sample(f, y).sum(), f, create_graph=True)
    (hu,) = torch.autograd.grad((g * u).sum(), f)
    return g.detach(), hu


def test_cross_entropy_derivatives_stay_accurate_when_p_y_is_near_one():
    # logits with p_y ≈ 1 − 1e-5 (a nearly interpolated sample): 1 − p_y must not come from
    # cancellation, or float32 loses most of its digits there
    g64 = torch.Generator().manual_seed(0)
    f = torch.randn(64, 10, generator=g64, dtype=torch.float64)
    y = torch.randint(0, 10, (64,), generator=g64)
    f[torch.arange(64), y] += 14.0
    u = torch.randn(64, 10, generator=g64, dtype=torch.float64)
    crit = CrossEntropy()
    g_ref, hu_ref = _hvp(crit, f, y, u)
    g32, hu32 = _hvp(crit, f.float(), y, u.float())
    rel = lambda a, b: float((a.double() - b).norm() / b.norm())  # noqa: E731
    # float32 cannot represent 1 − p_y ≈ 1e-5 better than ~1e-3 through exp; written as
    # logsumexp(f) − f_y the errors were 7.7e-3 (gradient) and 1.05e-2 (Hessian product)
    assert rel(g32, g_ref) < 3e-3
    assert rel(hu32, hu_ref) < 5e-3
    # and the output Hessian in closed form agrees with autograd
    H = crit.output_hessian(f, y)
    assert torch.allclose(torch.einsum("nij,nj->ni", H, u), hu_ref, rtol=1e-10, atol=1e-14)
