"""Stored runs for the paper figures: :class:`RunData`, :func:`load_runs` and run labels.

A run is read once, from the run store only (``config.yaml``, the ``steps``/``probes``/
``analysis`` streams, ``results/*.json``, ``status.json``) together with the overrides its
sweep gave it (``sweep_state.json``). :func:`study_labels` names what sets runs apart.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from eoslab.store import RunStore, StoreError

__all__ = ["RunData", "load_runs", "study_labels"]

MODEL_NAMES = {
    "mlp": "MLP",
    "small_cnn": "SmallCNN",
    "alexnet": "AlexNet",
    "vgg11": "VGG-11",
    "vgg16": "VGG-16",
    "resnet32": "ResNet-32",
    "deep_linear": "DeepLinear",
}
# the constructors' default activations (eoslab.models), used for labels only
DEFAULT_ACTIVATION = {
    "mlp": "tanh",
    "small_cnn": "relu",
    "alexnet": "relu",
    "vgg11": "relu",
    "vgg16": "relu",
    "resnet32": "relu",
    "deep_linear": "linear",
}
ACTIVATION_NAMES = {"relu": "ReLU", "tanh": "Tanh", "elu": "ELU", "softplus": "Softplus"}
_MISSING = "(default)"


def num(x: Any) -> float:
    """``x`` as a float; NaN for None, booleans, strings and other non-numbers."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return math.nan
    return float(x)


def finite(x: Any) -> bool:
    """True when ``x`` is a finite number (not a boolean)."""
    return math.isfinite(num(x))


def has_finite(rows: list[dict[str, Any]], key: str) -> bool:
    """True when some row holds a finite ``key``."""
    return any(finite(r.get(key)) for r in rows)


