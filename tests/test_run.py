"""The run loop, resume after a crash or SIGKILL, load_run, the CLI (config and store tests:
test_config.py, test_store.py)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from tiny import TINY, cfg_of, same_rows

import eoslab
from eoslab.run import ConfigError, load_run, parse_config, run
from eoslab.store import RunStore, StoreError


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
