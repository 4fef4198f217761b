"""Hostile and careless use of runs: concurrent writers, kills, Ctrl-C, bad configs, exit codes.

Everything about processes and files uses real subprocesses and real files.
"""

import json
import os
import signal
import subprocess
import sys
import time
import types
import typing
from pathlib import Path

import pytest
import torch
import yaml
from tiny import TINY, cfg_of, same_rows

from eoslab.cli import EXIT_DIVERGED, EXIT_USAGE, main
from eoslab.run import ConfigError, load_config, parse_config, run
from eoslab.run.config import RunConfig
from eoslab.store import RunLock, RunLockedError, RunStore, StoreError

ENV = dict(os.environ, OMP_NUM_THREADS="1")
CLI = [sys.executable, "-m", "eoslab"]


def write_cfg(path: Path, **over) -> Path:
    raw = json.loads(json.dumps(TINY))
    for key, value in over.items():
        node = raw
        *parts, last = key.split("__")
        for p in parts:
            node = node.setdefault(p, {})
        node[last] = value
    path.write_text(yaml.safe_dump(raw))
    return path


def start(cfg_path: Path, out: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, "run", str(cfg_path), "--no-progress", "--out", str(out), *extra],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_rows(proc: subprocess.Popen, path: Path, n: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        have = path.read_text().count("\n") if path.exists() else 0
        if have >= n or proc.poll() is not None:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before the test could act on it"


def long_cfg(tmp_path: Path, steps: int = 1500) -> Path:
    return write_cfg(
        tmp_path / "long.yaml",
        stop__max_steps=steps,
        checkpoint_every=50,
        snapshot_every=500,
    )


# ---------------------------------------------------------------- 1. one writer at a time
def test_a_second_writer_is_refused_while_a_run_is_live(tmp_path):
    cfg = long_cfg(tmp_path, steps=3000)
    out = tmp_path / "r"
    live = start(cfg, out)
    wait_for_rows(live, out / "steps.jsonl", 50)
    rivals = [  # a resume, an overwrite and a fresh run of the same directory, all at once
        subprocess.Popen(
            [*CLI, "run", *args, "--no-progress", "--out", str(out)],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in (["--resume"], [str(cfg), "--overwrite"], [str(cfg)])
    ]
    for rival in rivals:
        _, err = rival.communicate(timeout=120)
        assert rival.returncode == EXIT_USAGE, err
        assert "in use by another process" in err and f"pid {live.pid} on host" in err
        assert "Traceback" not in err
    assert live.poll() is None, "the live run ended before its rivals were refused"
    _, err = live.communicate(timeout=600)
    assert live.returncode == 0, err
    store = RunStore.open(out)
    assert [r["step"] for r in store.rows("steps")] == list(range(3000))  # no row lost
    assert [r["step"] for r in store.rows("probes")] == list(range(0, 3001, 10))
    assert store.status()["status"] == "completed"
    assert not (out / ".lock").read_text()  # released: no holder recorded


def test_lock_names_its_holder_and_is_released_by_the_os_on_sigkill(tmp_path):
    lock = RunLock(tmp_path, "run")
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on host"):
        RunLock(tmp_path, "resume")
    lock.release()
    RunLock(tmp_path, "resume").release()
    # a killed holder: the OS drops its lock, the stale holder record does not block
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from eoslab.store import RunLock; "
            f"RunLock({str(tmp_path)!r}, 'run'); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
        RunLock(tmp_path, "run")
    holder.kill()
    holder.wait()
    RunLock(tmp_path, "run").release()


# ---------------------------------------------------------------- 2. kill before the final status
def test_resume_finishes_a_run_killed_after_its_final_checkpoint(tmp_path):
    p = write_cfg(tmp_path / "c.yaml")
    out = tmp_path / "r"
    done = run(load_config(p), out, progress=False)
    final = json.loads((out / "status.json").read_text())
    # what a kill between the final checkpoint and the final status write leaves behind
    RunStore(out).set_status("running", step=final["step"])
    r = subprocess.run(
        [*CLI, "run", "--resume", "--no-progress", "--out", str(out)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    st = RunStore.open(out).status()
    assert st["status"] == done["status"] == "completed"
    assert st["reason"] == done["reason"] and st["step"] == done["step"]
    assert st["n_matvecs"] == done["n_matvecs"]
    assert "status   completed" in r.stdout  # the summary


# ---------------------------------------------------------------- 3. Ctrl-C and SIGTERM
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_checkpoints_and_resume_gives_identical_metrics(tmp_path, sig, code):
    cfg = long_cfg(tmp_path)
    out = tmp_path / "cut"
    proc = start(cfg, out)
    wait_for_rows(proc, out / "steps.jsonl", 230)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "--resume" in err
    st = RunStore.open(out).status()
    assert st["status"] == "interrupted" and st["signal"] == signal.Signals(sig).name
    ckpt = RunStore.open(out).load_checkpoint()[1]
    assert ckpt["step"] == st["step"] > 200  # checkpointed where it stopped, not at step 200
    done = subprocess.run(
        [*CLI, "run", "--resume", "--no-progress", "--out", str(out)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    torch.set_num_threads(1)  # the arithmetic of the subprocesses
    run(parse_config(yaml.safe_load(cfg.read_text())), tmp_path / "full", progress=False)
    a, b = RunStore.open(tmp_path / "full"), RunStore.open(out)
    same_rows(a.rows("steps"), b.rows("steps"))
    same_rows(a.rows("probes"), b.rows("probes"))
    assert torch.equal(a.load_snapshot(1500)[0], b.load_snapshot(1500)[0])


# ---------------------------------------------------------------- 4. numbers as YAML 1.2 reads them
def base_types(ann) -> set:
    """The plain types of an annotation (Annotated and unions unwrapped)."""
    if typing.get_origin(ann) is typing.Annotated:
        return base_types(typing.get_args(ann)[0])
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return set().union(*(base_types(a) for a in typing.get_args(ann)))
    return {ann}


def numeric_fields(model=RunConfig, prefix=""):
    """(dotted name, type) of every int/float field of the config tree."""
    from pydantic import BaseModel

    for name, info in model.model_fields.items():
        kinds = base_types(info.annotation)
        sub = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        if sub:
            yield from numeric_fields(sub[0], f"{prefix}{name}.")
        elif int in kinds:
            yield f"{prefix}{name}", int
        elif float in kinds:
            yield f"{prefix}{name}", float


#: a valid value for each numeric field (default: 20 for counts, 0.5 for reals)
VALUES = {
    "stop.diverge_factor": 5e4,
    "optimizer.lr": 1e-3,
    "optimizer.solver.tol": 1e-6,
    "probe.solver.tol": 1e-6,
    "probe.gauss_newton_solver.tol": 1e-6,
}


#: the optimizer that reads each field that plain GD ignores (dynamics.READS)
EXP_EULER = {"name": "exp_euler", "lr": 0.5}
READER = {
    "optimizer.momentum": {"name": "heavy_ball", "lr": 0.1},
    "optimizer.c": {"name": "gd", "lr": 0.1, "adaptive": True},
    "optimizer.n_exact": EXP_EULER,
    "optimizer.tau_max": EXP_EULER,
}


def exponent_forms(value: float) -> list[str]:
    """``1e-3``, ``1.0e-3`` and ``1E-3`` spellings of ``value`` (one significant digit)."""
    mant, exp = f"{value:.0e}".split("e")
    exp = int(exp)
    return [f"{mant}e{exp}", f"{mant}.0e{exp}", f"{mant}E{exp}"]


def dotted(tree: dict, name: str):
    for part in name.split("."):
        tree = tree[part]
    return tree


def test_every_numeric_field_reads_exponent_notation_in_files_and_set(tmp_path):
    fields = dict(numeric_fields())
    assert {"optimizer.lr", "optimizer.solver.tol", "probe.solver.tol", "stop.max_steps"} <= set(
        fields
    )
    p = tmp_path / "c.yaml"
    for name, kind in fields.items():
        value = VALUES.get(name, 20 if kind is int else 0.5)
        *parts, last = name.split(".")
        base = json.loads(json.dumps(TINY))
        if name in READER or name.startswith("optimizer.solver."):
            base["optimizer"] = dict(READER.get(name, EXP_EULER))
        for text in exponent_forms(value):
            raw = json.loads(json.dumps(base))
            node = raw
            for part in parts:
                node = node.setdefault(part, {})
            node[last] = "__X__"
            p.write_text(yaml.safe_dump(raw).replace("__X__", text))  # in a file
            got = dotted(load_config(p).model_dump(), name)
            assert got == value and type(got) is kind, (name, text, got)
            p.write_text(yaml.safe_dump(base))  # and through --set
            got = dotted(load_config(p, [f"{name}={text}"]).model_dump(), name)
            assert got == value and type(got) is kind, (name, text, got)


def test_a_fractional_number_is_still_refused_for_a_count(tmp_path):
    with pytest.raises(ConfigError, match="stop.max_steps"):
        parse_config({**TINY, "stop": {"max_steps": 2.5}})
    with pytest.raises(ConfigError, match="optimizer.lr"):
        parse_config({**TINY, "optimizer": {"lr": "fast"}})


# ---------------------------------------------------------------- 5. nothing written on errors
def test_model_keyword_types_are_checked_before_any_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"model.width: expected int, got '8'"):
        run(cfg_of(model__width="8"), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
    # the fixed config then runs in that directory
    assert run(cfg_of(stop__max_steps=3), tmp_path / "r", progress=False)["status"] == "completed"


def test_an_empty_config_file_says_so(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("\n# nothing here\n")
    with pytest.raises(ConfigError, match="empty"):
        load_config(p)
    with pytest.raises(SystemExit, match="empty") as err:
        main(["run", str(p), "--out", str(tmp_path / "r")])
    assert err.value.code == EXIT_USAGE
    assert not (tmp_path / "r").exists()


def test_missing_data_is_a_config_error_without_traceback_and_without_directory(tmp_path):
    p = write_cfg(
        tmp_path / "c.yaml",
        data={"name": "cifar10", "options": {"root": str(tmp_path / "nowhere")}},
    )
    r = subprocess.run(
        [*CLI, "run", str(p), "--no-progress", "--out", str(tmp_path / "r")],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert r.returncode == EXIT_USAGE
    assert "Traceback" not in r.stderr and "CIFAR-10" in r.stderr and "nowhere" in r.stderr
    assert not (tmp_path / "r").exists()


def test_a_directory_where_nothing_was_recorded_is_taken_over(tmp_path, monkeypatch):
    from eoslab.probes import ProbeSuite

    def broken(self, *a, **k):
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(ProbeSuite, "__call__", broken)
    with pytest.raises(RuntimeError, match="probe exploded"):
        run(cfg_of(), tmp_path / "r", progress=False)
    assert RunStore.open(tmp_path / "r").status()["status"] == "failed"
    monkeypatch.undo()
    # a rerun of a fixed (different) config takes the directory over, with or without --resume
    assert run(cfg_of(stop__max_steps=5), tmp_path / "r", progress=False)["status"] == "completed"
    assert RunStore.open(tmp_path / "r").read_config()["stop"]["max_steps"] == 5
    with pytest.raises(StoreError, match="already holds a run"):  # now it holds one
        run(cfg_of(stop__max_steps=6), tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="config differs"):
        run(cfg_of(stop__max_steps=6), tmp_path / "r", resume=True, progress=False)


# ---------------------------------------------------------------- 6. k against P
def test_probe_k_above_the_parameter_count_is_refused_with_the_numbers(tmp_path):
    with pytest.raises(ConfigError, match=r"probe.k: 5000 .* P = 819"):
        run(cfg_of(probe__k=5000), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match=r"optimizer.n_exact: .* P = 819"):
        run(
            cfg_of(optimizer={"name": "exp_euler", "lr": 0.5, "n_exact": 2000}),
            tmp_path / "r",
            progress=False,
        )
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- 7. exit codes
def test_exit_codes_are_documented_and_returned(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    helptext = capsys.readouterr().out
    for code in ("0", "1", "2", "3", "130", "143"):
        assert f"\n  {code} " in helptext
    p = write_cfg(tmp_path / "d.yaml", optimizer={"name": "gd", "lr": 50.0}, probe={"every": 1000})
    assert main(["run", str(p), "--no-progress", "--out", str(tmp_path / "d")]) == EXIT_DIVERGED
    r = subprocess.run(
        [*CLI, "run", str(p), "--set", "optimizer.lr=-1", "--out", str(tmp_path / "x")],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert r.returncode == EXIT_USAGE and "optimizer.lr" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([*CLI, "data"], env=ENV, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_analyze_takes_the_writer_lock(tmp_path):
    """A live writer (here a lock held by another open lock file) keeps analyze out too."""
    from eoslab.run.analyze import analyze

    out = tmp_path / "r"
    run(cfg_of(stop__max_steps=20), out, progress=False)
    held = RunLock(out, "run")
    try:
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            analyze(out, what=("gauss_newton",), progress=False)
        assert not (out / "analysis.jsonl").exists()
    finally:
        held.release()
    summary = analyze(out, what=("gauss_newton",), progress=False)
    assert summary["n_analysed"] >= 1 and not (out / ".lock").read_text()
    r = subprocess.run(
        [*CLI, "analyze", str(out), "--what", "gauss_newton", "--no-progress"],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


def test_an_out_path_that_cannot_be_a_directory_is_a_clear_error(tmp_path):
    (tmp_path / "afile").write_text("not a directory")
    p = write_cfg(tmp_path / "c.yaml")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        r = subprocess.run(
            [*CLI, "run", str(p), "--no-progress", "--out", str(out)],
            env=ENV,
            capture_output=True,
            text=True,
        )
        assert r.returncode == EXIT_USAGE and "cannot be used as a run directory" in r.stderr
        assert "Traceback" not in r.stderr
    assert (tmp_path / "afile").read_text() == "not a directory"
