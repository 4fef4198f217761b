"""The paper-figure registry (eoslab.plots.papers.registry): decorators, needs, one render loop,
and Table 2's fits taken from eoslab.fits (so ``l24_table2`` and ``eoslab fit`` agree)."""

import json

import numpy as np
import pytest

from eoslab.cli import main
from eoslab.plots import papers
from eoslab.plots.papers import (
    FIGURES,
    TABLES,
    FigureSpec,
    Missing,
    TableSpec,
    figure,
    load_runs,
    needs,
    render,
    render_all,
    table,
)
from eoslab.store import RunStore


def write_run(path, config, *, steps=(), probes=(), summary=None):
    store = RunStore.create(path, config, {})
    for stream, rows in (("steps", steps), ("probes", probes)):
        for row in rows:
            store.append(stream, row)
    if summary is not None:
        store.write_result("analysis_summary", summary)
    store.set_status("completed", step=0)
    store.close()
    return path


def config(n_train, lr=0.1):
    return {
        "name": f"n{n_train}",
        "loss": "mse",
        "data": {"name": "dice", "n_train": n_train},
        "model": {"name": "mlp", "width": 8, "depth": 3},
        "optimizer": {"name": "gd", "lr": lr},
    }


@pytest.fixture(scope="module")
def gd_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    for lr in (0.05, 0.1):
        steps = [
            dict(step=s, time=s * lr, lr=lr, loss=1 / (1 + s), threshold=2 / lr) for s in range(30)
        ]
        probes = [
            dict(step=s, time=s * lr, lr=lr, lambda_1=min(2 / lr, 1 + s), threshold=2 / lr)
            for s in range(0, 30, 5)
        ]
        write_run(root / f"gd_{lr}", config(100, lr), steps=steps, probes=probes)
    write_run(root / "bare", config(100), steps=[dict(step=0, time=0.0, lr=0.1, loss=1.0)])
    return load_runs(root)


def test_registry_order_and_modules():
    assert list(FIGURES) == [
        "l22_fig1",
        "l22_fig2",
        "l22_fig3",
        "l22_fig4",
        "l22_fig5",
        "l22_fig6",
        "cohen_sharpness",
        "cohen_flow_vs_gd",
        "cohen_momentum",
        "cohen_studies",
        "l24_gauss_newton",
        "l24_layerwise",
        "l24_factors",
        "l24_ratios",
        "l24_counterfactual",
    ]
    assert list(TABLES) == ["l22_table1", "l24_table2"]
    for name, spec in {**FIGURES, **TABLES}.items():
        module = {"l22": "lowell2022", "coh": "cohen2021", "l24": "lowell2024"}[name[:3]]
        assert spec.body.__module__ == f"eoslab.plots.papers.{module}"
        assert getattr(getattr(papers, module), name) is spec  # the decorator returns the spec
    assert TABLES["l22_table1"].options == ("min_rho", "min_time")
    assert TABLES["l24_table2"].options == ()


def test_draw_returns_the_figure_and_needs_raises_missing(gd_runs):
    spec = FIGURES["cohen_sharpness"]
    fig = spec.draw(gd_runs)
    ax = fig.axes[0]
    # GD: each run's threshold 2/η as a horizontal dashed line, t = Σ η
    flat = sorted(float(ln.get_ydata()[0]) for ln in ax.get_lines() if ln.get_linestyle() == "--")
    assert flat == pytest.approx([20.0, 40.0])
    assert fig.axes[1].get_xlabel() == "flow time $t = \\sum \\eta$"
    bare = [r for r in gd_runs if r.name == "bare"]
    assert isinstance(spec.needs(bare), str)
    with pytest.raises(Missing, match="no run has λ_1"):
        spec.draw(bare)
    assert issubclass(Missing, ValueError)


