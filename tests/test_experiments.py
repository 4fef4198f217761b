"""Every experiment file under experiments/ expands into valid run configs."""

from pathlib import Path

import pytest

from eoslab.run.sweep import expand, load_sweep, run_id

ROOT = Path(__file__).resolve().parents[1] / "experiments"
FILES = sorted(ROOT.rglob("*.yaml"))


def test_there_are_cpu_and_full_versions():
    names = {p.relative_to(ROOT).as_posix() for p in FILES}
    assert len(names) >= 10
    for p in names:
        if p.endswith(".full.yaml"):
            continue
        assert p.endswith(".cpu.yaml"), p


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_experiment_expands_to_valid_distinct_runs(path):
    sweep, base_dir = load_sweep(path)
    runs = expand(sweep, base_dir)
    assert runs
    assert len({run_id(r) for _, r in runs}) == len(runs)
