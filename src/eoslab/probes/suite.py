"""One probe: all Lowell 2022 telemetry at θ from one Hessian eigensolve (``docs/methods.md`` §3).

The run loop calls a :class:`ProbeSuite` every ``probe_every`` steps and writes the
:class:`ProbeResult` it gets back; the suite itself never writes anything
(``docs/architecture.md`` rule 4).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from eoslab.eigen import EigResult, NonConvergenceWarning
from eoslab.eigen.spec import EigSpec
from eoslab.linalg import HessianOperator
from eoslab.probes.basic import basic_metrics
from eoslab.probes.projections import loss_changes as _loss_changes
from eoslab.probes.projections import projection_metrics
from eoslab.probes.spectrum import eig_quality_metrics, spectrum_metrics
from eoslab.problem import Problem

__all__ = ["DEFAULT_SOLVER", "ProbeResult", "ProbeSuite"]

#: The probe's eigensolve: verified Lanczos at a relative residual ‖H h − λ h‖ ≤ 1e-4·|λ|.
#: By Bauer–Fike each λ_i is then within 1e-4·|λ_i| of an eigenvalue (ρ_i to four digits, far
#: below the percent-level oscillations of ρ_1 at the edge of stability; isolated eigenvalues
#: are even accurate to ~tol²λ²/gap), and the top subspace is within an angle tol·λ/gap of
#: the true one, so ‖P_top g‖ and ΔL_top err by about tol·(λ/gap)·‖g‖ relative. Looser
#: tolerances save few products with Lanczos' fast convergence on the outliers, tighter ones
#: buy no accuracy the telemetry can show (and in float32 hit the round-off floor).
DEFAULT_SOLVER = EigSpec(tol=1e-4)


@dataclass(frozen=True)
class ProbeResult:
    """What one probe call returns; the run loop writes it.

    Attributes:
        metrics: flat scalar telemetry, ``{name: float}`` (names in :class:`ProbeSuite`).
        eig: the probe's one eigensolve (top-k pairs of H, descending), or None when no
            part of the suite needed it. Pass ``eig.warm_start`` as ``v0`` to the next call.
        n_matvecs: Hessian-vector products spent (= ``eig.n_matvecs``, or 0).
        n_grads: full-batch gradient evaluations spent: 1, the gradient at θ (the graph the
            Hessian operator builds, of which L and g are free by-products, or one
            ``loss_and_gradient`` call when that graph is not cached or not needed).
        n_losses: extra full-batch loss evaluations: 3 with ΔL (top, bulk, full), else 0.
            The forward passes for train/test accuracy and the test loss are not counted.
    """

    metrics: dict[str, float]
    eig: EigResult | None
    n_matvecs: int
    n_grads: int
    n_losses: int


class ProbeSuite:
    """Lowell 2022 telemetry at θ (``docs/methods.md`` §2–3), one Hessian eigensolve per call.

    Metrics (``ProbeResult.metrics``, floats):

    - always: ``loss``, ``accuracy``, ``grad_norm`` = ‖g‖, ``theta_norm`` = ‖θ‖,
      ``dist_init`` = ‖θ − θ_0‖, ``threshold`` (the optimizer's EoS threshold as passed);
      ``test_loss``, ``test_accuracy`` only with a ``test_problem``;
    - with an eigensolve: ``eig_residual_max`` = max_i ‖H h_i − λ_i h_i‖/|λ_i|,
      ``eig_converged`` (1.0 or 0.0), ``eig_matvecs``;
    - ``spectrum``: ``lambda_1`` … ``lambda_k`` (descending), ``sharpness`` = λ_1 and
      ``rho_1`` … ``rho_k``, ρ_i = λ_i / threshold (= η λ_i / 2 for GD), NaN for λ_i < 0;
    - ``projections``: ``proj_top`` = ‖P_top g‖, ``proj_bulk`` = ‖P_bulk g‖, ``d_1`` … ``d_k``
      = |h_i · g|, with top = span(h_1..h_{n_top}) and bulk its complement;
    - ``loss_changes``: ``dL_top``, ``dL_bulk``, ``dL_full``, the real changes
      L(θ − η P g) − L(θ) for P = P_top, P_bulk, I;
    - ``projections`` or ``loss_changes``: ``n_top``.

    If the eigensolve does not converge its values are kept, ``eig_converged`` is 0.0 and a
    :class:`~eoslab.eigen.NonConvergenceWarning` is emitted (besides the solver's own).

    Args:
        k: eigenpairs of H per probe (paper: 20); 1 ≤ k ≤ P.
        n_top: dimension of the top subspace; None: n_classes − 1 (Lowell 2022's convention,
            ``docs/methods.md`` §3). Must satisfy 1 ≤ n_top ≤ k.
        n_classes: number of classes n_c; None: the problem's number of outputs (equal to n_c
            for the cross-entropy and one-hot MSE criteria), read at call time.
        solver: the eigensolve (:class:`~eoslab.eigen.EigSpec` with ``which="LA"``; default
            :data:`DEFAULT_SOLVER`).
        spectrum: emit λ_i, ρ_i and the sharpness.
        projections: emit the gradient projections.
        loss_changes: emit the three ΔL (three loss evaluations).
        test_problem: the same model and criterion on the test set, or None.

    Raises:
        ValueError: for invalid options (naming the option).
    """

    def __init__(
        self,
        *,
        k: int = 20,
        n_top: int | None = None,
        n_classes: int | None = None,
        solver: EigSpec = DEFAULT_SOLVER,
        spectrum: bool = True,
        projections: bool = True,
        loss_changes: bool = True,
        test_problem: Problem | None = None,
    ):
        _check_int("k", k, low=1)
        if n_top is not None:
            _check_int("n_top", n_top, low=1)
            if n_top > k:
                raise ValueError(f"n_top={n_top} needs at least as many eigenpairs, got k={k}")
        if n_classes is not None:
            _check_int("n_classes", n_classes, low=2)
        if not isinstance(solver, EigSpec):
            raise ValueError(f"solver must be an eoslab.eigen.EigSpec, got {solver!r}")
        if solver.which != "LA":
            raise ValueError(
                f"solver.which must be 'LA' (the top eigenpairs), got {solver.which!r}"
            )
        self.k = k
        self.n_top = n_top
        self.n_classes = n_classes
        self.solver = solver
        self.spectrum = bool(spectrum)
        self.projections = bool(projections)
        self.loss_changes = bool(loss_changes)
        self.test_problem = test_problem

    @property
    def needs_eigensolve(self) -> bool:
        """True when some enabled part of the suite uses the eigenpairs."""
        return self.spectrum or self.projections or self.loss_changes

    def resolve_n_top(self, problem: Problem) -> int:
        """n_top as given, else n_classes − 1, with n_classes defaulting to the outputs."""
        if self.n_top is not None:
            return self.n_top
        n_c = self.n_classes if self.n_classes is not None else problem.n_outputs
        n_top = n_c - 1
        if not 1 <= n_top <= self.k:
            raise ValueError(
                f"n_top = n_classes − 1 = {n_top} (n_classes={n_c}) must lie in [1, k={self.k}];"
                " pass n_top or n_classes explicitly"
            )
        return n_top

    def __call__(
        self,
        problem: Problem,
        theta: torch.Tensor,
        *,
        lr: float,
        threshold: float,
        theta0: torch.Tensor,
        v0: torch.Tensor | None = None,
    ) -> ProbeResult:
        """Probe at θ.

        Args:
            problem: the training problem.
            theta: θ [P].
            lr: the step η of the GD steps in ΔL (the optimizer's current step).
            threshold: the optimizer's EoS threshold (2/η for GD, ``docs/methods.md`` §2), > 0.
            theta0: the run's initial point θ_0 [P].
            v0: warm start of the eigensolve, [P, m]: the previous ``ProbeResult.eig.warm_start``.

        Returns:
            :class:`ProbeResult`.

        Raises:
            ValueError: for shapes other than [P], k > P, n_top out of range, or a
                non-positive ``lr`` or ``threshold``.
        """
        P = problem.size
        if theta.shape != (P,) or theta0.shape != (P,):
            raise ValueError(
                f"theta and theta0 must have shape [{P}], got {tuple(theta.shape)} and "
                f"{tuple(theta0.shape)}"
            )
        lr, threshold = float(lr), float(threshold)
        for name, x in (("lr", lr), ("threshold", threshold)):
            if not (x > 0 and math.isfinite(x)):
                raise ValueError(f"{name} must be positive and finite, got {x}")
        want_proj = self.projections or self.loss_changes
        n_top = self.resolve_n_top(problem) if want_proj else None
        if self.needs_eigensolve and self.k > P:
            raise ValueError(f"k={self.k} eigenpairs requested but the problem has P={P}")

        theta = theta.detach()
        eig = None
        if self.needs_eigensolve:
            op = HessianOperator(problem, theta)
            if op.loss is not None:
                loss, g = op.loss, op.gradient
            else:
                loss, g = problem.loss_and_gradient(theta)
            eig = self.solver.solve(op, self.k, v0=v0)
            del op  # the graph of g is not needed any more
        else:
            loss, g = problem.loss_and_gradient(theta)

        m = basic_metrics(
            problem, theta, theta0, loss=loss, gradient=g, test_problem=self.test_problem
        )
        after: dict[str, float] = {"threshold": threshold}
        n_losses = 0
        if eig is not None:
            if self.spectrum:
                m.update(spectrum_metrics(eig, threshold))
            m.update(eig_quality_metrics(eig))
        if want_proj:
            after["n_top"] = float(n_top)
            proj, top = projection_metrics(g, eig.eigenvectors, n_top)
            if self.projections:
                m.update(proj)
            if self.loss_changes:
                m.update(_loss_changes(problem, theta, g, top, lr, loss=loss))
                n_losses = 3
        metrics = _to_floats(m, theta.dtype)
        metrics = _insert_after(metrics, "dist_init", after)
        if eig is not None and not eig.all_converged:
            n_bad = int((~eig.converged).sum())
            warnings.warn(
                f"probe eigensolve ({self.solver.describe()}) left {n_bad} of {eig.k} "
                f"eigenpairs unconverged (max relative residual "
                f"{metrics['eig_residual_max']:.2e}); values kept, eig_converged = 0",
                NonConvergenceWarning,
                stacklevel=2,
            )
        return ProbeResult(
            metrics=metrics,
            eig=eig,
            n_matvecs=0 if eig is None else eig.n_matvecs,
            n_grads=1,
            n_losses=n_losses,
        )


def _to_floats(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, float]:
    """0-d tensors to Python floats with one host sync (``docs/architecture.md`` rule 10)."""
    names = list(tensors)
    values = torch.stack([tensors[n].detach().to(dtype).reshape(()) for n in names]).tolist()
    return dict(zip(names, values))


def _insert_after(metrics: dict[str, float], key: str, extra: dict[str, float]) -> dict[str, float]:
    """``metrics`` with ``extra`` placed right after ``key`` (a readable column order)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        out[name] = value
        if name == key:
            out.update(extra)
    return out


def _check_int(name: str, value, *, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
