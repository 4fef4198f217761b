"""The run store: the only file I/O of runs (``DESIGN.md``).

One directory per run::

    RUN/
      config.yaml          resolved configuration (written once)
      environment.json     versions, git revision, device, dtype, threads
      status.json          {"status": running|completed|diverged|failed, "reason", "step", ...}
      steps.jsonl          one JSON object per optimisation step (appended)
      probes.jsonl         one JSON object per probe (appended)
      analysis.jsonl       one JSON object per analysed snapshot (``eoslab analyze``)
      results/NAME.json    other results (cusp scan, analysis summary), replaced atomically
      snapshots/step_<8-digit step>.safetensors   θ at chosen steps (no pickle)
      checkpoint.safetensors                the state needed to resume

Crash safety. Metric rows are appended as whole lines and flushed after each write, so a
killed process (SIGKILL) loses at most the line being written; a torn last line is ignored
on reading. Files that are replaced (status, checkpoint, snapshots) are written to a
temporary name, fsynced and renamed, so a reader sees the old or the new file, never a
mixture. A checkpoint at step s records the state before step s; on resume the metric
rows with step ≥ s are dropped (they are recomputed identically) and everything earlier is
kept. Nothing here unpickles anything: tensors are safetensors, the rest JSON/YAML.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors.torch import safe_open as _safe_open

__all__ = ["METRIC_STREAMS", "RunStore", "StoreError"]

#: The appended metric files: per-step rows, per-probe rows, post-hoc analysis of snapshots.
METRIC_STREAMS = ("steps", "probes", "analysis")
#: The streams the training loop writes (and truncates to its checkpoint on resume).
TRAINING_STREAMS = ("steps", "probes")
STATUSES = ("running", "completed", "diverged", "failed", "interrupted")


class StoreError(RuntimeError):
    """A run directory that cannot be used as asked; the message names the file."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _json_default(x):
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        return x.item()
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"cannot store {type(x).__name__} in a metrics row")


