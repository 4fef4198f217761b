"""Integrators of the gradient flow (docs/methods.md §2, §3, §7): orders, identities, thresholds."""

import math

import numpy as np
import pytest
import torch
from cases import dense_hessian, make_problem
from torch import nn

from eoslab.dynamics import (
    EULER,
    INTEGRATORS,
    RK4,
    ButcherTableau,
    Constant,
    ExponentialEuler,
    GradientDescent,
    HeavyBall,
    Integrator,
    Nesterov,
    SharpnessAdaptive,
    StepResult,
    build_integrator,
    euler,
    phi,
    real_stability_limit,
    rk4,
    stability_polynomial,
)
from eoslab.eigen import EigSpec, NonConvergenceWarning
from eoslab.problem import Problem

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- a quadratic problem


def quadratic(lams=(4.0, 2.0, 1.0, 0.5), N=8, seed=0):
    """Bias-free linear model, MSE on one output: L = (1/2N) Σ (x_n·θ − 1)², g = Aθ − b.

    X is built so that A = XᵀX/N = V diag(λ) Vᵀ. Returns (problem, θ_0, A, b).
    """
    d = len(lams)
    gen = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(N, d, generator=gen, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=F64))
    X = math.sqrt(N) * (U * torch.tensor(lams, dtype=F64).sqrt()) @ V.T
    model = nn.Linear(d, 1, bias=False).to(F64)
    problem = Problem(model, "mse", X, torch.zeros(N, dtype=torch.int64))
    A = X.T @ X / N
    b = X.T @ torch.ones(N, dtype=F64) / N
    theta0 = torch.randn(d, generator=gen, dtype=F64)
    return problem, theta0, A, b


def exact_flow(A, b, theta0, t):
    """θ(t) = θ* + e^{−At}(θ_0 − θ*) for dθ/dt = −(Aθ − b)."""
    lam, Q = torch.linalg.eigh(A)
    star = torch.linalg.solve(A, b)
    return star + Q @ (torch.exp(-lam * t) * (Q.T @ (theta0 - star)))


def integrate(integrator, problem, theta, n):
    state = integrator.init_state(problem, theta)
    for _ in range(n):
        res = integrator.step(problem, theta, state)
        theta, state = res.theta, res.state
    return theta


def test_quadratic_gradient_is_affine():
    problem, theta0, A, b = quadratic()
    assert torch.allclose(problem.gradient(theta0), A @ theta0 - b, atol=1e-14)


# ---------------------------------------------------------------- orders of convergence


@pytest.mark.parametrize(
    "make, ns, order",
    [
        (lambda h: euler(h), (16, 32, 64, 128), 1),
        (lambda h: rk4(h), (8, 16, 32, 64), 4),
        (lambda h: ExponentialEuler(1.0, k=1, tau_max=h), (16, 32, 64, 128), 1),
    ],
    ids=["euler", "rk4", "exp_euler_k1"],
)
def test_order_of_convergence(make, ns, order):
    problem, theta0, A, b = quadratic()
    T = 1.0
    truth = exact_flow(A, b, theta0, T)
    hs, errs = [], []
    for n in ns:
        h = T / n
        theta = integrate(make(h), problem, theta0, n)
        hs.append(h)
        errs.append(float(torch.linalg.vector_norm(theta - truth)))
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.3, (slope, errs)


def test_exp_euler_exact_on_quadratic_when_k_is_P():
    problem, theta0, A, b = quadratic()
    P = problem.size
    for tau, n in ((0.3, 4), (5.0, 1)):
        integ = ExponentialEuler(1.0, k=P, tau_max=tau, solver=EigSpec(tol=1e-12))
        theta = integrate(integ, problem, theta0, n)
        truth = exact_flow(A, b, theta0, tau * n)
        assert torch.allclose(theta, truth, rtol=0, atol=1e-12), (theta - truth).abs().max()


