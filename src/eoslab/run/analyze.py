"""Post-hoc analysis of a run's snapshots (Lowell 2024's way: train first, analyse afterwards).

``eoslab analyze RUN`` loads every stored snapshot θ_t (or those at steps divisible by
``every``, and the last), evaluates

- the Gauss–Newton decomposition (``docs/methods.md`` §4): λ_1 of H, G and H − G, E‖M_x‖², the
  overlap ratio ζ = λ_1(G)/E‖M_x‖², and the sharpness of each layer's Hessian block;
- for MLPs, the layerwise decomposition (``docs/methods.md`` §5): C_ℓ, E‖K_ℓ‖², α_k, γ_ℓ and the
  five components (I)–(V) of every layer;

and appends one row per snapshot to the run's ``analysis`` stream. It is resumable: snapshots
already analysed are skipped.

A snapshot that cannot be analysed — an unreadable file, a θ of the wrong size, a non-finite θ
(checked before any eigensolve, as is the loss at θ), or an error of a solver — does not stop
the others: it gets no ``analysis`` row (so the readers of that stream see only analysed
snapshots, and the next ``analyze`` retries it) and is recorded in the summary's ``failures``
list as ``{"step", "file", "error", "what": "snapshot"}``, with ``n_failed`` their number. The
cusp scan skips such snapshots; when it fails itself, it adds an entry with ``"what": "cusp"``.
The summary (``results/analysis_summary.json``) ignores the
first ``transient`` steps (10, docs/methods.md §5 choice) and adds the counterfactual sharpness with
the alignment factor frozen at its first post-transient value, λ̃_1(G) = ζ Σ_ℓ C_ℓ V_ℓ(t_0)/V_ℓ(t),
and its stable step 2/λ̃_1. The cusp scan (``docs/methods.md`` §3) at the snapshot of peak λ_1 goes
to ``results/cusp.json``. :func:`fit_runs` fits peak λ_1 (linear) and peak alignment (power
law, Eq. 9) against the data-set size N across runs.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from eoslab.fits import linear_fit, power_law_fit
from eoslab.linalg import HessianOperator
from eoslab.probes import CUSP_SOLVER, cusp_scan
from eoslab.probes.decomposition import decomposition
from eoslab.probes.gauss_newton import GaussNewtonProbe
from eoslab.probes.layerwise import is_mlp
from eoslab.run.build import build
from eoslab.run.config import parse_config
from eoslab.store import RunStore, StoreError

__all__ = ["ANALYSES", "SnapshotError", "analyze", "fit_runs", "summarize"]

#: What ``--what`` may name.
ANALYSES = ("gauss_newton", "layerwise", "cusp")
TRANSIENT = 10


class SnapshotError(ValueError):
    """A snapshot's θ that cannot be analysed (wrong size, not finite, non-finite loss)."""


#: Errors recorded as one snapshot's failure while the others go on: an unreadable file
#: (:class:`~eoslab.store.StoreError`, a RuntimeError), :class:`SnapshotError`, and solver
#: errors (torch's LinAlgError is a RuntimeError, numpy's a ValueError, ARPACK's a
#: RuntimeError; overflow an ArithmeticError). Programming errors (TypeError, KeyError …)
#: still propagate.
_SNAPSHOT_ERRORS = (ValueError, RuntimeError, ArithmeticError)


def analyze(
    path: str | Path,
    *,
    every: int | None = None,
    what: tuple[str, ...] = ANALYSES,
    s_max: float = 0.003,
    n_grid: int = 61,
    chunk_size: int | None = None,
    transient: int = TRANSIENT,
    progress: bool = True,
) -> dict[str, Any]:
    """Analyse the snapshots of the run in ``path``; return the summary.

    Args:
        path: run directory.
        every: analyse snapshots at steps divisible by ``every``, and the last snapshot
            (default: all snapshots). On a run still training, "the last" is the latest so
            far; its row stays when the analysis is resumed later.
        what: subset of :data:`ANALYSES`.
        s_max: half-width of the cusp-scan grid s ∈ [−s_max, s_max] (paper: 0.003).
        n_grid: number of grid points of the cusp scan.
        chunk_size: samples per chunk of the per-sample computations (memory bound).
        transient: steps ignored by the summary (10 in Lowell 2024).
        progress: show a progress bar.

    Returns:
        The summary (also written to ``results/analysis_summary.json``), see :func:`summarize`;
        besides, ``n_failed`` and ``failures``: one ``{"step", "file", "error", "what"}`` per
        snapshot of this call that could not be analysed (``"what": "snapshot"``; it has no
        analysis row and is retried by the next call) and for a failed cusp scan
        (``"what": "cusp"``), and ``cusp`` when asked for (``{"failed": True, "error"}`` if
        it failed).

    Raises:
        StoreError: if the run has no snapshots to analyse, or the run directory cannot be
            read or written (not for one unusable snapshot: that is recorded as a failure).
        ValueError: for an unknown analysis name or an ``every`` that is not a positive integer.
    """
    bad = [w for w in what if w not in ANALYSES]
    if bad:
        raise ValueError(f"unknown analysis {bad}; choose from {list(ANALYSES)}")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"analyze: every must be a positive integer, got {every!r}")
    cfg = parse_config(RunStore.open(path).read_config())
    built = build(cfg)  # data and model first: a config error leaves the run untouched
    store = RunStore.open(path, lock="analyze")  # one writer at a time (store.RunLock)
    try:
        return _analyze(
            store, cfg, built.problem, what, every, s_max, n_grid, chunk_size, transient, progress
        )
    finally:
        store.close()