def _dumps(row: dict[str, Any]) -> str:
    # NaN/inf are kept as the JSON extensions NaN/Infinity (Python's json reads them back)
    return json.dumps(row, default=_json_default, allow_nan=True, separators=(",", ":"))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a torn last line (no newline, or not JSON) is ignored.

    Raises:
        StoreError: for a malformed line that is not the last one (the file was edited or
            corrupted), naming file and line.
    """
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        last = i == len(lines) - 1  # no newline after it: possibly torn by a kill
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if last:
                break
            raise StoreError(f"{path}:{i + 1}: not a JSON object ({err.msg})") from None
        if not isinstance(row, dict):
            raise StoreError(f"{path}:{i + 1}: expected a JSON object, got {type(row).__name__}")
        if last:
            break  # complete JSON but no newline yet: treat as torn, like a partial line
        rows.append(row)
    return rows


class RunStore:
    """A run directory (see the module docstring for its layout).

    Use :meth:`create` for a new run and :meth:`open` for an existing one.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._handles: dict[str, Any] = {}

    # ---------------------------------------------------------------- create / open
    @classmethod
    def create(
        cls, path: str | Path, config: dict[str, Any], environment: dict[str, Any]
    ) -> RunStore:
        """Make a new run directory with its config, environment and status ``running``.

        Raises:
            StoreError: if ``path`` already holds a run (use resume or another directory).
        """
        store = cls(path)
        if (store.path / "config.yaml").exists():
            raise StoreError(
                f"{store.path} already holds a run; pass --resume to continue it or choose "
                "another --out directory"
            )
        store.path.mkdir(parents=True, exist_ok=True)
        (store.path / "snapshots").mkdir(exist_ok=True)
        atomic_write_bytes(
            store.path / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode()
        )
        store.write_environment(environment)
        store.set_status("running", step=0)
        return store

    @classmethod
    def open(cls, path: str | Path) -> RunStore:
        """Open an existing run directory.

        Raises:
            StoreError: if ``path`` has no ``config.yaml``.
        """
        store = cls(path)
        if not (store.path / "config.yaml").is_file():
            raise StoreError(f"{store.path} is not a run directory (no config.yaml)")
        return store

    def close(self) -> None:
        """Close the metric files (rows already written are on disk)."""
        for fh in self._handles.values():
            fh.close()
        self._handles.clear()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- small files
    def read_config(self) -> dict[str, Any]:
        """The saved configuration as a nested dict (``yaml.safe_load``).

        Raises:
            StoreError: if config.yaml is not a YAML mapping.
        """
        path = self.path / "config.yaml"
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise StoreError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise StoreError(f"{path}: expected a mapping")
        return raw

    def write_environment(self, environment: dict[str, Any]) -> None:
        """Replace environment.json (also rewritten on resume, with the older ones kept)."""
        path = self.path / "environment.json"
        history = []
        if path.exists():
            old = self.read_json("environment.json")
            history = old.pop("previous", []) + [old]
        env = dict(environment, previous=history) if history else dict(environment)
        atomic_write_bytes(path, json.dumps(env, indent=1, default=str).encode())

    def read_json(self, name: str) -> dict[str, Any]:
        """A JSON file of the run directory as a dict.

        Raises:
            StoreError: naming the file if it is missing or not a JSON object.
        """
        path = self.path / name
        try:
            out = json.loads(path.read_text())
        except FileNotFoundError:
            raise StoreError(f"{path} is missing") from None
        except json.JSONDecodeError as err:
            raise StoreError(f"{path}: not valid JSON ({err.msg})") from None
        if not isinstance(out, dict):
            raise StoreError(f"{path}: expected a JSON object")
        return out

    def set_status(self, status: str, *, step: int, reason: str = "", **extra: Any) -> None:
        """Write status.json atomically: status, step, reason, time and ``extra`` fields."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        data = dict(
            status=status,
            step=int(step),
            reason=reason,
            updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **extra,
        )
        atomic_write_bytes(self.path / "status.json", json.dumps(data, indent=1).encode())

    def status(self) -> dict[str, Any]:
        """The content of status.json."""
        return self.read_json("status.json")

    # ---------------------------------------------------------------- metrics
    def append(self, stream: str, row: dict[str, Any]) -> None:
        """Append one row to ``stream`` (``"steps"`` or ``"probes"``) and flush it."""
        if stream not in METRIC_STREAMS:
            raise ValueError(f"stream must be one of {METRIC_STREAMS}, got {stream!r}")
        fh = self._handles.get(stream)
        if fh is None:
            fh = self._handles[stream] = open(self.path / f"{stream}.jsonl", "a")  # noqa: SIM115
        fh.write(_dumps(row) + "\n")
        fh.flush()

    def sync(self) -> None:
        """fsync the metric files (called at checkpoints; flushing alone survives a kill)."""
        for fh in self._handles.values():
            fh.flush()
            os.fsync(fh.fileno())

    def rows(self, stream: str) -> list[dict[str, Any]]:
        """All complete rows of ``stream``, in the order written."""
        if stream not in METRIC_STREAMS:
            raise ValueError(f"stream must be one of {METRIC_STREAMS}, got {stream!r}")
        return _read_jsonl(self.path / f"{stream}.jsonl")

    def truncate_metrics(self, step: int) -> None:
        """Keep only rows with ``row["step"] < step`` in the training streams (atomic rewrite).

        Analysis rows stay: they describe snapshots, which a resumed run rewrites identically.
        """
        self.close()
        for stream in TRAINING_STREAMS:
            path = self.path / f"{stream}.jsonl"
            if not path.exists():
                continue
            kept = [r for r in _read_jsonl(path) if int(r["step"]) < step]
            atomic_write_bytes(path, "".join(_dumps(r) + "\n" for r in kept).encode())

    def dataframe(self):
        """One tidy pandas DataFrame: a row per step, probe and analysis columns joined on it.

        Step rows carry the per-step telemetry (``loss``, ``lr``, ``time``, ``grad_norm``…);
        probe rows add their columns (``lambda_1``…, ``rho_i``, ``dL_top``…) and analysis rows
        theirs (``lambda_G``, ``zeta``, ``C_1``…) at the steps where they ran, NaN elsewhere. A
        probe at the final θ (after the last step) gets a row of its own. A column present in
        more than one stream keeps the step row's value, filled from the other stream where
        the step row has none; the other stream's copy is kept as ``probe_<name>`` /
        ``analysis_<name>`` only where the values differ.
        """
        import pandas as pd

        df = pd.DataFrame(self.rows("steps"))
        for stream in ("probes", "analysis"):
            other = pd.DataFrame(self.rows(stream))
            if other.empty:
                continue
            if df.empty:
                df = other
                continue
            shared = [c for c in other.columns if c in df.columns and c != "step"]
            prefix = "probe_" if stream == "probes" else "analysis_"
            other = other.rename(columns={c: prefix + c for c in shared})
            df = df.merge(other, on="step", how="outer", sort=True)
            for c in shared:
                copy = df[prefix + c]
                df[c] = df[c].where(df[c].notna(), copy)
                if bool((df[c] == copy).where(copy.notna(), True).all()):
                    df = df.drop(columns=prefix + c)
        return df.reset_index(drop=True)

    def write_result(self, name: str, data: dict[str, Any]) -> Path:
        """Write ``results/NAME.json`` atomically (NaN allowed; tensors as lists)."""
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"result names are letters, digits, '-' and '_', got {name!r}")
        path = self.path / "results" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)

        def default(x):
            if isinstance(x, torch.Tensor):
                return x.detach().cpu().tolist()
            return _json_default(x)

        atomic_write_bytes(path, json.dumps(data, indent=1, default=default).encode())
        return path

    def read_result(self, name: str) -> dict[str, Any]:
        """The content of ``results/NAME.json``.

        Raises:
            StoreError: if it is missing or not a JSON object.
        """
        return self.read_json(f"results/{name}.json")

    # ---------------------------------------------------------------- tensors
    def snapshot_path(self, step: int) -> Path:
        """Path of the snapshot at ``step``."""
        return self.path / "snapshots" / f"step_{int(step):08d}.safetensors"

    def save_snapshot(self, step: int, theta: torch.Tensor, meta: dict[str, Any]) -> Path:
        """Save θ at ``step`` with scalar metadata (atomic)."""
        path = self.snapshot_path(step)
        path.parent.mkdir(exist_ok=True)
        _save_tensors(path, {"theta": theta}, dict(meta, step=int(step)))
        return path

    def snapshot_steps(self) -> list[int]:
        """Steps with a snapshot, ascending."""
        out = []
        for p in (self.path / "snapshots").glob("step_*.safetensors"):
            try:
                out.append(int(p.stem.removeprefix("step_")))
            except ValueError:
                continue
        return sorted(out)

    def load_snapshot(
        self, step: int, *, device: str | torch.device = "cpu"
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """θ and metadata of the snapshot at ``step``.

        Raises:
            StoreError: if it is missing or unreadable.
        """
        tensors, meta = _load_tensors(self.snapshot_path(step), device=device)
        if "theta" not in tensors:
            raise StoreError(f"{self.snapshot_path(step)}: no tensor named 'theta'")
        return tensors["theta"], meta

    def save_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Replace checkpoint.safetensors atomically, after syncing the metric files."""
        self.sync()
        _save_tensors(self.path / "checkpoint.safetensors", tensors, meta)

    def load_checkpoint(
        self, *, device: str | torch.device = "cpu"
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The last checkpoint (tensors, metadata), or None when the run has none.

        Raises:
            StoreError: if the file exists but cannot be read.
        """
        path = self.path / "checkpoint.safetensors"
        if not path.exists():
            return None
        return _load_tensors(path, device=device)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # own copies: safetensors refuses tensors sharing storage (θ_0 is θ at step 0, and
    # warm-start blocks are views of a solver's row storage)
    data = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    save_file(data, str(tmp), metadata={"meta": json.dumps(meta, default=_json_default)})
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _load_tensors(
    path: Path, *, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        with _safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("meta", "{}"))
        tensors = load_file(str(path), device=str(device))
    except FileNotFoundError:
        raise StoreError(f"{path} is missing") from None
    except (SafetensorError, json.JSONDecodeError, OSError, ValueError) as err:
        raise StoreError(f"{path}: unreadable safetensors file ({err})") from None
    return tensors, meta