def test_exp_euler_step_length_and_info():
    problem, theta0, A, b = quadratic()
    lam = torch.linalg.eigvalsh(A).flip(0)
    integ = ExponentialEuler(1.5, k=1, solver=EigSpec(tol=1e-12))
    res = integ.step(problem, theta0, integ.init_state(problem, theta0))
    assert res.lr == pytest.approx(1.5 / float(lam[1]), rel=1e-10)
    assert res.info["tau"] == res.lr
    assert res.info["sharpness"] == pytest.approx(float(lam[0]), rel=1e-10)
    assert res.info["lambda_next"] == pytest.approx(float(lam[1]), rel=1e-10)
    assert res.info["eig_converged"] == 1.0
    assert res.n_grads == 1 and res.n_matvecs > 0
    assert integ.threshold(res.lr) == pytest.approx(2 / res.lr)
    # residual part: r = g − (h_1·g) h_1
    g = A @ theta0 - b
    h1 = torch.linalg.eigh(A)[1][:, -1]
    r = g - (h1 @ g) * h1
    assert res.info["residual_norm"] == pytest.approx(float(r.norm()), rel=1e-8)
    assert res.loss == pytest.approx(float(problem.loss(theta0)), rel=1e-12)


def test_phi_is_stable_and_euler_for_nonpositive_z():
    z = torch.tensor([0.0, 1e-20, 1e-8, 1e-3, 1.0, 50.0, -1.0, -100.0], dtype=F64)
    p = phi(z)
    assert p[0] == 1 and p[6] == 1 and p[7] == 1
    assert p[1] == 1
    for i in (2, 3):  # series 1 − z/2 + z²/6 − z³/24 (next term ≤ 1e-14)
        zi = float(z[i])
        assert float(p[i]) == pytest.approx(1 - zi / 2 + zi**2 / 6 - zi**3 / 24, rel=1e-14)
    assert float(p[4]) == pytest.approx(1 - math.exp(-1), rel=1e-15)
    assert float(p[5]) == pytest.approx(1 / 50, rel=1e-15)


# ---------------------------------------------------------------- GD = Euler bit for bit


def test_gd_equals_euler_bit_for_bit():
    problem, theta0 = make_problem("mlp-tanh-ce")
    gd, eu = GradientDescent(0.5), euler(0.5)
    ta, sa = theta0, gd.init_state(problem, theta0)
    tb, sb = theta0, eu.init_state(problem, theta0)
    for _ in range(50):
        ra, rb = gd.step(problem, ta, sa), eu.step(problem, tb, sb)
        ta, sa, tb, sb = ra.theta, ra.state, rb.theta, rb.state
        assert torch.equal(ta, tb)
        assert ra.loss == rb.loss and ra.grad_norm == rb.grad_norm
    assert not torch.equal(ta, theta0)


def test_gd_equals_euler_with_adaptive_step():
    problem, theta0 = make_problem("mlp-tanh-ce")
    gd = GradientDescent(SharpnessAdaptive(1.0, 0.5))
    eu = euler(SharpnessAdaptive(1.0, 0.5))
    ta, sa = theta0, gd.init_state(problem, theta0)
    tb, sb = theta0, eu.init_state(problem, theta0)
    for _ in range(3):
        ra, rb = gd.step(problem, ta, sa), eu.step(problem, tb, sb)
        ta, sa, tb, sb = ra.theta, ra.state, rb.theta, rb.state
        assert torch.equal(ta, tb) and ra.lr == rb.lr


# ---------------------------------------------------------------- stability thresholds


def one_dim(lam):
    """L(w) = ½(x w − 1)² with x² = λ: a 1-D quadratic with curvature λ, minimum 1/x."""
    x = math.sqrt(lam)
    model = nn.Linear(1, 1, bias=False).to(F64)
    X = torch.tensor([[x]], dtype=F64)
    return Problem(model, "mse", X, torch.zeros(1, dtype=torch.int64)), 1 / x


def test_rk4_stability_limit_is_computed():
    z = real_stability_limit(RK4)
    assert z == pytest.approx(2.785293563405282, abs=1e-13)
    R = np.polynomial.Polynomial(stability_polynomial(RK4))
    assert abs(R(-z)) == pytest.approx(1.0, abs=1e-14)
    assert real_stability_limit(EULER) == 2.0
    assert np.allclose(stability_polynomial(RK4), [1, 1, 1 / 2, 1 / 6, 1 / 24], rtol=1e-15)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: GradientDescent(0.1), 2 / 0.1),
        (lambda: euler(0.1), 2 / 0.1),
        (lambda: rk4(0.1), 2.785293563405282 / 0.1),
        (lambda: HeavyBall(0.1, beta=0.9), 3.8 / 0.1),
        (lambda: HeavyBall(0.1, beta=0.5), 3.0 / 0.1),
        (lambda: Nesterov(0.1, beta=0.9), 3.8 / (2.8 * 0.1)),
        (lambda: Nesterov(0.1, beta=0.5), 3.0 / (2.0 * 0.1)),
    ],
    ids=["gd", "euler", "rk4", "heavy_ball-0.9", "heavy_ball-0.5", "nesterov-0.9", "nesterov-0.5"],
)
def test_threshold_matches_quadratic_stability(make, expected):
    integ = make()
    thr = integ.threshold(0.1)
    assert thr == pytest.approx(expected, rel=1e-12)
    for factor, stable in ((0.97, True), (1.03, False)):
        problem, star = one_dim(factor * thr)
        theta0 = torch.zeros(1, dtype=F64)
        theta = integrate(integ, problem, theta0, 400)
        err = float((theta - star).abs())
        if stable:
            assert err < 10 * star, (factor, err)
        else:
            assert not math.isfinite(err) or err > 1e6 * star, (factor, err)


