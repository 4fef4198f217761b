"""Config validation: fields, overrides, YAML, solver sections, legacy keys."""

import pytest
import yaml
from tiny import cfg_of

from eoslab.run import ConfigError, apply_overrides, load_config, parse_config


# ---------------------------------------------------------------- config
def test_defaults_validate_and_round_trip_through_yaml():
    cfg = parse_config({})
    again = parse_config(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    assert cfg.probe_every() == round(1 / cfg.optimizer.lr)


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"optimizr": {}}, "optimizr"),
        ({"optimizer": {"lr": "fast"}}, "optimizer.lr"),
        ({"optimizer": {"lr": -0.1}}, "optimizer.lr"),
        ({"optimizer": {"name": "adam"}}, "optimizer.name"),
        ({"probe": {"k": 0}}, "probe.k"),
        ({"probe": {"every": 2.5}}, "probe.every"),
        ({"stop": {"max_steps": None}}, "stop"),
        ({"model": {"widht": 10}}, "model.widht"),
        ({"model": {"n_out": 3}}, "model.n_out"),
        ({"model": {"name": "transformer"}}, "model.name"),
        ({"data": {"name": "imagenet"}}, "data.name"),
        ({"data": {"options": {"colour": True}}}, "data.options.colour"),
        ({"dtype": "float16"}, "dtype"),
        ({"optimizer": {"name": "exp_euler", "lr": 2.5}}, "lr"),
        ({"optimizer": {"name": "nesterov", "adaptive": True}}, "adaptive"),
    ],
)
def test_bad_configs_name_the_field(raw, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config(raw)


def test_overrides_parse_yaml_scalars_and_are_validated():
    raw = apply_overrides({}, ["optimizer.lr=0.05", "probe.dense_until=100", "model.width=8"])
    cfg = parse_config(raw)
    assert cfg.optimizer.lr == 0.05 and cfg.probe.dense_until == 100
    assert cfg.model.options["width"] == 8
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides({}, ["optimizer.lr"])
    with pytest.raises(ConfigError, match="optimizer.lr"):
        parse_config(apply_overrides({}, ["optimizer.lr=abc"]))


def test_load_config_reads_packaged_demo_and_files(tmp_path):
    cfg = load_config("demo")
    assert cfg.name == "demo" and cfg.data.name == "digits"
    p = tmp_path / "c.yaml"
    p.write_text("optimizer: {lr: 0.3}\nstop: {max_steps: 5}\n")
    assert load_config(p, ["stop.max_steps=9"]).stop.max_steps == 9
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)
    p.write_text("optimizer: {lr: [0.1\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_config_eigensolver_names_are_the_solvers():
    """The config's Literal lists stay in step with ``eoslab.eigen.SOLVERS``."""
    from typing import get_args

    from eoslab.eigen import SOLVERS
    from eoslab.run.config import SolverConfig

    assert set(get_args(SolverConfig.model_fields["method"].annotation)) == set(SOLVERS)


def test_unknown_probe_method_is_a_config_error():
    """Named when the config is read, before a run directory exists."""
    with pytest.raises(ConfigError, match=r"probe\.solver\.method.*'lanczos'"):
        cfg_of(probe__solver={"method": "qr"})


def test_eigenvalue_change_needs_block_power():
    with pytest.raises(ConfigError, match=r"optimizer\.solver\.criterion"):
        cfg_of(
            optimizer={"name": "exp_euler", "lr": 1.0, "solver": {"criterion": "eigenvalue_change"}}
        )


def test_solver_sections_fill_from_their_consumers_defaults_and_validate_once():
    """probe.solver, probe.gauss_newton_solver and optimizer.solver are one EigSpec each."""
    from eoslab.dynamics import STEP_SOLVER
    from eoslab.probes import DEFAULT_GN_SOLVER, DEFAULT_SOLVER

    cfg = cfg_of(probe__solver={"tol": 1e-5}, optimizer={"name": "gd", "lr": 0.1})
    assert cfg.probe.solver.spec() == DEFAULT_SOLVER.replace(tol=1e-5)
    assert cfg.probe.gauss_newton_solver.spec() == DEFAULT_GN_SOLVER
    assert cfg.optimizer.solver.spec() == STEP_SOLVER
    adaptive = cfg_of(optimizer={"name": "gd", "lr": 0.1, "adaptive": True, "solver": {"seed": 3}})
    assert adaptive.optimizer.integrator().step_size.solve.spec == STEP_SOLVER.replace(seed=3)
    for bad, field in (
        ({"name": "gd", "lr": 0.1, "solver": {"tol": 1e-3}}, "optimizer.solver: not used by gd"),
        ({"name": "gd", "lr": 0.1, "momentum": 0.5}, "optimizer.momentum: not used by gd"),
        ({"name": "heavy_ball", "lr": 0.1, "n_exact": 2}, "optimizer.n_exact: not used"),
        ({"name": "exp_euler", "lr": 2.5}, "optimizer.lr"),
        ({"name": "gd", "lr": 0.1, "adaptive": True, "solver": {"tol": 0}}, "solver.tol"),
    ):
        with pytest.raises(ConfigError, match=field):
            cfg_of(optimizer=bad)


def test_configs_written_before_the_solver_sections_still_read():
    """Saved run directories of eoslab 0.1 keep loading (legacy keys moved, not dropped)."""
    old = cfg_of(
        probe={"every": 10, "k": 4, "tol": 1e-3, "method": "lobpcg", "gn_tol": 1e-7},
        optimizer={"name": "exp_euler", "lr": 0.5, "k": 2, "eig_tol": 1e-5},
    )
    assert old.probe.solver.method == "lobpcg" and old.probe.solver.tol == 1e-3
    assert old.probe.gauss_newton_solver.tol == 1e-7
    assert old.optimizer.n_exact == 2 and old.optimizer.solver.tol == 1e-5
