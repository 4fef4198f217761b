"""The ``eoslab`` command line.

Exit codes (:data:`EXIT_CODES`, also printed by ``eoslab --help``): 0 a run completed (or a
command succeeded); 1 a run or some analysed snapshot failed; 2 a usage or configuration
error, or an unusable or locked run directory — nothing was run; 3 the run diverged;
130 interrupted by Ctrl-C (SIGINT), 143 stopped by SIGTERM — a checkpoint was written and
``eoslab run --resume --out RUN`` continues it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention
EXIT_TERMINATED = 143  # 128 + SIGTERM

#: Exit status of ``eoslab run`` by the run's final status.
RUN_EXIT = {
    "completed": EXIT_OK,
    "failed": EXIT_FAILED,
    "diverged": EXIT_DIVERGED,
    "interrupted": EXIT_INTERRUPTED,
}

EXIT_CODES = f"""exit codes:
  {EXIT_OK}    completed (or the command succeeded)
  {EXIT_FAILED}    the run failed, or some analysed snapshot failed
  {EXIT_USAGE}    usage or configuration error, unusable or locked run directory: nothing ran
  {EXIT_DIVERGED}    the run diverged (everything recorded is kept)
  {EXIT_INTERRUPTED}  interrupted by Ctrl-C (SIGINT), after writing a checkpoint
  {EXIT_TERMINATED}  stopped by SIGTERM, after writing a checkpoint
       (eoslab run --resume --out RUN continues an interrupted run)"""


class CLIError(SystemExit):
    """A user error: one line on stderr (no traceback) and exit status ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _run(args: argparse.Namespace) -> int:
    """``eoslab run CONFIG``: carry out a run, then write its figure and print a summary."""
    from eoslab.run import ConfigError, load_config, run
    from eoslab.store import StoreError

    out = None
    try:
        cfg = None
        if args.config is not None:
            cfg = load_config(args.config, args.set)
        elif not args.resume:
            raise ConfigError("give a CONFIG file (or --resume with --out of an existing run)")
        if args.resume and args.overwrite:
            raise ConfigError("--resume continues a run and --overwrite replaces it: give one")
        if cfg is None and args.out is None:
            raise ConfigError("--resume without a CONFIG needs --out RUN")
        if cfg is None and args.set:
            raise ConfigError(
                "--set changes a config, and --resume without a CONFIG continues the saved one "
                "unchanged: give the CONFIG too (it must then equal the saved one)"
            )
        out = Path(args.out or f"runs/{cfg.name}")
        status = run(
            cfg,
            out,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            tensorboard=True if getattr(args, "tensorboard", False) else None,
        )
    except (ConfigError, StoreError) as err:
        raise CLIError(f"eoslab run: {err}") from None
    except KeyboardInterrupt:
        print(
            f"eoslab run: aborted; eoslab run --resume --out {out} continues from the last "
            "checkpoint",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if status["status"] == "interrupted":
        print(
            f"eoslab run: {status['reason']}\n  continue with: eoslab run --resume --out {out}",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if status.get("signal") == "SIGTERM" else EXIT_INTERRUPTED
    files = _figure(out)
    print(_summary(out))
    if files:
        print(f"figure: {', '.join(str(f) for f in files)}")
    return RUN_EXIT.get(status["status"], EXIT_FAILED)


def _figure(out: Path) -> list[Path]:
    """Write RUN/sharpness.{png,pdf} when the run has probes."""
    from eoslab.plots import plot_sharpness
    from eoslab.run import load_run

    cfg, df = load_run(out)
    if "lambda_1" not in df.columns:
        return []
    return plot_sharpness(df, out / "sharpness", title=f"{cfg.name}: {_describe(cfg)}")


def _describe(cfg) -> str:
    opt = cfg.optimizer
    extra = f", β={opt.momentum}" if opt.name in ("heavy_ball", "nesterov") else ""
    return f"{cfg.model.name} on {cfg.data.name}, {cfg.loss}, {opt.name} η={opt.lr:g}{extra}"


def _summary(path: Path) -> str:
    """A few lines describing a run directory (status, loss, sharpness, files)."""
    import math

    from eoslab.run import load_run
    from eoslab.store import RunStore

    cfg, df = load_run(path)
    st = df.attrs["status"]
    store = RunStore.open(path)
    lines = [
        f"run {path}: {cfg.name} — {_describe(cfg)}",
        f"  status   {st['status']}" + (f" ({st['reason']})" if st.get("reason") else ""),
    ]
    if len(df) and "loss" in df.columns:
        last = df[df["loss"].notna()].iloc[-1]
        lines.append(
            f"  steps    {int(st['step'])}, flow time {float(last['time']):.4g}, "
            f"last loss {float(last['loss']):.5g}"
        )
    if "lambda_1" in df.columns:
        pr = df[df["lambda_1"].notna()]
        thr_col = "probe_threshold" if "probe_threshold" in df.columns else "threshold"
        lam = pr["lambda_1"].astype(float)
        i_max = int(lam.values.argmax())
        thr = float(pr[thr_col].iloc[-1]) if thr_col in pr else math.nan
        lines.append(
            f"  λ_1      last {lam.iloc[-1]:.5g}, max {lam.iloc[i_max]:.5g} at step "
            f"{int(pr['step'].iloc[i_max])}; threshold {thr:.5g} "
            f"(λ_1/threshold last {lam.iloc[-1] / thr:.3f})"
        )
        if "accuracy" in pr.columns:
            acc = f"  accuracy train {float(pr['accuracy'].iloc[-1]):.4f}"
            if "test_accuracy" in pr.columns:
                acc += f", test {float(pr['test_accuracy'].iloc[-1]):.4f}"
            lines.append(acc)
        lines.append(f"  probes   {len(pr)} (k = {cfg.probe.k})")
    lines.append(f"  files    {len(store.snapshot_steps())} snapshots; status.json, metrics .jsonl")
    return "\n".join(lines)


def _analyze(args: argparse.Namespace) -> int:
    """``eoslab analyze RUN``: Gauss–Newton / layerwise analysis of the stored snapshots.

    A snapshot that cannot be analysed (unreadable, wrong size, non-finite θ, a solver error)
    is one line on stderr naming its file; the others are analysed, the failures recorded in
    ``results/analysis_summary.json`` (retried by the next call), and the exit status is
    ``EXIT_FAILED`` (1) if any failed.
    """
    from eoslab.plots import plot_alignment
    from eoslab.run import ConfigError
    from eoslab.run.analyze import analyze
    from eoslab.store import RunStore, StoreError

    what = tuple(w.strip() for w in args.what.split(",") if w.strip())
    try:
        summary = analyze(
            args.run,
            every=args.every,
            what=what,
            s_max=args.s_max,
            chunk_size=args.chunk_size,
            progress=not args.no_progress,
        )
    except (ConfigError, StoreError, ValueError) as err:
        raise CLIError(f"eoslab analyze: {err}") from None
    rows = RunStore.open(args.run).rows("analysis")
    files = plot_alignment(rows, Path(args.run) / "alignment", summary=summary) if rows else []
    failures = summary.get("failures", [])
    failed = f"; {len(failures)} failed (listed below)" if failures else ""
    print(f"analysed {summary['n_analysed']} snapshots of {args.run}{failed}")
    for key in ("peak_lambda_1", "peak_lambda_G", "peak_zeta", "peak_alignment"):
        if key in summary:
            print(f"  {key:<16} {summary[key]:.6g} at step {summary[key + '_step']}")
    if "cusp" in summary and not summary["cusp"].get("failed"):
        c = summary["cusp"]
        print(f"  cusp scan at step {c['step']} (λ_1 = {c['lambda_1']:.6g}): results/cusp.json")
    if files:
        print(f"figure: {', '.join(str(f) for f in files)}")
    for f in failures:
        what = "cusp scan failed" if f.get("what") == "cusp" else "snapshot not analysed"
        print(f"eoslab analyze: {f['file'] or args.run}: {what}: {f['error']}", file=sys.stderr)
    if failures:
        print(
            f"eoslab analyze: {len(failures)} failed; `eoslab analyze {args.run}` retries them",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _fit(args: argparse.Namespace) -> int:
    """``eoslab fit RUN RUN …``: peak λ_1 and peak alignment against N across runs."""
    import json as _json

    from eoslab.run.analyze import fit_runs
    from eoslab.store import StoreError

    try:
        fits = fit_runs(args.runs)
    except (StoreError, ValueError) as err:
        raise CLIError(f"eoslab fit: {err}") from None
    for r in fits["runs"]:
        print(f"  N={r['N']}: peak λ_1 {r['peak_lambda_1']}, peak alignment {r['peak_alignment']}")
    if "peak_lambda_1_vs_N" in fits:
        f = fits["peak_lambda_1_vs_N"]
        print(f"peak λ_1 = {f['slope']:.4g}·N + {f['intercept']:.4g}  (R² = {f['r2']:.4f})")
    if "peak_alignment_vs_N" in fits:
        f = fits["peak_alignment_vs_N"]
        print(f"peak alignment = {f['a']:.4g}·N^{f['b']:.4f}  (R² = {f['r2']:.4f})")
    if args.out:
        Path(args.out).write_text(_json.dumps(fits, indent=1))
        print(f"wrote {args.out}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    """``eoslab sweep SWEEP.yaml``: expand and run a sweep (idempotent, resumable)."""
    from eoslab.run import ConfigError
    from eoslab.run.sweep import expand, load_sweep, run_id, run_sweep

    try:
        sweep, base_dir = load_sweep(args.sweep)
        out = Path(args.out or f"sweeps/{sweep.name}")
        if args.dry_run:
            for over, resolved in expand(sweep, base_dir):
                print(f"{run_id(resolved)}  {over}")
            return 0
        state = run_sweep(
            sweep,
            out,
            base_dir=base_dir,
            executor=args.executor,
            scheduler=args.scheduler,
            progress=not args.no_progress,
        )
    except ConfigError as err:
        raise CLIError(f"eoslab sweep: {err}") from None
    counts: dict[str, int] = {}
    for entry in state.values():
        counts[str(entry["status"])] = counts.get(str(entry["status"]), 0) + 1
    print(f"sweep {sweep.name}: {len(state)} runs in {out / 'runs'}: {counts}")
    for rid, entry in state.items():
        if entry["status"] == "failed":
            tries = entry["attempts"]
            print(f"  failed {rid} {entry['overrides']} (attempts {tries}): {entry['error']}")
    if any(e["status"] == "interrupted" for e in state.values()):
        print(f"interrupted: eoslab sweep {args.sweep} continues the sweep", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if all(e["status"] != "failed" for e in state.values()) else EXIT_FAILED


def _plot(args: argparse.Namespace) -> int:
    """``eoslab plot PATH``: the papers' figures and tables from stored runs."""
    from eoslab.plots.papers import FIGURES, TABLES, load_runs, render
    from eoslab.store import StoreError

    if args.list:
        for name, spec in {**FIGURES, **TABLES}.items():
            print(f"{name:<22} {spec.paper}: {spec.caption}")
        return 0
    if args.path is None:
        raise CLIError("eoslab plot: give a run or sweep directory (or --list)")
    try:
        runs = load_runs(args.path)
    except (StoreError, ValueError) as err:
        raise CLIError(f"eoslab plot: {err}") from None
    names = args.figure or [*FIGURES, *TABLES]
    unknown = [n for n in names if n not in FIGURES and n not in TABLES]
    if unknown:
        raise CLIError(f"eoslab plot: unknown figure {unknown}; see eoslab plot --list")
    options = _table_options(args.kw, names, TABLES)
    out = Path(args.out or Path(args.path) / "figures")
    try:
        done = render(runs, names, out, options)
    except ValueError as err:
        raise CLIError(f"eoslab plot: {err}") from None
    for name, result in done:
        if isinstance(result, str):
            print(f"  skip {name}: {result}")
        else:
            print(f"  {name}: {', '.join(str(f) for f in result)}")
    return 0


def _table_options(pairs: list[str], names: list[str], tables) -> dict:
    """``--kw KEY=VALUE`` options of ``eoslab plot`` for the one table named by ``--figure``.

    Values: ``none`` or ``null`` → None, else an int (``3``) or a float (``0.5``, ``1e-2``);
    anything else, or an empty value, is an error naming the option.
    """
    if not pairs:
        return {}
    if len(names) != 1 or names[0] not in tables:
        raise CLIError(
            "eoslab plot: --kw options go to one table; name it with --figure (e.g. "
            "--figure l22_table1 --kw min_rho=none --kw min_time=3)"
        )
    known = list(tables[names[0]].options)
    options = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CLIError(f"eoslab plot: --kw expects KEY=VALUE, got {pair!r}")
        if key not in known:
            have = ", ".join(known) or "none"
            raise CLIError(f"eoslab plot: {names[0]} has no option {key!r}; its options: {have}")
        options[key] = _number_or_none(key, raw)
    return options


def _number_or_none(key: str, raw: str):
    """``none``/``null`` → None, else int or float; SystemExit naming ``key`` otherwise."""
    text = raw.strip()
    if text.lower() in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    raise CLIError(f"eoslab plot: --kw {key} needs a number or none, got {raw!r}")


def _report(args: argparse.Namespace) -> int:
    """``eoslab report DIR``: one HTML page with figures, tables and configs."""
    from eoslab.report import write_report
    from eoslab.store import StoreError

    try:
        page = write_report(args.path, out=args.out)
    except (StoreError, ValueError) as err:
        raise CLIError(f"eoslab report: {err}") from None
    print(f"wrote {page}")
    return 0


def _show(args: argparse.Namespace) -> int:
    """``eoslab show RUN``: print a run's summary; ``--follow``: then each new probe row."""
    from eoslab.run import ConfigError
    from eoslab.store import StoreError

    follow = getattr(args, "follow", False)
    if follow and not args.interval > 0:
        raise CLIError(f"eoslab show: --interval must be positive, got {args.interval}")
    try:
        print(_summary(Path(args.run)), flush=True)
        if args.figure:
            files = _figure(Path(args.run))
            print(f"figure: {', '.join(str(f) for f in files)}" if files else "no probes")
        if follow:
            return _follow(Path(args.run), args.interval)
    except (ConfigError, StoreError) as err:
        raise CLIError(f"eoslab show: {err}") from None
    return 0


def _follow(path: Path, interval: float) -> int:
    """Print the last probe row of the run at ``path``, then each new one, until it stops.

    Returns 0 when the run's status is no longer ``running`` (after its last rows and the
    final status), 1 when its process is gone with the status still ``running`` (killed),
    130 on Ctrl-C (quietly).
    """
    import time

    from eoslab.run.live import ProbeTable, RowFollower, writer_gone
    from eoslab.store import RunStore

    store = RunStore.open(path)
    rows = RowFollower(path / "probes.jsonl")
    table = None

    def emit(new: list[dict]) -> None:
        nonlocal table
        for row in new:
            if table is None:
                table = ProbeTable(row)
                print(table.header)
            print(table.line(row), flush=True)

    try:
        emit(rows.poll()[-1:])  # where the run stands, then each probe as it lands
        while True:
            status = store.status_or_none() or {}  # read before the rows: none is missed
            running = status.get("status", "running") == "running"
            gone = running and writer_gone(path)
            emit(rows.poll())
            if not running:
                reason = f" ({status['reason']})" if status.get("reason") else ""
                print(f"status {status.get('status')} at step {status.get('step')}{reason}")
                return EXIT_OK
            if gone:
                print(
                    f"status running, but no process writes into {path} any more (killed?); "
                    f"eoslab run --resume --out {path} continues it"
                )
                return EXIT_FAILED
            time.sleep(interval)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _tensorboard(args: argparse.Namespace) -> int:
    """``eoslab tensorboard RUN_OR_SWEEP``: TensorBoard event files from stored runs."""
    import json as _json

    from eoslab.run import ConfigError
    from eoslab.run.live import export_events
    from eoslab.store import StoreError

    try:
        done = export_events(args.path, args.out)
    except (ConfigError, StoreError) as err:
        raise CLIError(f"eoslab tensorboard: {err}") from None
    overrides = {}
    state = Path(args.path) / "sweep_state.json"
    if state.is_file():
        try:
            overrides = {k: v.get("overrides") for k, v in _json.loads(state.read_text()).items()}
        except (ValueError, AttributeError):
            overrides = {}
    print(f"wrote event files of {len(done.runs)} run(s) to {done.logdir}")
    for name, folder in done.runs.items():
        label = f"  {overrides[name]}" if overrides.get(name) else ""
        print(f"  {name}: {done.scalars[name]} scalars in {folder}{label}")
    for name, why in done.skipped.items():
        print(f"  skipped {name}: {why}")
    if done.runs:
        print(f"view with: tensorboard --logdir {done.logdir}")
    return EXIT_OK if done.runs else EXIT_FAILED


def _parse_kw(items: list[str]) -> dict:
    """``["n_per_class=50", "split=test"]`` → {"n_per_class": 50, "split": "test"}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"eoslab: expected KEY=VALUE, got {item!r}")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = {"true": True, "false": False, "none": None}.get(value.lower(), value)
    return out


def _data_show(args: argparse.Namespace) -> int:
    """Write a PNG grid of examples per class of a registered data set."""
    from eoslab.data import load_dataset
    from eoslab.data.show import show_examples

    kwargs = _parse_kw(args.kw)
    if args.name == "dice":
        kwargs.setdefault("n_per_class", 200)  # a grid needs few images; the full set is cached
    try:
        ds = load_dataset(args.name, **kwargs)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise CLIError(f"eoslab data show: {err}") from None
    out = Path(args.out or f"{args.name}-examples.png")
    show_examples(ds, out, per_class=args.per_class, seed=args.seed)
    print(f"wrote {out} ({len(ds)} samples, classes: {', '.join(ds.classes)})")
    return 0


def _data_embed(args: argparse.Namespace) -> int:
    """Embed a sentiment corpus per token with a local encoder, using the embedding cache."""
    from eoslab.data.sst import embed_command

    try:
        report = embed_command(
            args.source,
            path=args.path,
            split=args.split,
            labels=args.labels,
            encoder=args.encoder,
            max_tokens=args.max_tokens,
            limit=args.limit,
            out=args.out,
            cache_dir=args.cache_dir,
            batch_size=args.batch_size,
            device=args.device,
            refresh=args.refresh,
        )
    except (ValueError, FileNotFoundError, ImportError) as err:
        raise CLIError(f"eoslab data embed: {err}") from None
    print(report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``eoslab`` command."""
    ap = argparse.ArgumentParser(
        prog="eoslab",
        description="Edge-of-stability curvature lab.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "run",
        help="a training run with edge-of-stability telemetry",
        description="Carry out a run into a run directory (locked while it runs). Ctrl-C "
        "stops at the next step with a checkpoint; --resume continues it.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("config", nargs="?", help="YAML config file or a packaged name (demo)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override")
    r.add_argument("--out", help="run directory (default runs/NAME)")
    r.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    r.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard scalars to RUN/tensorboard (needs eoslab[tensorboard])",
    )
    r.set_defaults(func=_run)
    show_run = sub.add_parser("show", help="summary of a run directory")
    show_run.add_argument("run", help="run directory")
    show_run.add_argument("--figure", action="store_true", help="also (re)write sharpness.png")
    show_run.add_argument(
        "--follow",
        action="store_true",
        help="then print each new probe row until the run stops running (Ctrl-C to leave)",
    )
    show_run.add_argument(
        "--interval", type=float, default=2.0, metavar="SECONDS", help="--follow's polling period"
    )
    show_run.set_defaults(func=_show)
    tb = sub.add_parser(
        "tensorboard",
        help="TensorBoard event files of finished runs (a run, a sweep or a folder of runs)",
        description="Write TensorBoard scalars from the stored rows: a run's into RUN/tensorboard, "
        "a sweep's into SWEEP/tensorboard/<run id> (one folder per run, to compare them). "
        "Needs pip install 'eoslab[tensorboard]'.",
    )
    tb.add_argument("path", help="run or sweep directory")
    tb.add_argument("--out", help="folder for the event files (older event files are replaced)")
    tb.set_defaults(func=_tensorboard)
    an = sub.add_parser("analyze", help="Gauss–Newton/layerwise analysis of a run's snapshots")
    an.add_argument("run", help="run directory")
    an.add_argument(
        "--every", type=int, help="analyse snapshots at steps divisible by N, and the last one"
    )
    an.add_argument("--what", default="gauss_newton,layerwise,cusp", help="comma-separated")
    an.add_argument("--s-max", type=float, default=0.003, help="cusp-scan half-width")
    an.add_argument("--chunk-size", type=int, help="samples per chunk (memory bound)")
    an.add_argument("--no-progress", action="store_true")
    an.set_defaults(func=_analyze)
    fit = sub.add_parser("fit", help="peak λ_1 and alignment against N across analysed runs")
    fit.add_argument("runs", nargs="+", help="run directories")
    fit.add_argument("--out", help="write the fits as JSON")
    fit.set_defaults(func=_fit)
    sw = sub.add_parser("sweep", help="many runs from a sweep file, serial or on Dask")
    sw.add_argument("sweep", help="sweep YAML file")
    sw.add_argument("--out", help="sweep directory (default sweeps/NAME)")
    sw.add_argument("--executor", choices=["serial", "dask"], help="override the file's executor")
    sw.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster)")
    sw.add_argument("--dry-run", action="store_true", help="list the runs and their ids only")
    sw.add_argument("--no-progress", action="store_true")
    sw.set_defaults(func=_sweep)
    pl = sub.add_parser("plot", help="the papers' figures and tables from stored runs")
    pl.add_argument("path", nargs="?", help="run or sweep directory")
    pl.add_argument("--figure", action="append", help="figure/table name (default: all)")
    pl.add_argument("--out", help="output folder (default PATH/figures)")
    pl.add_argument("--list", action="store_true", help="list the figures and tables")
    pl.add_argument(
        "--kw",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option of the one table named by --figure, e.g. min_time=3 or min_rho=none "
        "for l22_table1",
    )
    pl.set_defaults(func=_plot)
    rep = sub.add_parser("report", help="HTML report of a run or sweep directory")
    rep.add_argument("path", help="run or sweep directory")
    rep.add_argument("--out", help="output folder (default PATH/report)")
    rep.set_defaults(func=_report)
    demo = sub.add_parser("demo", help="the main job: eoslab run demo --out runs/demo")
    demo.add_argument("--out", default="runs/demo", help="run directory (replaced)")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(
        func=lambda a: _run(
            argparse.Namespace(
                config="demo",
                set=a.set,
                out=a.out,
                resume=False,
                overwrite=True,
                no_progress=a.no_progress,
            )
        )
    )

    data = sub.add_parser("data", help="data-set tools").add_subparsers(
        dest="data_cmd", required=True
    )
    show = data.add_parser("show", help="PNG grid of examples per class")
    show.add_argument("name", help="registered data set, e.g. dice, digits, fashion_mnist")
    show.add_argument("--out", help="PNG path (default NAME-examples.png)")
    show.add_argument("--per-class", type=int, default=8)
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--kw", nargs="*", default=[], help="loader options as KEY=VALUE")
    show.set_defaults(func=_data_show)
    emb = data.add_parser("embed", help="per-token encoder embeddings of SST / GLUE / RT text")
    emb.add_argument("source", help="sst (PTB trees), glue (SST-2 TSV) or rt (VADER snippets)")
    emb.add_argument("--path", help="text file or folder (rt: sdist/txt; default search)")
    emb.add_argument("--split", help="train/dev/test when --path is a folder")
    emb.add_argument("--labels", default="binary", choices=["binary", "fine"])
    emb.add_argument("--encoder", default="minilm", help="minilm, roberta-base or a model dir")
    emb.add_argument("--max-tokens", type=int, default=32)
    emb.add_argument("--limit", type=int, help="embed only the first N texts")
    emb.add_argument("--out", help="also write X, y, texts to this .npz")
    emb.add_argument("--cache-dir", help="cache root (default $EOSLAB_CACHE or ~/.cache/eoslab)")
    emb.add_argument("--batch-size", type=int, default=64)
    emb.add_argument("--device", default="cpu")
    emb.add_argument("--refresh", action="store_true", help="recompute even if cached")
    emb.set_defaults(func=_data_embed)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the ``eoslab`` command with ``argv``; return its exit status.

    Raises:
        CLIError: for a user error (its message is meant for stderr, its ``code`` is the
            exit status); :func:`entry` prints it.
    """
    args = build_parser().parse_args(argv)
    return args.func(args)


def entry() -> None:
    """The installed ``eoslab`` command: :func:`main`, user errors as one line on stderr."""
    try:
        code = main()
    except CLIError as err:
        print(err, file=sys.stderr)
        code = err.code
    except KeyboardInterrupt:
        print("eoslab: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)