def test_momentum_matches_torch_sgd():
    """Heavy ball and Nesterov with a constant step equal PyTorch's SGD momentum forms."""
    problem, theta0, A, b = quadratic()
    for integ, nesterov in ((HeavyBall(0.1, beta=0.9), False), (Nesterov(0.1, beta=0.9), True)):
        p = theta0.clone().requires_grad_(True)
        opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=nesterov)
        theta, state = theta0, integ.init_state(problem, theta0)
        for _ in range(20):
            res = integ.step(problem, theta, state)
            theta, state = res.theta, res.state
            with torch.no_grad():
                p.grad = A @ p - b
            opt.step()
        assert torch.allclose(theta, p.detach(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- adaptive step


def test_adaptive_step_is_min_of_lr_max_and_c_over_sharpness():
    problem, theta0 = make_problem("mlp-tanh-ce")
    lam1 = float(torch.linalg.eigvalsh(dense_hessian(problem, theta0))[-1])
    for lr_max, expected in ((10.0, 0.5 / lam1), (1e-3, 1e-3)):
        integ = GradientDescent(SharpnessAdaptive(lr_max, 0.5))
        res = integ.step(problem, theta0, integ.init_state(problem, theta0))
        assert res.info["sharpness"] == pytest.approx(lam1, rel=1e-6)
        assert res.info["sharpness_converged"] == 1.0
        assert res.lr == min(lr_max, 0.5 / res.info["sharpness"])
        assert res.lr == pytest.approx(expected, rel=1e-6)
        assert res.n_grads == 1 and res.n_matvecs > 0
        _, g = problem.loss_and_gradient(theta0)
        assert torch.allclose(res.theta, theta0 - res.lr * g, rtol=0, atol=1e-13)
        assert res.loss == pytest.approx(float(problem.loss(theta0)), rel=1e-12)
        assert set(res.state) == {"sharpness_v"}


def test_step_size_call_form():
    problem, theta0 = make_problem("mlp-tanh-ce")
    assert Constant(0.1)(problem, theta0, {}) == (0.1, {}, 0)
    lr, info, n = SharpnessAdaptive(10.0, 0.5)(problem, theta0, {})
    assert lr == 0.5 / info["sharpness"] and n > 0


@pytest.mark.parametrize(
    "make",
    [lambda: GradientDescent(SharpnessAdaptive(1.0, 0.5)), lambda: ExponentialEuler(1.0)],
    ids=["adaptive_gd", "exp_euler"],
)
def test_warm_start_saves_products(make):
    problem, theta0 = make_problem("mlp-tanh-ce")
    integ = make()
    state = integ.init_state(problem, theta0)
    first = integ.step(problem, theta0, state)
    second = integ.step(problem, first.theta, first.state)
    assert second.n_matvecs < first.n_matvecs, (first.n_matvecs, second.n_matvecs)


def test_exp_euler_with_the_papers_power_iteration_tracks_in_one_block_product():
    """Lowell 2024 §7.1: block power warm-started from the previous step, stopping when the
    eigenvalues changed by < tol relative to the previous step's; on a quadratic (H fixed)
    every step after the first needs exactly one block product of b = k + 1 + guard vectors."""
    lams = (50.0, 30.0, 20.0, *torch.linspace(5.0, 0.1, 37).tolist())
    problem, theta, A, b = quadratic(lams, N=60)
    power = EigSpec(method="block_power", criterion="eigenvalue_change", tol=1e-6)
    integ = ExponentialEuler(1.0, 3, solver=power)
    state = integ.init_state(problem, theta)
    first = integ.step(problem, theta, state)
    assert set(first.state) == {"exp_euler_v", "exp_euler_lam"}
    second = integ.step(problem, first.theta, first.state)
    b = second.state["exp_euler_v"].shape[1]
    assert second.n_matvecs == b < first.n_matvecs
    assert second.info["eig_converged"] == 1.0
    assert second.info["sharpness"] == pytest.approx(50.0, rel=1e-6)
    # τ = η / λ_4; the rule stops on stagnation, so λ_4 (gap 5 vs 4.86) is only near
    assert second.lr == pytest.approx(1.0 / 5.0, rel=1e-3)
    with pytest.raises(ValueError, match="block_power"):
        EigSpec(criterion="eigenvalue_change")  # Lanczos has no such rule


def test_exp_euler_reports_nonconvergence():
    problem, theta0 = make_problem("mlp-tanh-ce")
    integ = ExponentialEuler(1.0, solver=EigSpec(tol=1e-15, max_iter=1))
    with pytest.warns(NonConvergenceWarning):
        res = integ.step(problem, theta0, integ.init_state(problem, theta0))
    assert res.info["eig_converged"] == 0.0
    assert torch.isfinite(res.theta).all()


# ---------------------------------------------------------------- state and checkpoints

ROUND_TRIP = {
    "gd": dict(name="gd", lr=0.5),
    "gd_adaptive": dict(name="gd", lr=1.0, c=0.5, adaptive=True),
    "heavy_ball": dict(name="heavy_ball", lr=0.2, momentum=0.9),
    "nesterov": dict(name="nesterov", lr=0.2, momentum=0.5),
    "rk4_adaptive": dict(name="rk4", lr=1.0, c=1.0, adaptive=True),
    "exp_euler": dict(name="exp_euler", lr=1.0, tau_max=5.0),
}


@pytest.mark.parametrize("case", list(ROUND_TRIP))
def test_state_round_trip_resumes_bit_identically(case, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    problem, theta0 = make_problem("mlp-tanh-ce")
    integ = build_integrator(**ROUND_TRIP[case])
    assert isinstance(integ, Integrator)

    theta, state = theta0, integ.init_state(problem, theta0)
    results = []
    for i in range(4):
        if i == 2:  # checkpoint, then continue from the reloaded copy
            safetensors.save_file({**state, "theta": theta}, tmp_path / "ckpt.safetensors")
        res = integ.step(problem, theta, state)
        assert isinstance(res, StepResult)
        assert all(isinstance(v, torch.Tensor) for v in res.state.values())
        assert isinstance(res.lr, float) and isinstance(res.loss, float)
        assert isinstance(res.grad_norm, float)
        assert all(isinstance(v, float) for v in res.info.values())
        results.append(res)
        theta, state = res.theta, res.state

    loaded = safetensors.load_file(tmp_path / "ckpt.safetensors")
    theta_r = loaded.pop("theta")
    for i in (2, 3):
        res = integ.step(problem, theta_r, loaded)
        assert torch.equal(res.theta, results[i].theta)
        assert res.lr == results[i].lr and res.loss == results[i].loss
        assert res.n_matvecs == results[i].n_matvecs
        theta_r, loaded = res.theta, res.state


def test_init_states_and_costs():
    problem, theta0 = make_problem("mlp-tanh-ce")
    assert GradientDescent(0.1).init_state(problem, theta0) == {}
    hb = HeavyBall(0.1).init_state(problem, theta0)
    assert set(hb) == {"velocity"} and torch.equal(hb["velocity"], torch.zeros_like(theta0))
    assert set(Nesterov(0.1).init_state(problem, theta0)) == {"momentum_buffer"}
    res = rk4(0.1).step(problem, theta0, {})
    assert res.n_grads == 4 and res.n_matvecs == 0
    assert res.loss == pytest.approx(float(problem.loss(theta0)), rel=1e-14)
    assert res.grad_norm == pytest.approx(float(problem.gradient(theta0).norm()), rel=1e-14)


# ---------------------------------------------------------------- registry and errors


def test_registry_names():
    assert set(INTEGRATORS) == {"gd", "heavy_ball", "nesterov", "euler", "rk4", "exp_euler"}
    for name in INTEGRATORS:
        kw = dict(lr=0.1) if name != "exp_euler" else dict(lr=1.0, n_exact=2)
        assert build_integrator(name, **kw).name == name


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda: build_integrator("adam", lr=0.1), "name"),
        (lambda: build_integrator("gd"), "lr"),
        (lambda: build_integrator("gd", lr=-0.1), "lr"),
        (lambda: build_integrator("gd", lr=float("nan")), "lr"),
        (lambda: build_integrator("heavy_ball", lr=0.1, momentum=1.0), "momentum"),
        (lambda: build_integrator("nesterov", lr=0.1, momentum=-0.1), "momentum"),
        (lambda: build_integrator("gd", c=0.5, adaptive=True), "lr"),
        (lambda: build_integrator("gd", lr=0.0, c=0.5, adaptive=True), "lr_max"),
        (lambda: build_integrator("gd", lr=1.0, c=-1, adaptive=True), "c"),
        (lambda: build_integrator("gd", lr=0.1, c=0.5), "c: not used by gd unless adaptive"),
        (lambda: build_integrator("gd", lr=0.1, solver=EigSpec()), "solver: not used by gd"),
        (lambda: build_integrator("gd", lr=0.1, n_exact=3), "n_exact: not used by gd"),
        (lambda: build_integrator("gd", lr=0.1, momentum=0.5), "momentum: not used by gd"),
        (lambda: build_integrator("rk4", lr=0.1, tau_max=1.0), "tau_max"),
        (lambda: build_integrator("gd", lr=0.1, adaptive="yes"), "adaptive"),
        (lambda: build_integrator("heavy_ball", lr=0.1, adaptive=True), "adaptive"),
        (lambda: build_integrator("gd", lr=1.0, adaptive=True, solver="lanczos"), "EigSpec"),
        (lambda: EigSpec(method="x"), "method"),
        (lambda: EigSpec(method="lobpcg", which="LM"), "which"),
        (lambda: EigSpec(tol=1.5), "tol"),
        (lambda: EigSpec(max_iter=0), "max_iter"),
        (lambda: EigSpec(verify_steps=-1), "verify_steps"),
        (lambda: build_integrator("exp_euler", lr=1.0, adaptive=True), "adaptive"),
        (lambda: build_integrator("exp_euler", lr=1.0, c=0.5), "c"),
        (lambda: build_integrator("exp_euler"), "lr"),
        (lambda: build_integrator("exp_euler", lr=2.0), "lr"),
        (lambda: build_integrator("exp_euler", lr=1.0, n_exact=0), "k"),
        (lambda: build_integrator("exp_euler", lr=1.0, tau_max=0.0), "tau_max"),
        (lambda: HeavyBall(0.1, beta=1.5), "beta"),
        (lambda: GradientDescent("fast"), "step_size"),
        (lambda: ButcherTableau("bad", a=((), (1.0, 2.0)), b=(0.5, 0.5), order=1), "row 2"),
        (lambda: ButcherTableau("bad", a=((),), b=(0.5,), order=1), "b must sum"),
    ],
)
def test_bad_arguments_name_the_field(call, field):
    with pytest.raises(ValueError, match=field):
        call()