def _analyze(store, cfg, problem, what, every, s_max, n_grid, chunk_size, transient, progress):
    """The body of :func:`analyze`, with the run directory locked."""
    steps = store.snapshot_steps()
    if every is not None:
        # and always the last snapshot: the run's end state, where (V) tends to peak
        steps = [s for i, s in enumerate(steps) if s % every == 0 or i == len(steps) - 1]
    if not steps:
        raise StoreError(
            f"{store.path}: no snapshots to analyse (snapshot_every={cfg.snapshot_every})"
        )
    done = {int(r["step"]) for r in store.rows("analysis")}
    todo = [s for s in steps if s not in done]
    mlp = is_mlp(problem.model)
    gn = GaussNewtonProbe(solver=cfg.probe.gauss_newton_solver.spec())
    warm = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(steps), initial=len(steps) - len(todo), desc="analyze", unit="snap")
    failures: list[dict[str, Any]] = []
    try:
        for step in todo:
            try:
                theta, meta = _load_theta(store, step, problem)
                row: dict[str, Any] = dict(step=step, time=meta.get("time", math.nan))
                with warnings.catch_warnings():
                    warnings.simplefilter("always")
                    res = decomposition(
                        problem,
                        theta,
                        gauss_newton=gn if "gauss_newton" in what else None,
                        layerwise="layerwise" in what and mlp,
                        warm=warm,
                        chunk_size=chunk_size,
                    )
                row.update(res.metrics)
            except _SNAPSHOT_ERRORS as err:
                failures.append(_failure(store.snapshot_path(step), step, err))
            else:
                if res.warm:
                    warm = res.warm
                store.append("analysis", row)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        store.close_files()
    summary = summarize(store, transient=transient, n_train=problem.N)
    if "cusp" in what:
        cusp = _cusp(
            store,
            problem,
            s_max=s_max,
            n_grid=n_grid,
            transient=transient,
            skip={f["step"] for f in failures},
        )
        summary["cusp"] = cusp
        if cusp.get("failed"):
            failures.append(
                dict(step=cusp.get("step"), file=cusp.get("file"), error=cusp["error"], what="cusp")
            )
    summary["n_failed"] = len(failures)
    summary["failures"] = failures
    store.write_result("analysis_summary", summary)
    return summary


def _load_theta(store: RunStore, step: int, problem) -> tuple[torch.Tensor, dict[str, Any]]:
    """θ of the snapshot at ``step`` in the problem's dtype, checked before any solver runs.

    Raises:
        StoreError: if the file is missing or unreadable.
        SnapshotError: if θ is not a floating-point vector of the model's size, has
            non-finite entries (before or after the cast to the problem's dtype), or the
            loss at θ is not finite.
    """
    theta, meta = store.load_snapshot(step, device=problem.device)
    if not theta.is_floating_point():
        raise SnapshotError(f"θ has dtype {theta.dtype}, not a floating-point dtype")
    if theta.dim() != 1 or theta.numel() != problem.size:
        raise SnapshotError(
            f"θ has shape {list(theta.shape)}, but the run's model has {problem.size} "
            "parameters (a snapshot of another model?)"
        )
    bad = int((~torch.isfinite(theta)).sum())
    if bad:
        n_nan = int(torch.isnan(theta).sum())
        raise SnapshotError(
            f"θ is not finite: {bad} of {theta.numel()} entries are NaN or ±inf ({n_nan} NaN)"
        )
    cast = theta.to(problem.dtype)
    if not bool(torch.isfinite(cast).all()):
        raise SnapshotError(
            f"θ overflows {problem.dtype} (max |θ| = {float(theta.abs().max()):.3g})"
        )
    with torch.no_grad():
        loss = float(problem.loss(cast))
    if not math.isfinite(loss):
        raise SnapshotError(f"the loss at θ is {loss} (max |θ| = {float(cast.abs().max()):.3g})")
    return cast, meta


