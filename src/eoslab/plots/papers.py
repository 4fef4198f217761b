"""The figures and tables of the three papers, drawn from stored runs only.

Every entry of :data:`FIGURES` reproduces one figure and every entry of :data:`TABLES` one table
of the papers in ``papers/`` (notation of ``METHODS.md`` §2–§5, §8):

- Lowell 2022, *Singularity in the loss landscape*: Figures 1–6 (``l22_fig1`` … ``l22_fig6``)
  and Table 1 (``l22_table1``);
- Cohen et al. 2021, *Edge of stability* (slides): λ_1 → 2/η (``cohen_sharpness``), the
  gradient flow against GD (``cohen_flow_vs_gd``), momentum (``cohen_momentum``) and the
  width/depth/data/initialisation studies (``cohen_studies``);
- Lowell 2024, *Layerwise Jacobian alignment*: the Gauss–Newton decomposition (Fig. 1–2,
  ``l24_gauss_newton``), the layerwise components C_ℓ (Fig. 3, ``l24_layerwise``), the five
  factors (I)–(V) (Fig. 4, ``l24_factors``), the alignment and activation ratios
  (``l24_ratios``), the counterfactual sharpness (``l24_counterfactual``) and Table 2
  (``l24_table2``).

Runs come from :func:`load_runs` (a run directory, a sweep directory or a list of them). A
figure's ``needs(runs)`` returns None when the runs hold what it draws, else a short reason,
so a caller can skip it with a message; its ``func(runs, out)`` writes ``out.png`` and
``out.pdf`` and returns the paths. A table's ``func(runs)`` returns Markdown. Nothing here
imports model code: everything is read from the run store.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from eoslab.plots._save import save_figure
from eoslab.store import RunStore, StoreError

__all__ = [
    "FIGURES",
    "TABLES",
    "FigureSpec",
    "RunData",
    "TableSpec",
    "load_runs",
    "render_all",
    "study_labels",
]

#: Steps ignored as the initial transient when taking peaks (Lowell 2024 §5; METHODS §5).
TRANSIENT = 10
#: ρ_{n_c−1} above which a probe counts as on the edge of stability (Lowell 2022 Table 1).
EOS_RHO = 0.7
#: Fewest such probes for a run to enter Lowell 2022's Table 1.
MIN_EOS_PROBES = 3
COMPONENTS = ("I", "II", "III", "IV", "V")
_COMPONENT_NAMES = {
    "I": "(I) output $C_L$",
    "II": "(II) activation ratios",
    "III": "(III) layerwise norms",
    "IV": "(IV) coupling",
    "V": "(V) alignment",
}
_TIME_LABEL = "flow time $t = \\sum \\eta$"
_MODEL_NAMES = {
    "mlp": "MLP",
    "small_cnn": "SmallCNN",
    "alexnet": "AlexNet",
    "vgg11": "VGG-11",
    "vgg16": "VGG-16",
    "resnet32": "ResNet-32",
    "deep_linear": "DeepLinear",
}
# the constructors' default activations (eoslab.models), used for labels only
_DEFAULT_ACTIVATION = {
    "mlp": "tanh",
    "small_cnn": "relu",
    "alexnet": "relu",
    "vgg11": "relu",
    "vgg16": "relu",
    "resnet32": "relu",
    "deep_linear": "linear",
}
_ACTIVATION_NAMES = {"relu": "ReLU", "tanh": "Tanh", "elu": "ELU", "softplus": "Softplus"}
_LOSS_NAMES = {"mse": "MSE", "cross_entropy": "cross-entropy"}
_OPTIMIZER_NAMES = {
    "gd": "GD",
    "heavy_ball": "heavy ball",
    "nesterov": "Nesterov",
    "euler": "Euler",
    "rk4": "RK4",
    "exp_euler": "exponential Euler",
}
_MISSING = "(default)"
_MAX_LEGEND = 14
_MAX_STUDY_PANELS = 6


# ====================================================================== loading
def _num(x: Any) -> float:
    """``x`` as a float; NaN for None, booleans, strings and other non-numbers."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return math.nan
    return float(x)


def _finite(x: Any) -> bool:
    return math.isfinite(_num(x))


