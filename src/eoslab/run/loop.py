"""The run loop: the one place that steps, probes, snapshots, checkpoints and writes.

Per iteration at step s (θ_s, flow time t_s = Σ_{r<s} η_r, ``docs/methods.md`` §2):

1. save a snapshot of θ_s if due;
2. stop if s ≥ ``stop.max_steps`` or t_s ≥ ``stop.max_time``;
3. compute the integrator step from θ_s, which evaluates L(θ_s) and g(θ_s) anyway;
4. probe θ_s if the schedule says so (one eigensolve warm-started from the last probe) with
   the step length η_s just chosen — the constant η, the adaptive η_s = min(η_max, c/λ_1)
   or exponential Euler's τ_s — so that its threshold and ρ_i refer to the step actually
   taken from θ_s (``docs/methods.md`` §2.1), and append a ``probes`` row;
5. append the ``steps`` row; stop with status ``diverged`` if the loss is not finite or exceeds
   ``stop.diverge_factor`` × L(θ_0), or ``completed`` if it is below ``stop.loss_below``
   (in both cases θ_s is the final point and the computed update is not applied);
6. s ← s + 1; every ``checkpoint_every`` steps save a checkpoint of the state at the start
   of step s (θ_s, θ_0, the integrator state, the probes' warm-start block, counters).

A run killed at any moment resumes from its last checkpoint at step c: metric rows with
step ≥ c are dropped and recomputed. Everything is a deterministic function of the
checkpoint, so on a given machine, in float64 on CPU, the resumed metrics equal those of an
uninterrupted run (``tests/test_run.py`` kills a real subprocess with SIGKILL to check).
When the run ends (completed or diverged), a final probe (with the last step length) and
snapshot at the final θ are recorded if the schedule did not already take them, then a final
checkpoint that carries the
ending, and last the status; a run killed between the two gets its status from that
checkpoint on ``--resume``.

Before any of this, :func:`prepare` builds and checks everything the config describes, so a
bad config never leaves a run directory behind; the directory is locked for the whole run
(:class:`eoslab.store.RunLock`). SIGINT/SIGTERM stop the loop at the next step boundary with a
checkpoint and status ``interrupted`` (:class:`_StopRequest`).
"""

from __future__ import annotations

import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eoslab.dynamics import Integrator
from eoslab.probes import GaussNewtonProbe, ProbeSuite, is_mlp
from eoslab.probes.decomposition import decomposition
from eoslab.run.build import Built, build, check_probe, integrator_from_config
from eoslab.run.config import ConfigError, RunConfig, parse_config
from eoslab.run.live import TENSORBOARD_DIR, VIEW_FIELDS, TensorBoardSink
from eoslab.store import RunStore, StoreError

__all__ = ["Prepared", "environment", "prepare", "run"]


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=5,
    )
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment(cfg: RunConfig) -> dict[str, Any]:
    """Versions, git revision, device, dtype and thread count of this process."""
    import numpy as np

    from eoslab._version import __version__

    dev = torch.device(cfg.device)
    return dict(
        eoslab=__version__,
        git_revision=_git_revision(),
        python=sys.version.split()[0],
        torch=torch.__version__,
        numpy=np.__version__,
        platform=platform.platform(),
        machine=platform.machine(),
        device=str(dev),
        device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        dtype=cfg.dtype,
        threads=torch.get_num_threads(),
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        argv=sys.argv,
    )


def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        if not prefix and key in VIEW_FIELDS:
            continue  # how the run is watched, not what it computes
        path = f"{prefix}{key}"
        va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, path + ".")
        elif va != vb:
            out.append(f"{path}: saved {va!r}, given {vb!r}")
    return out