def step_of(row: dict[str, Any]) -> int:
    """The row's ``step`` (0 when missing)."""
    s = row.get("step")
    return int(s) if finite(s) else 0


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
        """η: ``optimizer.lr``, NaN if unset.

        The maximum η of an adaptive run; for exponential Euler the dimensionless η < 2,
        which is no step length (the step is τ = η/λ_{k+1}, see :attr:`is_exp_euler`).
        """
        return num(self.cfg("optimizer.lr"))

    @property
    def optimizer(self) -> str:
        """``optimizer.name`` (``gd`` when unset)."""
        return str(self.cfg("optimizer.name", "gd"))

    @property
    def is_exp_euler(self) -> bool:
        """True for exponential Euler: ``lr`` is a dimensionless η and the step is τ.

        Its rows record the step τ as ``lr``/``tau``, the flow time Σ τ as ``time`` and the
        integrator's threshold 2/τ per step as ``threshold``.
        """
        return self.optimizer == "exp_euler"

    @property
    def momentum(self) -> float:
        """β of heavy ball / Nesterov runs (``optimizer.momentum``), NaN if unset."""
        return num(self.cfg("optimizer.momentum"))

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
            act = DEFAULT_ACTIVATION.get(str(self.cfg("model.name", "")), "")
        return str(act)

    @property
    def arch(self) -> str:
        """Architecture label such as ``AlexNet-ReLU`` (model and activation)."""
        model = str(self.cfg("model.name", "model"))
        label = MODEL_NAMES.get(model, model)
        act = self.activation
        if act and act != "linear":
            label += "-" + ACTIVATION_NAMES.get(act, act)
        return label

    @property
    def n_top(self) -> int | None:
        """n_c − 1, the top subspace's dimension: from the probe rows, the config or classes."""
        for r in self.probes:
            if finite(r.get("n_top")):
                return int(r["n_top"])
        if finite(self.cfg("probe.n_top")):
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
        return int(n) if finite(n) else None

    # ------------------------------------------------------------ series
    @cached_property
    def _time_of_step(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for rows in (self.analysis, self.probes, self.steps):
            for r in rows:
                if finite(r.get("time")) and finite(r.get("step")):
                    out[int(r["step"])] = float(r["time"])
        return out

    def time_of(self, step: int) -> float:
        """Flow time t of ``step`` as recorded in any stream (the step itself if unknown)."""
        return self._time_of_step.get(int(step), float(step))

    def series(self, rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
        """(t, values of ``key``) over the rows that hold ``key``, in step order.

        t is the row's flow time (Σ η, or Σ τ for exponential Euler), else the time another
        stream recorded for its step.
        """
        kept = sorted((r for r in rows if key in r and r[key] is not None), key=step_of)
        t = np.array(
            [
                num(r.get("time")) if finite(r.get("time")) else self.time_of(step_of(r))
                for r in kept
            ],
            dtype=float,
        )
        return t, np.array([num(r[key]) for r in kept], dtype=float)

    def lambda_rows(self, *, prefer_steps: bool = False) -> tuple[list[dict[str, Any]], str]:
        """Rows holding λ_1 and the key: probe ``lambda_1`` or the per-step ``sharpness``.

        Adaptive and exponential-Euler runs record λ_1 every step (``sharpness``);
        ``prefer_steps`` takes those when present (denser than the probes).
        """
        order = [(self.steps, "sharpness"), (self.probes, "lambda_1"), (self.probes, "sharpness")]
        if not prefer_steps:
            order = order[1:] + order[:1]
        for rows, key in order:
            if any(finite(r.get(key)) for r in rows):
                return rows, key
        return [], "lambda_1"

    @property
    def ratio_probes(self) -> list[dict[str, Any]]:
        """Probe rows whose ``threshold`` (and ρ_i = λ_i/threshold) is the integrator's own.

        The run loop probes θ_s with the step taken from θ_s (τ_s for exponential Euler), so
        every probe row qualifies — except the step-0 probe of an exponential-Euler run
        recorded by eoslab 0.1, which probed before the first step and recorded ``lr`` = the
        dimensionless η and ``threshold`` = 2/η, no stability threshold of the run.
        """
        if not self.is_exp_euler:
            return self.probes
        return [r for r in self.probes if step_of(r) > 0 or num(r.get("lr")) != self.lr]

    def threshold_series(self) -> tuple[np.ndarray, np.ndarray]:
        """(t, the run's stability threshold) over the rows that record one.

        2/η or its momentum/RK4 analogue, from the probe rows, else the step rows. For an
        exponential-Euler run, the integrator's own 2/τ of each step from the step rows
        (never 2/η with its dimensionless η).
        """
        sources = (self.steps,) if self.is_exp_euler else (self.probes, self.steps)
        for rows in sources:
            if any(finite(r.get("threshold")) for r in rows):
                return self.series(rows, "threshold")
        return np.array([]), np.array([])

    def decomposition_rows(self, key: str) -> list[dict[str, Any]]:
        """Analysis rows holding ``key`` (post-hoc, Lowell 2024's way), else probe rows."""
        for rows in (self.analysis, self.probes):
            kept = [r for r in rows if key in r and r[key] is not None]
            if kept:
                return sorted(kept, key=step_of)
        return []


# ====================================================================== loading
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


# ====================================================================== what differs
def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def hashable(v: Any) -> str:
    """A setting's value as a canonical string (a dict key)."""
    return json.dumps(v, sort_keys=True, default=str)


def differences(runs: list[RunData]) -> list[dict[str, Any]]:
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
        vals = [hashable(f.get(k, _MISSING)) for f in flat]
        if len(set(vals)) < 2:
            continue
        modal = Counter(vals).most_common(1)[0][0]
        for i, (f, v) in enumerate(zip(flat, vals)):
            if v != modal:
                out[i][k] = f.get(k, _MISSING)
    return out


def short_keys(keys: Iterable[str]) -> dict[str, str]:
    """Dotted keys shortened to their last part where that is unambiguous."""
    keys = list(dict.fromkeys(keys))
    last = Counter(k.rsplit(".", 1)[-1] for k in keys)
    return {k: (k.rsplit(".", 1)[-1] if last[k.rsplit(".", 1)[-1]] == 1 else k) for k in keys}


def study_label(diff: dict[str, Any], short: dict[str, str]) -> str:
    """``width=50, depth=2`` for a run's differences (``baseline`` for none)."""
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
    diffs = differences(runs)
    short = short_keys(k for d in diffs for k in d)
    return [study_label(d, short) for d in diffs]