def _failure(file: Path | None, step: int | None, err: BaseException, what: str = "snapshot"):
    """One ``failures`` entry: step, file, a one-line reason (the file name not repeated)."""
    lines = str(err).strip().splitlines()
    msg = lines[0].strip() if lines else ""
    if file is not None and msg.startswith(str(file)):
        msg = msg[len(str(file)) :].lstrip(": ") or "unreadable"
    if not isinstance(err, (SnapshotError, StoreError)):
        msg = f"{type(err).__name__.lstrip('_')}: {msg}" if msg else type(err).__name__
    return dict(step=step, file=None if file is None else str(file), error=msg, what=what)


def _alignment_columns(row: dict[str, Any]) -> dict[int, str]:
    """{ℓ: column} of the alignment component (V) of each layer ℓ < L in a row."""
    out = {}
    for key in row:
        m = re.fullmatch(r"comp(\d+)_V", key)
        if m:
            out[int(m.group(1))] = key
    return out


def summarize(
    store: RunStore, *, transient: int = TRANSIENT, n_train: int | None = None
) -> dict[str, Any]:
    """Summary of the analysis rows after the transient: peaks and the counterfactual.

    Counterfactual (``docs/methods.md`` §5): with V_ℓ(t) the alignment component of layer ℓ and
    t_0 the first analysed step ≥ ``transient``, λ̃_1(G)(t) = ζ(t) Σ_ℓ C_ℓ(t) V_ℓ(t_0)/V_ℓ(t),
    where the output layer (no alignment factor) enters with ratio 1; the counterfactual
    stable step is 2/λ̃_1.
    """
    rows = sorted(store.rows("analysis"), key=lambda r: r["step"])
    kept = [r for r in rows if r["step"] >= transient]
    probes = [r for r in store.rows("probes") if r["step"] >= transient]
    cfg = store.read_config()
    out: dict[str, Any] = dict(
        transient=transient,
        n_analysed=len(rows),
        n_train=n_train,
        steps=[r["step"] for r in kept],
    )
    lam_src = [(r["lambda_1"], r["step"]) for r in probes if _finite(r.get("lambda_1"))]
    if not lam_src:
        lam_src = [(r["lambda_H"], r["step"]) for r in kept if _finite(r.get("lambda_H"))]
    if lam_src:
        peak, at = max(lam_src)
        out.update(peak_lambda_1=peak, peak_lambda_1_step=at)
    if not kept:
        return out
    for key in ("lambda_H", "lambda_G", "zeta", "EM2"):
        vals = [(r[key], r["step"]) for r in kept if _finite(r.get(key))]
        if vals:
            out[f"peak_{key}"], out[f"peak_{key}_step"] = max(vals)
    cols = _alignment_columns(kept[0])
    if cols:
        first = min(cols)
        V = [r.get(cols[first], math.nan) for r in kept]
        out["alignment_layer"] = first
        out["alignment"] = V
        finite = [(v, r["step"]) for v, r in zip(V, kept) if _finite(v)]
        if finite:  # a diverged run's last rows may hold NaN: max() would depend on order
            peak, at = max(finite, key=lambda p: p[0])
            out["peak_alignment"], out["peak_alignment_step"] = peak, at
        ref = kept[0]
        lam_cf = []
        for r in kept:
            total = 0.0
            ell = 1
            while f"C_{ell}" in r:
                ratio = _ratio(ref.get(cols[ell]), r.get(cols[ell])) if ell in cols else 1.0
                total += r[f"C_{ell}"] * ratio
                ell += 1
            lam_cf.append(r.get("zeta", math.nan) * total)
        out["counterfactual_lambda_G"] = lam_cf
        out["counterfactual_stable_lr"] = [2.0 / v if v > 0 else math.nan for v in lam_cf]
        out["lr"] = cfg.get("optimizer", {}).get("lr")
    return out