@dataclass
class RunData:
    """Everything stored for one run, read once by :func:`load_runs`.

    Attributes:
        path: the run directory.
        config: ``config.yaml`` as a nested dict.
        steps: per-step rows (``steps.jsonl``).
        probes: per-probe rows (``probes.jsonl``).
        analysis: post-hoc analysis rows (``analysis.jsonl``).
        summary: ``results/analysis_summary.json`` or None.
        cusp: ``results/cusp.json`` or None.
        status: ``status.json`` (empty when missing).
        overrides: the sweep's overrides of this run (``{dotted.key: value}``), empty when
            the run is not part of a sweep.
    """

    path: Path
    config: dict[str, Any]
    steps: list[dict[str, Any]]
    probes: list[dict[str, Any]]
    analysis: list[dict[str, Any]]
    summary: dict[str, Any] | None = None
    cusp: dict[str, Any] | None = None
    status: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ configuration
    def cfg(self, dotted: str, default: Any = None) -> Any:
        """The configuration value at ``dotted`` (``"optimizer.lr"``), or ``default``."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return default if node is None else node

    @property
    def name(self) -> str:
        """The run directory's name (a sweep's run id)."""
        return self.path.name

    @property
    def lr(self) -> float:
        """η: ``optimizer.lr`` (the maximum η of an adaptive run), NaN if unset."""
        return _num(self.cfg("optimizer.lr"))

    @property
    def optimizer(self) -> str:
        """``optimizer.name`` (``gd`` when unset)."""
        return str(self.cfg("optimizer.name", "gd"))

    @property
    def momentum(self) -> float:
        """β of heavy ball / Nesterov runs (``optimizer.momentum``), NaN if unset."""
        return _num(self.cfg("optimizer.momentum"))

    @property
    def is_flow(self) -> bool:
        """True for a gradient-flow run: RK4 or an adaptive step η_t = min(η, c/λ_1)."""
        return self.optimizer == "rk4" or bool(self.cfg("optimizer.adaptive", False))

    @property
    def loss_name(self) -> str:
        """The criterion (``mse`` or ``cross_entropy``)."""
        return str(self.cfg("loss", "mse"))

    @property
    def activation(self) -> str:
        """``model.activation`` or the architecture's default activation."""
        act = self.cfg("model.activation")
        if act is None:
            act = _DEFAULT_ACTIVATION.get(str(self.cfg("model.name", "")), "")
        return str(act)

    @property
    def arch(self) -> str:
        """Architecture label such as ``AlexNet-ReLU`` (model and activation)."""
        model = str(self.cfg("model.name", "model"))
        label = _MODEL_NAMES.get(model, model)
        act = self.activation
        if act and act != "linear":
            label += "-" + _ACTIVATION_NAMES.get(act, act)
        return label

    @property
    def n_top(self) -> int | None:
        """n_c − 1, the top subspace's dimension: from the probe rows, the config or classes."""
        for r in self.probes:
            if _finite(r.get("n_top")):
                return int(r["n_top"])
        if _finite(self.cfg("probe.n_top")):
            return int(self.cfg("probe.n_top"))
        classes = self.cfg("data.classes")
        if isinstance(classes, list) and len(classes) >= 2:
            return len(classes) - 1
        return None

    @property
    def n_classes(self) -> int | None:
        """n_c: the length of ``data.classes``, else n_top + 1."""
        classes = self.cfg("data.classes")
        if isinstance(classes, list) and classes:
            return len(classes)
        n_top = self.n_top
        return None if n_top is None else n_top + 1

    @property
    def n_train(self) -> int | None:
        """N: ``data.n_train``, else the number of samples recorded in the summary."""
        n = self.cfg("data.n_train")
        if n is None and self.summary:
            n = self.summary.get("n_train")
        return int(n) if _finite(n) else None

    # ------------------------------------------------------------ series
    @cached_property
    def _time_of_step(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for rows in (self.analysis, self.probes, self.steps):
            for r in rows:
                if _finite(r.get("time")) and _finite(r.get("step")):
                    out[int(r["step"])] = float(r["time"])
        return out

    def time_of(self, step: int) -> float:
        """Flow time t of ``step`` as recorded in any stream (the step itself if unknown)."""
        return self._time_of_step.get(int(step), float(step))

    def series(self, rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
        """(t, values of ``key``) over the rows that hold ``key``, in step order.

        t is the row's flow time, else the time another stream recorded for its step.
        """
        kept = sorted((r for r in rows if key in r and r[key] is not None), key=_step)
        t = np.array(
            [
                _num(r.get("time")) if _finite(r.get("time")) else self.time_of(_step(r))
                for r in kept
            ],
            dtype=float,
        )
        return t, np.array([_num(r[key]) for r in kept], dtype=float)

    def lambda_rows(self, *, prefer_steps: bool = False) -> tuple[list[dict[str, Any]], str]:
        """Rows holding λ_1 and the key: probe ``lambda_1`` or the per-step ``sharpness``.

        Adaptive and exponential-Euler runs record λ_1 every step (``sharpness``);
        ``prefer_steps`` takes those when present (denser than the probes).
        """
        order = [(self.steps, "sharpness"), (self.probes, "lambda_1"), (self.probes, "sharpness")]
        if not prefer_steps:
            order = order[1:] + order[:1]
        for rows, key in order:
            if any(_finite(r.get(key)) for r in rows):
                return rows, key
        return [], "lambda_1"

    def threshold_series(self) -> tuple[np.ndarray, np.ndarray]:
        """(t, the EoS threshold 2/η or its momentum/RK4 analogue) from probes, else steps."""
        for rows in (self.probes, self.steps):
            if any(_finite(r.get("threshold")) for r in rows):
                return self.series(rows, "threshold")
        return np.array([]), np.array([])

    def decomposition_rows(self, key: str) -> list[dict[str, Any]]:
        """Analysis rows holding ``key`` (post-hoc, Lowell 2024's way), else probe rows."""
        for rows in (self.analysis, self.probes):
            kept = [r for r in rows if key in r and r[key] is not None]
            if kept:
                return sorted(kept, key=_step)
        return []


def _step(row: dict[str, Any]) -> int:
    s = row.get("step")
    return int(s) if _finite(s) else 0


def _is_run(path: Path) -> bool:
    return (path / "config.yaml").is_file()


def _sweep_state(sweep_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads((sweep_dir / "sweep_state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return state if isinstance(state, dict) else {}


def _overrides(state: dict[str, Any], run_id: str) -> dict[str, Any]:
    entry = state.get(run_id)
    over = entry.get("overrides") if isinstance(entry, dict) else None
    return dict(over) if isinstance(over, dict) else {}


def _discover(path: Path, depth: int = 1) -> list[tuple[Path, dict[str, Any]]]:
    """(run directory, overrides) under ``path``: a run, a sweep, or a folder of them."""
    if _is_run(path):
        over: dict[str, Any] = {}
        if path.parent.name == "runs":
            over = _overrides(_sweep_state(path.parent.parent), path.name)
        return [(path, over)]
    if (path / "runs").is_dir():
        state = _sweep_state(path)
        dirs = [d for d in (path / "runs").iterdir() if d.is_dir() and _is_run(d)]
        rank = {rid: i for i, rid in enumerate(state)}
        dirs.sort(key=lambda d: (rank.get(d.name, len(rank)), d.name))
        return [(d, _overrides(state, d.name)) for d in dirs]
    out: list[tuple[Path, dict[str, Any]]] = []
    if path.is_dir() and depth > 0:
        for child in sorted(path.iterdir()):
            if child.is_dir():
                out.extend(_discover(child, depth - 1))
    return out


def _read_run(path: Path, overrides: dict[str, Any]) -> RunData:
    store = RunStore.open(path)
    try:
        status = store.status()
    except StoreError:
        status = {}
    results: dict[str, dict[str, Any] | None] = {}
    for name in ("analysis_summary", "cusp"):
        try:
            results[name] = store.read_result(name)
        except StoreError:
            results[name] = None
    return RunData(
        path=path,
        config=store.read_config(),
        steps=store.rows("steps"),
        probes=store.rows("probes"),
        analysis=store.rows("analysis"),
        summary=results["analysis_summary"],
        cusp=results["cusp"],
        status=status,
        overrides=overrides,
    )


def load_runs(path: str | Path | Iterable[str | Path]) -> list[RunData]:
    """Load the runs under ``path``: a run directory, a sweep directory or a list of paths.

    A sweep directory holds ``runs/<id>/`` run directories; each run's overrides come from its
    ``sweep_state.json`` (also for a run directory given directly inside a sweep). A folder
    holding run or sweep directories one level down is searched too. Directories that are not
    runs are skipped, as are paths that do not exist (with a warning) and runs that cannot be
    read (with a warning). A run found twice is loaded once.

    Args:
        path: one path or an iterable of paths.

    Returns:
        The runs, in sweep order (then by name).

    Raises:
        StoreError: if no run is found.
    """
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    found: list[tuple[Path, dict[str, Any]]] = []
    for p in paths:
        if not p.exists():
            warnings.warn(f"{p}: no such file or directory; skipped", stacklevel=2)
            continue
        found.extend(_discover(p))
    runs: list[RunData] = []
    seen: set[Path] = set()
    for run_dir, over in found:
        key = run_dir.resolve()
        if key in seen:
            continue
        seen.add(key)
        try:
            runs.append(_read_run(run_dir, over))
        except StoreError as err:
            warnings.warn(f"{run_dir}: skipped ({err})", stacklevel=2)
    if not runs:
        where = ", ".join(str(p) for p in paths) or "(no paths given)"
        raise StoreError(
            f"no runs found in {where}: expected a run directory (with config.yaml), a sweep "
            "directory (with runs/<id>/config.yaml) or a list of them"
        )
    return runs


# ====================================================================== registry
@dataclass(frozen=True)
class FigureSpec:
    """One figure of a paper.

    Attributes:
        name: registry key (also the default file name).
        paper: the paper and figure it reproduces.
        caption: what is drawn.
        func: ``func(runs, out) -> [out.png, out.pdf]``.
        needs: ``needs(runs) -> None`` when the runs hold what the figure draws, else a
            short reason.
    """

    name: str
    paper: str
    caption: str
    func: Callable[[list[RunData], Path], list[Path]]
    needs: Callable[[list[RunData]], str | None]

    def __call__(self, runs: list[RunData], out: str | Path) -> list[Path]:
        """Draw the figure into ``out`` (suffix ignored); return the written paths."""
        return self.func(runs, Path(out))


@dataclass(frozen=True)
class TableSpec:
    """One table of a paper; ``func(runs)`` returns Markdown, ``needs`` as for figures."""

    name: str
    paper: str
    caption: str
    func: Callable[..., str]
    needs: Callable[[list[RunData]], str | None]

    def __call__(self, runs: list[RunData], **options) -> str:
        """The table as Markdown; ``options`` go to ``func`` (e.g. ``min_time`` of Table 1)."""
        return self.func(runs, **options)


# ====================================================================== drawing helpers
def _figure(n_panels: int, *, ncols: int | None = None, size=(4.4, 3.3), nrows: int | None = None):
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


def _save(fig, out: Path) -> list[Path]:
    return save_figure(fig, out)


def _colours(values: Sequence[Any], cmap: str = "viridis") -> dict[Any, Any]:
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


def _legend(ax, *, extra: list | None = None, **kw) -> None:
    """A legend without repeated labels, plus ``extra`` proxy handles."""
    handles, labels = ax.get_legend_handles_labels()
    seen: dict[str, Any] = {}
    for h, lab in zip(handles, labels):
        if lab and not lab.startswith("_") and lab not in seen:
            seen[lab] = h
    items = list(seen.items())
    for h in extra or []:
        items.append((h.get_label(), h))
    if len(items) > _MAX_LEGEND:
        more = len(items) - _MAX_LEGEND + 1
        items = items[: _MAX_LEGEND - 1] + [(f"… {more} more", _style_proxy("", "none"))]
    if items:
        ax.legend([h for _, h in items], [lab for lab, _ in items], fontsize=7, **kw)


def _style_proxy(label: str, ls: str, color: str = "0.3"):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, ls=ls, lw=1.3, label=label)


def _log_if_positive(ax, *arrays: np.ndarray) -> None:
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays] or [np.array([])])
    vals = vals[np.isfinite(vals)]
    if len(vals) and np.all(vals > 0):
        ax.set_yscale("log")


def _group(runs: Iterable[RunData], key: Callable[[RunData], Any]) -> dict[Any, list[RunData]]:
    out: dict[Any, list[RunData]] = {}
    for r in runs:
        out.setdefault(key(r), []).append(r)
    return out


def _fmt_lr(lr: float) -> str:
    return f"η={lr:g}" if math.isfinite(lr) else "η=?"


def _plot_threshold(ax, run: RunData, color, label: str | None = None) -> None:
    """The run's EoS threshold as a dashed line (a horizontal one when η is constant)."""
    t, thr = run.threshold_series()
    ok = np.isfinite(thr)
    if not ok.any() and math.isfinite(run.lr) and run.lr > 0 and not run.is_flow:
        ax.axhline(2.0 / run.lr, color=color, ls="--", lw=1.0, label=label)
        return
    if not ok.any():
        return
    t, thr = t[ok], thr[ok]
    if np.allclose(thr, thr[0], rtol=1e-9):
        ax.axhline(thr[0], color=color, ls="--", lw=1.0, label=label)
    else:
        ax.plot(t, thr, color=color, ls="--", lw=1.0, label=label)


def _require(reason: str | None) -> None:
    if reason is not None:
        raise ValueError(reason)


def _has_finite(rows: list[dict[str, Any]], key: str) -> bool:
    return any(_finite(r.get(key)) for r in rows)


# ====================================================================== fits (inline)
def _linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least squares y = slope·x + intercept; returns (slope, intercept, R²)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    A = np.stack([x, np.ones_like(x)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(A, y, rcond=None)
    pred = slope * x + intercept
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    return float(slope), float(intercept), r2


def _power_law_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """y = a·x^b fitted in log–log space; returns (a, b, R² of the log–log fit)."""
    b, log_a, r2 = _linear_fit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)))
    return math.exp(log_a), b, r2


# ====================================================================== peaks
def _peak_lambda_1(run: RunData, transient: int = TRANSIENT) -> float:
    """Peak λ_1 after the first ``transient`` steps.

    Taken from the per-step, probe or analysis rows, else the summary's ``peak_lambda_1``.
    """
    best = math.nan
    for rows, key in ((run.steps, "sharpness"), (run.probes, "lambda_1")):
        vals = [_num(r.get(key)) for r in rows if _step(r) >= transient]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            best = max(vals) if not math.isfinite(best) else max(best, *vals)
    if math.isfinite(best):
        return best
    if run.summary and _finite(run.summary.get("peak_lambda_1")):
        return float(run.summary["peak_lambda_1"])
    vals = [_num(r.get("lambda_H")) for r in run.analysis if _step(r) >= transient]
    vals = [v for v in vals if math.isfinite(v)]
    return max(vals) if vals else math.nan


def _alignment_layer(row: dict[str, Any]) -> int | None:
    layers = [int(m.group(1)) for k in row if (m := re.fullmatch(r"comp(\d+)_V", k))]
    return min(layers) if layers else None


def _peak_alignment(run: RunData, transient: int = TRANSIENT) -> float:
    """Peak alignment (V) of the first layer.

    The summary's ``peak_alignment``, else the maximum of ``comp<ℓ>_V`` over the analysis (or
    probe) rows after the transient.
    """
    if run.summary and _finite(run.summary.get("peak_alignment")):
        return float(run.summary["peak_alignment"])
    for rows in (run.analysis, run.probes):
        kept = [r for r in rows if _step(r) >= transient]
        layer = _alignment_layer(kept[0]) if kept else None
        if layer is None:
            continue
        vals = [_num(r.get(f"comp{layer}_V")) for r in kept]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            return max(vals)
    return math.nan


# ====================================================================== Lowell 2022
def _needs(
    select: Callable[[list[RunData]], Any], message: str
) -> Callable[[list[RunData]], str | None]:
    """A figure's precondition: None when ``select(runs)`` is non-empty, else ``message``."""

    def check(runs: list[RunData]) -> str | None:
        return None if select(runs) else message

    return check


def _rho_runs(runs: list[RunData]) -> list[tuple[RunData, int]]:
    out = []
    for r in runs:
        n_top = r.n_top
        if n_top is not None and _has_finite(r.probes, f"rho_{n_top}"):
            out.append((r, n_top))
    return out


_needs_rho = _needs(
    _rho_runs, "no run has probe rows with ρ_{n_c−1} (rho_<n_top>; enable probes with k ≥ n_c)"
)


def _draw_rho(runs: list[RunData], out: Path, *, colour_key, colour_label, title: str):
    sel = _rho_runs(runs)
    panels = _group([r for r, _ in sel], lambda r: r.arch)
    n_top_of = {id(r): n for r, n in sel}
    colours = _colours([colour_key(r) for r, _ in sel], "plasma")
    fig, axes = _figure(len(panels))
    for ax, (arch, group) in zip(axes, panels.items()):
        top_max = 0.0
        for r in sorted(group, key=colour_key):
            n_top = n_top_of[id(r)]
            c = colours[colour_key(r)]
            t, rho = r.series(r.probes, f"rho_{n_top}")
            ax.plot(t, rho, color=c, lw=1.3, label=colour_label(r))
            top_max = max(top_max, float(np.nanmax(rho, initial=0.0)))
            t2, rho2 = r.series(r.probes, f"rho_{n_top + 1}")
            if len(t2):
                ax.plot(t2, rho2, color=c, lw=1.1, ls=":")
                top_max = max(top_max, float(np.nanmax(rho2, initial=0.0)))
        ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
        ax.set_ylim(0.0, min(max(1.2, 1.05 * top_max), 3.0))
        ax.set_title(arch, fontsize=10)
        ax.set_xlabel(_TIME_LABEL)
        ax.set_ylabel("$\\rho = \\eta\\lambda / 2$")
        _legend(
            ax,
            extra=[
                _style_proxy("$\\rho_{n_c-1}$", "-"),
                _style_proxy("$\\rho_{n_c}$", ":"),
            ],
        )
    fig.suptitle(title, fontsize=10)
    return _save(fig, out)


def l22_fig1(runs: list[RunData], out: Path) -> list[Path]:
    """Lowell 2022, Figure 1 (edge of stability): ρ_{n_c−1} solid and ρ_{n_c} dotted against t.

    One subplot per architecture (model and activation), one colour per learning rate η; the
    dashed line is ρ = 1 (METHODS §2–3).

    Args:
        runs: runs with probe rows carrying ``rho_<n_top>`` (and ``rho_<n_top+1>``).
        out: output path without suffix; ``.png`` and ``.pdf`` are written.

    Returns:
        The written paths.

    Raises:
        ValueError: if no run has the data (see ``needs``).
    """
    _require(_needs_rho(runs))
    return _draw_rho(
        runs,
        out,
        colour_key=lambda r: r.lr,
        colour_label=lambda r: _fmt_lr(r.lr),
        title="Edge of stability: $\\rho_{n_c-1}$ (solid) and $\\rho_{n_c}$ (dotted)",
    )


def l22_fig2(runs: list[RunData], out: Path) -> list[Path]:
    """Lowell 2022, Figure 2 (EoS and n_c): ρ_{n_c−1} solid and ρ_{n_c} dotted, colour per n_c.

    Args:
        runs: runs with probe rows carrying ``rho_<n_top>``, typically the class-count runs.
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if no run has the data.
    """
    _require(_needs_rho(runs))
    return _draw_rho(
        runs,
        out,
        colour_key=lambda r: r.n_classes or 0,
        colour_label=lambda r: f"$n_c$={r.n_classes}",
        title="Edge of stability and $n_c$: $\\rho_{n_c-1}$ (solid), $\\rho_{n_c}$ (dotted)",
    )


def _proj_runs(runs: list[RunData]) -> list[RunData]:
    return [
        r for r in runs if _has_finite(r.probes, "proj_top") and _has_finite(r.probes, "proj_bulk")
    ]


_needs_fig3 = _needs(
    _proj_runs, "no run has probe rows with proj_top and proj_bulk (probe.projections)"
)


def l22_fig3(runs: list[RunData], out: Path) -> list[Path]:
    """Lowell 2022, Figure 3 (gradient concentration): ‖P_top g‖ solid, ‖P_bulk g‖ dotted.

    One subplot per architecture, one colour per η, against flow time t.

    Args:
        runs: runs with probe rows carrying ``proj_top`` and ``proj_bulk``.
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if no run has the data.
    """
    _require(_needs_fig3(runs))
    sel = _proj_runs(runs)
    panels = _group(sel, lambda r: r.arch)
    colours = _colours([r.lr for r in sel], "plasma")
    fig, axes = _figure(len(panels))
    for ax, (arch, group) in zip(axes, panels.items()):
        ys = []
        for r in sorted(group, key=lambda r: r.lr):
            c = colours[r.lr]
            t, top = r.series(r.probes, "proj_top")
            ax.plot(t, top, color=c, lw=1.3, label=_fmt_lr(r.lr))
            t2, bulk = r.series(r.probes, "proj_bulk")
            ax.plot(t2, bulk, color=c, lw=1.1, ls=":")
            ys += [top, bulk]
        _log_if_positive(ax, *ys)
        ax.set_title(arch, fontsize=10)
        ax.set_xlabel(_TIME_LABEL)
        ax.set_ylabel("gradient component norm")
        _legend(
            ax,
            extra=[
                _style_proxy("$\\|P_{top}\\,g\\|$", "-"),
                _style_proxy("$\\|P_{bulk}\\,g\\|$", ":"),
            ],
        )
    fig.suptitle("Gradient concentration", fontsize=10)
    return _save(fig, out)


def _fig4_candidates(runs: list[RunData]) -> list[tuple[RunData, int]]:
    out = []
    for r, n_top in _rho_runs(runs):
        if _has_finite(r.probes, "d_1") and len(r.probes) >= 2:
            out.append((r, n_top))
    return out


_needs_fig4 = _needs(
    _fig4_candidates, "no run has ≥ 2 probe rows with rho_i and d_i (probe.projections)"
)


def _densest(cands: list[tuple[RunData, int]]) -> tuple[RunData, int]:
    """The most densely probed run: the smallest median step gap, then the most probes."""

    def key(item):
        steps = sorted({_step(p) for p in item[0].probes})
        gap = float(np.median(np.diff(steps))) if len(steps) > 1 else math.inf
        return (gap, -len(steps), str(item[0].path))

    return min(cands, key=key)


def l22_fig4(runs: list[RunData], out: Path) -> list[Path]:
    """Lowell 2022, Figure 4 (entering the EoS): ρ_1…ρ_{n_c−1} (left) and |d_i| (right).

    Drawn for one run, the most densely probed one (the paper's AlexNet-ReLU at η = 0.001
    probed every 10 steps); d_i = h_i·g, colour per i.

    Args:
        runs: runs with probe rows carrying ``rho_i`` and ``d_i``.
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if no run has the data.
    """
    _require(_needs_fig4(runs))
    run, n_top = _densest(_fig4_candidates(runs))
    colours = _colours(list(range(1, n_top + 1)), "viridis")
    fig, (ax_rho, ax_d) = _figure(2, ncols=2)
    ds = []
    for i in range(1, n_top + 1):
        t, rho = run.series(run.probes, f"rho_{i}")
        ax_rho.plot(t, rho, color=colours[i], lw=1.1, label=f"$\\rho_{{{i}}}$")
        t, d = run.series(run.probes, f"d_{i}")
        d = np.abs(d)
        ds.append(d)
        ax_d.plot(t, d, color=colours[i], lw=1.1, label=f"$|d_{{{i}}}|$")
    ax_rho.axhline(1.0, color="0.4", lw=0.8, ls="--")
    ax_rho.set_ylabel("$\\rho_i = \\eta\\lambda_i / 2$")
    _log_if_positive(ax_d, *ds)
    ax_d.set_ylabel("$|d_i| = |h_i \\cdot g|$")
    for ax in (ax_rho, ax_d):
        ax.set_xlabel(_TIME_LABEL)
        _legend(ax, ncols=2 if n_top > 5 else 1)
    fig.suptitle(f"Entering the edge of stability: {run.arch}, {_fmt_lr(run.lr)}", fontsize=10)
    return _save(fig, out)


def _fig5_runs(runs: list[RunData]) -> list[RunData]:
    return [r for r in runs if r.n_train is not None and r.lambda_rows(prefer_steps=True)[0]]


_needs_fig5 = _needs(
    _fig5_runs, "no run with λ_1 (probes or per-step sharpness) and a known data-set size N"
)


def l22_fig5(runs: list[RunData], out: Path) -> list[Path]:
    """Lowell 2022, Figure 5 (peak curvature): λ_1 over t for the exact-flow runs, colour per N.

    One subplot per activation; a last panel plots peak λ_1 (after the first 10 steps)
    against N per activation with a least-squares line and its R² (the paper: R² = 99.91 %
    for ReLU).

    Args:
        runs: runs with λ_1 (per-step ``sharpness`` of adaptive runs, or probe ``lambda_1``)
            and a known N (``data.n_train`` or the summary's ``n_train``).
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if no run has the data.
    """
    _require(_needs_fig5(runs))
    sel = _fig5_runs(runs)
    panels = _group(sel, lambda r: r.activation or "default")
    colours = _colours([r.n_train for r in sel], "viridis")
    fig, axes = _figure(len(panels) + 1)
    for ax, (act, group) in zip(axes, panels.items()):
        for r in sorted(group, key=lambda r: r.n_train):
            rows, key = r.lambda_rows(prefer_steps=True)
            t, lam = r.series(rows, key)
            ax.plot(t, lam, color=colours[r.n_train], lw=1.2, label=f"N={r.n_train}")
        ax.set_title(_ACTIVATION_NAMES.get(act, act), fontsize=10)
        ax.set_xlabel(_TIME_LABEL)
        ax.set_ylabel("$\\lambda_1$")
        _legend(ax)
    ax = axes[-1]
    act_colours = _colours(list(panels), "tab10")
    for act, group in panels.items():
        pts = [(r.n_train, _peak_lambda_1(r)) for r in group]
        pts = [(n, v) for n, v in pts if math.isfinite(v)]
        if not pts:
            continue
        x, y = np.array(pts, dtype=float).T
        name = _ACTIVATION_NAMES.get(act, act)
        ax.plot(x, y, "o", color=act_colours[act], label=name)
        if len(set(x.tolist())) >= 2:
            slope, intercept, r2 = _linear_fit(x, y)
            xx = np.linspace(x.min(), x.max(), 50)
            ax.plot(
                xx,
                slope * xx + intercept,
                color=act_colours[act],
                lw=1.0,
                label=f"{name}: {slope:.3g}·N + {intercept:.3g}, $R^2$={r2:.4f}",
            )
    ax.set_xlabel("data-set size N")
    ax.set_ylabel(f"peak $\\lambda_1$ (step ≥ {TRANSIENT})")
    ax.set_title("Peak $\\lambda_1$ against N", fontsize=10)
    _legend(ax)
    fig.suptitle("Peak curvature of the exact gradient flow", fontsize=10)
    return _save(fig, out)


def _cusp_runs(runs: list[RunData]) -> list[RunData]:
    out = []
    for r in runs:
        c = r.cusp or {}
        s, dl = c.get("s"), c.get("dL")
        if isinstance(s, list) and isinstance(dl, list) and len(s) == len(dl) and len(s) >= 2:
            out.append(r)
    return out


_needs_fig6 = _needs(
    _cusp_runs, "no run has results/cusp.json (run `eoslab analyze RUN --what cusp`)"
)


def l22_fig6(runs: list[RunData], out: Path) -> list[Path]:
    """Lowell 2022, Figure 6 (cusp formation): ΔL(s) = L(θ* + s h_1) − L(θ*) at peak λ_1.

    One curve per run from ``results/cusp.json``, colour per N; one subplot per architecture.

    Args:
        runs: runs with a cusp scan.
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if no run has a cusp scan.
    """
    _require(_needs_fig6(runs))
    sel = _cusp_runs(runs)
    panels = _group(sel, lambda r: r.arch)
    colours = _colours([r.n_train if r.n_train is not None else -1 for r in sel], "viridis")
    fig, axes = _figure(len(panels))
    for ax, (arch, group) in zip(axes, panels.items()):
        for r in sorted(group, key=lambda r: r.n_train or -1):
            s = np.array([_num(v) for v in r.cusp["s"]], dtype=float)
            dl = np.array([_num(v) for v in r.cusp["dL"]], dtype=float)
            order = np.argsort(s)
            label = f"N={r.n_train}" if r.n_train is not None else r.name
            if _finite(r.cusp.get("lambda_1")):
                label += f", $\\lambda_1$={float(r.cusp['lambda_1']):.4g}"
            c = colours[r.n_train if r.n_train is not None else -1]
            ax.plot(s[order], dl[order], color=c, lw=1.2, label=label)
        ax.axvline(0.0, color="0.5", lw=0.6)
        ax.set_title(arch, fontsize=10)
        ax.set_xlabel("displacement s along $h_1$")
        ax.set_ylabel("$L(\\theta^* + s h_1) - L(\\theta^*)$")
        _legend(ax)
    fig.suptitle("Cusp formation at the peak of $\\lambda_1$", fontsize=10)
    return _save(fig, out)


# ---------------------------------------------------------------- Table 1
def _table1_runs(runs: list[RunData]) -> list[tuple[RunData, int]]:
    return [
        (r, n)
        for r, n in _rho_runs(runs)
        if _has_finite(r.probes, "dL_top") and _has_finite(r.probes, "dL_bulk")
    ]


_needs_table1 = _needs(
    _table1_runs, "no run has probe rows with dL_top, dL_bulk and rho_<n_top> (probe.loss_changes)"
)


def _table1_entry(
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
        rho = np.array([_num(r.get(f"rho_{n_top}")) for r in rows], dtype=float)
        with np.errstate(invalid="ignore"):
            keep &= rho > min_rho
    if min_time is not None:
        t = np.array([_num(r.get("time")) for r in rows], dtype=float)
        with np.errstate(invalid="ignore"):
            keep &= t >= min_time
    top = np.array([_num(r["dL_top"]) for r in rows], dtype=float)[keep]
    bulk = np.array([_num(r["dL_bulk"]) for r in rows], dtype=float)[keep]
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


def l22_table1(
    runs: list[RunData], *, min_rho: float | None = EOS_RHO, min_time: float | None = None
) -> str:
    """Lowell 2022, Table 1 (learning occurs in the bulk, not the top), as Markdown.

    Per run, the mean (sample standard deviation) of ΔL_top = L(θ − η P_top g) − L(θ) and
    ΔL_bulk (``METHODS.md`` §3) over the selected probes: by default, as in the paper, those
    with ρ_{n_c−1} > 0.7 (at the edge of stability). Runs with fewer than 3 selected probes
    are omitted and listed below the table. Rows are labelled by η and architecture (model
    and activation; runs sharing both add what else differs, e.g. ``[classes=[0,1]]``),
    grouped by architecture with η descending as in the paper; numbers are written with 4
    significant digits (``{:.4g}``). The selection is stated under the table.

    Args:
        runs: runs with probe rows carrying ``dL_top``, ``dL_bulk`` and ``rho_<n_top>``.
        min_rho: keep probes with ρ_{n_c−1} > min_rho; None drops this condition (for
            settings where ρ_{n_c−1} stays below the paper's 0.7, e.g. ``min_rho=None,
            min_time=3`` for "every probe after the initial transient").
        min_time: also require flow time t ≥ min_time (None: no condition).

    Returns:
        The Markdown table.

    Raises:
        ValueError: if no run has the data, or an option is not a finite non-negative number
            (booleans included) or None.
    """
    for name, value in (("min_rho", min_rho), ("min_time", min_time)):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(
                f"l22_table1: {name} must be a non-negative number or None, got {value!r}"
            )
    _require(_needs_table1(runs))
    select = _table1_selection(min_rho, min_time)
    lines = [
        "| η | Architecture | Mean ΔL from P_top g (std) | Mean ΔL from P_bulk g (std) | probes |",
        "|---|---|---|---|---|",
    ]
    omitted = []
    sel = sorted(_table1_runs(runs), key=lambda x: (x[0].arch, -x[0].lr, x[0].name))
    # runs sharing architecture and η are told apart by what else differs (e.g. classes)
    label = {id(r): r.arch for r, _ in sel}
    for group in _group([r for r, _ in sel], lambda r: (r.arch, r.lr)).values():
        if len(group) > 1:
            for r, extra in zip(group, study_labels(group)):
                label[id(r)] = f"{r.arch} [{r.name if extra == 'baseline' else extra}]"
    for r, n_top in sel:
        e = _table1_entry(r, n_top, min_rho=min_rho, min_time=min_time)
        if e is None:
            omitted.append(f"{label[id(r)]} {_fmt_lr(r.lr)} ({r.name})")
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


# ====================================================================== Cohen et al. 2021
def _lambda_runs(runs: list[RunData]) -> list[RunData]:
    return [r for r in runs if r.lambda_rows()[0]]


_needs_lambda = _needs(_lambda_runs, "no run has λ_1 (probe lambda_1 or per-step sharpness)")


def _plot_lambda(ax, run: RunData, color, label: str | None, **kw) -> None:
    rows, key = run.lambda_rows()
    t, lam = run.series(rows, key)
    ax.plot(t, lam, color=color, label=label, **{"lw": 1.3, **kw})


def _plot_loss(ax, run: RunData, color, label: str | None = None, **kw) -> np.ndarray:
    rows = run.steps if _has_finite(run.steps, "loss") else run.probes
    t, loss = run.series(rows, "loss")
    ax.plot(t, loss, color=color, label=label, **{"lw": 1.1, **kw})
    return loss


def cohen_sharpness(runs: list[RunData], out: Path) -> list[Path]:
    """Cohen et al. 2021, Figure 1 (slides): λ_1 rises until it reaches 2/η, then hovers there.

    Top row: λ_1 against t with each run's threshold 2/η dashed in the same colour; bottom
    row: the training loss. One column per criterion (MSE, cross-entropy), colour per η.

    Args:
        runs: runs with λ_1 (probe ``lambda_1`` or per-step ``sharpness``).
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if no run has λ_1.
    """
    _require(_needs_lambda(runs))
    sel = _lambda_runs(runs)
    panels = _group(sel, lambda r: r.loss_name)
    colours = _colours([r.lr for r in sel], "plasma")
    n = len(panels)
    fig, axes = _figure(2 * n, nrows=2, ncols=n, size=(4.4, 2.9))
    for j, (loss, group) in enumerate(panels.items()):
        ax, ax_loss = axes[j], axes[n + j]
        losses = []
        for r in sorted(group, key=lambda r: r.lr):
            c = colours[r.lr]
            _plot_lambda(ax, r, c, _fmt_lr(r.lr))
            _plot_threshold(ax, r, c)
            losses.append(_plot_loss(ax_loss, r, c))
        ax.set_title(_LOSS_NAMES.get(loss, loss), fontsize=10)
        ax.set_ylabel("sharpness $\\lambda_1$")
        _legend(ax, extra=[_style_proxy("2/η (threshold)", "--")])
        _log_if_positive(ax_loss, *losses)
        ax_loss.set_ylabel("training loss")
        ax_loss.set_xlabel(_TIME_LABEL)
    fig.suptitle("Progressive sharpening up to the edge of stability", fontsize=10)
    return _save(fig, out)


def _needs_flow_vs_gd(runs: list[RunData]) -> str | None:
    sel = _lambda_runs(runs)
    if not any(r.is_flow for r in sel):
        return "no gradient-flow run (optimizer rk4 or adaptive) with λ_1"
    if not any(not r.is_flow for r in sel):
        return "no constant-step run (GD) with λ_1 to compare with the flow"
    return None


def cohen_flow_vs_gd(runs: list[RunData], out: Path) -> list[Path]:
    """Cohen et al. 2021 (slides, "checked with Runge–Kutta"): gradient flow against GD.

    GD follows the gradient flow until λ_1 reaches 2/η, then departs from it.

    Top: λ_1 against t for the flow runs (black; RK4 or an adaptive step) and the GD runs
    (colour per η, with 2/η dashed); bottom: the training loss of the same runs.

    Args:
        runs: at least one flow run and one constant-step run, both with λ_1.
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if either kind is missing.
    """
    _require(_needs_flow_vs_gd(runs))
    sel = _lambda_runs(runs)
    flows = [r for r in sel if r.is_flow]
    gds = sorted((r for r in sel if not r.is_flow), key=lambda r: r.lr)
    colours = _colours([r.lr for r in gds], "plasma")
    fig, (ax, ax_loss) = _figure(2, nrows=2, ncols=1, size=(6.4, 3.0))
    losses = []
    for i, r in enumerate(flows):
        kind = (
            "RK4"
            if r.optimizer == "rk4"
            else "adaptive " + _OPTIMIZER_NAMES.get(r.optimizer, r.optimizer)
        )
        ls = ["-", "-.", (0, (5, 1))][i % 3]
        _plot_lambda(ax, r, "k", f"flow ({kind})", lw=2.0, ls=ls)
        losses.append(_plot_loss(ax_loss, r, "k", f"flow ({kind})", lw=2.0, ls=ls))
    for r in gds:
        c = colours[r.lr]
        label = f"{_OPTIMIZER_NAMES.get(r.optimizer, r.optimizer)} {_fmt_lr(r.lr)}"
        _plot_lambda(ax, r, c, label)
        _plot_threshold(ax, r, c)
        losses.append(_plot_loss(ax_loss, r, c, label))
    ax.set_ylabel("sharpness $\\lambda_1$")
    _legend(ax, extra=[_style_proxy("2/η", "--")])
    _log_if_positive(ax_loss, *losses)
    ax_loss.set_ylabel("training loss")
    ax_loss.set_xlabel(_TIME_LABEL)
    fig.suptitle("Gradient flow against gradient descent", fontsize=10)
    return _save(fig, out)


def _momentum_runs(runs: list[RunData]) -> list[RunData]:
    return [r for r in _lambda_runs(runs) if r.optimizer in ("heavy_ball", "nesterov")]


_needs_momentum = _needs(_momentum_runs, "no heavy-ball or Nesterov run with λ_1")


def cohen_momentum(runs: list[RunData], out: Path) -> list[Path]:
    """Cohen et al. 2021 (slides, "What if: momentum"): λ_1 rises to the run's own threshold.

    Heavy ball: (2 + 2β)/η; Nesterov: (2 + 2β)/((1 + 2β)η) (METHODS §2), each dashed in the
    run's colour. One subplot per optimizer, colour per (η, β).

    Args:
        runs: heavy-ball or Nesterov runs with λ_1.
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if there is no momentum run.
    """
    _require(_needs_momentum(runs))
    sel = _momentum_runs(runs)
    panels = _group(sel, lambda r: r.optimizer)
    colours = _colours([(r.lr, r.momentum) for r in sel], "plasma")
    formulas = {
        "heavy_ball": "threshold (2 + 2β)/η",
        "nesterov": "threshold (2 + 2β)/((1 + 2β)η)",
    }
    fig, axes = _figure(len(panels), ncols=2)
    for ax, (opt, group) in zip(axes, panels.items()):
        for r in sorted(group, key=lambda r: (r.lr, r.momentum)):
            c = colours[(r.lr, r.momentum)]
            _plot_lambda(ax, r, c, f"{_fmt_lr(r.lr)}, β={r.momentum:g}")
            _plot_threshold(ax, r, c)
        ax.set_title(_OPTIMIZER_NAMES.get(opt, opt), fontsize=10)
        ax.set_xlabel(_TIME_LABEL)
        ax.set_ylabel("sharpness $\\lambda_1$")
        _legend(ax, extra=[_style_proxy(formulas[opt], "--")])
    fig.suptitle("Momentum: sharpening to each optimizer's own threshold", fontsize=10)
    return _save(fig, out)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _hashable(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def _differences(runs: list[RunData]) -> list[dict[str, Any]]:
    """For each run, the settings in which it differs from the most common value.

    Read from the sweep overrides when every run has them (dict values are flattened to
    dotted keys), else from the full configurations. A key missing in a run reads
    ``(default)``.
    """
    if all(r.overrides for r in runs):
        flat = [_flatten(r.overrides) for r in runs]
    else:
        flat = [_flatten(r.config) for r in runs]
    # settings that differ between runs but are no experimental factor
    keys = sorted(set().union(*flat) - {"name", "device", "chunk_size"})
    out: list[dict[str, Any]] = [{} for _ in runs]
    for k in keys:
        vals = [_hashable(f.get(k, _MISSING)) for f in flat]
        if len(set(vals)) < 2:
            continue
        modal = Counter(vals).most_common(1)[0][0]
        for i, (f, v) in enumerate(zip(flat, vals)):
            if v != modal:
                out[i][k] = f.get(k, _MISSING)
    return out


def _short_keys(keys: Iterable[str]) -> dict[str, str]:
    keys = list(dict.fromkeys(keys))
    last = Counter(k.rsplit(".", 1)[-1] for k in keys)
    return {k: (k.rsplit(".", 1)[-1] if last[k.rsplit(".", 1)[-1]] == 1 else k) for k in keys}


def _study_label(diff: dict[str, Any], short: dict[str, str]) -> str:
    if not diff:
        return "baseline"
    label = ", ".join(f"{short[k]}={_value_str(v)}" for k, v in sorted(diff.items()))
    return label if len(label) <= 60 else label[:59] + "…"


def _value_str(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value_str(x) for x in v) + "]"
    return str(v)


def study_labels(runs: list[RunData]) -> list[str]:
    """A label per run naming what differs from the other runs (``width=50``, ``baseline``)."""
    diffs = _differences(runs)
    short = _short_keys(k for d in diffs for k in d)
    return [_study_label(d, short) for d in diffs]


def cohen_studies(runs: list[RunData], out: Path) -> list[Path]:
    """Cohen et al. 2021 (slides, "changes that matter"): width, depth, data size, NTK init.

    λ_1 against t for runs that differ in one factor, labelled by what differs (the sweep's
    overrides, else the configurations); one subplot per varied factor, with runs that match
    the most common setting in every factor drawn in black as the baseline in each subplot,
    and each run's threshold dashed.

    Args:
        runs: runs with λ_1.
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if no run has λ_1.
    """
    _require(_needs_lambda(runs))
    sel = _lambda_runs(runs)
    diffs = _differences(sel)
    short = _short_keys(k for d in diffs for k in d)
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
            (r, _study_label(d, short), str(i)) for i, (r, d) in enumerate(zip(sel, diffs)) if d
        ]
        panels.append(("all runs", members))
    else:
        for keys, group in factors.items():
            numeric = len(keys) == 1 and all(
                isinstance(d[keys[0]], (int, float)) and not isinstance(d[keys[0]], bool)
                for _, d in group
            )
            members = [
                (r, _study_label(d, short), d[keys[0]] if numeric else _hashable(d))
                for r, d in group
            ]
            panels.append(("varying " + ", ".join(short[k] for k in keys), members))
    if not panels:
        panels.append(("all runs alike", []))
    mixed = len(factors) > _MAX_STUDY_PANELS
    fig, axes = _figure(len(panels), size=(10.0, 4.5) if mixed else (4.4, 3.3))
    for ax, (title, members) in zip(axes, panels):
        colours = _colours([key for _, _, key in members], "viridis")
        for r in baseline:
            _plot_lambda(ax, r, "k", "baseline", lw=1.8)
            _plot_threshold(ax, r, "0.4")
        for r, label, key in members:
            _plot_lambda(ax, r, colours[key], label)
            _plot_threshold(ax, r, colours[key])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(_TIME_LABEL)
        ax.set_ylabel("sharpness $\\lambda_1$")
        where = dict(loc="upper left", bbox_to_anchor=(1.01, 1.0)) if mixed else {}
        _legend(ax, extra=[_style_proxy("threshold", "--")], **where)
    fig.suptitle("Progressive sharpening: what changes it", fontsize=10)
    return _save(fig, out)


# ====================================================================== Lowell 2024
def _n_colours(runs: list[RunData]) -> dict[Any, Any]:
    return _colours([r.n_train if r.n_train is not None else -1 for r in runs], "viridis")


def _n_label(run: RunData) -> str:
    return f"N={run.n_train}" if run.n_train is not None else run.name


def _n_colour(colours, run: RunData):
    return colours[run.n_train if run.n_train is not None else -1]


def _decomp_runs(runs: list[RunData], key: str) -> list[RunData]:
    return [r for r in runs if any(_finite(x.get(key)) for x in r.decomposition_rows(key))]


_needs_gn = _needs(
    lambda runs: _decomp_runs(runs, "lambda_G"),
    "no run has lambda_G (run `eoslab analyze` or probe.gauss_newton)",
)


def l24_gauss_newton(runs: list[RunData], out: Path) -> list[Path]:
    """Lowell 2024, Figures 1–2 (and 6–13): the Gauss–Newton decomposition over training.

    Left: λ_1(H) solid, λ_1(G) dashed, λ_1(H − G) dotted; middle: E‖M_x‖²; right: the
    overlap ratio ζ = λ_1(G)/E‖M_x‖² (METHODS §4). Colour per data-set size N. Analysis rows
    (post-hoc on snapshots) are used, else probe rows.

    Args:
        runs: runs with ``lambda_G`` in analysis or probe rows.
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if no run has the data.
    """
    _require(_needs_gn(runs))
    sel = _decomp_runs(runs, "lambda_G")
    colours = _n_colours(sel)
    fig, (ax, ax_m, ax_z) = _figure(3, ncols=3)
    lam_all, m_all = [], []
    for r in sorted(sel, key=lambda r: r.n_train or -1):
        c = _n_colour(colours, r)
        rows = r.decomposition_rows("lambda_G")
        for key, ls in (("lambda_H", "-"), ("lambda_G", "--"), ("lambda_R", ":")):
            t, v = r.series(rows, key)
            if len(t):
                ax.plot(t, v, color=c, ls=ls, lw=1.2, label=_n_label(r) if ls == "-" else None)
                if key != "lambda_R":
                    lam_all.append(v)
        t, m = r.series(rows, "EM2")
        if len(t):
            ax_m.plot(t, m, color=c, lw=1.2, label=_n_label(r))
            m_all.append(m)
        t, z = r.series(rows, "zeta")
        if len(t):
            ax_z.plot(t, z, color=c, lw=1.2, label=_n_label(r))
    ax.set_ylabel("top eigenvalue")
    ax.set_title("sharpness of H, G and H − G", fontsize=10)
    _legend(
        ax,
        extra=[
            _style_proxy("$\\lambda_1(H)$", "-"),
            _style_proxy("$\\lambda_1(G)$", "--"),
            _style_proxy("$\\lambda_1(H-G)$", ":"),
        ],
    )
    ax_m.set_title("$E\\|M_x\\|^2$", fontsize=10)
    _log_if_positive(ax_m, *m_all)
    ax_z.set_title("overlap ratio $\\zeta = \\lambda_1(G) / E\\|M_x\\|^2$", fontsize=10)
    ax_z.set_ylim(0.0, 1.05)
    for a in (ax, ax_m, ax_z):
        a.set_xlabel(_TIME_LABEL)
    _legend(ax_m)
    fig.suptitle(
        "Gauss–Newton decomposition: $\\lambda_1(G) = \\zeta\\, E\\|M_x\\|^2$", fontsize=10
    )
    return _save(fig, out)


def _n_layers(row: dict[str, Any], prefix: str) -> int:
    n = 0
    while f"{prefix}{n + 1}" in row:
        n += 1
    return n


_needs_layerwise = _needs(
    lambda runs: _decomp_runs(runs, "C_1"),
    "no run has layerwise rows C_ℓ (MLP; `eoslab analyze` or probe.layerwise)",
)


def l24_layerwise(runs: list[RunData], out: Path) -> list[Path]:
    """Lowell 2024, Figure 3 (and 14–18): the layerwise components C_ℓ = E[s_ℓ‖A_ℓ‖²] over t.

    One subplot per layer ℓ, colour per N; the last subplot compares Σ_ℓ C_ℓ with E‖M_x‖²
    (the triangle inequality, Eq. 8) where recorded.

    Args:
        runs: runs with ``C_ℓ`` in analysis or probe rows (MLPs).
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if no run has the data.
    """
    _require(_needs_layerwise(runs))
    sel = _decomp_runs(runs, "C_1")
    L = max(_n_layers(r.decomposition_rows("C_1")[0], "C_") for r in sel)
    colours = _n_colours(sel)
    has_sum = any(_has_finite(r.decomposition_rows("C_1"), "sum_C") for r in sel)
    fig, axes = _figure(L + int(has_sum), ncols=min(L + int(has_sum), 3))
    for ell in range(1, L + 1):
        ax = axes[ell - 1]
        vals = []
        for r in sorted(sel, key=lambda r: r.n_train or -1):
            t, v = r.series(r.decomposition_rows("C_1"), f"C_{ell}")
            if len(t):
                ax.plot(t, v, color=_n_colour(colours, r), lw=1.2, label=_n_label(r))
                vals.append(v)
        _log_if_positive(ax, *vals)
        ax.set_title(f"layer {ell}" + (" (output)" if ell == L else ""), fontsize=10)
        ax.set_xlabel(_TIME_LABEL)
        ax.set_ylabel(f"$C_{{{ell}}}$")
        _legend(ax)
    if has_sum:
        ax = axes[-1]
        for r in sel:
            rows = r.decomposition_rows("C_1")
            c = _n_colour(colours, r)
            t, s = r.series(rows, "sum_C")
            ax.plot(t, s, color=c, lw=1.2, label=_n_label(r))
            t, m = r.series(rows, "EM2")
            ax.plot(t, m, color=c, lw=1.0, ls=":")
        ax.set_title("$\\sum_\\ell C_\\ell \\geq E\\|M_x\\|^2$ (Eq. 8)", fontsize=10)
        ax.set_xlabel(_TIME_LABEL)
        _legend(
            ax,
            extra=[
                _style_proxy("$\\sum_\\ell C_\\ell$", "-"),
                _style_proxy("$E\\|M_x\\|^2$", ":"),
            ],
        )
    fig.suptitle("Layerwise decomposition of $E\\|M_x\\|^2$", fontsize=10)
    return _save(fig, out)


_needs_factors = _needs(
    lambda runs: _decomp_runs(runs, "comp1_I"),
    "no run has the five components comp<ℓ>_I…V (MLP; `eoslab analyze`)",
)


def _relative(v: np.ndarray) -> np.ndarray:
    ok = np.flatnonzero(np.isfinite(v) & (v != 0))
    if not len(ok):
        return np.full_like(v, np.nan)
    rel = v / v[ok[0]]
    rel[~(rel > 0)] = np.nan  # log scale
    return rel


def l24_factors(runs: list[RunData], out: Path) -> list[Path]:
    """Lowell 2024, Figure 4 (and 19–22): the five components (I)–(V) of C_ℓ (Eq. 7).

    Each component relative to its first value, on a log scale, one subplot per layer ℓ < L,
    colour per component, one line per run: the alignment (V) grows, (I)–(IV) stay within
    small factors.

    Args:
        runs: runs with ``comp<ℓ>_<I…V>`` in analysis or probe rows.
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if no run has the data.
    """
    _require(_needs_factors(runs))
    sel = _decomp_runs(runs, "comp1_I")
    n_layers = max(
        max(int(m.group(1)) for k in rows[0] if (m := re.fullmatch(r"comp(\d+)_I", k)))
        for rows in (r.decomposition_rows("comp1_I") for r in sel)
    )
    colours = _colours(list(COMPONENTS), "tab10")
    fig, axes = _figure(n_layers, ncols=min(n_layers, 3))
    for ell in range(1, n_layers + 1):
        ax = axes[ell - 1]
        for r in sel:
            rows = r.decomposition_rows("comp1_I")
            for comp in COMPONENTS:
                t, v = r.series(rows, f"comp{ell}_{comp}")
                if len(t):
                    ax.plot(
                        t, _relative(v), color=colours[comp], lw=1.1, label=_COMPONENT_NAMES[comp]
                    )
        ax.set_yscale("log")
        ax.set_title(f"layer {ell}", fontsize=10)
        ax.set_xlabel(_TIME_LABEL)
        ax.set_ylabel("factor / initial value")
        _legend(ax)
    fig.suptitle("The five components of $C_\\ell$ (Eq. 7)", fontsize=10)
    return _save(fig, out)


def _needs_ratios(runs: list[RunData]) -> str | None:
    sel = [
        r
        for r in _decomp_runs(runs, "alpha_1")
        if _has_finite(r.decomposition_rows("alpha_1"), "Es_2")
    ]
    if not sel:
        return "no run has alignment ratios alpha_k and Es_k (MLP; `eoslab analyze`)"
    return None


def l24_ratios(runs: list[RunData], out: Path) -> list[Path]:
    """Lowell 2024, Eq. 6–7: alignment ratios α_k and activation ratios E s_k / E s_{k+1}.

    α_k = α(A_{k+1}, K_k) and E s_k / E s_{k+1} over t are the factors of the components (V)
    and (II). Colour per layer k; one line per run.

    Args:
        runs: runs with ``alpha_k`` and ``Es_k`` in analysis or probe rows.
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if no run has the data.
    """
    _require(_needs_ratios(runs))
    sel = [
        r
        for r in _decomp_runs(runs, "alpha_1")
        if _has_finite(r.decomposition_rows("alpha_1"), "Es_2")
    ]
    n_alpha = max(_n_layers(r.decomposition_rows("alpha_1")[0], "alpha_") for r in sel)
    colours = _colours(list(range(1, n_alpha + 1)), "viridis")
    fig, (ax_a, ax_s) = _figure(2, ncols=2)
    alphas, ratios = [], []
    for r in sel:
        rows = r.decomposition_rows("alpha_1")
        for k in range(1, n_alpha + 1):
            t, a = r.series(rows, f"alpha_{k}")
            if len(t):
                ax_a.plot(t, a, color=colours[k], lw=1.1, label=f"$\\alpha_{{{k}}}$")
                alphas.append(a)
            _, s_k = r.series(rows, f"Es_{k}")
            _, s_next = r.series(rows, f"Es_{k + 1}")
            if len(s_k) and len(s_k) == len(s_next):
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = s_k / s_next
                label = f"$E s_{{{k}}} / E s_{{{k + 1}}}$"
                ax_s.plot(t, ratio, color=colours[k], lw=1.1, label=label)
                ratios.append(ratio)
    _log_if_positive(ax_a, *alphas)
    _log_if_positive(ax_s, *ratios)
    ax_a.set_title("alignment ratios $\\alpha_k = \\alpha(A_{k+1}, K_k)$", fontsize=10)
    ax_s.set_title("activation ratios $E s_k / E s_{k+1}$", fontsize=10)
    for ax in (ax_a, ax_s):
        ax.set_xlabel(_TIME_LABEL)
        _legend(ax)
    fig.suptitle("Alignment and activation ratios", fontsize=10)
    return _save(fig, out)


def _counterfactual_runs(runs: list[RunData]) -> list[RunData]:
    out = []
    for r in _decomp_runs(runs, "lambda_G"):
        s = r.summary or {}
        cf, steps = s.get("counterfactual_lambda_G"), s.get("steps")
        if isinstance(cf, list) and isinstance(steps, list) and cf and len(cf) == len(steps):
            out.append(r)
    return out


_needs_counterfactual = _needs(
    _counterfactual_runs, "no run has lambda_G and a counterfactual λ̃_1(G) in its analysis summary"
)


def l24_counterfactual(runs: list[RunData], out: Path) -> list[Path]:
    """Lowell 2024, §5 (counterfactual bound): λ_1(G) against λ̃_1(G) with (V) frozen.

    Left: λ_1(G) solid and the counterfactual λ̃_1(G) = ζ Σ_ℓ C_ℓ V_ℓ(t_0)/V_ℓ(t) dashed
    (``results/analysis_summary.json``), colour per N, with the stability threshold 2/η in
    grey; right: the stable step sizes 2/λ_1(G) and 2/λ̃_1(G) against η.

    Args:
        runs: runs with ``lambda_G`` rows and a summary with ``counterfactual_lambda_G``.
        out: output path without suffix.

    Returns:
        The written paths.

    Raises:
        ValueError: if no run has the data.
    """
    _require(_needs_counterfactual(runs))
    sel = _counterfactual_runs(runs)
    colours = _n_colours(sel)
    fig, (ax, ax_lr) = _figure(2, ncols=2)
    lams, lrs, etas = [], [], set()
    for r in sorted(sel, key=lambda r: r.n_train or -1):
        c = _n_colour(colours, r)
        t, g = r.series(r.decomposition_rows("lambda_G"), "lambda_G")
        ax.plot(t, g, color=c, lw=1.2, label=_n_label(r))
        tc = np.array([r.time_of(int(s)) for s in r.summary["steps"]], dtype=float)
        cf = np.array([_num(v) for v in r.summary["counterfactual_lambda_G"]], dtype=float)
        ax.plot(tc, cf, color=c, lw=1.2, ls="--")
        lams += [g, cf]
        with np.errstate(divide="ignore", invalid="ignore"):
            stable, stable_cf = 2.0 / g, 2.0 / cf
        ax_lr.plot(t, np.where(g > 0, stable, np.nan), color=c, lw=1.2, label=_n_label(r))
        ax_lr.plot(tc, np.where(cf > 0, stable_cf, np.nan), color=c, lw=1.2, ls="--")
        lrs += [stable, stable_cf]
        eta = _num(r.summary.get("lr"))
        eta = eta if math.isfinite(eta) else r.lr
        if math.isfinite(eta) and eta > 0:
            etas.add(eta)
    for eta in sorted(etas):
        ax.axhline(2.0 / eta, color="0.5", ls="-.", lw=1.0, label=f"2/η, {_fmt_lr(eta)}")
        ax_lr.axhline(eta, color="0.5", ls="-.", lw=1.0, label=_fmt_lr(eta))
    _log_if_positive(ax, *lams)
    _log_if_positive(ax_lr, *lrs)
    ax.set_title("$\\lambda_1(G)$ and the counterfactual $\\tilde\\lambda_1(G)$", fontsize=10)
    ax.set_ylabel("top eigenvalue of G")
    ax_lr.set_title("stable step $2/\\lambda_1$", fontsize=10)
    ax_lr.set_ylabel("step size")
    extra = [_style_proxy("actual", "-"), _style_proxy("(V) frozen", "--")]
    for a in (ax, ax_lr):
        a.set_xlabel(_TIME_LABEL)
        _legend(a, extra=extra)
    fig.suptitle("Counterfactual: alignment frozen after the transient", fontsize=10)
    return _save(fig, out)


# ---------------------------------------------------------------- Table 2
_TABLE2_QUANTITIES = (
    ("peak alignment (V)", _peak_alignment),
    ("peak λ_1", _peak_lambda_1),
)


def _table2_groups(runs: list[RunData]) -> dict[tuple[str, str], dict[str, list]]:
    """{(data.name, loss): {quantity: [(N, value)]}} with N known and value > 0."""
    out: dict[tuple[str, str], dict[str, list]] = {}
    for r in runs:
        if r.n_train is None:
            continue
        key = (str(r.cfg("data.name", "?")), r.loss_name)
        for qname, fn in _TABLE2_QUANTITIES:
            v = fn(r)
            if math.isfinite(v) and v > 0:
                out.setdefault(key, {}).setdefault(qname, []).append((r.n_train, v))
    return out


def _needs_table2(runs: list[RunData]) -> str | None:
    for quantities in _table2_groups(runs).values():
        for pts in quantities.values():
            if len({n for n, _ in pts}) >= 2:
                return None
    return (
        "no (data set, criterion) group has runs of ≥ 2 sizes N with a peak alignment or peak "
        "λ_1 (run `eoslab analyze` on the runs)"
    )


def l24_table2(runs: list[RunData]) -> str:
    """Lowell 2024, Table 2: power law P(N) = a·N^b of peak alignment against data-set size.

    For every (data set, criterion) group, fits a·N^b by least squares in log–log space to the
    runs' peak alignment (summary ``peak_alignment``: the first layer's component (V) after
    the transient) and to their peak λ_1, reporting a, b, R² of the log–log fit and the number
    of runs (METHODS §5, Eq. 9). a is written with 4 significant digits, b and R² with 3
    decimals; a group with fewer than two sizes shows dashes.

    Args:
        runs: runs with a known N and an analysis summary (or the rows to take peaks from).

    Returns:
        The Markdown table.

    Raises:
        ValueError: if no group has runs of two or more sizes.
    """
    _require(_needs_table2(runs))
    lines = [
        "| Dataset | Criterion | Quantity | a | b | R² | runs | N |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (data, loss), quantities in sorted(_table2_groups(runs).items()):
        for qname, _ in _TABLE2_QUANTITIES:
            pts = quantities.get(qname)
            if not pts:
                continue
            ns = sorted({n for n, _ in pts})
            n_range = f"{ns[0]}–{ns[-1]}" if len(ns) > 1 else f"{ns[0]}"
            crit = _LOSS_NAMES.get(loss, loss)
            if len(ns) < 2:
                lines.append(f"| {data} | {crit} | {qname} | — | — | — | {len(pts)} | {n_range} |")
                continue
            a, b, r2 = _power_law_fit([n for n, _ in pts], [v for _, v in pts])
            r2s = f"{r2:.3f}" if math.isfinite(r2) else "—"
            lines.append(
                f"| {data} | {crit} | {qname} | {a:.4g} | {b:.3f} | {r2s} | {len(pts)} | "
                f"{n_range} |"
            )
    return "\n".join(lines) + "\n"


# ====================================================================== registries
FIGURES: dict[str, FigureSpec] = {
    spec.name: spec
    for spec in (
        FigureSpec(
            "l22_fig1",
            "Lowell 2022, Figure 1",
            "Edge of stability: ρ_{n_c−1} (solid) and ρ_{n_c} (dotted) against t = nη; colour per "
            "learning rate, one subplot per architecture and activation.",
            l22_fig1,
            _needs_rho,
        ),
        FigureSpec(
            "l22_fig2",
            "Lowell 2022, Figure 2",
            "Edge of stability and n_c: ρ_{n_c−1} (solid) and ρ_{n_c} (dotted); colour per number "
            "of classes.",
            l22_fig2,
            _needs_rho,
        ),
        FigureSpec(
            "l22_fig3",
            "Lowell 2022, Figure 3",
            "Gradient concentration: ‖P_top g‖ (solid) and ‖P_bulk g‖ (dotted); colour per "
            "learning rate, one subplot per architecture.",
            l22_fig3,
            _needs_fig3,
        ),
        FigureSpec(
            "l22_fig4",
            "Lowell 2022, Figure 4",
            "Entering the edge of stability: ρ_1…ρ_{n_c−1} (left) and |d_i| = |h_i·g| (right) "
            "of the most densely probed run.",
            l22_fig4,
            _needs_fig4,
        ),
        FigureSpec(
            "l22_fig5",
            "Lowell 2022, Figure 5",
            "Peak curvature: λ_1 over the exact gradient flow, colour per data-set size N, one "
            "subplot per activation; peak λ_1 against N with a linear fit and R².",
            l22_fig5,
            _needs_fig5,
        ),
        FigureSpec(
            "l22_fig6",
            "Lowell 2022, Figure 6",
            "Cusp formation: L(θ* + s h_1) − L(θ*) at the point θ* of peak λ_1, one curve per run.",
            l22_fig6,
            _needs_fig6,
        ),
        FigureSpec(
            "cohen_sharpness",
            "Cohen et al. 2021, Figure 1 (slides)",
            "Progressive sharpening: λ_1 rises until it reaches 2/η (dashed) and hovers there; "
            "training loss below; one column per loss, colour per η.",
            cohen_sharpness,
            _needs_lambda,
        ),
        FigureSpec(
            "cohen_flow_vs_gd",
            "Cohen et al. 2021 (slides: checked with Runge–Kutta)",
            "Gradient flow (RK4 or adaptive step) against GD: GD follows the flow until λ_1 "
            "reaches 2/η.",
            cohen_flow_vs_gd,
            _needs_flow_vs_gd,
        ),
        FigureSpec(
            "cohen_momentum",
            "Cohen et al. 2021 (slides: what if momentum)",
            "Heavy ball and Nesterov: λ_1 rises to each run's own threshold (2 + 2β)/η or "
            "(2 + 2β)/((1 + 2β)η).",
            cohen_momentum,
            _needs_momentum,
        ),
        FigureSpec(
            "cohen_studies",
            "Cohen et al. 2021 (slides: changes that matter)",
            "λ_1 over t for runs differing in width, depth, data size or initialisation, "
            "labelled by what differs.",
            cohen_studies,
            _needs_lambda,
        ),
        FigureSpec(
            "l24_gauss_newton",
            "Lowell 2024, Figures 1–2",
            "λ_1(H), λ_1(G), λ_1(H − G); E‖M_x‖² and the overlap ratio ζ over training, colour "
            "per N.",
            l24_gauss_newton,
            _needs_gn,
        ),
        FigureSpec(
            "l24_layerwise",
            "Lowell 2024, Figure 3",
            "Layerwise components C_ℓ of E‖M_x‖² over training, one subplot per layer.",
            l24_layerwise,
            _needs_layerwise,
        ),
        FigureSpec(
            "l24_factors",
            "Lowell 2024, Figure 4",
            "The five components (I)–(V) of C_ℓ relative to their initial value, one subplot "
            "per layer.",
            l24_factors,
            _needs_factors,
        ),
        FigureSpec(
            "l24_ratios",
            "Lowell 2024, Eq. 6–7",
            "Alignment ratios α_k and activation ratios E s_k / E s_{k+1} over training.",
            l24_ratios,
            _needs_ratios,
        ),
        FigureSpec(
            "l24_counterfactual",
            "Lowell 2024, §5 (counterfactual bound)",
            "λ_1(G) against the counterfactual λ̃_1(G) with the alignment frozen, and 2/η.",
            l24_counterfactual,
            _needs_counterfactual,
        ),
    )
}
"""Registry: name → :class:`FigureSpec` of every paper figure."""

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "l22_table1",
            "Lowell 2022, Table 1",
            "Learning occurs in the bulk, not the top: mean (std) of ΔL from P_top g and from "
            "P_bulk g over the probes with ρ_{n_c−1} > 0.7.",
            l22_table1,
            _needs_table1,
        ),
        TableSpec(
            "l24_table2",
            "Lowell 2024, Table 2",
            "Power law a·N^b of peak alignment (and peak λ_1) against data-set size, with R².",
            l24_table2,
            _needs_table2,
        ),
    )
}
"""Registry: name → :class:`TableSpec` of every paper table."""


