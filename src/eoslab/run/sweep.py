"""Sweeps: many runs from one base config, grids and zips over fields, serial or on Dask.

A sweep file::

    name: lr-grid
    base: demo                # a config file, a packaged name, or omit and give `config:`
    config: {stop: {max_steps: 500}}    # inline overrides of the base (optional)
    grid:                     # Cartesian product over these fields
      optimizer.lr: [0.1, 0.2]
      model.init_seed: [0, 1, 2, 3]
    zip:                      # lists of equal length, walked together (times the grid)
      data.n_train: [250, 500, 1000]
      stop.max_steps: [2000, 1000, 500]
    retries: 1                # a failed run is tried again this many times on a later call
    executor: serial          # or dask (LocalCluster by default, or `scheduler: tcp://…`)

Each run's id is a hash of its **resolved** config (all defaults filled in), and its
directory is ``SWEEP_DIR/runs/<id>``, so calling the sweep again is idempotent: finished runs
(``completed`` or ``diverged``) are skipped, killed runs resume from their checkpoint, failed
runs are retried up to ``retries`` times with their errors recorded in
``SWEEP_DIR/sweep_state.json``, and one failure never stops the others.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import traceback
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eoslab.run.config import (
    LEGACY_KEYS,
    ConfigError,
    Int,
    apply_overrides,
    parse_config,
    read_yaml,
)
from eoslab.run.live import VIEW_FIELDS
from eoslab.store import RunStore, StoreError, atomic_write_bytes

__all__ = ["SweepConfig", "expand", "load_sweep", "run_id", "run_sweep"]

FINISHED = ("completed", "diverged")


class SweepConfig(BaseModel):
    """A validated sweep file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = "sweep"
    base: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    zip: dict[str, list[Any]] = Field(default_factory=dict)
    retries: Int = Field(1, ge=0)
    executor: str = "serial"
    scheduler: str | None = None
    n_workers: Int = Field(2, ge=1)
    threads_per_worker: Int = Field(1, ge=1)


def load_sweep(path: str | Path) -> tuple[SweepConfig, Path]:
    """Read and validate a sweep file; return it and the directory its ``base`` is relative to.

    Raises:
        ConfigError: naming the offending field.
    """
    raw = read_yaml(path)
    try:
        sweep = SweepConfig.model_validate(raw)
    except ValidationError as err:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
        raise ConfigError(f"invalid sweep {path}:\n  " + "\n  ".join(lines)) from None
    if sweep.executor not in ("serial", "dask"):
        raise ConfigError(f"executor: 'serial' or 'dask', got {sweep.executor!r}")
    lengths = {k: len(v) for k, v in sweep.zip.items()}
    if len(set(lengths.values())) > 1:
        raise ConfigError(f"zip: the lists must have equal lengths, got {lengths}")
    for k, v in {**sweep.grid, **sweep.zip}.items():
        if not v:
            raise ConfigError(f"grid/zip {k}: an empty list gives no runs")
    return sweep, Path(path).resolve().parent


def _set(raw: dict, dotted: str, value: Any) -> dict:
    return apply_overrides(raw, [f"{dotted}={json.dumps(value)}"])


def expand(sweep: SweepConfig, base_dir: Path | None = None) -> list[tuple[dict, dict]]:
    """The runs of a sweep: a list of (overrides, resolved config dict), in a fixed order.

    Raises:
        ConfigError: if a combination does not validate (naming the field and the run).
    """
    base: dict[str, Any] = {}
    if sweep.base is not None:
        p = Path(sweep.base)
        if base_dir is not None and not p.is_absolute() and (base_dir / p).exists():
            p = base_dir / p
        base = read_yaml(p)
    base = _merge(base, sweep.config)
    grid_keys = list(sweep.grid)
    combos = list(itertools.product(*sweep.grid.values())) if grid_keys else [()]
    zip_keys = list(sweep.zip)
    zipped = list(zip(*sweep.zip.values())) if zip_keys else [()]
    out = []
    for g in combos:
        for z in zipped:
            over = dict(zip(grid_keys, g)) | dict(zip(zip_keys, z))
            raw = base
            for k, v in over.items():
                raw = _set(raw, k, v)
            try:
                cfg = parse_config(raw)
            except ConfigError as err:
                raise ConfigError(f"sweep run {over}: {err}") from None
            out.append((over, cfg.to_dict()))
    return out


def _merge(a: dict, b: dict) -> dict:
    out = json.loads(json.dumps(a))
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


#: Config fields added after run ids were first issued, with their defaults, as paths in the
#: form the ids are hashed in (:func:`_id_form`). While a field holds its default it is left
#: out of the hash, so existing sweep directories keep their run ids (and are resumed, not
#: rerun) when eoslab gains a field; a non-default value counts.
ADDED_FIELDS = {
    ("optimizer", "eig_method"): "lanczos",
    ("optimizer", "eig_criterion"): "residual",
    ("optimizer", "solver", "max_iter"): None,
    ("optimizer", "solver", "seed"): 0,
    ("optimizer", "solver", "verify_steps"): 8,
    ("probe", "solver", "seed"): 0,
    ("probe", "solver", "criterion"): "residual",
    ("probe", "solver", "verify_steps"): 8,
    ("probe", "gauss_newton_solver", "method"): "lanczos",
    ("probe", "gauss_newton_solver", "max_iter"): None,
    ("probe", "gauss_newton_solver", "seed"): 0,
    ("probe", "gauss_newton_solver", "criterion"): "residual",
    ("probe", "gauss_newton_solver", "verify_steps"): 8,
}


