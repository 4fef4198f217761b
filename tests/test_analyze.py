"""Post-hoc analysis of stored snapshots: rows, resumability, summary, cusp, fits, CLI."""

import json
import math

import pytest
from tiny import tiny_raw

from eoslab.run import load_run, parse_config, run
from eoslab.run.analyze import analyze, fit_runs
from eoslab.store import RunStore, StoreError

# the shared tiny run, a little wider and deeper, snapshots every 10 steps
BASE = tiny_raw(
    name="an",
    data__n_train=90,
    model__width=10,
    model__depth=3,
    optimizer__lr=0.3,
    probe={"every": 5, "k": 3},
    snapshot_every=10,
    checkpoint_every=100,
)


def make_run(tmp_path, name="r", **data):
    raw = json.loads(json.dumps(BASE))
    raw["data"].update(data)
    run(parse_config(raw), tmp_path / name, progress=False)
    return tmp_path / name


def test_analyze_writes_rows_summary_and_cusp(tmp_path):
    path = make_run(tmp_path)
    summary = analyze(path, progress=False)
    store = RunStore.open(path)
    rows = store.rows("analysis")
    assert [r["step"] for r in rows] == [0, 10, 20, 30, 40]
    for r in rows:
        assert 0 < r["zeta"] <= 1 + 1e-12  # docs/methods.md §4
        assert r["EM2"] <= r["sum_C"] * (1 + 1e-12)  # Eq. 8
        assert r["lambda_G"] == pytest.approx(r["zeta"] * r["EM2"], rel=1e-12)
    # the summary skips the transient (first 10 steps)
    assert summary["steps"] == [10, 20, 30, 40] and summary["n_train"] == 90
    # counterfactual at t0: (V) is its own reference, so λ̃_1(G) = ζ Σ_ℓ C_ℓ
    r10 = rows[1]
    total = sum(r10[f"C_{ell}"] for ell in range(1, 4))
    assert summary["counterfactual_lambda_G"][0] == pytest.approx(r10["zeta"] * total, rel=1e-12)
    assert summary["peak_lambda_1"] == max(
        r["lambda_1"] for r in store.rows("probes") if r["step"] >= 10
    )
    cusp = store.read_result("cusp")
    assert len(cusp["s"]) == 61 and cusp["dL"][30] == 0.0
    assert cusp["step"] in store.snapshot_steps()
    # the tidy frame carries the analysis columns at the snapshot steps
    _, df = load_run(path)
    assert df.loc[df["step"] == 20, "lambda_G"].notna().all()
    assert df.loc[df["step"] == 5, "lambda_G"].isna().all()


