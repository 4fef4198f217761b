"""End to end on real runs: a sweep, its analysis, `eoslab plot` and `eoslab report`."""

import pytest
import yaml
from tiny import tiny_raw

from eoslab.cli import main
from eoslab.plots.papers import FIGURES, load_runs
from eoslab.report import markdown_table_to_html, write_report
from eoslab.run.analyze import analyze

# the shared tiny run with cross-entropy, a little wider and deeper (lr is swept)
BASE = tiny_raw(
    name="rep",
    loss="cross_entropy",
    data__n_train=90,
    model__width=10,
    model__depth=3,
    optimizer={"name": "gd"},
    probe={"every": 5, "k": 4},
    snapshot_every=10,
    checkpoint_every=100,
)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    (root / "base.yaml").write_text(yaml.safe_dump(BASE))
    (root / "sweep.yaml").write_text(
        yaml.safe_dump(dict(name="rep", base="base.yaml", grid={"optimizer.lr": [0.5, 1.0]}))
    )
    assert (
        main(["sweep", str(root / "sweep.yaml"), "--out", str(root / "out"), "--no-progress"]) == 0
    )
    run_dirs = sorted((root / "out" / "runs").iterdir())
    analyze(run_dirs[0], what=("gauss_newton", "layerwise"), progress=False)
    return root / "out"


def test_real_runs_feed_the_paper_figures(sweep_dir):
    runs = load_runs(sweep_dir)
    assert len(runs) == 2 and all(r.status["status"] == "completed" for r in runs)
    for name in ("l22_fig1", "l22_fig3", "cohen_sharpness", "l24_gauss_newton", "l24_factors"):
        assert FIGURES[name].needs(runs) is None, name


def test_report_page_has_figures_tables_and_configs(sweep_dir, tmp_path):
    page = write_report(sweep_dir, out=tmp_path / "report")
    text = page.read_text()
    assert text.startswith("<!doctype html>") and '<img src="figures/l22_fig1.png"' in text
    assert "sweep.yaml" in text and "optimizer.lr" in text and "Not drawn" in text
    assert (tmp_path / "report" / "figures" / "l22_fig1.pdf").read_bytes()[:4] == b"%PDF"


def test_cli_plot_and_report(sweep_dir, tmp_path, capsys):
    assert main(["plot", "--list"]) == 0
    assert "l22_fig1" in capsys.readouterr().out
    out = tmp_path / "figs"
    assert main(["plot", str(sweep_dir), "--figure", "l22_fig1", "--out", str(out)]) == 0
    assert (out / "l22_fig1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(sweep_dir), "--figure", "l22_fig6", "--out", str(out)]) == 0
    assert "skip l22_fig6" in capsys.readouterr().out  # no cusp scan in these runs
    with pytest.raises(SystemExit, match="unknown figure"):
        main(["plot", str(sweep_dir), "--figure", "fig99"])
    with pytest.raises(SystemExit, match="no runs"):
        main(["report", str(tmp_path / "nothing")])
    assert main(["report", str(sweep_dir), "--out", str(tmp_path / "r")]) == 0


def test_markdown_tables_become_html():
    md = "# T\n\n| a | b |\n|---|---|\n| 1 | <2> |\ntext"
    h = markdown_table_to_html(md)
    assert "<th>a</th>" in h and "<td>&lt;2&gt;</td>" in h and "<p>text</p>" in h
