"""One HTML page for a run or a sweep: every paper figure the runs support, tables, configs.

``eoslab report SWEEP_DIR`` (or a run directory) renders each figure of
:data:`eoslab.plots.papers.FIGURES` whose data the runs have (the others are listed with the
reason they were skipped), each table of :data:`~eoslab.plots.papers.TABLES`, a table of the
runs (status, overrides, final loss, peak λ_1) and the sweep file and run configs, into
``DIR/report/index.html`` with the figures beside it (PNG for the page, PDF for papers),
through :func:`eoslab.plots.papers.render` (the loop ``eoslab plot`` uses too). It reads
stored results only.
"""

from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path

import yaml

from eoslab.plots.papers import FIGURES, TABLES, load_runs, render

__all__ = ["markdown_table_to_html", "write_report"]


def markdown_table_to_html(md: str) -> str:
    """Convert the pipe tables (and plain lines) of a small Markdown text to HTML."""
    out, table = [], []

    def flush():
        if not table:
            return
        rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
        cells = [[html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows]
        head, body = cells[0], cells[1:]
        out.append(
            "<table><thead><tr>"
            + "".join(f"<th>{c}</th>" for c in head)
            + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
            + "</tbody></table>"
        )
        table.clear()

    for line in md.splitlines():
        if line.strip().startswith("|"):
            table.append(line)
            continue
        flush()
        text = line.strip()
        if text.startswith("#"):
            level = min(len(text) - len(text.lstrip("#")) + 2, 6)
            out.append(f"<h{level}>{html.escape(text.lstrip('#').strip())}</h{level}>")
        elif text:
            out.append(f"<p>{html.escape(text)}</p>")
    flush()
    return "\n".join(out)


def _fmt(x) -> str:
    if isinstance(x, float):
        return "–" if math.isnan(x) else f"{x:.5g}"
    return html.escape(str(x))


def _runs_table(runs) -> str:
    head = ["run", "status", "overrides", "steps", "final loss", "peak λ_1", "threshold"]
    rows = []
    for r in runs:
        losses = [s["loss"] for s in r.steps if isinstance(s.get("loss"), (int, float))]
        lam = [p["lambda_1"] for p in r.probes if isinstance(p.get("lambda_1"), (int, float))]
        _, thr = r.threshold_series()  # the integrator's own (2/τ for exponential Euler)
        thr = [x for x in thr if math.isfinite(x)]
        over = ", ".join(f"{k}={v}" for k, v in (r.overrides or {}).items())
        rows.append(
            [
                Path(r.path).name,
                r.status.get("status", "?"),
                over or r.config.get("name", ""),
                r.status.get("step", ""),
                losses[-1] if losses else math.nan,
                max(lam) if lam else math.nan,
                thr[-1] if thr else math.nan,
            ]
        )
    return (
        "<table><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
        + "</tbody></table>"
    )


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
figure{margin:1.5em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:0.9em;color:#444} pre{background:#f7f7f7;padding:0.7em;overflow-x:auto}
.skip{color:#777;font-size:0.9em}
"""


def write_report(path: str | Path, *, out: str | Path | None = None) -> Path:
    """Write the HTML report of the run or sweep directory ``path``; return the page's path.

    Args:
        path: a run directory or a sweep directory (``runs/<id>/``).
        out: folder for the page and its figures (default ``path/report``).

    Raises:
        ValueError / StoreError: when ``path`` holds no runs (from :func:`load_runs`).
    """
    path = Path(path)
    runs = load_runs(path)
    out = Path(out) if out is not None else path / "report"
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    parts = [
        f"<h1>eoslab report: {html.escape(path.name)}</h1>",
        f"<p>{len(runs)} runs, written {time.strftime('%Y-%m-%d %H:%M')} from the stored "
        "results only. Figures are PNG here and PDF beside them.</p>",
        "<h2>Runs</h2>",
        _runs_table(runs),
        "<h2>Figures</h2>",
    ]
    skipped = []
    # a figure or table that fails is reported, the page still appears
    for name, files in render(runs, list(FIGURES), fig_dir, keep_going=True):
        if isinstance(files, str):
            skipped.append((name, files))
            continue
        spec = FIGURES[name]
        png = next((f for f in files if str(f).endswith(".png")), None)
        if png is None:
            continue
        rel = Path(png).relative_to(out).as_posix()
        parts.append(
            f'<figure><img src="{html.escape(rel)}" alt="{html.escape(name)}">'
            f"<figcaption><b>{html.escape(name)}</b> ({html.escape(spec.paper)}): "
            f"{html.escape(spec.caption)}</figcaption></figure>"
        )
    if skipped:
        parts.append(
            "<p class='skip'>Not drawn for these runs: "
            + "; ".join(f"{html.escape(n)} ({html.escape(r)})" for n, r in skipped)
            + "</p>"
        )
    parts.append("<h2>Tables</h2>")
    for name, files in render(runs, list(TABLES), out, keep_going=True):
        if isinstance(files, str):
            parts.append(f"<p class='skip'>{html.escape(name)}: {html.escape(files)}</p>")
            continue
        md = files[0].read_text()
        parts.append(f"<h3>{html.escape(name)}</h3>" + markdown_table_to_html(md))
    parts.append("<h2>Configurations</h2>")
    sweep_file = path / "sweep.yaml"
    if sweep_file.exists():
        parts.append(f"<h3>sweep.yaml</h3><pre>{html.escape(sweep_file.read_text())}</pre>")
    for r in runs:
        text = yaml.safe_dump(r.config, sort_keys=False)
        parts.append(
            f"<details><summary>{html.escape(Path(r.path).name)} — "
            f"{html.escape(json.dumps(r.overrides or {}))}</summary><pre>{html.escape(text)}"
            "</pre></details>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>eoslab report: {html.escape(path.name)}</title><style>{_STYLE}</style>"
        "</head><body>" + "\n".join(parts) + "</body></html>"
    )
    target = out / "index.html"
    target.write_text(page)
    return target
