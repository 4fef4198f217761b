"""Config validation, the run store, the run loop, resume after SIGKILL, load_run, the CLI."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

import eoslab
from eoslab.run import ConfigError, apply_overrides, load_config, load_run, parse_config, run
from eoslab.store import RunStore, StoreError

# a run that takes a few hundred milliseconds: digits subset, a small tanh MLP, MSE, GD
TINY = {
    "name": "tiny",
    "data": {"n_train": 120, "classes": [0, 1, 2]},
    "model": {"width": 12, "depth": 2, "activation": "tanh", "init": "pytorch_default"},
    "optimizer": {"name": "gd", "lr": 0.2},
    "probe": {"every": 10, "k": 4},
    "snapshot_every": 20,
    "checkpoint_every": 7,
    "stop": {"max_steps": 40},
}


def cfg_of(**over):
    raw = json.loads(json.dumps(TINY))
    for key, value in over.items():
        node = raw
        *path, last = key.split("__")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return parse_config(raw)


def strip_wall(rows):
    return [{k: v for k, v in r.items() if k != "wall"} for r in rows]


def same_rows(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(strip_wall(a), strip_wall(b)):
        assert ra.keys() == rb.keys()
        for k in ra:
            va, vb = ra[k], rb[k]
            if isinstance(va, float) and math.isnan(va):
                assert isinstance(vb, float) and math.isnan(vb), k
            else:
                assert va == vb, (k, va, vb)


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


# ---------------------------------------------------------------- store
def test_store_round_trip_and_torn_last_line(tmp_path):
    store = RunStore.create(tmp_path / "r", {"a": 1}, {"torch": torch.__version__})
    for s in range(5):
        store.append("steps", {"step": s, "loss": 1.0 / (s + 1), "nan": float("nan")})
    store.close()
    with open(tmp_path / "r" / "steps.jsonl", "a") as fh:
        fh.write('{"step": 5, "lo')  # a write torn by a kill
    rows = RunStore.open(tmp_path / "r").rows("steps")
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4] and math.isnan(rows[0]["nan"])
    store = RunStore.open(tmp_path / "r")
    store.truncate_metrics(3)
    assert [r["step"] for r in store.rows("steps")] == [0, 1, 2]
    theta = torch.randn(7, dtype=torch.float64)
    store.save_snapshot(3, theta, {"time": 0.3})
    back, meta = store.load_snapshot(3)
    assert torch.equal(back, theta) and meta == {"time": 0.3, "step": 3}
    store.save_checkpoint({"theta": theta, "state/v": theta[:2]}, {"step": 3})
    tensors, meta = store.load_checkpoint()
    assert torch.equal(tensors["state/v"], theta[:2]) and meta["step"] == 3
    with pytest.raises(StoreError, match="already holds a run"):
        RunStore.create(tmp_path / "r", {}, {})


def test_store_rejects_corrupt_files(tmp_path):
    store = RunStore.create(tmp_path / "r", {"a": 1}, {})
    (tmp_path / "r" / "steps.jsonl").write_text('{"step": 0}\nnot json\n{"step": 2}\n')
    with pytest.raises(StoreError, match=r"steps.jsonl:2"):
        store.rows("steps")
    store.snapshot_path(0).write_bytes(b"\x00" * 20)
    with pytest.raises(StoreError, match="unreadable"):
        store.load_snapshot(0)
    with pytest.raises(StoreError, match="not a run directory"):
        RunStore.open(tmp_path / "nothing")


# ---------------------------------------------------------------- the loop
def test_run_records_steps_probes_snapshots_and_loads(tmp_path):
    status = run(cfg_of(), tmp_path / "r", progress=False)
    assert status["status"] == "completed" and status["step"] == 40
    cfg, df = load_run(tmp_path / "r")
    assert cfg == cfg_of()
    steps = df[df["n_grads"].notna()]  # rows of steps taken (the final point has none)
    assert list(df["step"]) == list(range(41))  # 40 steps and the final point
    assert (df["time"].diff().dropna() > 0).all()
    probed = df[df["lambda_1"].notna()]["step"].tolist()
    assert probed == [0, 10, 20, 30, 40]
    for col in ["rho_1", "proj_top", "proj_bulk", "dL_top", "dL_bulk", "dL_full", "accuracy"]:
        assert col in df.columns
    # ρ_1 = η λ_1 / 2 for GD (docs/methods.md §2)
    row = df[df["step"] == 20].iloc[0]
    assert row["rho_1"] == pytest.approx(0.2 * row["lambda_1"] / 2, rel=1e-12)
    assert len(steps) == 40
    # the probe's loss equals the step's loss at the same θ (up to summation order)
    probe20 = next(r for r in RunStore.open(tmp_path / "r").rows("probes") if r["step"] == 20)
    assert probe20["loss"] == pytest.approx(row["loss"], rel=1e-12)
    assert RunStore.open(tmp_path / "r").snapshot_steps() == [0, 20, 40]
    assert eoslab.load_run is load_run
    env = json.loads((tmp_path / "r" / "environment.json").read_text())
    assert env["dtype"] == "float64" and env["torch"] == torch.__version__


def test_resume_after_a_crash_equals_uninterrupted(tmp_path, monkeypatch):
    full = run(cfg_of(), tmp_path / "full", progress=False)
    append = RunStore.append

    def crash_at_step_23(self, stream, row):
        if stream == "steps" and row["step"] == 23:
            append(self, stream, dict(row, loss="torn"))  # a row the resume must drop
            raise RuntimeError("simulated crash")
        append(self, stream, row)

    monkeypatch.setattr(RunStore, "append", crash_at_step_23)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg_of(), tmp_path / "cut", progress=False)
    monkeypatch.setattr(RunStore, "append", append)
    st = RunStore.open(tmp_path / "cut").status()
    assert st["status"] == "failed" and "simulated crash" in st["reason"]
    resumed = run(None, tmp_path / "cut", resume=True, progress=False)  # from step 21
    assert resumed["status"] == full["status"] == "completed"
    a, b = RunStore.open(tmp_path / "full"), RunStore.open(tmp_path / "cut")
    same_rows(a.rows("steps"), b.rows("steps"))
    same_rows(a.rows("probes"), b.rows("probes"))
    assert torch.equal(a.load_snapshot(40)[0], b.load_snapshot(40)[0])
    # resuming a finished run changes nothing
    assert run(None, tmp_path / "cut", resume=True, progress=False)["status"] == "completed"
    same_rows(a.rows("steps"), b.rows("steps"))


def test_resume_refuses_a_different_config(tmp_path):
    run(cfg_of(stop__max_steps=5), tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="optimizer.lr: saved 0.2, given 0.3"):
        run(cfg_of(stop__max_steps=5, optimizer__lr=0.3), tmp_path / "r", resume=True)
    with pytest.raises(StoreError, match="already holds a run"):
        run(cfg_of(), tmp_path / "r", progress=False)


def test_divergence_ends_the_run_and_keeps_the_record(tmp_path):
    status = run(cfg_of(optimizer__lr=50.0, probe__every=1000), tmp_path / "r", progress=False)
    assert status["status"] == "diverged"
    rows = RunStore.open(tmp_path / "r").rows("steps")
    assert len(rows) == status["step"] + 1 and rows[0]["step"] == 0


def test_loss_threshold_and_flow_time_stop_rules(tmp_path):
    st = run(cfg_of(stop__loss_below=0.4, probe__enabled=False), tmp_path / "a", progress=False)
    rows = RunStore.open(tmp_path / "a").rows("steps")
    assert st["status"] == "completed" and "loss_below" in st["reason"]
    assert rows[-1]["loss"] < 0.4 <= rows[-2]["loss"]
    st = run(
        cfg_of(stop__max_steps=None, stop__max_time=1.0, probe__enabled=False),
        tmp_path / "b",
        progress=False,
    )
    assert st["step"] == 5 and "max_time" in st["reason"]  # t = 5 × 0.2


@pytest.mark.parametrize(
    "opt",
    [
        {"name": "heavy_ball", "lr": 0.1, "momentum": 0.5},
        {"name": "nesterov", "lr": 0.1, "momentum": 0.5},
        {"name": "rk4", "lr": 0.2},
        {"name": "gd", "lr": 0.5, "adaptive": True, "c": 0.5},
        {"name": "exp_euler", "lr": 1.0, "n_exact": 3},
        {
            "name": "exp_euler",
            "lr": 1.0,
            "n_exact": 3,
            "solver": {"method": "block_power", "criterion": "eigenvalue_change", "tol": 1e-3},
        },
    ],
)
def test_every_integrator_runs_in_the_loop_and_resumes(tmp_path, opt):
    raw = json.loads(json.dumps(TINY))
    raw["optimizer"] = opt
    raw["stop"]["max_steps"] = 12
    raw["checkpoint_every"] = 5
    full = run(parse_config(raw), tmp_path / "full", progress=False)
    assert full["status"] == "completed"
    rows = RunStore.open(tmp_path / "full").rows("steps")
    assert len(rows) == 12 and rows[-1]["loss"] < rows[0]["loss"]
    if opt.get("adaptive"):  # η_t = min(η_max, c/λ_1)
        assert all(r["lr"] == pytest.approx(min(0.5, 0.5 / r["sharpness"])) for r in rows)
    if opt["name"] == "exp_euler":
        assert all(r["n_matvecs"] > 0 and r["threshold"] == 2 / r["lr"] for r in rows)
    # a crash at step 7 (checkpoint at 5), then resume: the same metrics, because the
    # integrator state (momentum, warm-start blocks) is part of the checkpoint
    append = RunStore.append

    def crash(self, stream, row):
        if stream == "steps" and row["step"] == 7:
            raise RuntimeError("simulated crash")
        append(self, stream, row)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunStore, "append", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(parse_config(raw), tmp_path / "cut", progress=False)
    run(None, tmp_path / "cut", resume=True, progress=False)
    a, b = RunStore.open(tmp_path / "full"), RunStore.open(tmp_path / "cut")
    same_rows(a.rows("steps"), b.rows("steps"))
    same_rows(a.rows("probes"), b.rows("probes"))


def test_decomposition_probes_during_training_resume_exactly(tmp_path, monkeypatch):
    cfg = cfg_of(probe__gauss_newton=True, probe__layerwise=True, stop__max_steps=25)
    run(cfg, tmp_path / "full", progress=False)
    rows = RunStore.open(tmp_path / "full").rows("probes")
    for r in rows:
        assert 0 < r["zeta"] <= 1 + 1e-12 and r["EM2"] <= r["sum_C"] * (1 + 1e-12)
        assert r["lambda_H"] == pytest.approx(r["lambda_1"], rel=1e-3)
    append = RunStore.append

    def crash(self, stream, row):
        if stream == "steps" and row["step"] == 17:
            raise RuntimeError("simulated crash")
        append(self, stream, row)

    monkeypatch.setattr(RunStore, "append", crash)
    with pytest.raises(RuntimeError):
        run(cfg, tmp_path / "cut", progress=False)
    monkeypatch.setattr(RunStore, "append", append)
    run(None, tmp_path / "cut", resume=True, progress=False)
    same_rows(rows, RunStore.open(tmp_path / "cut").rows("probes"))
    cnn = cfg_of(probe__layerwise=True, data__flatten=False, model={"name": "small_cnn"})
    with pytest.raises(ConfigError, match="probe.layerwise"):
        run(cnn, tmp_path / "cnn", progress=False)


def test_probe_k_must_cover_the_top_subspace(tmp_path):
    with pytest.raises(ConfigError, match="probe.k"):
        run(cfg_of(data__classes=None), tmp_path / "r", progress=False)


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


def test_a_model_with_its_own_init_schemes_gets_them_from_the_config():
    """deep_linear's orthogonal init (scale s) reaches the constructor: W_1 W_1ᵀ = s² I."""
    from eoslab.run.build import build

    cfg = cfg_of(
        model={
            "name": "deep_linear",
            "depth": 3,
            "width": 8,
            "init": "orthogonal",
            "init_scale": 0.9,
        }
    )
    W = build(cfg).model.layers[0].weight.detach()
    torch.testing.assert_close(W @ W.T, 0.81 * torch.eye(8, dtype=W.dtype))
    with pytest.raises(ConfigError, match="model"):
        build(cfg_of(model={"name": "deep_linear", "depth": 3, "width": 8, "init": "nope"}))
    with pytest.raises(ConfigError, match="model.init"):
        parse_config({**TINY, "model": {**TINY["model"], "init": "orthogonal"}})


