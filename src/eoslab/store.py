"""The run store: the only file I/O of runs (``docs/architecture.md``).

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
      .lock                the writer's lock (see below)

Crash safety. Metric rows are appended as whole lines and flushed after each write, so a
killed process (SIGKILL) loses at most the line being written; a torn last line is ignored
on reading. Files that are replaced (status, checkpoint, snapshots) are written to a
temporary name, fsynced and renamed, so a reader sees the old or the new file, never a
mixture. A checkpoint at step s records the state before step s; on resume the metric
rows with step ≥ s are dropped (they are recomputed identically) and everything earlier is
kept. Nothing here unpickles anything: tensors are safetensors, the rest JSON/YAML.

One writer at a time. Every process that writes into a run directory (a run, a resume,
``eoslab analyze``) holds an exclusive OS-level lock on ``RUN/.lock`` (``flock``) for its whole
life, and records in that file who holds it (pid, host, start time, command). A second writer
is refused with a :class:`RunLockedError` naming the holder. The operating system releases the
lock when its process ends in any way, SIGKILL included, so a killed run can be resumed at
once; the file itself stays (deleting it would let two processes lock different files).
Readers (``eoslab show``, :func:`eoslab.load_run`, plots) take no lock.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors.torch import safe_open as _safe_open

from eoslab._yaml import safe_load

__all__ = ["METRIC_STREAMS", "RunLock", "RunLockedError", "RunStore", "StoreError"]

#: The appended metric files: per-step rows, per-probe rows, post-hoc analysis of snapshots.
METRIC_STREAMS = ("steps", "probes", "analysis")
#: The streams the training loop writes (and truncates to its checkpoint on resume).
TRAINING_STREAMS = ("steps", "probes")
STATUSES = ("running", "completed", "diverged", "failed", "interrupted")


class StoreError(RuntimeError):
    """A run directory that cannot be used as asked; the message names the file."""


class RunLockedError(StoreError):
    """Another process holds the run directory's lock; the message names it."""


#: Name of the lock file inside a run directory.
LOCK_NAME = ".lock"


class RunLock:
    """An exclusive OS-level lock on a run directory, held for a writer's whole life.

    ``flock(LOCK_EX | LOCK_NB)`` on ``DIR/.lock`` (``msvcrt.locking`` on Windows). The lock
    belongs to the open file, so the operating system drops it when the process ends, however
    it ends. After acquiring it the holder writes a JSON line describing itself into the file,
    which a refused second writer reads to name it.

    Args:
        directory: the run directory (must exist).
        role: what the holder does (``run``, ``resume``, ``analyze``), shown to others.

    Raises:
        RunLockedError: if another process (or another open lock in this one) holds it.
    """

    def __init__(self, directory: str | Path, role: str):
        self.path = Path(directory) / LOCK_NAME
        self.role = role
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(
                f"{self.path}: cannot create the lock file ({err.strerror or err})"
            ) from None
        try:
            _lock_fd(self._fd)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise RunLockedError(
                f"{self.path.parent} is in use by another process ({self.holder_text()}); "
                "wait for it to end or stop it first (a killed process releases the lock)"
            ) from None
        info = dict(
            pid=os.getpid(),
            host=socket.gethostname(),
            started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            role=role,
            command=" ".join(sys.argv),
        )
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(info) + "\n").encode(), 0)

    def holder_text(self) -> str:
        """Who holds the lock, from the lock file: ``pid …, host …, since …, role``."""
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            info = {}
        if not info:
            return "holder not yet recorded"
        return (
            f"pid {info.get('pid')} on host {info.get('host')}, since {info.get('started')}, "
            f"{info.get('role')}: {info.get('command')}"
        )

    @property
    def held(self) -> bool:
        """True until :meth:`release`."""
        return self._fd is not None

    def release(self) -> None:
        """Clear the holder record and release the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing the file releases the lock
            self._fd = None


def _lock_fd(fd: int) -> None:
    """Take an exclusive non-blocking lock on ``fd``; OSError if it is held elsewhere."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


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
        self.lock: RunLock | None = None

    # ---------------------------------------------------------------- create / open
    @classmethod
    def create(
        cls,
        path: str | Path,
        config: dict[str, Any],
        environment: dict[str, Any],
        *,
        overwrite: bool = False,
    ) -> RunStore:
        """Make a new run directory, locked, with its config, environment and status ``running``.

        A directory that already holds a run is refused unless ``overwrite`` (its content is
        deleted, under the lock, so a live run is never deleted) or nothing was recorded in
        it (:meth:`nothing_recorded`: a run that failed or was killed before its first step),
        in which case the new run takes it over.

        Raises:
            RunLockedError: if another process writes into ``path``.
            StoreError: if ``path`` already holds a run (use resume or another directory).
        """
        store = cls(path)
        try:
            store.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a file of that name, no permission, …
            raise StoreError(
                f"{store.path}: cannot be used as a run directory ({err.strerror or err})"
            ) from None
        store.acquire("run")
        try:
            if (store.path / "config.yaml").exists():
                if not (overwrite or store.nothing_recorded()):
                    raise StoreError(
                        f"{store.path} already holds a run; pass --resume to continue it, "
                        "--overwrite to replace it, or choose another --out directory"
                    )
                store._clear()
            (store.path / "snapshots").mkdir(exist_ok=True)
            atomic_write_bytes(
                store.path / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode()
            )
            store.write_environment(environment)
            store.set_status("running", step=0)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open(cls, path: str | Path, *, lock: str | None = None) -> RunStore:
        """Open an existing run directory; with ``lock`` (the role, e.g. ``"analyze"``) locked.

        Raises:
            StoreError: if ``path`` has no ``config.yaml``.
            RunLockedError: if ``lock`` is given and another process writes into ``path``.
        """
        store = cls(path)
        if not (store.path / "config.yaml").is_file():
            raise StoreError(f"{store.path} is not a run directory (no config.yaml)")
        if lock is not None:
            store.acquire(lock)
        return store

    def acquire(self, role: str) -> None:
        """Take the directory's writer lock (:class:`RunLock`) until :meth:`close`."""
        if self.lock is None or not self.lock.held:
            self.lock = RunLock(self.path, role)

    def nothing_recorded(self) -> bool:
        """True when the directory holds no metric row and no checkpoint (nothing to lose)."""
        if (self.path / "checkpoint.safetensors").exists():
            return False
        return all(not self.rows(stream) for stream in METRIC_STREAMS)

    def _clear(self) -> None:
        """Delete everything in the directory but the lock file (the caller holds the lock)."""
        self.close_files()
        for child in self.path.iterdir():
            if child.name == LOCK_NAME:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def close_files(self) -> None:
        """Close the metric files (rows already written are on disk); keep the lock."""
        for fh in self._handles.values():
            fh.close()
        self._handles.clear()

    def close(self) -> None:
        """Close the metric files and release the lock, if held."""
        self.close_files()
        if self.lock is not None:
            self.lock.release()
            self.lock = None

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
            raw = safe_load(path.read_text())
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

    def status_or_none(self) -> dict[str, Any] | None:
        """status.json, or None when it is missing or unreadable."""
        try:
            return self.status()
        except StoreError:
            return None

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
        self.close_files()
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