def test_bad_problem_dependent_arguments():
    problem, theta0 = make_problem("mlp-tanh-ce")
    P = problem.size
    with pytest.raises(ValueError, match="k="):
        ExponentialEuler(1.0, k=P + 1).init_state(problem, theta0)
    with pytest.raises(ValueError, match="tau_max"):
        ExponentialEuler(1.0, k=P).init_state(problem, theta0)
    with pytest.raises(ValueError, match="θ must"):
        GradientDescent(0.1).step(problem, theta0[:-1], {})
    with pytest.raises(ValueError, match="velocity"):
        HeavyBall(0.1).step(problem, theta0, {})


def test_exp_euler_nonpositive_next_eigenvalue_uses_tau_max():
    problem, theta0 = make_problem("mlp-tanh-ce")
    P = problem.size
    lam_min = float(torch.linalg.eigvalsh(dense_hessian(problem, theta0))[0])
    assert lam_min < 0  # λ_(k+1) = λ_P < 0 for k = P − 1
    with pytest.raises(RuntimeError, match="tau_max"):
        ExponentialEuler(1.0, k=P - 1).step(problem, theta0, {})
    res = ExponentialEuler(1.0, k=P - 1, tau_max=0.1).step(problem, theta0, {})
    assert res.lr == 0.1 and res.info["lambda_next"] == pytest.approx(lam_min, rel=1e-5)
