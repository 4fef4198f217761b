"""Cohen et al. 2021, *Edge of stability* (slides): sharpening, flow against GD, momentum, studies.

λ_1 is drawn against each run's own stability threshold (dashed, :func:`style.plot_threshold`):
2/η for GD, its momentum/RK4 analogues, and for exponential Euler the integrator's 2/τ per
step (its η is dimensionless, so no 2/η line is drawn for it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eoslab.plots.papers import style
from eoslab.plots.papers.registry import Missing, figure, needs
from eoslab.plots.papers.runs import (
    RunData,
    differences,
    has_finite,
    hashable,
    short_keys,
    study_label,
)

_MAX_STUDY_PANELS = 6


def lambda_runs(runs: list[RunData]) -> list[RunData]:
    """Runs with λ_1 (probe ``lambda_1`` or per-step ``sharpness``)."""
    return [r for r in runs if r.lambda_rows()[0]]


NEEDS_LAMBDA = needs(lambda_runs, "no run has λ_1 (probe lambda_1 or per-step sharpness)")


def _plot_lambda(ax, run: RunData, color, label: str | None, **kw) -> None:
    rows, key = run.lambda_rows()
    t, lam = run.series(rows, key)
    ax.plot(t, lam, color=color, label=label, **{"lw": 1.3, **kw})


def _plot_loss(ax, run: RunData, color, label: str | None = None, **kw) -> np.ndarray:
    rows = run.steps if has_finite(run.steps, "loss") else run.probes
    t, loss = run.series(rows, "loss")
    ax.plot(t, loss, color=color, label=label, **{"lw": 1.1, **kw})
    return loss


@figure(
    "cohen_sharpness",
    paper="Cohen et al. 2021, Figure 1 (slides)",
    caption="Progressive sharpening: λ_1 rises until it reaches 2/η (dashed) and hovers there; "
    "training loss below; one column per loss, colour per η. Exponential-Euler runs: their "
    "own threshold 2/τ per step, t = Σ τ.",
    needs=NEEDS_LAMBDA,
)
def cohen_sharpness(sel: list[RunData]):
    """Cohen et al. 2021, Figure 1 (slides): λ_1 rises until it reaches 2/η, then hovers there.

    Top row: λ_1 against t with each run's threshold 2/η dashed in the same colour; bottom
    row: the training loss. One column per criterion (MSE, cross-entropy), colour per η.

    Args:
        sel: the runs with λ_1 (probe ``lambda_1`` or per-step ``sharpness``).

    Returns:
        The Figure.
    """
    panels = style.group(sel, lambda r: r.loss_name)
    colours = style.colours([r.lr for r in sel], "plasma")
    n = len(panels)
    fig, axes = style.panels(2 * n, nrows=2, ncols=n, size=(4.4, 2.9))
    for j, (loss, group) in enumerate(panels.items()):
        ax, ax_loss = axes[j], axes[n + j]
        losses = []
        for r in sorted(group, key=lambda r: r.lr):
            c = colours[r.lr]
            _plot_lambda(ax, r, c, style.fmt_lr(r.lr))
            style.plot_threshold(ax, r, c)
            losses.append(_plot_loss(ax_loss, r, c))
        ax.set_title(style.LOSS_NAMES.get(loss, loss), fontsize=10)
        ax.set_ylabel("sharpness $\\lambda_1$")
        threshold = style.threshold_name(group, "2/η (threshold)")
        style.legend(ax, extra=[style.proxy(threshold, "--")])
        style.log_if_positive(ax_loss, *losses)
        ax_loss.set_ylabel("training loss")
        ax_loss.set_xlabel(style.time_label(group))
    fig.suptitle("Progressive sharpening up to the edge of stability", fontsize=10)
    return fig


def _flow_and_gd(runs: list[RunData]) -> tuple[list[RunData], list[RunData]]:
    sel = lambda_runs(runs)
    flows = [r for r in sel if r.is_flow]
    gds = sorted((r for r in sel if not r.is_flow), key=lambda r: r.lr)
    if not flows:
        raise Missing("no gradient-flow run (optimizer rk4 or adaptive) with λ_1")
    if not gds:
        raise Missing("no constant-step run (GD) with λ_1 to compare with the flow")
    return flows, gds


@figure(
    "cohen_flow_vs_gd",
    paper="Cohen et al. 2021 (slides: checked with Runge–Kutta)",
    caption="Gradient flow (RK4 or adaptive step) against GD: GD follows the flow until λ_1 "
    "reaches 2/η (dashed; 2/τ per step for exponential Euler).",
    needs=_flow_and_gd,
)
def cohen_flow_vs_gd(sel: tuple[list[RunData], list[RunData]]):
    """Cohen et al. 2021 (slides, "checked with Runge–Kutta"): gradient flow against GD.

    GD follows the gradient flow until λ_1 reaches 2/η, then departs from it.

    Top: λ_1 against t for the flow runs (black; RK4 or an adaptive step) and the GD runs
    (colour per η, with 2/η dashed); bottom: the training loss of the same runs.

    Args:
        sel: (flow runs, constant-step runs by η), each with λ_1.

    Returns:
        The Figure.
    """
    flows, gds = sel
    colours = style.colours([r.lr for r in gds], "plasma")
    fig, (ax, ax_loss) = style.panels(2, nrows=2, ncols=1, size=(6.4, 3.0))
    losses = []
    for i, r in enumerate(flows):
        kind = (
            "RK4"
            if r.optimizer == "rk4"
            else "adaptive " + style.OPTIMIZER_NAMES.get(r.optimizer, r.optimizer)
        )
        ls = ["-", "-.", (0, (5, 1))][i % 3]
        _plot_lambda(ax, r, "k", f"flow ({kind})", lw=2.0, ls=ls)
        losses.append(_plot_loss(ax_loss, r, "k", f"flow ({kind})", lw=2.0, ls=ls))
    for r in gds:
        c = colours[r.lr]
        label = f"{style.OPTIMIZER_NAMES.get(r.optimizer, r.optimizer)} {style.fmt_lr(r.lr)}"
        _plot_lambda(ax, r, c, label)
        style.plot_threshold(ax, r, c)
        losses.append(_plot_loss(ax_loss, r, c, label))
    ax.set_ylabel("sharpness $\\lambda_1$")
    style.legend(ax, extra=[style.proxy(style.threshold_name(gds), "--")])
    style.log_if_positive(ax_loss, *losses)
    ax_loss.set_ylabel("training loss")
    ax_loss.set_xlabel(style.time_label([*flows, *gds]))
    fig.suptitle("Gradient flow against gradient descent", fontsize=10)
    return fig


def momentum_runs(runs: list[RunData]) -> list[RunData]:
    """Heavy-ball and Nesterov runs with λ_1."""
    return [r for r in lambda_runs(runs) if r.optimizer in ("heavy_ball", "nesterov")]


@figure(
    "cohen_momentum",
    paper="Cohen et al. 2021 (slides: what if momentum)",
    caption="Heavy ball and Nesterov: λ_1 rises to each run's own threshold (2 + 2β)/η or "
    "(2 + 2β)/((1 + 2β)η).",
    needs=needs(momentum_runs, "no heavy-ball or Nesterov run with λ_1"),
)
def cohen_momentum(sel: list[RunData]):
    """Cohen et al. 2021 (slides, "What if: momentum"): λ_1 rises to the run's own threshold.

    Heavy ball: (2 + 2β)/η; Nesterov: (2 + 2β)/((1 + 2β)η) (docs/methods.md §2), each dashed in the
    run's colour. One subplot per optimizer, colour per (η, β).

    Args:
        sel: the heavy-ball and Nesterov runs with λ_1.

    Returns:
        The Figure.
    """
    panels = style.group(sel, lambda r: r.optimizer)
    colours = style.colours([(r.lr, r.momentum) for r in sel], "plasma")
    formulas = {
        "heavy_ball": "threshold (2 + 2β)/η",
        "nesterov": "threshold (2 + 2β)/((1 + 2β)η)",
    }
    fig, axes = style.panels(len(panels), ncols=2)
    for ax, (opt, group) in zip(axes, panels.items()):
        for r in sorted(group, key=lambda r: (r.lr, r.momentum)):
            c = colours[(r.lr, r.momentum)]
            _plot_lambda(ax, r, c, f"{style.fmt_lr(r.lr)}, β={r.momentum:g}")
            style.plot_threshold(ax, r, c)
        ax.set_title(style.OPTIMIZER_NAMES.get(opt, opt), fontsize=10)
        ax.set_xlabel(style.time_label(group))
        ax.set_ylabel("sharpness $\\lambda_1$")
        style.legend(ax, extra=[style.proxy(formulas[opt], "--")])
    fig.suptitle("Momentum: sharpening to each optimizer's own threshold", fontsize=10)
    return fig


@figure(
    "cohen_studies",
    paper="Cohen et al. 2021 (slides: changes that matter)",
    caption="λ_1 over t for runs differing in width, depth, data size or initialisation, "
    "labelled by what differs; each run's threshold dashed (2/τ per step for exponential "
    "Euler).",
    needs=NEEDS_LAMBDA,
)
def cohen_studies(sel: list[RunData]):
    """Cohen et al. 2021 (slides, "changes that matter"): width, depth, data size, NTK init.

    λ_1 against t for runs that differ in one factor, labelled by what differs (the sweep's
    overrides, else the configurations); one subplot per varied factor, with runs that match
    the most common setting in every factor drawn in black as the baseline in each subplot,
    and each run's threshold dashed.

    Args:
        sel: the runs with λ_1.

    Returns:
        The Figure.
    """
    diffs = differences(sel)
    short = short_keys(k for d in diffs for k in d)
    baseline = [r for r, d in zip(sel, diffs) if not d]
    factors: dict[tuple[str, ...], list[tuple[RunData, dict[str, Any]]]] = {}
    for r, d in zip(sel, diffs):
        if d:
            factors.setdefault(tuple(sorted(d)), []).append((r, d))
    # a panel: (title, [(run, label, colour key)]); colour keys are numbers for one
    # numeric factor (a colour scale), strings otherwise
    panels: list[tuple[str, list[tuple[RunData, str, Any]]]] = []
    if len(factors) > _MAX_STUDY_PANELS:  # no one-factor study: one panel, a colour per run
        members = [
            (r, study_label(d, short), str(i)) for i, (r, d) in enumerate(zip(sel, diffs)) if d
        ]
        panels.append(("all runs", members))
    else:
        for keys, group in factors.items():
            numeric = len(keys) == 1 and all(
                isinstance(d[keys[0]], (int, float)) and not isinstance(d[keys[0]], bool)
                for _, d in group
            )
            members = [
                (r, study_label(d, short), d[keys[0]] if numeric else hashable(d)) for r, d in group
            ]
            panels.append(("varying " + ", ".join(short[k] for k in keys), members))
    if not panels:
        panels.append(("all runs alike", []))
    mixed = len(factors) > _MAX_STUDY_PANELS
    fig, axes = style.panels(len(panels), size=(10.0, 4.5) if mixed else (4.4, 3.3))
    for ax, (title, members) in zip(axes, panels):
        colours = style.colours([key for _, _, key in members], "viridis")
        for r in baseline:
            _plot_lambda(ax, r, "k", "baseline", lw=1.8)
            style.plot_threshold(ax, r, "0.4")
        for r, label, key in members:
            _plot_lambda(ax, r, colours[key], label)
            style.plot_threshold(ax, r, colours[key])
        drawn = [*baseline, *(r for r, _, _ in members)]
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(style.time_label(drawn))
        ax.set_ylabel("sharpness $\\lambda_1$")
        where = dict(loc="upper left", bbox_to_anchor=(1.01, 1.0)) if mixed else {}
        threshold = style.threshold_name(drawn, "threshold")
        style.legend(ax, extra=[style.proxy(threshold, "--")], **where)
    fig.suptitle("Progressive sharpening: what changes it", fontsize=10)
    return fig