class _Progress:
    """tqdm bar over steps with loss, λ_1 and the EoS threshold (2/η for GD)."""

    def __init__(self, total: int | None, initial: int, enabled: bool, desc: str):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=initial, desc=desc, unit="step", file=sys.stderr, leave=True
            )
        self.post: dict[str, str] = {}

    def update(self, n: int = 1, **post: float) -> None:
        if self.bar is None:
            return
        for k, v in post.items():
            self.post[k] = f"{v:.4g}"
        self.bar.set_postfix(self.post, refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _probe_due(cfg: RunConfig, step: int, every: int) -> bool:
    p = cfg.probe
    if not p.enabled:
        return False
    return step % every == 0 or (step < p.dense_until and step % p.dense_every == 0)


@dataclass
class Prepared:
    """Everything a run needs, built and checked before its directory is touched."""

    cfg: RunConfig
    built: Built
    integrator: Integrator
    suite: ProbeSuite
    gn_probe: GaussNewtonProbe | None


def prepare(cfg: RunConfig) -> Prepared:
    """Build data, model, integrator and probes of ``cfg`` and check them against each other.

    Everything that can be checked without training is checked here, before a run
    directory exists: the data location and loader options, the model keywords, probe.k and
    the exponential-Euler k against the parameter count P, the top subspace against k, the
    eigensolver settings, and whether the layerwise probe fits the model.

    Raises:
        ConfigError: naming the offending field and the numbers involved.
    """
    built = build(cfg)
    problem = built.problem
    P = problem.size
    p, opt = cfg.probe, cfg.optimizer
    integrator = integrator_from_config(cfg)
    if p.enabled and p.k > P:
        raise ConfigError(
            f"probe.k: {p.k} eigenpairs asked for, but the model {cfg.model.name!r} has only "
            f"P = {P} parameters (k ≤ P); lower probe.k"
        )
    if opt.name == "exp_euler":
        k = opt.n_exact if opt.n_exact is not None else problem.n_outputs
        if k > P:
            raise ConfigError(
                f"optimizer.n_exact: exponential Euler in the top-{k} eigenbasis needs k ≤ P, "
                f"but the model {cfg.model.name!r} has P = {P} parameters"
            )
    check_probe(cfg, built)
    if p.layerwise and not is_mlp(problem.model):
        raise ConfigError(
            f"probe.layerwise: the layerwise decomposition needs an MLP, not {cfg.model.name!r}; "
            "use probe.gauss_newton for the architecture-independent part"
        )
    try:
        suite = ProbeSuite(
            k=p.k,
            n_top=p.n_top,
            n_classes=built.n_classes,
            solver=p.solver.spec(),
            projections=p.projections,
            loss_changes=p.loss_changes,
            test_problem=built.test_problem,
        )
    except ValueError as err:
        raise ConfigError(f"probe: {err}") from None
    gn_probe = GaussNewtonProbe(solver=p.gauss_newton_solver.spec()) if p.gauss_newton else None
    return Prepared(cfg, built, integrator, suite, gn_probe)


class _StopRequest:
    """SIGINT/SIGTERM turned into a request to stop at the next step boundary.

    While a run is in progress in the main thread, the first Ctrl-C (or SIGTERM from a job
    scheduler) only sets a flag: the loop checkpoints at the next step boundary, sets status
    ``interrupted`` and returns, so the run resumes to identical metrics. A second signal
    raises KeyboardInterrupt at once (the run then resumes from its last periodic
    checkpoint). Outside the main thread (Dask workers) nothing is installed.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name} received: stopping after the current step "
            "(again to abort at once)",
            file=sys.stderr,
            flush=True,
        )

    def _restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def __exit__(self, *exc) -> None:
        self._restore()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


def _resolve_config(config: RunConfig | None, out: Path, resume: bool) -> tuple[RunConfig, bool]:
    """The config to run and whether ``out`` holds a run to continue (nothing is written)."""
    if resume and (out / "config.yaml").is_file():
        saved = parse_config(RunStore(out).read_config())
        if config is not None:
            diff = _config_diff(saved.to_dict(), config.to_dict())
            if diff and not RunStore(out).nothing_recorded():
                raise ConfigError(
                    f"--resume: the config differs from the one saved in {out}:\n  "
                    + "\n  ".join(diff)
                )
            if diff:  # nothing was recorded under the old config: start afresh
                return config, False
        return saved, True
    if config is None:
        raise StoreError(f"{out} is not a run directory (no config.yaml) and no config given")
    return config, False


def run(
    config: RunConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    tensorboard: bool | None = None,
) -> dict[str, Any]:
    """Carry out one run and record it in the run directory ``out``.

    The data, model, integrator and probes are built and checked first; only then is the
    directory created (or opened) and locked for the whole run (:class:`~eoslab.store.RunLock`:
    a second writer is refused, naming this process). A directory in which nothing was
    recorded (a run that failed or was killed before its first step) is taken over by a new
    run. SIGINT/SIGTERM stop the run at the next step boundary with a checkpoint and status
    ``interrupted``.

    Args:
        config: the validated configuration; with ``resume`` it may be None (the saved one
            is used) and otherwise must equal the saved one.
        out: run directory (created; must not hold a run unless ``resume`` or ``overwrite``).
        resume: continue the run in ``out`` from its last checkpoint (or from the start if
            it has none); a run that ended is left as it is.
        overwrite: replace a run already in ``out`` (refused while it is running).
        progress: show a progress bar on stderr.
        tensorboard: write the metric rows as TensorBoard scalars to ``out/tensorboard``
            (:class:`~eoslab.run.live.TensorBoardSink`); None: as ``config`` (or, without
            one, the saved config) says.

    Returns:
        The final status dict (also in ``out/status.json``): ``status`` is ``completed``,
        ``diverged``, ``interrupted`` (with ``signal``) or ``failed``.

    Raises:
        ConfigError: for a bad config or a resume with a different config (nothing written).
        StoreError: for an unusable or locked run directory.
    """
    out = Path(out)
    cfg, resuming = _resolve_config(config, out, resume)
    prepared = prepare(cfg)
    if tensorboard is None:
        tensorboard = (config if config is not None else cfg).tensorboard
    sinks = [TensorBoardSink(out / TENSORBOARD_DIR)] if tensorboard else []
    if sinks and progress:
        where = out / TENSORBOARD_DIR
        print(f"TensorBoard event files in {where} (tensorboard --logdir {where})", file=sys.stderr)
    if resuming:
        store = RunStore.open(out, lock="resume")
        try:
            diff = _config_diff(parse_config(store.read_config()).to_dict(), cfg.to_dict())
            if diff:  # replaced between the check above and the lock
                raise ConfigError(f"--resume: the config in {out} changed:\n  " + "\n  ".join(diff))
            store.write_environment(environment(cfg))
        except BaseException:
            store.close()
            raise
    else:
        store = RunStore.create(out, cfg.to_dict(), environment(cfg), overwrite=overwrite)
    try:
        with _StopRequest() as stop:
            return _Loop(prepared, store, progress=progress, stop=stop, sinks=sinks).run()
    finally:
        for sink in sinks:
            sink.close()
        store.close()


@dataclass
class _State:
    """The loop's state at the start of step ``step``: all a checkpoint holds."""

    theta: torch.Tensor
    theta0: torch.Tensor
    integrator_state: dict[str, torch.Tensor]
    warm: dict[str, torch.Tensor]
    step: int
    time: float
    lr: float
    loss0: float = math.nan
    last_probe: int = -1
    totals: dict[str, int] = field(default_factory=lambda: dict(n_grads=0, n_matvecs=0))

    def save(self, store: RunStore, *, ending: dict[str, Any] | None = None) -> None:
        """Checkpoint this state; ``ending`` (the final status) marks the run as ended."""
        tensors = {"theta": self.theta, "theta0": self.theta0}
        tensors.update({f"state/{k}": v for k, v in self.integrator_state.items()})
        tensors.update({f"warm/{k}": v for k, v in self.warm.items()})
        meta = dict(
            step=self.step,
            time=self.time,
            lr=self.lr,
            initial_loss=self.loss0,
            last_probe=self.last_probe,
            totals=self.totals,
            final=ending is not None,
            pid=os.getpid(),
        )
        if ending is not None:
            meta["ending"] = ending
        store.save_checkpoint(tensors, meta)

    @classmethod
    def load(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> _State:
        """The state a checkpoint holds (:meth:`save`)."""
        return cls(
            theta=tensors["theta"],
            theta0=tensors["theta0"],
            integrator_state={k[6:]: v for k, v in tensors.items() if k.startswith("state/")},
            warm={k[5:]: v for k, v in tensors.items() if k.startswith("warm/")},
            step=int(meta["step"]),
            time=float(meta["time"]),
            lr=float(meta["lr"]),
            loss0=float(meta["initial_loss"]),
            last_probe=int(meta["last_probe"]),
            totals=dict(meta["totals"]),
        )


class _Loop:
    """One run's loop over steps (see the module docstring for the order of events)."""

    def __init__(self, prepared: Prepared, store: RunStore, *, progress: bool, stop, sinks=()):
        self.p = prepared
        self.cfg = prepared.cfg
        self.problem = prepared.built.problem
        self.integrator = prepared.integrator
        self.store = store
        self.progress = progress
        self.stop = stop
        self.every = self.cfg.probe_every()
        self.sinks = list(sinks)  # live views: each row also goes to sink.write(stream, row)

    def _record(self, stream: str, row: dict[str, Any]) -> None:
        self.store.append(stream, row)
        for sink in self.sinks:
            sink.write(stream, row)

    # ------------------------------------------------------------------ set-up
    def _start(self) -> _State | dict[str, Any]:
        """The state to start from, or the final status of a run that has already ended."""
        store, problem = self.store, self.problem
        ckpt = store.load_checkpoint(device=problem.device)
        if ckpt is not None and ckpt[1].get("final"):
            return self._finish_ended(ckpt[1])
        if ckpt is not None:
            st = _State.load(*ckpt)
            if st.theta.numel() != problem.size:
                raise StoreError(
                    f"{store.path}/checkpoint.safetensors holds θ of size {st.theta.numel()}, "
                    f"but the config builds a model with P={problem.size}"
                )
            store.truncate_metrics(st.step)
            return st
        theta = problem.initial_theta().detach().clone()
        st = _State(
            theta=theta,
            theta0=theta,
            integrator_state=self.integrator.init_state(problem, theta),
            warm={},
            step=0,
            time=0.0,
            lr=self.cfg.optimizer.lr,
        )
        store.truncate_metrics(0)
        return st

    def _finish_ended(self, meta: dict[str, Any]) -> dict[str, Any]:
        """A run whose final checkpoint exists: write its final status if a kill lost it."""
        st = self.store.status_or_none()
        if st is not None and st.get("status") in ("completed", "diverged"):
            return st
        ending = dict(meta.get("ending") or {})
        if not ending:  # a final checkpoint written before endings were recorded
            ending = dict(status="completed", reason="ended (final checkpoint)")
        status = ending.pop("status")
        self.store.set_status(status, step=int(meta["step"]), **ending)
        return self.store.status()

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        start = self._start()
        if isinstance(start, dict):
            return start
        st = self.st = start
        cfg, store, integrator, problem = self.cfg, self.store, self.integrator, self.problem
        store.set_status("running", step=st.step)
        max_steps = cfg.stop.max_steps
        bar = _Progress(max_steps, st.step, self.progress, cfg.name)
        self.wall0 = time.perf_counter()
        status, reason = "completed", ""
        try:
            while True:
                if self.stop.signum is not None:
                    st.save(store)
                    bar.close()
                    return self._interrupted()
                due = _probe_due(cfg, st.step, self.every) and st.last_probe != st.step
                if cfg.snapshot_every and st.step % cfg.snapshot_every == 0:
                    store.save_snapshot(st.step, st.theta, dict(time=st.time, lr=st.lr))
                if max_steps is not None and st.step >= max_steps:
                    reason = f"max_steps={max_steps} reached"
                    break
                if cfg.stop.max_time is not None and st.time >= cfg.stop.max_time:
                    reason = f"flow time {st.time:.6g} ≥ max_time={cfg.stop.max_time}"
                    break
                r = integrator.step(problem, st.theta, st.integrator_state)
                if due:  # probe θ_s with the step taken from it (τ_s, or η_s when adaptive)
                    res = self._probe(lr=r.lr)
                    bar.update(0, lam1=res.metrics.get("lambda_1", math.nan))
                st.totals["n_grads"] += r.n_grads
                st.totals["n_matvecs"] += r.n_matvecs
                if st.step == 0 and not math.isfinite(st.loss0):
                    st.loss0 = r.loss
                row = dict(step=st.step, time=st.time, lr=r.lr, loss=r.loss, grad_norm=r.grad_norm)
                row.update(threshold=integrator.threshold(r.lr), **r.info)
                row.update(n_grads=r.n_grads, n_matvecs=r.n_matvecs)
                row["wall"] = time.perf_counter() - self.wall0
                self._record("steps", row)
                ended = self._stop_rule(r)
                if ended is not None:
                    status, reason = ended
                    break
                st.theta, st.integrator_state, st.lr = r.theta, r.state, r.lr
                st.step += 1
                st.time += r.lr
                bar.update(1, loss=r.loss, thr=integrator.threshold(r.lr))
                if st.step % cfg.checkpoint_every == 0:
                    st.save(store)
                    store.set_status("running", step=st.step)  # readers see the progress
            # the final point: probe and snapshot it unless the schedule already did
            if cfg.probe.enabled and st.last_probe != st.step and status != "diverged":
                self._probe()
            if cfg.snapshot_every and not store.snapshot_path(st.step).exists():
                store.save_snapshot(st.step, st.theta, dict(time=st.time, lr=st.lr))
            ending = dict(
                status=status,
                reason=reason,
                time=st.time,
                n_grads=st.totals["n_grads"],
                n_matvecs=st.totals["n_matvecs"],
                wall=time.perf_counter() - self.wall0,
            )
            st.save(store, ending=ending)
        except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint beyond the last one
            bar.close()
            store.set_status(
                "interrupted",
                step=st.step,
                reason="aborted at once; --resume continues from the last checkpoint",
                signal="SIGINT",
            )
            raise
        except BaseException as err:
            bar.close()
            store.set_status("failed", step=st.step, reason=f"{type(err).__name__}: {err}")
            raise
        bar.close()
        ending = dict(ending)
        store.set_status(ending.pop("status"), step=st.step, **ending)
        return store.status()

    def _stop_rule(self, r) -> tuple[str, str] | None:
        """``(status, reason)`` when the step just taken ends the run, else None."""
        cfg, st = self.cfg, self.st
        if not math.isfinite(r.loss) or (
            math.isfinite(st.loss0) and r.loss > cfg.stop.diverge_factor * max(st.loss0, 1e-12)
        ):
            return "diverged", f"loss {r.loss:.4g} at step {st.step}"
        if cfg.stop.loss_below is not None and r.loss < cfg.stop.loss_below:
            return "completed", f"loss {r.loss:.6g} < loss_below={cfg.stop.loss_below}"
        if not bool(torch.isfinite(r.theta).all()):
            return "diverged", f"non-finite parameters after step {st.step}"
        return None

    def _interrupted(self) -> dict[str, Any]:
        st = self.st
        self.store.set_status(
            "interrupted",
            step=st.step,
            reason=f"{self.stop.name} at step {st.step}; a checkpoint was written, "
            "continue with --resume",
            signal=self.stop.name,
            time=st.time,
            wall=time.perf_counter() - self.wall0,
        )
        return self.store.status()

    def _probe(self, lr: float | None = None):
        """Probe θ_s; ``lr`` is the step taken from θ_s (default: the last one, at the end)."""
        st, p = self.st, self.p
        lr = st.lr if lr is None else lr
        thr = self.integrator.threshold(lr)
        res = p.suite(
            self.problem,
            st.theta,
            lr=lr,
            threshold=thr,
            theta0=st.theta0,
            v0=st.warm.get("probe"),
        )
        if res.eig is not None:
            st.warm["probe"] = res.eig.warm_start
        st.totals["n_matvecs"] += res.n_matvecs
        st.totals["n_grads"] += res.n_grads
        row = dict(step=st.step, time=st.time, lr=lr, **res.metrics)
        row.update(probe_matvecs=res.n_matvecs, probe_grads=res.n_grads)
        if p.gn_probe is not None or self.cfg.probe.layerwise:
            row.update(
                _decomposition(
                    self.problem, st.theta, p.gn_probe, self.cfg.probe.layerwise, st.warm, st.totals
                )
            )
        self._record("probes", row)
        st.last_probe = st.step
        return res


def _decomposition(problem, theta, gn_probe, layerwise: bool, warm: dict, totals: dict) -> dict:
    """Gauss–Newton (``docs/methods.md`` §4) and layerwise (§5) metrics at a probe step."""
    gw = {k[3:]: v for k, v in warm.items() if k.startswith("gn/")}
    res = decomposition(problem, theta, gauss_newton=gn_probe, layerwise=layerwise, warm=gw)
    warm.update({f"gn/{k}": v for k, v in res.warm.items()})
    totals["n_matvecs"] += res.n_matvecs
    return res.metrics
