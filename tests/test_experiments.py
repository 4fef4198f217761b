"""Every experiment file under experiments/ expands into valid run configs."""

import importlib.util
from pathlib import Path

import pytest

from eoslab.run.sweep import expand, load_sweep, run_id

ROOT = Path(__file__).resolve().parents[1] / "experiments"
FILES = sorted(ROOT.rglob("*.yaml"))


def test_there_are_cpu_and_full_versions():
    """Every file is a cpu, medium (hours on a CPU) or full size; a medium one has a cpu twin."""
    names = {p.relative_to(ROOT).as_posix() for p in FILES}
    assert len(names) >= 10
    for p in names:
        assert p.endswith((".cpu.yaml", ".medium.yaml", ".full.yaml")), p
        if p.endswith(".medium.yaml"):
            assert p.replace(".medium.", ".cpu.") in names, p


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_experiment_expands_to_valid_distinct_runs(path):
    sweep, base_dir = load_sweep(path)
    runs = expand(sweep, base_dir)
    assert runs
    assert len({run_id(r) for _, r in runs}) == len(runs)


CPU_FILES = [p for p in FILES if p.name.endswith((".cpu.yaml", ".medium.yaml"))]


@pytest.mark.parametrize("path", CPU_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_cpu_experiment_builds_and_its_probe_fits(path):
    """Every distinct data × model of a cpu experiment builds, and its probe settings fit it.

    Catches what only the built problem can tell (e.g. probe.k below n_classes − 1, a model
    keyword its constructor rejects, an init scheme it does not know) before an hour-long sweep
    finds it. Data sets that are not installed here, or whose optional package (e.g. the
    sentence encoder of ``eoslab[text]``) is not, are skipped by name.
    """
    from eoslab.run.build import build, check_probe, integrator_from_config
    from eoslab.run.config import DataUnavailableError, parse_config

    sweep, base_dir = load_sweep(path)
    seen = set()
    missing = {}
    for _, raw in expand(sweep, base_dir):
        cfg = parse_config(raw)
        d = cfg.to_dict()
        key = repr((d["data"], d["model"], d["probe"], d["dtype"], d["loss"]))
        if key in seen:
            continue
        seen.add(key)
        integrator_from_config(cfg)
        try:
            built = build(cfg)
        except DataUnavailableError as err:  # the data set's files are not installed here
            missing[key] = f"{cfg.data.name}: {err}"
            continue
        except ImportError as err:  # an optional extra's package, named by the loader's error
            if not err.name or importlib.util.find_spec(err.name) is not None:
                raise  # a library import bug or a broken install, not a missing extra
            missing[key] = f"{cfg.data.name}: {err}"
            continue
        check_probe(cfg, built)
        assert built.problem.size > 0
    if missing and len(missing) == len(seen):
        reasons = "; ".join(sorted(set(missing.values())))
        pytest.skip(f"data or its package not installed: {reasons}")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_data_options_are_the_loaders_keywords(path):
    """Every data.options of a file binds to its loader's signature: no unknown keyword and
    no missing required argument (fails here, not after a GPU job has been queued)."""
    import inspect

    from eoslab.data import DATASETS
    from eoslab.run.config import parse_config

    sweep, base_dir = load_sweep(path)
    for _, raw in expand(sweep, base_dir):
        data = parse_config(raw).data
        signature = inspect.signature(DATASETS[data.name])
        params = signature.parameters
        assert not any(p.kind is p.VAR_KEYWORD for p in params.values()), data.name
        extra = {"dtype": None} if "dtype" in params else {}  # what build_data adds
        try:
            signature.bind(**data.options, **extra)
        except TypeError as err:  # an unknown keyword or a missing required argument
            pytest.fail(f"{data.name} options {data.options}: {err}")