def render_all(
    runs: list[RunData], out_dir: str | Path, names: Sequence[str] | None = None
) -> dict[str, list[Path] | str]:
    """Draw every figure and write every table (``NAME.md``) the runs have data for.

    Args:
        runs: runs from :func:`load_runs`.
        out_dir: directory for ``NAME.png``, ``NAME.pdf`` and ``NAME.md``.
        names: the figures/tables to make (default: all of :data:`FIGURES` and :data:`TABLES`).

    Returns:
        Per name, the written paths, or the reason it was skipped.

    Raises:
        KeyError: for an unknown name.
    """
    out_dir = Path(out_dir)
    wanted = list(names) if names is not None else [*FIGURES, *TABLES]
    unknown = [n for n in wanted if n not in FIGURES and n not in TABLES]
    if unknown:
        raise KeyError(f"unknown figure or table {unknown}; known: {[*FIGURES, *TABLES]}")
    done: dict[str, list[Path] | str] = {}
    for name in wanted:
        spec = FIGURES.get(name) or TABLES[name]
        reason = spec.needs(runs)
        if reason is not None:
            done[name] = reason
            continue
        if name in FIGURES:
            done[name] = FIGURES[name](runs, out_dir / name)
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / f"{name}.md"
            path.write_text(TABLES[name](runs))
            done[name] = [path]
    return done
