"""A live view of runs: TensorBoard scalars of the metric rows, and following a run's probes.

**TensorBoard** (the optional ``tensorboard`` extra: ``pip install 'eoslab[tensorboard]'``).
:class:`TensorBoardSink` turns every metric row the run loop records into scalars, with the
step as x axis, in event files under ``RUN/tensorboard/`` (``tensorboard: true`` in the config
or ``eoslab run … --tensorboard``). ``eoslab tensorboard RUN_OR_SWEEP`` (:func:`export_events`)
writes the same event files afterwards from the stored rows. Tags (:func:`scalar_tag`), grouped
as TensorBoard shows them:

=====================  ========================================================
``loss/train``         ``loss``; ``loss/test`` is ``test_loss``
``accuracy/train``     ``accuracy``; ``accuracy/test`` is ``test_accuracy``
``sharpness/…``        ``lambda_1`` … ``lambda_k``, ``threshold``, ``sharpness``
``rho/…``              ``rho_1`` … ``rho_k`` (λ_i / threshold)
``projections/…``      ``proj_top``, ``proj_bulk``, ``d_1`` … ``d_k``
``loss_change/…``      ``dL_top``, ``dL_bulk``, ``dL_full``
``norms/…``            ``grad_norm``, ``theta_norm``, ``dist_init``
``optimizer/…``        ``lr``, and ``flow_time`` (the row's ``time`` = Σ η)
``steps/…``            anything else of a step row (``n_grads``, ``wall``, ``tau`` …)
``probes/…``           anything else of a probe row (``eig_*``, Gauss–Newton, layerwise …)
``analysis/…``         every metric of ``eoslab analyze`` (export only)
=====================  ========================================================

A custom-scalars layout also draws λ_1 against the threshold on one chart. Values are float32,
as TensorBoard stores scalars. A tag gets one value per step: at a probe step the probe row
is recorded before the step row, so a metric both carry (``loss``, ``grad_norm``, ``lr``,
``time``, ``threshold``) keeps the probe's value there (the same number for fixed-η
integrators). On ``--resume`` the rows from the checkpoint on are recomputed: the sink starts
a new event file whose ``purge_step`` is its first row's step, and TensorBoard drops older
values at that step and after, so every step still shows one value.

**Following** (``eoslab show RUN --follow``): :class:`RowFollower` reads the complete rows that
were appended to a JSON-lines file since its last call, by byte offset; a last line without
its newline (still being written, or torn by a kill) waits for the next call, as
:meth:`eoslab.store.RunStore.rows` ignores it. :class:`ProbeTable` formats them.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eoslab.run.config import ConfigError
from eoslab.store import LOCK_NAME, TRAINING_STREAMS, RunStore, StoreError

__all__ = [
    "TENSORBOARD_DIR",
    "VIEW_FIELDS",
    "Exported",
    "ProbeTable",
    "RowFollower",
    "TensorBoardSink",
    "export_events",
    "find_runs",
    "scalar_tag",
    "writer_gone",
]

#: Sub-directory of a run directory that holds its live TensorBoard event files.
TENSORBOARD_DIR = "tensorboard"

#: Config fields that choose how a run is watched, not what it computes: they are no config
#: difference for ``--resume`` and are left out of sweep run ids.
VIEW_FIELDS = ("tensorboard",)

INSTALL_HINT = "pip install 'eoslab[tensorboard]'"

#: (metric name pattern, tag) of the step and probe metrics shown in groups; ``{}`` is the name.
_GROUPS = tuple(
    (re.compile(pattern), tag)
    for pattern, tag in (
        (r"loss", "loss/train"),
        (r"test_loss", "loss/test"),
        (r"accuracy", "accuracy/train"),
        (r"test_accuracy", "accuracy/test"),
        (r"lambda_\d+|threshold|sharpness", "sharpness/{}"),
        (r"rho_\d+", "rho/{}"),
        (r"proj_top|proj_bulk|d_\d+", "projections/{}"),
        (r"dL_\w+", "loss_change/{}"),
        (r"grad_norm|theta_norm|dist_init", "norms/{}"),
        (r"lr", "optimizer/lr"),
        (r"time", "optimizer/flow_time"),
    )
)

#: Charts with several tags (TensorBoard's Custom Scalars dashboard; tags are regexes).
_LAYOUT = {
    "edge of stability": {
        "λ_1 and the threshold": ["Multiline", [r"sharpness/lambda_1$", r"sharpness/threshold$"]],
        "top eigenvalues": ["Multiline", [r"sharpness/lambda_\d+$"]],
        "loss": ["Multiline", [r"loss/(train|test)$"]],
    }
}


def scalar_tag(stream: str, key: str) -> str | None:
    """The TensorBoard tag of metric ``key`` of a ``stream`` row (None: not a scalar to show)."""
    if key == "step":
        return None
    if stream in TRAINING_STREAMS:
        for pattern, tag in _GROUPS:
            if pattern.fullmatch(key):
                return tag.format(key)
    return f"{stream}/{key}"


def _summary_writer():
    """``torch.utils.tensorboard.SummaryWriter``, or a ConfigError naming the extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ConfigError(
            f"tensorboard: the TensorBoard view needs the tensorboard package ({err}); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return SummaryWriter


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_EVENT_FILE = re.compile(r"events\.out\.tfevents\.(\d+)\.")


class TensorBoardSink:
    """Metric rows as TensorBoard scalars in ``logdir`` (tags: :func:`scalar_tag`).

    The event file is opened at the first row, with ``purge_step`` = that row's step, so a
    resumed run's recomputed rows replace the ones written before the crash. Probe rows are
    flushed at once, step rows every ``flush_secs``.

    Args:
        logdir: folder of the event files (created at the first row).
        keep_going: on a write error, warn once and drop the remaining rows instead of
            raising (a live view never stops a run; ``eoslab tensorboard`` rewrites it).
        flush_secs: longest time a step row waits in memory.

    Raises:
        ConfigError: naming ``pip install 'eoslab[tensorboard]'`` when the package is missing.
    """

    def __init__(self, logdir: str | Path, *, keep_going: bool = True, flush_secs: int = 5):
        self.logdir = Path(logdir)
        self.keep_going = keep_going
        self.flush_secs = flush_secs
        self.n_scalars = 0
        self._cls = _summary_writer()
        self._writer = None
        self._last: dict[str, int] = {}  # tag -> last step written
        self._broken = False

    def write(self, stream: str, row: dict[str, Any]) -> None:
        """Add the numbers of ``row`` (a ``steps``, ``probes`` or ``analysis`` row)."""
        if self._broken:
            return
        try:
            step = int(row["step"])
            if self._writer is None:
                self._open(step)
            for key, value in row.items():
                tag = scalar_tag(stream, key)
                if tag is None or not _is_number(value) or self._last.get(tag, -1) >= step:
                    continue
                self._writer.add_scalar(tag, float(value), step)
                self._last[tag] = step
                self.n_scalars += 1
            if stream == "probes":
                self._writer.flush()
        except Exception as err:
            if not self.keep_going:
                raise
            self._broken = True
            warnings.warn(
                f"the TensorBoard view in {self.logdir} stopped ({type(err).__name__}: {err}); "
                "the run goes on, and eoslab tensorboard RUN rewrites the view afterwards",
                RuntimeWarning,
                stacklevel=2,
            )

    def _open(self, step: int) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        # event files are read in name order and a name starts with its creation second: a
        # new file must not share the second of an older one (a resume right after a crash)
        newest = max(
            (int(m.group(1)) for p in self.logdir.iterdir() if (m := _EVENT_FILE.match(p.name))),
            default=None,
        )
        now = time.time()
        if newest is not None and newest <= now < newest + 1:
            time.sleep(newest + 1 - now)
        self._writer = self._cls(
            log_dir=str(self.logdir), purge_step=step, flush_secs=self.flush_secs
        )
        self._writer.add_custom_scalars(_LAYOUT)

    def close(self) -> None:
        """Write out everything and close the event file (idempotent)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()


def find_runs(path: str | Path) -> dict[str, Path]:
    """The run directories at ``path``: itself, a sweep's ``runs/<id>``, or ``path/<name>``.

    Raises:
        StoreError: if ``path`` holds no run.
    """
    path = Path(path)
    if not path.is_dir():
        raise StoreError(f"{path} is not a directory")
    if (path / "config.yaml").is_file():
        return {path.name: path}
    for parent in (path / "runs", path):
        if parent.is_dir():
            found = {p.name: p for p in sorted(parent.iterdir()) if (p / "config.yaml").is_file()}
            if found:
                return found
    raise StoreError(
        f"{path} holds no run: neither a run directory (config.yaml) nor a sweep "
        "(runs/<id>/config.yaml) nor a folder of run directories"
    )


def _lock_holder(run_dir: Path) -> dict[str, Any] | None:
    """The process named in ``RUN/.lock`` unless it is known to be gone (read-only).

    A writer empties the file when it releases the lock; a killed one leaves its record, so
    a record naming a process of this host that does not exist any more counts as gone.
    """
    try:
        info = json.loads((run_dir / LOCK_NAME).read_text() or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    pid = info.get("pid")
    if os.name == "posix" and isinstance(pid, int) and info.get("host") == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # alive, another user's
            pass
    return info


def writer_gone(run_dir: str | Path) -> bool:
    """True when no process writes into ``run_dir`` (its status may still say ``running``)."""
    return _lock_holder(Path(run_dir)) is None


@dataclass
class Exported:
    """What :func:`export_events` wrote: pass ``logdir`` to ``tensorboard --logdir``."""

    logdir: Path
    runs: dict[str, Path] = field(default_factory=dict)  # name -> its event folder
    scalars: dict[str, int] = field(default_factory=dict)  # name -> scalars written
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why


def _rows_in_loop_order(store: RunStore) -> list[tuple[str, dict[str, Any]]]:
    """Probe and step rows by step, a probe before the step row of its step (as recorded)."""
    keyed = [(int(r["step"]), 0, "probes", r) for r in store.rows("probes")]
    keyed += [(int(r["step"]), 1, "steps", r) for r in store.rows("steps")]
    keyed.sort(key=lambda t: t[:2])
    analysis = sorted(store.rows("analysis"), key=lambda r: int(r["step"]))
    return [(s, r) for _, _, s, r in keyed] + [("analysis", r) for r in analysis]


def export_events(path: str | Path, out: str | Path | None = None) -> Exported:
    """Write TensorBoard event files from the stored rows of the runs at ``path``.

    A run directory gets its files in ``out`` (default ``RUN/tensorboard``, the live view's
    folder); a sweep (or a folder of runs) gets one sub-folder per run id (or name) in ``out``
    (default ``PATH/tensorboard``), so TensorBoard compares them. Older event files in those
    folders are replaced. A run that is still running is skipped (its live view, if on, is
    in ``RUN/tensorboard``); one whose status says ``running`` but whose process is gone
    (killed) is written as far as it got.

    Raises:
        StoreError: if ``path`` holds no run.
        ConfigError: if the tensorboard package is missing (naming the extra).
    """
    path = Path(path)
    runs = find_runs(path)
    _summary_writer()
    single = (path / "config.yaml").is_file()
    logdir = Path(out) if out is not None else path / TENSORBOARD_DIR
    done = Exported(logdir=logdir)
    for name, run_dir in runs.items():
        store = RunStore.open(run_dir)
        status = (store.status_or_none() or {}).get("status")
        holder = _lock_holder(run_dir) if status == "running" else None
        if holder is not None:
            done.skipped[name] = (
                f"running (pid {holder.get('pid')} on {holder.get('host')}); its live view, "
                f"if on, is in {run_dir / TENSORBOARD_DIR}"
            )
            continue
        target = logdir if single else logdir / name
        target.mkdir(parents=True, exist_ok=True)
        for old in target.iterdir():
            if _EVENT_FILE.match(old.name) and old.is_file():
                old.unlink()
        sink = TensorBoardSink(target, keep_going=False)
        try:
            for stream, row in _rows_in_loop_order(store):
                sink.write(stream, row)
        finally:
            sink.close()
        done.runs[name] = target
        done.scalars[name] = sink.n_scalars
    return done


class RowFollower:
    """The complete rows appended to a JSON-lines file since the last :meth:`poll`.

    Reads from the byte offset where the last call stopped. A last line without its newline
    waits for the next call. A file replaced by a shorter one (``--resume`` drops the rows
    after the checkpoint) is read again from its start; rows whose step is not after the
    last one returned are skipped, so nothing is returned twice.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.last_step = -1
        self._inode: int | None = None

    def poll(self) -> list[dict[str, Any]]:
        """New complete rows, in file order (unparseable lines are skipped)."""
        try:
            fh = open(self.path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return []
        with fh:
            st = os.fstat(fh.fileno())
            if st.st_ino != self._inode or st.st_size < self.offset:
                self._inode, self.offset = st.st_ino, 0
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        rows = []
        for line in data[:end].split(b"\n"):
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict) or not _is_number(row.get("step")):
                continue
            if row["step"] > self.last_step:
                self.last_step = row["step"]
                rows.append(row)
        return rows


#: (metric, heading, width, format) of the columns ``eoslab show --follow`` can print.
_COLUMNS = (
    ("step", "step", 8, "d"),
    ("time", "time", 9, ".4g"),
    ("loss", "loss", 11, ".5g"),
    ("lambda_1", "λ_1", 10, ".5g"),
    ("threshold", "threshold", 10, ".5g"),
    ("rho_1", "ρ_1", 7, ".3f"),
    ("accuracy", "accuracy", 8, ".4f"),
    ("test_loss", "test loss", 10, ".5g"),
    ("test_accuracy", "test acc", 8, ".4f"),
)


class ProbeTable:
    """Compact one-line probe rows: step, flow time, loss, λ_1, threshold, ρ_1, accuracy.

    The columns are those of ``first`` (the first row to print); a later row lacking one
    shows ``-``.
    """

    def __init__(self, first: dict[str, Any]):
        self.columns = [c for c in _COLUMNS if c[0] == "step" or c[0] in first]

    @property
    def header(self) -> str:
        """The column headings."""
        return "  ".join(f"{head:>{width}}" for _, head, width, _ in self.columns)

    def line(self, row: dict[str, Any]) -> str:
        """One row, aligned with :attr:`header`."""
        cells = []
        for key, _, width, fmt in self.columns:
            value = row.get(key)
            if not _is_number(value):
                text = "-"
            elif fmt == "d" or not math.isfinite(value):
                text = str(int(value)) if fmt == "d" else str(value)
            else:
                text = format(value, fmt)
            cells.append(f"{text:>{width}}")
        return "  ".join(cells)
