"""Lowell 2022, *Singularity in the loss landscape*: Figures 1–6 and Table 1.

Each figure's ``needs`` picks the runs it draws (docs/methods.md §2–3); the bodies receive that
selection and return a Figure (see :mod:`eoslab.plots.papers.registry`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from eoslab.fits import linear_fit
from eoslab.plots.papers import style
from eoslab.plots.papers.peaks import TRANSIENT, peak_lambda_1
from eoslab.plots.papers.registry import figure, needs, table
from eoslab.plots.papers.runs import (
    ACTIVATION_NAMES,
    RunData,
    finite,
    has_finite,
    num,
    step_of,
    study_labels,
)

#: ρ_{n_c−1} above which a probe counts as on the edge of stability (Lowell 2022 Table 1).
EOS_RHO = 0.7
#: Fewest such probes for a run to enter Lowell 2022's Table 1.
MIN_EOS_PROBES = 3


# ====================================================================== selections
def rho_runs(runs: list[RunData]) -> list[tuple[RunData, int]]:
    """(run, n_top) for the runs whose probes record ρ_{n_c−1} (``rho_<n_top>``)."""
    out = []
    for r in runs:
        n_top = r.n_top
        if n_top is not None and has_finite(r.ratio_probes, f"rho_{n_top}"):
            out.append((r, n_top))
    return out


def proj_runs(runs: list[RunData]) -> list[RunData]:
    """Runs whose probes record ‖P_top g‖ and ‖P_bulk g‖."""
    return [
        r for r in runs if has_finite(r.probes, "proj_top") and has_finite(r.probes, "proj_bulk")
    ]


def fig4_candidates(runs: list[RunData]) -> list[tuple[RunData, int]]:
    """(run, n_top) of the runs with ≥ 2 probes recording ρ_i and d_i."""
    out = []
    for r, n_top in rho_runs(runs):
        if has_finite(r.probes, "d_1") and len(r.probes) >= 2:
            out.append((r, n_top))
    return out


def densest(cands: list[tuple[RunData, int]]) -> tuple[RunData, int] | None:
    """The most densely probed run: the smallest median step gap, then the most probes."""

    def key(item):
        steps = sorted({step_of(p) for p in item[0].probes})
        gap = float(np.median(np.diff(steps))) if len(steps) > 1 else math.inf
        return (gap, -len(steps), str(item[0].path))

    return min(cands, key=key) if cands else None


def fig5_runs(runs: list[RunData]) -> list[RunData]:
    """Runs with λ_1 (per-step or probes) and a known data-set size N."""
    return [r for r in runs if r.n_train is not None and r.lambda_rows(prefer_steps=True)[0]]


def cusp_runs(runs: list[RunData]) -> list[RunData]:
    """Runs with a cusp scan (``results/cusp.json`` with matching ``s`` and ``dL``)."""
    out = []
    for r in runs:
        c = r.cusp or {}
        s, dl = c.get("s"), c.get("dL")
        if isinstance(s, list) and isinstance(dl, list) and len(s) == len(dl) and len(s) >= 2:
            out.append(r)
    return out


def table1_runs(runs: list[RunData]) -> list[tuple[RunData, int]]:
    """(run, n_top) of the runs whose probes record ΔL_top, ΔL_bulk and ρ_{n_c−1}."""
    return [
        (r, n)
        for r, n in rho_runs(runs)
        if has_finite(r.probes, "dL_top") and has_finite(r.probes, "dL_bulk")
    ]


NEEDS_RHO = needs(
    rho_runs, "no run has probe rows with ρ_{n_c−1} (rho_<n_top>; enable probes with k ≥ n_c)"
)


# ====================================================================== Figures 1–2
def _draw_rho(sel: list[tuple[RunData, int]], *, colour_key, colour_label, title: str):
    panels = style.group([r for r, _ in sel], lambda r: r.arch)
    n_top_of = {id(r): n for r, n in sel}
    colours = style.colours([colour_key(r) for r, _ in sel], "plasma")
    fig, axes = style.panels(len(panels))
    for ax, (arch, group) in zip(axes, panels.items()):
        top_max = 0.0
        for r in sorted(group, key=colour_key):
            n_top = n_top_of[id(r)]
            c = colours[colour_key(r)]
            t, rho = r.series(r.ratio_probes, f"rho_{n_top}")
            ax.plot(t, rho, color=c, lw=1.3, label=colour_label(r))
            top_max = max(top_max, float(np.nanmax(rho, initial=0.0)))
            t2, rho2 = r.series(r.ratio_probes, f"rho_{n_top + 1}")
            if len(t2):
                ax.plot(t2, rho2, color=c, lw=1.1, ls=":")
                top_max = max(top_max, float(np.nanmax(rho2, initial=0.0)))
        ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
        ax.set_ylim(0.0, min(max(1.2, 1.05 * top_max), 3.0))
        ax.set_title(arch, fontsize=10)
        ax.set_xlabel(style.time_label(group))
        ax.set_ylabel(style.rho_label(group))
        style.legend(
            ax,
            extra=[style.proxy("$\\rho_{n_c-1}$", "-"), style.proxy("$\\rho_{n_c}$", ":")],
        )
    fig.suptitle(title, fontsize=10)
    return fig


@figure(
    "l22_fig1",
    paper="Lowell 2022, Figure 1",
    caption="Edge of stability: ρ_{n_c−1} (solid) and ρ_{n_c} (dotted) against t = nη; colour "
    "per learning rate, one subplot per architecture and activation. Exponential Euler: "
    "ρ = τλ/2 with the step τ taken from the probed θ, t = Σ τ.",
    needs=NEEDS_RHO,
)
def l22_fig1(sel: list[tuple[RunData, int]]):
    """Lowell 2022, Figure 1 (edge of stability): ρ_{n_c−1} solid and ρ_{n_c} dotted against t.

    One subplot per architecture (model and activation), one colour per learning rate η; the
    dashed line is ρ = 1 (docs/methods.md §2–3).

    Args:
        sel: (run, n_top) for the runs whose probes carry ``rho_<n_top>`` (and
            ``rho_<n_top+1>``).

    Returns:
        The Figure.
    """
    return _draw_rho(
        sel,
        colour_key=lambda r: r.lr,
        colour_label=lambda r: style.fmt_lr(r.lr),
        title="Edge of stability: $\\rho_{n_c-1}$ (solid) and $\\rho_{n_c}$ (dotted)",
    )


@figure(
    "l22_fig2",
    paper="Lowell 2022, Figure 2",
    caption="Edge of stability and n_c: ρ_{n_c−1} (solid) and ρ_{n_c} (dotted); colour per "
    "number of classes.",
    needs=NEEDS_RHO,
)
def l22_fig2(sel: list[tuple[RunData, int]]):
    """Lowell 2022, Figure 2 (EoS and n_c): ρ_{n_c−1} solid and ρ_{n_c} dotted, colour per n_c.

    Args:
        sel: (run, n_top) for the runs whose probes carry ``rho_<n_top>``, typically the
            class-count runs.

    Returns:
        The Figure.
    """
    return _draw_rho(
        sel,
        colour_key=lambda r: r.n_classes or 0,
        colour_label=lambda r: f"$n_c$={r.n_classes}",
        title="Edge of stability and $n_c$: $\\rho_{n_c-1}$ (solid), $\\rho_{n_c}$ (dotted)",
    )


# ====================================================================== Figure 3
@figure(
    "l22_fig3",
    paper="Lowell 2022, Figure 3",
    caption="Gradient concentration: ‖P_top g‖ (solid) and ‖P_bulk g‖ (dotted); colour per "
    "learning rate, one subplot per architecture.",
    needs=needs(proj_runs, "no run has probe rows with proj_top and proj_bulk (probe.projections)"),
)
def l22_fig3(sel: list[RunData]):
    """Lowell 2022, Figure 3 (gradient concentration): ‖P_top g‖ solid, ‖P_bulk g‖ dotted.

    One subplot per architecture, one colour per η, against flow time t.

    Args:
        sel: the runs whose probes carry ``proj_top`` and ``proj_bulk``.

    Returns:
        The Figure.
    """
    panels = style.group(sel, lambda r: r.arch)
    colours = style.colours([r.lr for r in sel], "plasma")
    fig, axes = style.panels(len(panels))
    for ax, (arch, group) in zip(axes, panels.items()):
        ys = []
        for r in sorted(group, key=lambda r: r.lr):
            c = colours[r.lr]
            t, top = r.series(r.probes, "proj_top")
            ax.plot(t, top, color=c, lw=1.3, label=style.fmt_lr(r.lr))
            t2, bulk = r.series(r.probes, "proj_bulk")
            ax.plot(t2, bulk, color=c, lw=1.1, ls=":")
            ys += [top, bulk]
        style.log_if_positive(ax, *ys)
        ax.set_title(arch, fontsize=10)
        ax.set_xlabel(style.time_label(group))
        ax.set_ylabel("gradient component norm")
        style.legend(
            ax,
            extra=[
                style.proxy("$\\|P_{top}\\,g\\|$", "-"),
                style.proxy("$\\|P_{bulk}\\,g\\|$", ":"),
            ],
        )
    fig.suptitle("Gradient concentration", fontsize=10)
    return fig


# ====================================================================== Figure 4
@figure(
    "l22_fig4",
    paper="Lowell 2022, Figure 4",
    caption="Entering the edge of stability: ρ_1…ρ_{n_c−1} (left) and |d_i| = |h_i·g| (right) "
    "of the most densely probed run.",
    needs=needs(
        lambda runs: densest(fig4_candidates(runs)),
        "no run has ≥ 2 probe rows with rho_i and d_i (probe.projections)",
    ),
)
def l22_fig4(sel: tuple[RunData, int]):
    """Lowell 2022, Figure 4 (entering the EoS): ρ_1…ρ_{n_c−1} (left) and |d_i| (right).

    Drawn for one run, the most densely probed one (the paper's AlexNet-ReLU at η = 0.001
    probed every 10 steps); d_i = h_i·g, colour per i.

    Args:
        sel: (run, n_top) of that run, whose probes carry ``rho_i`` and ``d_i``.

    Returns:
        The Figure.
    """
    run, n_top = sel
    colours = style.colours(list(range(1, n_top + 1)), "viridis")
    fig, (ax_rho, ax_d) = style.panels(2, ncols=2)
    ds = []
    for i in range(1, n_top + 1):
        t, rho = run.series(run.ratio_probes, f"rho_{i}")
        ax_rho.plot(t, rho, color=colours[i], lw=1.1, label=f"$\\rho_{{{i}}}$")
        t, d = run.series(run.probes, f"d_{i}")
        d = np.abs(d)
        ds.append(d)
        ax_d.plot(t, d, color=colours[i], lw=1.1, label=f"$|d_{{{i}}}|$")
    ax_rho.axhline(1.0, color="0.4", lw=0.8, ls="--")
    ax_rho.set_ylabel(style.rho_label([run], "_i"))
    style.log_if_positive(ax_d, *ds)
    ax_d.set_ylabel("$|d_i| = |h_i \\cdot g|$")
    for ax in (ax_rho, ax_d):
        ax.set_xlabel(style.time_label([run]))
        style.legend(ax, ncols=2 if n_top > 5 else 1)
    title = f"Entering the edge of stability: {run.arch}, {style.fmt_lr(run.lr)}"
    fig.suptitle(title, fontsize=10)
    return fig


# ====================================================================== Figure 5
@figure(
    "l22_fig5",
    paper="Lowell 2022, Figure 5",
    caption="Peak curvature: λ_1 over the exact gradient flow, colour per data-set size N, one "
    "subplot per activation; peak λ_1 against N with a linear fit and R².",
    needs=needs(
        fig5_runs, "no run with λ_1 (probes or per-step sharpness) and a known data-set size N"
    ),
)
def l22_fig5(sel: list[RunData]):
    """Lowell 2022, Figure 5 (peak curvature): λ_1 over t for the exact-flow runs, colour per N.

    One subplot per activation; a last panel plots peak λ_1 (after the first 10 steps)
    against N per activation with the least-squares line of :func:`eoslab.fits.linear_fit`
    and its R² (the paper: R² = 99.91 % for ReLU).

    Args:
        sel: the runs with λ_1 (per-step ``sharpness`` of adaptive runs, or probe
            ``lambda_1``) and a known N (``data.n_train`` or the summary's ``n_train``).

    Returns:
        The Figure.
    """
    panels = style.group(sel, lambda r: r.activation or "default")
    colours = style.colours([r.n_train for r in sel], "viridis")
    fig, axes = style.panels(len(panels) + 1)
    for ax, (act, group) in zip(axes, panels.items()):
        for r in sorted(group, key=lambda r: r.n_train):
            rows, key = r.lambda_rows(prefer_steps=True)
            t, lam = r.series(rows, key)
            ax.plot(t, lam, color=colours[r.n_train], lw=1.2, label=f"N={r.n_train}")
        ax.set_title(ACTIVATION_NAMES.get(act, act), fontsize=10)
        ax.set_xlabel(style.time_label(group))
        ax.set_ylabel("$\\lambda_1$")
        style.legend(ax)
    ax = axes[-1]
    act_colours = style.colours(list(panels), "tab10")
    for act, group in panels.items():
        pts = [(r.n_train, peak_lambda_1(r)) for r in group]
        pts = [(n, v) for n, v in pts if math.isfinite(v)]
        if not pts:
            continue
        x, y = np.array(pts, dtype=float).T
        name = ACTIVATION_NAMES.get(act, act)
        ax.plot(x, y, "o", color=act_colours[act], label=name)
        if len(set(x.tolist())) >= 2:
            fit = linear_fit(x, y)
            xx = np.linspace(x.min(), x.max(), 50)
            ax.plot(
                xx,
                fit.slope * xx + fit.intercept,
                color=act_colours[act],
                lw=1.0,
                label=f"{name}: {fit.slope:.3g}·N + {fit.intercept:.3g}, $R^2$={fit.r2:.4f}",
            )
    ax.set_xlabel("data-set size N")
    ax.set_ylabel(f"peak $\\lambda_1$ (step ≥ {TRANSIENT})")
    ax.set_title("Peak $\\lambda_1$ against N", fontsize=10)
    style.legend(ax)
    fig.suptitle("Peak curvature of the exact gradient flow", fontsize=10)
    return fig


# ====================================================================== Figure 6
@figure(
    "l22_fig6",
    paper="Lowell 2022, Figure 6",
    caption="Cusp formation: L(θ* + s h_1) − L(θ*) at the point θ* of peak λ_1, one curve per run.",
    needs=needs(cusp_runs, "no run has results/cusp.json (run `eoslab analyze RUN --what cusp`)"),
)
def l22_fig6(sel: list[RunData]):
    """Lowell 2022, Figure 6 (cusp formation): ΔL(s) = L(θ* + s h_1) − L(θ*) at peak λ_1.

    One curve per run from ``results/cusp.json``, colour per N; one subplot per architecture.

    Args:
        sel: the runs with a cusp scan.

    Returns:
        The Figure.
    """
    panels = style.group(sel, lambda r: r.arch)
    colours = style.colours([r.n_train if r.n_train is not None else -1 for r in sel], "viridis")
    fig, axes = style.panels(len(panels))
    for ax, (arch, group) in zip(axes, panels.items()):
        for r in sorted(group, key=lambda r: r.n_train or -1):
            s = np.array([num(v) for v in r.cusp["s"]], dtype=float)
            dl = np.array([num(v) for v in r.cusp["dL"]], dtype=float)
            order = np.argsort(s)
            label = f"N={r.n_train}" if r.n_train is not None else r.name
            if finite(r.cusp.get("lambda_1")):
                label += f", $\\lambda_1$={float(r.cusp['lambda_1']):.4g}"
            c = colours[r.n_train if r.n_train is not None else -1]
            ax.plot(s[order], dl[order], color=c, lw=1.2, label=label)
        ax.axvline(0.0, color="0.5", lw=0.6)
        ax.set_title(arch, fontsize=10)
        ax.set_xlabel("displacement s along $h_1$")
        ax.set_ylabel("$L(\\theta^* + s h_1) - L(\\theta^*)$")
        style.legend(ax)
    fig.suptitle("Cusp formation at the peak of $\\lambda_1$", fontsize=10)
    return fig


# ====================================================================== Table 1
def table1_entry(
    run: RunData, n_top: int, *, min_rho: float | None = EOS_RHO, min_time: float | None = None
) -> dict[str, float] | None:
    """Mean and sample std (ddof = 1) of ΔL_top, ΔL_bulk over the selected probes.

    A probe is kept when ρ_{n_c−1} > ``min_rho`` (a NaN ρ, i.e. a negative λ, never passes
    a number; None: no condition on ρ, NaN included) and its flow time t ≥ ``min_time``
    (None: every t).
    """
    rows = [r for r in run.probes if "dL_top" in r and "dL_bulk" in r]
    keep = np.ones(len(rows), dtype=bool)
    if min_rho is not None:
        rho = np.array([num(r.get(f"rho_{n_top}")) for r in rows], dtype=float)
        with np.errstate(invalid="ignore"):
            keep &= rho > min_rho
    if min_time is not None:
        t = np.array([num(r.get("time")) for r in rows], dtype=float)
        with np.errstate(invalid="ignore"):
            keep &= t >= min_time
    top = np.array([num(r["dL_top"]) for r in rows], dtype=float)[keep]
    bulk = np.array([num(r["dL_bulk"]) for r in rows], dtype=float)[keep]
    if len(top) < MIN_EOS_PROBES:
        return None
    return dict(
        top_mean=float(np.mean(top)),
        top_std=float(np.std(top, ddof=1)),
        bulk_mean=float(np.mean(bulk)),
        bulk_std=float(np.std(bulk, ddof=1)),
        n=len(top),
    )


def _table1_selection(min_rho: float | None, min_time: float | None) -> str:
    """Words for the probe selection of Table 1, e.g. "ρ_(n_c−1) > 0.7 and t ≥ 3"."""
    parts = []
    if min_rho is not None:
        parts.append(f"ρ_(n_c−1) > {min_rho:g}")
    if min_time is not None:
        parts.append(f"t ≥ {min_time:g}")
    return " and ".join(parts) or "every probe"


def _g(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else "—"


def _check_option(name: str, value: Any) -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"l22_table1: {name} must be a non-negative number or None, got {value!r}")


@table(
    "l22_table1",
    paper="Lowell 2022, Table 1",
    caption="Learning occurs in the bulk, not the top: mean (std) of ΔL from P_top g and from "
    "P_bulk g over the probes with ρ_{n_c−1} > 0.7.",
    needs=needs(
        table1_runs,
        "no run has probe rows with dL_top, dL_bulk and rho_<n_top> (probe.loss_changes)",
    ),
)
def l22_table1(
    sel: list[tuple[RunData, int]],
    *,
    min_rho: float | None = EOS_RHO,
    min_time: float | None = None,
) -> str:
    """Lowell 2022, Table 1 (learning occurs in the bulk, not the top), as Markdown.

    Per run, the mean (sample standard deviation) of ΔL_top = L(θ − η P_top g) − L(θ) and
    ΔL_bulk (``docs/methods.md`` §3) over the selected probes: by default, as in the paper, those
    with ρ_{n_c−1} > 0.7 (at the edge of stability). Runs with fewer than 3 selected probes
    are omitted and listed below the table. Rows are labelled by η and architecture (model
    and activation; runs sharing both add what else differs, e.g. ``[classes=[0,1]]``),
    grouped by architecture with η descending as in the paper; numbers are written with 4
    significant digits (``{:.4g}``). The selection is stated under the table.

    Args:
        sel: (run, n_top) of the runs whose probes carry ``dL_top``, ``dL_bulk`` and
            ``rho_<n_top>``.
        min_rho: keep probes with ρ_{n_c−1} > min_rho; None drops this condition (for
            settings where ρ_{n_c−1} stays below the paper's 0.7, e.g. ``min_rho=None,
            min_time=3`` for "every probe after the initial transient").
        min_time: also require flow time t ≥ min_time (None: no condition).

    Returns:
        The Markdown table.

    Raises:
        ValueError: if an option is not a finite non-negative number (booleans included) or
            None.
    """
    _check_option("min_rho", min_rho)
    _check_option("min_time", min_time)
    select = _table1_selection(min_rho, min_time)
    lines = [
        "| η | Architecture | Mean ΔL from P_top g (std) | Mean ΔL from P_bulk g (std) | probes |",
        "|---|---|---|---|---|",
    ]
    omitted = []
    sel = sorted(sel, key=lambda x: (x[0].arch, -x[0].lr, x[0].name))
    # runs sharing architecture and η are told apart by what else differs (e.g. classes)
    label = {id(r): r.arch for r, _ in sel}
    for group in style.group([r for r, _ in sel], lambda r: (r.arch, r.lr)).values():
        if len(group) > 1:
            for r, extra in zip(group, study_labels(group)):
                label[id(r)] = f"{r.arch} [{r.name if extra == 'baseline' else extra}]"
    for r, n_top in sel:
        e = table1_entry(r, n_top, min_rho=min_rho, min_time=min_time)
        if e is None:
            omitted.append(f"{label[id(r)]} {style.fmt_lr(r.lr)} ({r.name})")
            continue
        lines.append(
            f"| {r.lr:g} | {label[id(r)]} | {_g(e['top_mean'])} ({_g(e['top_std'])}) | "
            f"{_g(e['bulk_mean'])} ({_g(e['bulk_std'])}) | {e['n']} |"
        )
    text = "\n".join(lines) + "\n"
    text += f"\nProbes: {select}.\n"
    if len(lines) == 2:
        text += f"\nNo run has {MIN_EOS_PROBES} or more probes with {select}.\n"
    if omitted:
        text += (
            f"\nOmitted (fewer than {MIN_EOS_PROBES} probes with {select}): "
            + "; ".join(omitted)
            + ".\n"
        )
    return text
