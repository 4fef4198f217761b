"""Exponential-Euler runs in the paper figures: drawn in their own units.

A real exponential-Euler run (``eoslab.run.run``, then ``eoslab analyze``) records the step τ as
``lr``/``tau``, the flow time Σ τ as ``time`` and the integrator's threshold 2/τ per step;
its configured ``lr`` is a dimensionless η < 2. Its figures must use t = Σ τ and draw no line
at 2/η or η; the step-0 probe, which records 2/η (no τ taken yet), must not be drawn as a
threshold or a ρ.
"""

import dataclasses
import math

import numpy as np
import pytest

from eoslab.plots.papers import FIGURES, load_runs, render
from eoslab.run import run
from eoslab.run.analyze import analyze
from eoslab.run.config import parse_config

ETA = 0.5
CONFIG = {
    "name": "tiny_exp_euler",
    "data": {"n_train": 60, "classes": [0, 1, 2]},
    "model": {"width": 6, "depth": 3, "activation": "tanh", "init": "pytorch_default"},
    "optimizer": {"name": "exp_euler", "lr": ETA},
    "probe": {"every": 5, "k": 3, "loss_changes": False},
    "snapshot_every": 5,
    "stop": {"max_steps": 12},
}
# the figures this run feeds (not: cohen_flow_vs_gd, which needs a flow and a GD run,
# cohen_momentum and l22_fig6, a cusp scan)
DRAWN = [
    "l22_fig1",
    "l22_fig2",
    "l22_fig3",
    "l22_fig4",
    "l22_fig5",
    "cohen_sharpness",
    "cohen_studies",
    "l24_gauss_newton",
    "l24_layerwise",
    "l24_factors",
    "l24_ratios",
    "l24_counterfactual",
]


@pytest.fixture(scope="module")
def ee(tmp_path_factory):
    path = tmp_path_factory.mktemp("exp_euler") / "run"
    assert run(parse_config(CONFIG), path, progress=False)["status"] == "completed"
    analyze(path, what=("gauss_newton", "layerwise"), progress=False)
    (r,) = load_runs(path)
    return r


def flow_time(r):
    """{step: Σ_{i<step} τ_i} from the step rows' τ, and the final time."""
    steps = sorted(r.steps, key=lambda s: s["step"])
    tau = np.array([s["tau"] for s in steps])
    times = np.concatenate([[0.0], np.cumsum(tau)])
    return {s["step"]: times[i] for i, s in enumerate(steps)} | {len(steps): times[-1]}


def test_the_rows_record_tau_and_every_probe_records_the_step_taken_from_it(ee):
    steps = sorted(ee.steps, key=lambda s: s["step"])
    t_of = flow_time(ee)
    for s in steps:
        assert s["lr"] == s["tau"] and s["threshold"] == pytest.approx(2 / s["tau"])
        assert s["time"] == pytest.approx(t_of[s["step"]], rel=1e-12, abs=0)
    assert all(s["tau"] != ETA for s in steps)
    # every probe at θ_s records τ_s, the step taken from θ_s, and 2/τ_s (step 0 included)
    tau = {s["step"]: s["tau"] for s in steps}
    assert ee.is_exp_euler and ee.ratio_probes == ee.probes
    for p in ee.probes:
        if p["step"] in tau:  # the final probe (no step after it) keeps the last τ
            assert p["lr"] == tau[p["step"]]
        assert p["threshold"] == pytest.approx(2 / p["lr"]) and p["lr"] != ETA
    old = dict(ee.probes[0], lr=ETA, threshold=2 / ETA)  # as eoslab 0.1 recorded step 0
    assert dataclasses.replace(ee, probes=[old, *ee.probes[1:]]).ratio_probes == ee.probes[1:]
    t, thr = ee.threshold_series()  # the integrator's own 2/τ per step
    assert np.allclose(thr, [2 / s["tau"] for s in steps], rtol=1e-12)
    assert np.allclose(t, [t_of[s["step"]] for s in steps], rtol=1e-12, atol=0)


def horizontal_at(line, value):
    y = np.asarray(line.get_ydata(), dtype=float)
    return len(y) > 0 and np.all(np.isfinite(y)) and np.allclose(y, value, rtol=1e-9)


@pytest.mark.parametrize("name", DRAWN)
def test_exp_euler_figures_use_flow_time_sum_tau_and_no_eta_lines(ee, name, tmp_path):
    spec = FIGURES[name]
    assert spec.needs([ee]) is None
    fig = spec.draw([ee])
    times = set(flow_time(ee).values())
    n_time_lines = 0
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        legend = ax.get_legend()
        texts = [t.get_text() for t in legend.get_texts()] if legend else []
        # no threshold "2/η" without its 2/τ (run labels "η=0.5" name the configured η)
        assert not any("2/η" in t and "τ" not in t for t in texts), texts
        on_time_axis = ax.get_xlabel().startswith("flow time")
        if on_time_axis:
            assert ax.get_xlabel() == "flow time $t = \\sum \\tau$"
        for line in ax.get_lines():
            # no horizontal line at 2/η or η of the dimensionless η
            assert not horizontal_at(line, 2 / ETA), (name, line.get_label())
            assert not horizontal_at(line, ETA), (name, line.get_label())
            x = np.asarray(line.get_xdata(), dtype=float)
            if on_time_axis and len(x) > 2:  # a series against t (axhline: 2 points in [0, 1])
                n_time_lines += 1
                for v in x:
                    assert any(math.isclose(v, t, rel_tol=1e-12, abs_tol=0) for t in times), v
    assert n_time_lines > 0
    # and the same figure writes its files
    files = spec([ee], tmp_path / name)
    assert [f.suffix for f in files] == [".png", ".pdf"] and files[0].stat().st_size > 1000


def test_sharpness_threshold_is_two_over_tau_per_step(ee):
    fig = FIGURES["cohen_sharpness"].draw([ee])
    ax = fig.axes[0]
    steps = sorted(ee.steps, key=lambda s: s["step"])
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1
    t_of = flow_time(ee)
    assert np.allclose(dashed[0].get_xdata(), [t_of[s["step"]] for s in steps], rtol=1e-12)
    assert np.allclose(dashed[0].get_ydata(), [2 / s["tau"] for s in steps], rtol=1e-12)
    (lam,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    probe_steps = sorted(p["step"] for p in ee.probes)
    assert np.allclose(lam.get_xdata(), [t_of[s] for s in probe_steps], rtol=1e-12, atol=0)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "2/τ per step (exponential Euler's threshold)" in legend


def test_rho_is_drawn_at_every_probe_and_reads_tau(ee):
    fig = FIGURES["l22_fig1"].draw([ee])
    ax = fig.axes[0]
    t_of = flow_time(ee)
    later = sorted(p["step"] for p in ee.probes)  # step 0 included: it records τ_0
    (rho,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    assert np.allclose(rho.get_xdata(), [t_of[s] for s in later], rtol=1e-12, atol=0)
    assert ax.get_ylabel() == "$\\rho = \\tau\\lambda / 2$"


def test_counterfactual_draws_no_eta_and_render_writes_the_figures(ee, tmp_path):
    fig = FIGURES["l24_counterfactual"].draw([ee])
    for ax in fig.axes:
        assert not [ln for ln in ax.get_lines() if ln.get_linestyle() == "-."]
    done = dict(render([ee], DRAWN, tmp_path))
    assert all(isinstance(v, list) and v[0].exists() for v in done.values()), done
