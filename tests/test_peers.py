"""Cross-checks against other curvature libraries, when the `peers` extra is installed."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from cases import make_problem

from eoslab.eigen import eigsh
from eoslab.linalg import HessianOperator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

pytestmark = pytest.mark.peers


@pytest.mark.parametrize("peer", ["curvlinops", "pyhessian", "hessian-eigenthings"])
def test_top_eigenvalues_agree_with_peer(peer):
    module = {"curvlinops": "curvlinops", "pyhessian": "pyhessian"}.get(peer, "hessian_eigenthings")
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{peer} is not installed (pip install -e '.[peers]')")
    import peers

    problem, theta = make_problem("mlp-tanh-ce", N=40)
    ours = eigsh(HessianOperator(problem, theta), 3, tol=1e-8).require_converged()
    problem.layout.load_into(problem.model, theta)
    out = peers.run_peer(
        peer,
        problem.model,
        peers.loss_for("cross_entropy"),
        problem.X,
        problem.y,
        3,
        settings="tuned",
    )
    torch.testing.assert_close(
        torch.as_tensor(out["eigenvalues"][:3], dtype=torch.float64),
        ours.eigenvalues,
        rtol=1e-4,
        atol=1e-8,
    )
