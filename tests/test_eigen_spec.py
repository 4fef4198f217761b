"""EigSpec: one frozen, validated eigensolve description, used by every upper layer."""

import dataclasses

import pytest
import torch
from cases import make_problem

from eoslab.eigen import SOLVERS, EigSpec, eigsh
from eoslab.linalg import HessianOperator


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"method": "qr"}, "method"),
        ({"method": "lobpcg", "which": "LM"}, "which"),
        ({"which": "largest"}, "which"),
        ({"tol": 0.0}, "tol"),
        ({"tol": 1.0}, "tol"),
        ({"tol": True}, "tol"),
        ({"tol": "1e-4"}, "tol"),
        ({"max_iter": 0}, "max_iter"),
        ({"max_iter": 2.5}, "max_iter"),
        ({"seed": -1}, "seed"),
        ({"verify_steps": -1}, "verify_steps"),
        ({"criterion": "stagnation"}, "criterion"),
        ({"criterion": "eigenvalue_change"}, "block_power"),
    ],
)
def test_every_field_is_validated_once_when_made(kw, field):
    with pytest.raises(ValueError, match=field):
        EigSpec(**kw)


def test_spec_is_frozen_and_replace_validates_again():
    spec = EigSpec(tol=1e-6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.tol = 1e-3
    assert spec.replace(method="lobpcg").method == "lobpcg" and spec.method == "lanczos"
    with pytest.raises(ValueError, match="tol"):
        spec.replace(tol=-1.0)
    assert EigSpec(**spec.to_dict()) == spec
    assert (
        spec.verified and not EigSpec(method="block_power", criterion="eigenvalue_change").verified
    )


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_solve_is_eigsh_with_the_same_settings(method):
    """Bit for bit: the spec adds nothing to the solver call but its validated options."""
    problem, theta = make_problem("mlp-tanh-ce")
    spec = EigSpec(method=method, tol=1e-8, seed=3, max_iter=400)
    a = spec.solve(HessianOperator(problem, theta), 3)
    b = eigsh(HessianOperator(problem, theta), 3, method=method, tol=1e-8, seed=3, max_iter=400)
    assert torch.equal(a.eigenvalues, b.eigenvalues) and a.n_matvecs == b.n_matvecs
    assert a.all_converged


def test_eigenvalue_change_hands_the_previous_eigenvalues_to_block_power():
    problem, theta = make_problem("mlp-tanh-ce")
    spec = EigSpec(method="block_power", criterion="eigenvalue_change", tol=1e-3)
    first = spec.solve(HessianOperator(problem, theta), 2)
    again = spec.solve(
        HessianOperator(problem, theta), 2, v0=first.warm_start, theta0=first.eigenvalues
    )
    assert again.n_iter == 1  # the same operator: unchanged after one block product
    assert "unverified" in spec.describe()