def test_dense_probe_window(tmp_path):
    run(cfg_of(probe__every=20, probe__dense_every=3, probe__dense_until=10), tmp_path / "r")
    probes = [r["step"] for r in RunStore.open(tmp_path / "r").rows("probes")]
    assert probes == [0, 3, 6, 9, 20, 40]


# ---------------------------------------------------------------- SIGKILL
def test_sigkill_mid_run_then_resume_gives_identical_metrics(tmp_path):
    raw = json.loads(json.dumps(TINY))
    raw["stop"]["max_steps"] = 1500
    raw["checkpoint_every"] = 50
    raw["snapshot_every"] = 500
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "eoslab", "run", str(cfg_path), "--no-progress", "--out"]
    proc = subprocess.Popen([*cmd, str(tmp_path / "killed")], env=env)
    steps_file = tmp_path / "killed" / "steps.jsonl"
    deadline = time.time() + 120
    n = 0
    while time.time() < deadline:
        n = steps_file.read_text().count("\n") if steps_file.exists() else 0
        if n >= 230 or proc.poll() is not None:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    st = json.loads((tmp_path / "killed" / "status.json").read_text())
    assert st["status"] == "running"  # killed: nobody wrote an ending
    done = subprocess.run(
        [sys.executable, "-m", "eoslab", "run", "--resume", "--no-progress", "--out"]
        + [str(tmp_path / "killed")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    torch.set_num_threads(1)  # the same arithmetic as the subprocesses
    run(parse_config(raw), tmp_path / "full", progress=False)
    a, b = RunStore.open(tmp_path / "full"), RunStore.open(tmp_path / "killed")
    same_rows(a.rows("steps"), b.rows("steps"))
    same_rows(a.rows("probes"), b.rows("probes"))
    assert torch.equal(a.load_snapshot(1500)[0], b.load_snapshot(1500)[0])


# ---------------------------------------------------------------- CLI
def test_cli_run_show_and_bad_config(tmp_path, capsys):
    from eoslab.cli import main

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(TINY))
    assert main(["run", str(p), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "completed" in out and "λ_1" in out and "sharpness.png" in out
    assert (tmp_path / "r" / "sharpness.png").stat().st_size > 10_000
    assert main(["show", str(tmp_path / "r")]) == 0
    assert "threshold" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="optimizer.lr"):
        main(["run", str(p), "--set", "optimizer.lr=-1", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="already holds a run"):
        main(["run", str(p), "--out", str(tmp_path / "r"), "--no-progress"])
    assert main(["run", str(p), "--out", str(tmp_path / "r"), "--overwrite", "--no-progress"]) == 0