def _id_form(resolved: dict) -> dict:
    """The resolved config in the form run ids were first issued in.

    The eigensolver settings move back to their first, flat keys
    (:data:`eoslab.run.config.LEGACY_KEYS`), the :data:`ADDED_FIELDS` at their defaults and
    the view fields (``tensorboard``, :data:`eoslab.run.live.VIEW_FIELDS`) are left out.
    """
    out = json.loads(json.dumps({k: v for k, v in resolved.items() if k not in VIEW_FIELDS}))
    for (section, key), new in LEGACY_KEYS.items():
        node = out.get(section)
        for part in new[1:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and new[-1] in node:
            out[section][key] = node.pop(new[-1])
    for path, default in ADDED_FIELDS.items():
        *parents, last = path
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node and node[last] == default:
            del node[last]
    for section, key in (
        ("optimizer", "solver"),
        ("probe", "solver"),
        ("probe", "gauss_newton_solver"),
    ):
        if out.get(section, {}).get(key) == {}:
            del out[section][key]
    return out


def run_id(resolved: dict) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of a resolved config (:func:`_id_form`)."""
    text = json.dumps(_id_form(resolved), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def execute_one(resolved: dict, out: str, threads: int = 1) -> dict[str, Any]:
    """Carry out (or resume) one run; never raises: errors come back as status ``failed``."""
    import torch

    from eoslab.run.loop import run

    torch.set_num_threads(threads)
    try:
        return run(parse_config(resolved), out, resume=True, progress=False)
    except BaseException as err:  # one failure never stops the sweep
        if isinstance(err, KeyboardInterrupt):
            raise
        return dict(
            status="failed",
            reason=f"{type(err).__name__}: {err}",
            traceback=traceback.format_exc(limit=8),
        )


def _status(path: Path) -> str | None:
    try:
        return RunStore.open(path).status().get("status")
    except StoreError:
        return None


def run_sweep(
    sweep: SweepConfig,
    out: str | Path,
    *,
    base_dir: Path | None = None,
    executor: str | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every run of ``sweep`` that is not finished into ``out/runs/<id>``.

    Returns:
        The sweep state: per run id its overrides, status, attempts and last error.
    """
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(
        out / "sweep.yaml", yaml.safe_dump(sweep.model_dump(), sort_keys=False).encode()
    )
    runs = expand(sweep, base_dir)
    state_path = out / "sweep_state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    todo = []
    for over, resolved in runs:
        rid = run_id(resolved)
        entry = state.setdefault(rid, dict(overrides=over, attempts=0, status=None, error=None))
        on_disk = _status(out / "runs" / rid)
        if on_disk in FINISHED:
            entry["status"] = on_disk
            continue
        if entry["status"] == "failed" and entry["attempts"] > sweep.retries:
            continue  # retries used up; the error stays recorded
        todo.append((rid, resolved))
    ids = {run_id(r) for _, r in runs}
    state = {k: v for k, v in state.items() if k in ids}

    def record(rid: str, result: dict) -> None:
        e = state[rid]
        e["attempts"] += 1
        e["status"] = result.get("status")
        e["error"] = result.get("reason") if result.get("status") == "failed" else None
        atomic_write_bytes(state_path, json.dumps(state, indent=1).encode())

    atomic_write_bytes(state_path, json.dumps(state, indent=1).encode())
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(runs),
            initial=len(runs) - len(todo),
            desc=sweep.name,
            unit="run",
            file=sys.stderr,
        )
    kind = executor or sweep.executor
    threads = sweep.threads_per_worker
    try:
        if kind == "serial":
            for rid, resolved in todo:
                result = execute_one(resolved, str(out / "runs" / rid), threads)
                record(rid, result)
                if result.get("status") == "interrupted":
                    break  # Ctrl-C stopped this run at a checkpoint: stop the sweep too
                if bar is not None:
                    bar.update(1)
        elif kind == "dask":
            _run_dask(sweep, todo, out, record, bar, scheduler or sweep.scheduler)
        else:
            raise ConfigError(f"executor: 'serial' or 'dask', got {kind!r}")
    finally:
        if bar is not None:
            bar.close()
    return state


def _run_dask(sweep, todo, out, record, bar, scheduler) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError(
            "executor: dask needs the `distributed` package (pip install 'eoslab[dask]')"
        ) from None
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=sweep.n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = {
            client.submit(
                execute_one,
                resolved,
                str(out / "runs" / rid),
                sweep.threads_per_worker,
                key=f"eoslab-run-{rid}",
                pure=False,
            ): rid
            for rid, resolved in todo
        }
        for fut in as_completed(futures):
            rid = futures[fut]
            try:
                result = fut.result()
            except Exception as err:  # a worker died: record it, the others go on
                result = dict(status="failed", reason=f"{type(err).__name__}: {err}")
            record(rid, result)
            if bar is not None:
                bar.update(1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
