"""Sweeps: expansion, run ids, idempotent resume, failures and retries, Dask LocalCluster."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from eoslab.run import ConfigError
from eoslab.run.sweep import SweepConfig, expand, load_sweep, run_id, run_sweep
from eoslab.store import RunStore

BASE = {
    "name": "sw",
    "data": {"n_train": 60, "classes": [0, 1, 2]},
    "model": {"width": 8, "depth": 2, "activation": "tanh", "init": "pytorch_default"},
    "optimizer": {"name": "gd", "lr": 0.2},
    "probe": {"every": 10, "k": 3},
    "stop": {"max_steps": 30},
}


def write_sweep(tmp_path, **fields):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    sweep = dict(name="t", base="base.yaml", **fields)
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(sweep))
    return p


def test_expand_grid_times_zip_with_stable_distinct_ids(tmp_path):
    p = write_sweep(
        tmp_path,
        grid={"optimizer.lr": [0.1, 0.2], "model.init_seed": [0, 1]},
        zip={"data.n_train": [30, 60, 90], "stop.max_steps": [5, 6, 7]},
    )
    sweep, base_dir = load_sweep(p)
    runs = expand(sweep, base_dir)
    assert len(runs) == 2 * 2 * 3
    ids = [run_id(r) for _, r in runs]
    assert len(set(ids)) == 12 and ids == [run_id(r) for _, r in expand(sweep, base_dir)]
    # fields added to the config later leave existing ids alone while at their defaults
    resolved = runs[0][1]
    solver = {**resolved["optimizer"]["solver"], "method": "lobpcg"}
    changed = {**resolved, "optimizer": {**resolved["optimizer"], "solver": solver}}
    assert run_id(changed) != ids[0]

    over, resolved = runs[0]
    assert over == {
        "optimizer.lr": 0.1,
        "model.init_seed": 0,
        "data.n_train": 30,
        "stop.max_steps": 5,
    }
    assert resolved["optimizer"]["lr"] == 0.1 and resolved["model"]["width"] == 8


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"grid": {"optimizer.lr": [0.1, -1.0]}}, "optimizer.lr"),
        ({"zip": {"optimizer.lr": [0.1], "stop.max_steps": [1, 2]}}, "equal lengths"),
        ({"grdi": {}}, "grdi"),
        ({"executor": "slurm"}, "executor"),
        ({"grid": {"optimizer.lr": []}}, "empty"),
    ],
)
def test_bad_sweeps_name_the_problem(tmp_path, fields, match):
    p = write_sweep(tmp_path, **fields)
    with pytest.raises(ConfigError, match=match):
        sweep, base_dir = load_sweep(p)
        expand(sweep, base_dir)


def test_run_ids_issued_by_eoslab_0_1_are_kept():
    """Ids hashed before the solver sections existed (computed then, at 78ea9c7)."""
    from eoslab.run.config import parse_config

    base = {"model": {"width": 8, "depth": 2}}
    power = {"eig_method": "block_power", "eig_criterion": "eigenvalue_change", "eig_tol": 1e-3}
    cases = [
        (base, "73809159526d"),
        ({**base, "optimizer": {"name": "exp_euler", "lr": 0.5, "k": 3, **power}}, "588e482f6127"),
        ({**base, "probe": {"tol": 1e-3, "gn_tol": 1e-7, "gauss_newton": True}}, "1d4dc88830c4"),
    ]
    for raw, old_id in cases:
        assert run_id(parse_config(raw).to_dict()) == old_id


def test_serial_sweep_is_idempotent_and_records_failures(tmp_path):
    # the second zip entry names a class digits does not have: that run fails at build time
    p = write_sweep(
        tmp_path,
        grid={"optimizer.lr": [0.1, 0.2]},
        zip={"data.classes": [[0, 1, 2], [0, 1, 99]]},
        retries=1,
    )
    sweep, base_dir = load_sweep(p)
    state = run_sweep(sweep, tmp_path / "out", base_dir=base_dir, progress=False)
    statuses = sorted(e["status"] for e in state.values())
    assert statuses == ["completed", "completed", "failed", "failed"]
    failed = [e for e in state.values() if e["status"] == "failed"]
    assert all("99" in e["error"] and e["attempts"] == 1 for e in failed)
    done = {
        rid: (tmp_path / "out" / "runs" / rid / "steps.jsonl").stat().st_mtime_ns
        for rid, e in state.items()
        if e["status"] == "completed"
    }
    state = run_sweep(sweep, tmp_path / "out", base_dir=base_dir, progress=False)  # retry once
    assert sorted(e["attempts"] for e in state.values()) == [1, 1, 2, 2]
    for rid, mtime in done.items():  # finished runs were not touched
        assert (tmp_path / "out" / "runs" / rid / "steps.jsonl").stat().st_mtime_ns == mtime
    state = run_sweep(sweep, tmp_path / "out", base_dir=base_dir, progress=False)
    assert sorted(e["attempts"] for e in state.values()) == [1, 1, 2, 2]  # retries used up
    saved = json.loads((tmp_path / "out" / "sweep_state.json").read_text())
    assert saved == state


def _metrics(path):
    store = RunStore.open(path)
    return [{k: v for k, v in r.items() if k != "wall"} for r in store.rows("steps")], store.rows(
        "probes"
    )


def test_dask_localcluster_sweep_equals_serial(tmp_path):
    pytest.importorskip("distributed")
    p = write_sweep(tmp_path, grid={"optimizer.lr": [0.1, 0.2, 0.3]}, n_workers=2)
    sweep, base_dir = load_sweep(p)
    serial = run_sweep(sweep, tmp_path / "s", base_dir=base_dir, progress=False)
    dask = run_sweep(sweep, tmp_path / "d", base_dir=base_dir, executor="dask", progress=False)
    assert serial.keys() == dask.keys()
    for rid in serial:
        assert dask[rid]["status"] == "completed"
        a, b = _metrics(tmp_path / "s" / "runs" / rid), _metrics(tmp_path / "d" / "runs" / rid)
        assert a == b  # same config, one thread each: the same numbers


def test_killed_dask_sweep_restarts_and_finishes(tmp_path):
    pytest.importorskip("distributed")
    raw = json.loads(json.dumps(BASE))
    raw["stop"]["max_steps"] = 600
    raw["checkpoint_every"] = 50
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(raw))
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        yaml.safe_dump(
            dict(
                name="k",
                base="base.yaml",
                executor="dask",
                n_workers=2,
                grid={"optimizer.lr": [0.05, 0.1, 0.15, 0.2]},
            )
        )
    )
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "eoslab",
        "sweep",
        str(sweep_file),
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        steps = list((out / "runs").glob("*/steps.jsonl")) if (out / "runs").exists() else []
        if any(p.stat().st_size > 20_000 for p in steps) or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the client, the scheduler and every worker
    proc.wait()
    sweep, base_dir = load_sweep(sweep_file)
    state = run_sweep(sweep, out, base_dir=base_dir, progress=False)
    assert all(e["status"] == "completed" for e in state.values()) and len(state) == 4
    ref = run_sweep(sweep, tmp_path / "ref", base_dir=base_dir, executor="serial", progress=False)
    for rid in ref:
        a, b = _metrics(tmp_path / "ref" / "runs" / rid), _metrics(out / "runs" / rid)
        assert a == b


def test_cli_sweep_dry_run_and_run(tmp_path, capsys):
    from eoslab.cli import main

    p = write_sweep(tmp_path, grid={"optimizer.lr": [0.1, 0.2]})
    assert main(["sweep", str(p), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "optimizer.lr" in lines[0]
    assert main(["sweep", str(p), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert "'completed': 2" in capsys.readouterr().out
    assert SweepConfig().executor == "serial"
