"""Loss, accuracy and norms at θ (``docs/methods.md`` §3.5: ‖θ‖, ‖θ − θ_0‖, train/test metrics)."""

from __future__ import annotations

import torch

from eoslab.problem import Problem

__all__ = ["basic_metrics"]


def basic_metrics(
    problem: Problem,
    theta: torch.Tensor,
    theta0: torch.Tensor,
    *,
    loss: torch.Tensor,
    gradient: torch.Tensor,
    test_problem: Problem | None = None,
) -> dict[str, torch.Tensor]:
    """Scalar telemetry that needs no curvature (``docs/methods.md`` §3).

    - ``loss`` = L(θ), ``accuracy`` = fraction of arg-max hits on the training set;
    - ``test_loss``, ``test_accuracy``: the same on ``test_problem`` (only when given);
    - ``grad_norm`` = ‖g‖, ``theta_norm`` = ‖θ‖, ``dist_init`` = ‖θ − θ_0‖ (Euclidean).

    Args:
        problem: the training problem.
        theta: θ [P].
        theta0: the initial point θ_0 [P] of the run.
        loss: L(θ), already computed (e.g. by the Hessian operator).
        gradient: g(θ) [P], already computed.
        test_problem: the same model and criterion on the test set, or None.

    Returns:
        ``{name: 0-d tensor}`` (no host sync here).

    Raises:
        ValueError: if θ, θ_0 or g is not [P].
    """
    P = problem.size
    for name, v in (("theta", theta), ("theta0", theta0), ("gradient", gradient)):
        if v.shape != (P,):
            raise ValueError(f"{name} must have shape [{P}], got {tuple(v.shape)}")
    out = {"loss": loss, "accuracy": problem.accuracy(theta)}
    if test_problem is not None:
        if test_problem.size != P:
            raise ValueError(f"test_problem has P={test_problem.size}, the problem P={P}")
        out["test_loss"] = test_problem.loss(theta)
        out["test_accuracy"] = test_problem.accuracy(theta)
    out["grad_norm"] = torch.linalg.vector_norm(gradient)
    out["theta_norm"] = torch.linalg.vector_norm(theta)
    out["dist_init"] = torch.linalg.vector_norm(theta - theta0.to(theta))
    return out