def test_analyze_is_resumable(tmp_path):
    path = make_run(tmp_path)
    analyze(path, every=20, what=("gauss_newton",), progress=False)
    store = RunStore.open(path)
    rows = store.rows("analysis")
    # drop the last row, as if the analysis had been killed
    (path / "analysis.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    analyze(path, every=20, what=("gauss_newton",), progress=False)
    again = store.rows("analysis")
    assert [r["step"] for r in again] == [0, 20, 40]
    assert again[:2] == rows[:2]
    for a, b in zip(rows[2:], again[2:]):  # recomputed, possibly from other warm starts
        assert b["lambda_G"] == pytest.approx(a["lambda_G"], rel=1e-5)


def test_analyze_every_and_errors(tmp_path):
    path = make_run(tmp_path)
    analyze(path, every=20, what=("gauss_newton",), progress=False)
    assert [r["step"] for r in RunStore.open(path).rows("analysis")] == [0, 20, 40]
    other = make_run(tmp_path, name="r15")  # 40 is not a multiple of 15: kept as the last
    analyze(other, every=15, what=("gauss_newton",), progress=False)
    assert [r["step"] for r in RunStore.open(other).rows("analysis")] == [0, 30, 40]
    with pytest.raises(ValueError, match="every must be a positive integer"):
        analyze(path, every=0, progress=False)
    with pytest.raises(ValueError, match="unknown analysis"):
        analyze(path, what=("everything",), progress=False)
    raw = json.loads(json.dumps(BASE))
    raw["snapshot_every"] = None
    raw["stop"]["max_steps"] = 3
    run(parse_config(raw), tmp_path / "nosnap", progress=False)
    with pytest.raises(StoreError, match="no snapshots"):
        analyze(tmp_path / "nosnap", progress=False)


def test_fit_runs_across_data_sizes(tmp_path):
    paths = [make_run(tmp_path, f"n{n}", n_train=n) for n in (60, 90, 120)]
    for p in paths:
        analyze(p, what=("layerwise",), progress=False)
    fits = fit_runs(paths)
    assert [r["N"] for r in fits["runs"]] == [60, 90, 120]
    assert -1e-12 <= fits["peak_lambda_1_vs_N"]["r2"] <= 1 + 1e-12
    f = fits["peak_alignment_vs_N"]
    assert math.isfinite(f["a"]) and math.isfinite(f["b"])
    with pytest.raises(ValueError, match="at least two"):
        fit_runs(paths[:1])
    with pytest.raises(StoreError, match="eoslab analyze"):
        fit_runs([make_run(tmp_path, "fresh")])


def test_cli_analyze_and_fit(tmp_path, capsys):
    from eoslab.cli import main

    path = make_run(tmp_path)
    assert main(["analyze", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "peak_alignment" in out and "cusp scan" in out
    assert (path / "alignment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="unknown analysis"):
        main(["analyze", str(path), "--what", "nonsense"])
    with pytest.raises(SystemExit, match="eoslab analyze"):
        main(["fit", str(path), str(make_run(tmp_path, "other"))])


def test_convolutional_runs_get_the_gauss_newton_part(tmp_path):
    raw = json.loads(json.dumps(BASE))
    raw["data"]["flatten"] = False
    raw["model"] = {"name": "small_cnn", "widths": [2, 2], "init": "kaiming"}
    raw["stop"]["max_steps"] = 5
    run(parse_config(raw), tmp_path / "cnn", progress=False)
    summary = analyze(tmp_path / "cnn", what=("gauss_newton", "layerwise"), progress=False)
    rows = RunStore.open(tmp_path / "cnn").rows("analysis")
    assert [r["step"] for r in rows] == [0, 5]
    assert all(0 < r["zeta"] <= 1 + 1e-12 for r in rows)
    assert "C_1" not in rows[0] and "alignment" not in summary  # no layerwise part for CNNs


# ---------------------------------------------------------------- snapshots that fail


def _overwrite(store, step, theta, meta=None):
    """Replace the snapshot at ``step`` with ``theta`` (as the store writes it: safetensors)."""
    if meta is None:
        meta = store.load_snapshot(step)[1]
    store.save_snapshot(step, theta, meta)


def test_cli_analyze_records_bad_snapshots_goes_on_and_retries_them(tmp_path, capsys):
    from eoslab.cli import main

    path = make_run(tmp_path)
    store = RunStore.open(path)
    assert store.snapshot_steps() == [0, 10, 20, 30, 40]
    # own copies: the loaded tensors may map the files overwritten below
    good = {s: (lambda t, m: (t.clone(), m))(*store.load_snapshot(s)) for s in (10, 30, 40)}
    nan = good[30][0].clone()
    nan[7] = float("nan")
    _overwrite(store, 30, nan)  # NaN θ
    _overwrite(store, 40, good[40][0][:-5])  # θ of the wrong size
    store.snapshot_path(10).write_bytes(b"not a safetensors file")  # unreadable
    bad = {s: str(store.snapshot_path(s)) for s in (10, 30, 40)}

    assert main(["analyze", str(path), "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    for s, file in bad.items():  # one line per bad snapshot, naming its file and the reason
        (line,) = [ln for ln in lines if file in ln]
        assert {10: "unreadable", 30: "not finite", 40: "793 parameters"}[s] in line
    assert "3 failed" in out and "analysed 2 snapshots" in out
    # the good snapshots are analysed; the bad ones have no analysis row
    rows = store.rows("analysis")
    assert [r["step"] for r in rows] == [0, 20]
    assert all(0 < r["zeta"] <= 1 + 1e-12 for r in rows)
    # ... and are recorded in the run's results
    summary = store.read_result("analysis_summary")
    assert summary["n_failed"] == 3
    assert [(f["step"], f["file"], f["what"]) for f in summary["failures"]] == [
        (s, bad[s], "snapshot") for s in (10, 30, 40)
    ]
    assert "NaN" in summary["failures"][1]["error"]
    # the cusp scan passes over the failed snapshots closest to the peak (35: 30 and 40)
    cusp = store.read_result("cusp")
    assert cusp["peak_probe_step"] == 35 and cusp["step"] == 20
    assert cusp["skipped"] == [10, 30, 40] and math.isfinite(cusp["lambda_1"])
    # readers of the analysis stream still work
    _, df = load_run(path)
    assert df.loc[df["step"] == 20, "lambda_G"].notna().all()
    assert df.loc[df["step"] == 30, "lambda_G"].isna().all()

    # a second call retries the failed snapshots only: mend one, the others still fail
    _overwrite(store, 30, *good[30])
    assert main(["analyze", str(path), "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert bad[30] not in err and bad[10] in err and bad[40] in err
    again = store.rows("analysis")
    assert [r["step"] for r in again] == [0, 20, 30] and again[:2] == rows
    summary = store.read_result("analysis_summary")
    assert summary["n_failed"] == 2 and [f["step"] for f in summary["failures"]] == [10, 40]
    assert store.read_result("cusp")["step"] == 30

    # all mended: exit 0, every snapshot analysed once, no failures left
    _overwrite(store, 40, *good[40])
    _overwrite(store, 10, *good[10])
    assert main(["analyze", str(path), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "failed" not in out and "eoslab analyze" not in err
    assert sorted(r["step"] for r in store.rows("analysis")) == [0, 10, 20, 30, 40]
    summary = store.read_result("analysis_summary")
    assert summary["n_failed"] == 0 and summary["failures"] == []
    assert "skipped" not in store.read_result("cusp")


def test_a_solver_error_is_recorded_for_its_snapshot(tmp_path, monkeypatch):
    import torch

    import eoslab.probes.decomposition as dec

    path = make_run(tmp_path)
    store = RunStore.open(path)
    theta20 = store.load_snapshot(20)[0].to(torch.float64)
    real = dec.layerwise_stats

    def failing_at_20(problem, theta, **kw):
        if torch.equal(theta, theta20.to(theta)):
            raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge\nmore")
        return real(problem, theta, **kw)

    monkeypatch.setattr(dec, "layerwise_stats", failing_at_20)
    summary = analyze(path, every=20, what=("layerwise",), progress=False)
    assert [r["step"] for r in store.rows("analysis")] == [0, 40]
    (failure,) = summary["failures"]
    assert failure == dict(
        step=20,
        file=str(store.snapshot_path(20)),
        error="LinAlgError: linalg.eigh: The algorithm failed to converge",
        what="snapshot",
    )
    assert summary["n_failed"] == 1
    assert store.read_result("analysis_summary")["failures"] == [failure]
    monkeypatch.setattr(dec, "layerwise_stats", real)
    summary = analyze(path, every=20, what=("layerwise",), progress=False)
    assert summary["n_failed"] == 0 and summary["failures"] == []
    assert [r["step"] for r in store.rows("analysis")] == [0, 40, 20]


def test_diverged_run_with_default_what_analyses_the_finite_snapshots(tmp_path):
    import subprocess
    import sys

    import torch

    raw = json.loads(json.dumps(BASE))
    raw.update(snapshot_every=3)
    raw["optimizer"]["lr"] = 2.0
    raw["probe"]["every"] = 1000
    status = run(parse_config(raw), tmp_path / "div", progress=False)
    assert status["status"] == "diverged"
    store = RunStore.open(tmp_path / "div")
    steps = store.snapshot_steps()
    assert len(steps) >= 4
    # a diverged run's last snapshots: huge θ (the loss overflows), then NaN θ
    theta = store.load_snapshot(steps[-2])[0]
    _overwrite(store, steps[-2], theta * 1e300)
    _overwrite(store, steps[-1], torch.full_like(theta, float("nan")))
    proc = subprocess.run(
        [sys.executable, "-m", "eoslab", "analyze", str(tmp_path / "div"), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for s, reason in ((steps[-2], "the loss at θ is inf"), (steps[-1], "θ is not finite")):
        (line,) = [ln for ln in proc.stderr.splitlines() if str(store.snapshot_path(s)) in ln]
        assert reason in line
    assert [r["step"] for r in store.rows("analysis")] == steps[:-2]
    summary = store.read_result("analysis_summary")
    assert summary["n_failed"] == 2
    assert [f["step"] for f in summary["failures"]] == steps[-2:]
    assert store.read_result("cusp")["step"] in steps[:-2]


def test_summary_survives_nan_and_zero_alignment_rows(tmp_path):
    # a diverged run's last analysed rows: alignment NaN, or exactly 0 (a dead layer)
    from eoslab.run.analyze import summarize

    path = make_run(tmp_path)
    store = RunStore.open(path)
    row = dict(zeta=0.5, C_1=1.0, C_2=2.0, comp1_V=0.25, comp2_V=0.5)
    for step, v1 in ((10, 0.25), (20, 0.5), (30, math.nan), (40, 0.0)):
        store.append("analysis", dict(row, step=step, time=float(step), comp1_V=v1))
    store.close()
    out = summarize(store)
    assert out["peak_alignment"] == 0.5 and out["peak_alignment_step"] == 20
    cf = out["counterfactual_lambda_G"]
    assert cf[:2] == [0.5 * (1.0 + 2.0), 0.5 * (1.0 * 0.5 + 2.0)]
    assert math.isnan(cf[2]) and math.isnan(cf[3])