def test_figure_and_table_decorators_register_and_refuse_duplicates(gd_runs, tmp_path):
    try:

        @figure(
            "test_fig",
            paper="Test 2024",
            caption="λ_1 of one run",
            needs=needs(lambda runs: [r for r in runs if r.probes], "no run has probes"),
        )
        def test_fig(sel):
            """Test 2024: the first run's λ_1."""
            from matplotlib.figure import Figure

            fig = Figure()
            fig.add_subplot().plot([p["lambda_1"] for p in sel[0].probes])
            return fig

        @table("test_table", paper="Test 2024", caption="runs", needs=needs(list, "no runs"))
        def test_table(sel, *, sep=","):
            """Test 2024: the run names."""
            return sep.join(r.name for r in sel) + "\n"

        assert isinstance(test_fig, FigureSpec) and FIGURES["test_fig"] is test_fig
        assert isinstance(test_table, TableSpec) and test_table.options == ("sep",)
        assert test_fig.func.__doc__.startswith("Test 2024")
        with pytest.raises(ValueError, match="registered twice"):
            figure("test_fig", paper="", caption="", needs=list)(lambda sel: None)
        with pytest.raises(ValueError, match="registered twice"):
            table("l22_table1", paper="", caption="", needs=list)(lambda sel: "")
        done = render(gd_runs, ["test_table", "test_fig"], tmp_path, {"sep": ";"})
        assert [name for name, _ in done] == ["test_table", "test_fig"]
        assert (tmp_path / "test_table.md").read_text() == "bare;gd_0.05;gd_0.1\n"
        assert [f.name for f in done[1][1]] == ["test_fig.png", "test_fig.pdf"]
    finally:
        FIGURES.pop("test_fig", None)
        TABLES.pop("test_table", None)


def test_render_skips_orders_and_keeps_going(gd_runs, tmp_path):
    names = ["l24_counterfactual", "cohen_sharpness", "l22_table1"]
    done = render(gd_runs, names, tmp_path / "out")
    assert [n for n, _ in done] == names
    assert isinstance(done[0][1], str) and isinstance(done[2][1], str)
    assert [f.name for f in done[1][1]] == ["cohen_sharpness.png", "cohen_sharpness.pdf"]
    assert render_all(gd_runs, tmp_path / "out", names) == dict(done)
    with pytest.raises(KeyError, match="unknown figure or table"):
        render(gd_runs, ["cohen_sharpness", "nope"], tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()  # nothing drawn before the check
    # a failing entry: raised, or reported with keep_going
    try:

        @figure("test_broken", paper="Test", caption="fails", needs=needs(list, "no runs"))
        def test_broken(sel):
            """Test: always fails."""
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            render(gd_runs, ["test_broken"], tmp_path)
        done = render(gd_runs, ["test_broken", "cohen_sharpness"], tmp_path, keep_going=True)
        assert done[0] == ("test_broken", "failed: RuntimeError: boom")
        assert isinstance(done[1][1], list)
    finally:
        FIGURES.pop("test_broken", None)


# ---------------------------------------------------------------- Table 2 and `eoslab fit`
@pytest.mark.parametrize(
    "alignment",
    [
        [0.25, 0.25, 0.25],  # degenerate: every value equal, SS_tot = 0 in log–log space
        [0.1, 0.1 * 2**0.3 * 1.02, 0.1 * 4**0.3 * 0.99],
    ],
)
def test_table2_and_eoslab_fit_agree(tmp_path, capsys, alignment):
    dirs = []
    for n, align in zip((100, 200, 400), alignment):
        summary = dict(n_train=n, peak_lambda_1=0.05 * n + 3, peak_alignment=align)
        dirs.append(str(write_run(tmp_path / f"n{n}", config(n), summary=summary)))
    text = TABLES["l24_table2"](load_runs(dirs))
    row = next(x for x in text.splitlines() if "peak alignment (V)" in x)
    _, data, crit, _, a, b, r2, n_runs, n_range, _ = (c.strip() for c in row.split("|"))
    assert (data, crit, n_runs, n_range) == ("dice", "MSE", "3", "100–400")
    out = tmp_path / "fit.json"
    assert main(["fit", *dirs, "--out", str(out)]) == 0
    fit = json.loads(out.read_text())["peak_alignment_vs_N"]
    assert (a, b, r2) == (f"{fit['a']:.4g}", f"{fit['b']:.3f}", f"{fit['r2']:.3f}")
    assert f"(R² = {fit['r2']:.4f})" in capsys.readouterr().out
    if len(set(alignment)) == 1:  # eoslab.fits: R² = 1 for a flat fit (no longer "—")
        assert (a, b, r2) == ("0.25", "0.000", "1.000") and fit["r2"] == 1.0
    else:
        assert 0.9 < fit["r2"] < 1.0 and fit["b"] == pytest.approx(0.3, abs=0.05)
    assert np.isfinite(fit["a"])