def _ratio(a, b) -> float:
    """a / b, NaN where either is missing or b is 0 (a dead layer's alignment in a diverged run)."""
    try:
        return float(a) / float(b)
    except (TypeError, ZeroDivisionError):
        return math.nan


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _cusp(
    store, problem, *, s_max: float, n_grid: int, transient: int, skip: set[int] = frozenset()
) -> dict[str, Any]:
    """Cusp scan at the usable snapshot closest to the step of peak λ_1 (``docs/methods.md`` §3).

    Snapshots in ``skip`` (those whose analysis failed) and those that fail the checks of
    :func:`_load_theta` (unreadable, wrong size, non-finite θ or loss) are passed over for
    the next closest; they are listed under ``skipped``.

    Returns:
        The scan's step, the peak's step, λ_1 and its convergence (and ``skipped``); or,
        when no snapshot is usable or the scan fails, ``{"failed": True, "error", "step",
        "file", "peak_probe_step"}`` (``results/cusp.json`` is then left as it was).
    """
    probes = [
        r for r in store.rows("probes") if r["step"] >= transient and _finite(r.get("lambda_1"))
    ]
    snaps = store.snapshot_steps()
    if not snaps:
        raise StoreError(f"{store.path}: no snapshots for the cusp scan")
    if probes:
        peak = max(probes, key=lambda r: r["lambda_1"])
        target = peak["step"]
    else:
        rows = [r for r in store.rows("analysis") if _finite(r.get("lambda_H"))]
        target = max(rows, key=lambda r: r["lambda_H"])["step"] if rows else snaps[-1]
    skipped = [s for s in snaps if s in skip]
    theta = step = None
    for candidate in sorted(
        (s for s in snaps if s not in skip), key=lambda s: (abs(s - target), s)
    ):
        try:
            theta, _ = _load_theta(store, candidate, problem)
        except _SNAPSHOT_ERRORS:
            skipped.append(candidate)
            continue
        step = candidate
        break
    if step is None:
        return dict(
            failed=True,
            step=None,
            file=None,
            peak_probe_step=target,
            error=f"no usable snapshot for the cusp scan: all {len(snaps)} failed or are not "
            "finite",
            skipped=sorted(skipped),
        )
    try:
        res = CUSP_SOLVER.solve(HessianOperator(problem, theta), 1)
        h1 = res.eigenvectors[:, 0]
        scan = cusp_scan(problem, theta, h1, s_max, n=n_grid)
    except _SNAPSHOT_ERRORS as err:
        out = _failure(store.snapshot_path(step), step, err, what="cusp")
        del out["what"]
        return dict(out, failed=True, peak_probe_step=target, skipped=sorted(skipped))
    result = dict(
        step=step,
        peak_probe_step=target,
        lambda_1=float(res.eigenvalues[0]),
        converged=bool(res.all_converged),
        s=scan["s"],
        dL=scan["dL"],
    )
    if skipped:
        result["skipped"] = sorted(skipped)
    store.write_result("cusp", result)
    return {k: v for k, v in result.items() if k not in ("s", "dL")}


def fit_runs(paths: list[str | Path]) -> dict[str, Any]:
    """Fits across runs of different data-set sizes N (Lowell 2022 Fig. 5; Lowell 2024 Table 2).

    Reads each run's ``results/analysis_summary.json`` (run ``eoslab analyze`` first) and fits
    peak λ_1 = slope·N + intercept (with R²) and peak alignment = a·N^b in log–log space
    (``docs/methods.md`` §5 Eq. 9, with a, b, R²).

    Raises:
        StoreError: naming a run without a summary.
        ValueError: with fewer than two runs that have the quantity.
    """
    pts = []
    for p in paths:
        store = RunStore.open(p)
        try:
            s = store.read_result("analysis_summary")
        except StoreError:
            raise StoreError(f"{p}: no analysis summary; run `eoslab analyze {p}` first") from None
        pts.append((s.get("n_train"), s.get("peak_lambda_1"), s.get("peak_alignment"), str(p)))
    out: dict[str, Any] = dict(
        runs=[dict(N=n, peak_lambda_1=a, peak_alignment=b, run=r) for n, a, b, r in pts]
    )
    lam = [(n, a) for n, a, _, _ in pts if n is not None and _finite(a)]
    if len(lam) >= 2:
        f = linear_fit([n for n, _ in lam], [a for _, a in lam])
        out["peak_lambda_1_vs_N"] = dict(slope=f.slope, intercept=f.intercept, r2=f.r2, n=f.n)
    al = [(n, b) for n, _, b, _ in pts if n is not None and _finite(b)]
    if len(al) >= 2:
        f = power_law_fit([n for n, _ in al], [b for _, b in al])
        out["peak_alignment_vs_N"] = dict(a=f.a, b=f.b, r2=f.r2, n=f.n)
    if len(out) == 1:
        raise ValueError("need at least two analysed runs with a data-set size to fit")
    return out
