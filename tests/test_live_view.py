"""The live view: TensorBoard scalars of runs (read back from the event files), the
``eoslab tensorboard`` export of runs and sweeps, and ``eoslab show RUN --follow``."""

import importlib.util
import json
import math
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml
from test_sweep import write_sweep
from tiny import TINY, cfg_of

from eoslab.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, CLIError, main
from eoslab.run import ConfigError, run
from eoslab.run.live import RowFollower, scalar_tag, writer_gone
from eoslab.run.loop import _config_diff
from eoslab.run.sweep import load_sweep, run_id, run_sweep
from eoslab.store import RunStore

HAVE_TB = importlib.util.find_spec("tensorboard") is not None
needs_tb = pytest.mark.skipif(
    not HAVE_TB,
    reason="the tensorboard package is not installed (pip install 'eoslab[tensorboard]')",
)
ENV = dict(os.environ, OMP_NUM_THREADS="1")
CLI = [sys.executable, "-m", "eoslab"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny runs: one thread is fastest and matches the subprocesses' arithmetic."""


def events(logdir):
    """{tag: [(step, value), …]} of the scalars in the event files of ``logdir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def f32(x):
    return float(np.float32(x))


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def expected(run_dir):
    """The scalars the stored rows call for: rows in loop order (a probe before the step row of
    its step), the first value of a tag at a step kept."""
    store = RunStore.open(run_dir)
    rows = [(r["step"], 0, "probes", r) for r in store.rows("probes")]
    rows += [(r["step"], 1, "steps", r) for r in store.rows("steps")]
    out = {}
    for step, _, stream, row in sorted(rows, key=lambda t: t[:2]):
        for key, value in row.items():
            tag = scalar_tag(stream, key)
            if tag is None or isinstance(value, (bool, str)) or value is None:
                continue
            series = out.setdefault(tag, [])
            if not series or series[-1][0] < step:
                series.append((step, f32(value)))
    return out


def assert_events_match_rows(logdir, run_dir):
    got, want = events(logdir), expected(run_dir)
    assert sorted(got) == sorted(want)
    for tag, series in want.items():
        steps = [s for s, _ in got[tag]]
        assert steps == [s for s, _ in series], tag  # one value per step, none missing
        assert all(same(a, b) for (_, a), (_, b) in zip(got[tag], series)), tag


# ---------------------------------------------------------------- the live sink
@needs_tb
def test_a_run_with_tensorboard_writes_its_rows_as_scalars(tmp_path, capsys):
    run(cfg_of(tensorboard=True), tmp_path / "r", progress=True)
    assert "TensorBoard event files in" in capsys.readouterr().err
    store = RunStore.open(tmp_path / "r")
    assert store.read_config()["tensorboard"] is True
    got = events(tmp_path / "r" / "tensorboard")
    probes, steps = store.rows("probes"), store.rows("steps")
    # the grouped tags, checked against the stored rows by name
    for tag, key in [
        ("sharpness/lambda_1", "lambda_1"),
        ("sharpness/lambda_4", "lambda_4"),
        ("rho/rho_1", "rho_1"),
        ("projections/proj_top", "proj_top"),
        ("projections/proj_bulk", "proj_bulk"),
        ("loss_change/dL_top", "dL_top"),
        ("loss_change/dL_full", "dL_full"),
        ("accuracy/train", "accuracy"),
        ("probes/eig_residual_max", "eig_residual_max"),
    ]:
        assert got[tag] == [(r["step"], f32(r[key])) for r in probes], tag
    by_step = {r["step"]: r for r in steps} | {r["step"]: r for r in probes if r["step"] == 40}
    for tag, key in [
        ("loss/train", "loss"),
        ("sharpness/threshold", "threshold"),
        ("optimizer/flow_time", "time"),
        ("norms/grad_norm", "grad_norm"),
    ]:
        assert got[tag] == [(s, f32(by_step[s][key])) for s in range(41)], tag
    assert got["steps/n_grads"] == [(r["step"], f32(r["n_grads"])) for r in steps]
    assert_events_match_rows(tmp_path / "r" / "tensorboard", tmp_path / "r")


@needs_tb
def test_resume_after_a_crash_gives_one_value_per_step(tmp_path, monkeypatch):
    append = RunStore.append

    def crash_at_step_23(self, stream, row):
        if stream == "steps" and row["step"] == 23:
            raise RuntimeError("simulated crash")
        append(self, stream, row)

    monkeypatch.setattr(RunStore, "append", crash_at_step_23)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg_of(tensorboard=True), tmp_path / "cut", progress=False)
    monkeypatch.setattr(RunStore, "append", append)
    before = events(tmp_path / "cut" / "tensorboard")
    assert before["loss/train"][-1][0] == 22  # rows 21, 22 will be recomputed
    assert run(None, tmp_path / "cut", resume=True, progress=False)["status"] == "completed"
    assert len(list((tmp_path / "cut" / "tensorboard").iterdir())) == 2  # a file per process
    got = events(tmp_path / "cut" / "tensorboard")
    assert [s for s, _ in got["loss/train"]] == list(range(41))
    assert [s for s, _ in got["sharpness/lambda_1"]] == [0, 10, 20, 30, 40]
    assert_events_match_rows(tmp_path / "cut" / "tensorboard", tmp_path / "cut")


@needs_tb
def test_the_view_can_be_switched_on_when_resuming(tmp_path, monkeypatch):
    cfg = cfg_of(stop__max_steps=6, checkpoint_every=2, probe__every=3)
    append = RunStore.append

    def crash(self, stream, row):
        if stream == "steps" and row["step"] == 3:
            raise RuntimeError("simulated crash")
        append(self, stream, row)

    monkeypatch.setattr(RunStore, "append", crash)
    with pytest.raises(RuntimeError):
        run(cfg, tmp_path / "r", progress=False)
    monkeypatch.setattr(RunStore, "append", append)
    assert not (tmp_path / "r" / "tensorboard").exists()
    on = cfg_of(stop__max_steps=6, checkpoint_every=2, probe__every=3, tensorboard=True)
    assert run(on, tmp_path / "r", resume=True, progress=False)["status"] == "completed"
    got = events(tmp_path / "r" / "tensorboard")
    assert [s for s, _ in got["loss/train"]] == [2, 3, 4, 5, 6]  # from the checkpoint on
    assert RunStore.open(tmp_path / "r").read_config()["tensorboard"] is False  # as saved


def test_the_view_is_no_config_difference_and_no_part_of_run_ids():
    off, on = cfg_of().to_dict(), cfg_of(tensorboard=True).to_dict()
    assert _config_diff(off, on) == []
    assert _config_diff(off, cfg_of(optimizer__lr=0.3).to_dict()) != []
    assert run_id(off) == run_id(on)


def test_without_the_package_the_view_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'eoslab\[tensorboard\]'"):
        run(cfg_of(tensorboard=True), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()  # refused before a run directory exists
    run(cfg_of(stop__max_steps=2), tmp_path / "plain", progress=False)  # runs without it
    with pytest.raises(CLIError) as err:
        main(["tensorboard", str(tmp_path / "plain")])
    assert err.value.code == EXIT_USAGE and "eoslab[tensorboard]" in str(err.value)


# ---------------------------------------------------------------- eoslab tensorboard
@needs_tb
def test_tensorboard_command_writes_a_folder_per_sweep_run(tmp_path, capsys):
    p = write_sweep(tmp_path, grid={"optimizer.lr": [0.1, 0.2]}, config={"stop": {"max_steps": 8}})
    sweep, base_dir = load_sweep(p)
    state = run_sweep(sweep, tmp_path / "sw", base_dir=base_dir, progress=False)
    assert main(["tensorboard", str(tmp_path / "sw")]) == 0
    out = capsys.readouterr().out
    logdir = tmp_path / "sw" / "tensorboard"
    assert sorted(p.name for p in logdir.iterdir()) == sorted(state)
    assert f"tensorboard --logdir {logdir}" in out and "optimizer.lr" in out
    for rid in state:
        assert_events_match_rows(logdir / rid, tmp_path / "sw" / "runs" / rid)
    # again: the older event files are replaced, not added to
    assert main(["tensorboard", str(tmp_path / "sw"), "--out", str(tmp_path / "tb")]) == 0
    assert main(["tensorboard", str(tmp_path / "sw"), "--out", str(tmp_path / "tb")]) == 0
    for rid in state:
        assert len(list((tmp_path / "tb" / rid).iterdir())) == 1
        assert_events_match_rows(tmp_path / "tb" / rid, tmp_path / "sw" / "runs" / rid)


@needs_tb
def test_tensorboard_command_on_a_run_replaces_its_live_view(tmp_path, capsys):
    run(cfg_of(stop__max_steps=12, tensorboard=True), tmp_path / "r", progress=False)
    live = events(tmp_path / "r" / "tensorboard")
    assert main(["tensorboard", str(tmp_path / "r")]) == 0
    assert len(list((tmp_path / "r" / "tensorboard").iterdir())) == 1
    assert events(tmp_path / "r" / "tensorboard") == live
    assert "tensorboard --logdir" in capsys.readouterr().out


def test_tensorboard_command_needs_runs(tmp_path):
    with pytest.raises(CLIError, match="holds no run"):
        main(["tensorboard", str(tmp_path)])


# ---------------------------------------------------------------- eoslab show --follow
def test_row_follower_returns_complete_new_rows_once(tmp_path):
    path = tmp_path / "probes.jsonl"
    rows = RowFollower(path)
    assert rows.poll() == []  # no file yet
    path.write_text('{"step": 0}\n{"step": 10}\n{"step": 2')  # the last line is torn
    assert [r["step"] for r in rows.poll()] == [0, 10]
    assert rows.poll() == []
    with open(path, "a") as fh:
        fh.write('0, "loss": 1.5}\n{"step": 30}')
    assert rows.poll() == [{"step": 20, "loss": 1.5}]
    # a resume replaces the file by its rows before the checkpoint, then appends
    path.write_text('{"step": 0}\n{"step": 10}\n{"step": 20, "loss": 1.5}\n{"step": 30}\n')
    assert rows.poll() == [{"step": 30}]


def test_follow_prints_each_probe_as_it_lands(tmp_path, monkeypatch, capsys):
    store = RunStore.create(tmp_path / "r", cfg_of().to_dict(), {})
    store.append("probes", dict(step=0, time=0.0, loss=1.0, lambda_1=2.0, threshold=10.0))
    following = threading.Event()
    poll = RowFollower.poll

    def first_poll(self):
        following.set()
        return poll(self)

    monkeypatch.setattr(RowFollower, "poll", first_poll)

    def writer():
        assert following.wait(timeout=60)
        for s in range(1, 6):
            time.sleep(0.02)
            store.append("probes", dict(step=10 * s, time=2.0 * s, loss=1.0 / s, lambda_1=2.0 + s))
        store.set_status("completed", step=50, reason="max_steps=50 reached")
        store.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert main(["show", str(tmp_path / "r"), "--follow", "--interval", "0.01"]) == 0
    finally:
        t.join()
    out = capsys.readouterr().out.splitlines()
    i = next(k for k, line in enumerate(out) if line.split()[:2] == ["step", "time"])
    assert [int(line.split()[0]) for line in out[i + 1 : -1]] == [0, 10, 20, 30, 40, 50]
    assert out[i + 2].split()[:4] == ["10", "2", "1", "3"] and out[i + 2].split()[-1] == "-"
    assert out[-1] == "status completed at step 50 (max_steps=50 reached)"


def test_follow_stops_when_the_writer_is_gone_and_on_ctrl_c(tmp_path, monkeypatch, capsys):
    store = RunStore.create(tmp_path / "r", cfg_of().to_dict(), {})
    assert not writer_gone(tmp_path / "r")

    def ctrl_c(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", ctrl_c)
    assert main(["show", str(tmp_path / "r"), "--follow"]) == EXIT_INTERRUPTED
    store.close()  # the writer went away without a final status (as after a kill)
    assert writer_gone(tmp_path / "r")
    assert main(["show", str(tmp_path / "r"), "--follow"]) == EXIT_FAILED
    assert "--resume" in capsys.readouterr().out.splitlines()[-1]


def test_follow_a_real_run_until_it_completes(tmp_path):
    raw = json.loads(json.dumps(TINY))
    raw.update(snapshot_every=None, checkpoint_every=100, stop={"max_steps": 200})
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "r"
    job = subprocess.Popen(
        [*CLI, "run", str(cfg_path), "--no-progress", "--out", str(out)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not (out / "status.json").exists() and job.poll() is None:
            assert time.time() < deadline
            time.sleep(0.02)
        show = subprocess.run(
            [*CLI, "show", str(out), "--follow", "--interval", "0.1"],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        job.wait(timeout=300)
    assert job.returncode == 0, job.stderr.read()
    assert show.returncode == 0, show.stderr
    lines = show.stdout.splitlines()
    assert lines[-1] == "status completed at step 200 (max_steps=200 reached)"
    i = next(k for k, line in enumerate(lines) if line.split()[:2] == ["step", "time"])
    printed = [line.split() for line in lines[i + 1 : -1]]
    probes = RunStore.open(out).rows("probes")
    steps = [r["step"] for r in probes]
    # from where the run stood when following began, every probe once, to the final one
    assert printed and [int(p[0]) for p in printed] == steps[steps.index(int(printed[0][0])) :]
    for p in printed:
        row = probes[steps.index(int(p[0]))]
        assert float(p[3]) == pytest.approx(row["lambda_1"], rel=1e-4)
