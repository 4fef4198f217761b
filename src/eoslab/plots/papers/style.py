"""Drawing helpers shared by the paper figures: panels, colours, legends, thresholds, labels.

Figures are :class:`matplotlib.figure.Figure` objects (no pyplot state). Time axes are flow
time: t = Σ η for GD-like runs, t = Σ τ for exponential Euler, whose ``lr`` is a
dimensionless η and no step length (:func:`time_label`, :func:`plot_threshold`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from eoslab.plots.papers.runs import RunData

LOSS_NAMES = {"mse": "MSE", "cross_entropy": "cross-entropy"}
OPTIMIZER_NAMES = {
    "gd": "GD",
    "heavy_ball": "heavy ball",
    "nesterov": "Nesterov",
    "euler": "Euler",
    "rk4": "RK4",
    "exp_euler": "exponential Euler",
}
MAX_LEGEND = 14


def panels(n_panels: int, *, ncols: int | None = None, size=(4.4, 3.3), nrows: int | None = None):
    """A Figure (no pyplot state) with ``n_panels`` axes; unused axes are hidden."""
    from matplotlib.figure import Figure

    n_panels = max(n_panels, 1)
    if nrows is None:
        ncols = ncols or min(n_panels, 3)
        nrows = math.ceil(n_panels / ncols)
    else:
        ncols = ncols or math.ceil(n_panels / nrows)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), dpi=110, layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    for ax in axes[:n_panels]:
        ax.grid(alpha=0.3)
    return fig, axes[:n_panels]


def colours(values: Sequence[Any], cmap: str = "viridis") -> dict[Any, Any]:
    """A colour per distinct value: ordered ones along ``cmap``, others from tab10."""
    from matplotlib import colormaps

    distinct = list(dict.fromkeys(values))
    try:
        distinct = sorted(distinct)
        ordered = all(isinstance(v, (int, float)) for v in distinct)
    except TypeError:
        ordered = False
    if not ordered:
        tab = colormaps["tab10"]
        return {v: tab(i % 10) for i, v in enumerate(distinct)}
    cm = colormaps[cmap]
    n = len(distinct)
    return {v: cm(0.85 * i / max(n - 1, 1)) for i, v in enumerate(distinct)}


def legend(ax, *, extra: list | None = None, **kw) -> None:
    """A legend without repeated labels, plus ``extra`` proxy handles."""
    handles, labels = ax.get_legend_handles_labels()
    seen: dict[str, Any] = {}
    for h, lab in zip(handles, labels):
        if lab and not lab.startswith("_") and lab not in seen:
            seen[lab] = h
    items = list(seen.items())
    for h in extra or []:
        items.append((h.get_label(), h))
    if len(items) > MAX_LEGEND:
        more = len(items) - MAX_LEGEND + 1
        items = items[: MAX_LEGEND - 1] + [(f"… {more} more", proxy("", "none"))]
    if items:
        ax.legend([h for _, h in items], [lab for lab, _ in items], fontsize=7, **kw)


def proxy(label: str, ls: str, color: str = "0.3"):
    """A legend handle for a line style (e.g. "dashed: the threshold")."""
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, ls=ls, lw=1.3, label=label)


def log_if_positive(ax, *arrays: np.ndarray) -> None:
    """A log y axis when every finite value of ``arrays`` is positive."""
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays] or [np.array([])])
    vals = vals[np.isfinite(vals)]
    if len(vals) and np.all(vals > 0):
        ax.set_yscale("log")


def group(runs: Iterable[RunData], key: Callable[[RunData], Any]) -> dict[Any, list[RunData]]:
    """Runs grouped by ``key``, in first-seen order."""
    out: dict[Any, list[RunData]] = {}
    for r in runs:
        out.setdefault(key(r), []).append(r)
    return out


def fmt_lr(lr: float) -> str:
    """``η=0.01`` (``η=?`` when unknown)."""
    return f"η={lr:g}" if math.isfinite(lr) else "η=?"


def time_label(runs: Iterable[RunData]) -> str:
    """The time axis: flow time Σ η, or Σ τ for exponential-Euler runs."""
    kinds = {r.is_exp_euler for r in runs}
    if kinds == {True}:
        return "flow time $t = \\sum \\tau$"
    if kinds == {True, False}:
        return "flow time $t = \\sum \\eta$ ($\\sum \\tau$ for exponential Euler)"
    return "flow time $t = \\sum \\eta$"


def rho_label(runs: Iterable[RunData], sub: str = "") -> str:
    """The ρ axis: ρ = ηλ/2 (τλ/2 for exponential Euler, whose step is τ)."""
    kinds = {r.is_exp_euler for r in runs}
    step = "\\tau" if kinds == {True} else "\\eta"
    label = f"$\\rho{sub} = {step}\\lambda{sub} / 2$"
    if kinds == {True, False}:
        label += " ($\\tau$ for exponential Euler)"
    return label


def threshold_name(runs: Iterable[RunData], name: str = "2/η") -> str:
    """Legend text of the dashed threshold, naming 2/τ when exponential-Euler runs are drawn."""
    kinds = {r.is_exp_euler for r in runs}
    if kinds == {True}:
        return "2/τ per step (exponential Euler's threshold)"
    if kinds == {True, False}:
        return f"{name}; 2/τ per step for exponential Euler"
    return name


def plot_threshold(ax, run: RunData, color, label: str | None = None) -> None:
    """The run's stability threshold as a dashed line (a horizontal one when it is constant).

    From the recorded ``threshold`` rows (:meth:`RunData.threshold_series`), else 2/η for a
    constant-step run. An exponential-Euler run gets the integrator's own 2/τ of each step,
    never 2/η: its η is dimensionless.
    """
    t, thr = run.threshold_series()
    ok = np.isfinite(thr)
    if not ok.any():
        if math.isfinite(run.lr) and run.lr > 0 and not run.is_flow and not run.is_exp_euler:
            ax.axhline(2.0 / run.lr, color=color, ls="--", lw=1.0, label=label)
        return
    t, thr = t[ok], thr[ok]
    if np.allclose(thr, thr[0], rtol=1e-9):
        ax.axhline(thr[0], color=color, ls="--", lw=1.0, label=label)
    else:
        ax.plot(t, thr, color=color, ls="--", lw=1.0, label=label)
