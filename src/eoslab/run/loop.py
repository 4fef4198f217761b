"""The run loop: the one place that steps, probes, snapshots, checkpoints and writes.

Per iteration at step s (θ_s, flow time t_s = Σ_{r<s} η_r, ``METHODS.md`` §2):

1. probe θ_s if the schedule says so (one eigensolve warm-started from the last probe)
   and append a ``probes`` row;
2. save a snapshot of θ_s if due;
3. stop if s ≥ ``stop.max_steps`` or t_s ≥ ``stop.max_time``;
4. take one integrator step, which evaluates L(θ_s) and g(θ_s) anyway; append a ``steps``
   row with them; stop with status ``diverged`` if the loss is not finite or exceeds
   ``stop.diverge_factor`` × L(θ_0), or ``completed`` if it is below ``stop.loss_below``
   (in both cases θ_s is the final point and the computed update is not applied);
5. s ← s + 1; every ``checkpoint_every`` steps save a checkpoint of the state at the start
   of step s (θ_s, θ_0, the integrator state, the probes' warm-start block, counters).

A run killed at any moment resumes from its last checkpoint at step c: metric rows with
step ≥ c are dropped and recomputed. Everything is a deterministic function of the
checkpoint, so on a given machine, in float64 on CPU, the resumed metrics equal those of an
uninterrupted run (``tests/test_run.py`` kills a real subprocess with SIGKILL to check).
When the run ends (any status), a final probe and snapshot at the final θ are recorded if
the schedule did not already take them.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from eoslab.probes import GaussNewtonProbe, ProbeSuite, layerwise_stats, per_sample_m_norm_sq
from eoslab.run.build import build, check_probe, integrator_from_config
from eoslab.run.config import ConfigError, RunConfig, parse_config
from eoslab.store import RunStore, StoreError

__all__ = ["environment", "run"]


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

    from eoslab import __version__

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


def _open_store(cfg: RunConfig | None, out: Path, resume: bool) -> tuple[RunStore, RunConfig]:
    if not resume:
        if cfg is None:
            raise ConfigError("a config is needed to start a run")
        return RunStore.create(out, cfg.to_dict(), environment(cfg)), cfg
    try:
        store = RunStore.open(out)
    except StoreError:
        if cfg is None:
            raise
        return RunStore.create(out, cfg.to_dict(), environment(cfg)), cfg
    saved = parse_config(store.read_config())
    if cfg is not None:
        diff = _config_diff(saved.to_dict(), cfg.to_dict())
        if diff:
            raise ConfigError(
                f"--resume: the config differs from the one saved in {out}:\n  " + "\n  ".join(diff)
            )
    store.write_environment(environment(saved))
    return store, saved


def run(
    config: RunConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Carry out one run and record it in the run directory ``out``.

    Args:
        config: the validated configuration; with ``resume`` it may be None (the saved one
            is used) and otherwise must equal the saved one.
        out: run directory (created; must not hold a run unless ``resume``).
        resume: continue the run in ``out`` from its last checkpoint (or from the start if
            it has none).
        progress: show a progress bar on stderr.

    Returns:
        The final status dict (also in ``out/status.json``).

    Raises:
        ConfigError: for a bad config or a resume with a different config.
        StoreError: for an unusable run directory.
    """
    out = Path(out)
    store, cfg = _open_store(config, out, resume)
    try:
        return _run(cfg, store, progress=progress)
    except Exception as err:  # e.g. data or model that cannot be built: say so in status.json
        st = store.status()
        if st.get("status") == "running":
            store.set_status(
                "failed", step=st.get("step", 0), reason=f"{type(err).__name__}: {err}"
            )
        raise
    finally:
        store.close()


def _run(cfg: RunConfig, store: RunStore, *, progress: bool) -> dict[str, Any]:
    built = build(cfg)
    problem = built.problem
    device = problem.device
    opt = cfg.optimizer
    integrator = integrator_from_config(cfg)
    P = problem.size
    p = cfg.probe
    check_probe(cfg, built)
    suite = ProbeSuite(
        k=min(p.k, P),
        n_top=p.n_top,
        n_classes=built.n_classes,
        tol=p.tol,
        method=p.method,
        max_iter=p.max_iter,
        seed=0,
        projections=p.projections,
        loss_changes=p.loss_changes,
        test_problem=built.test_problem,
    )
    every = cfg.probe_every()
    gn_probe = GaussNewtonProbe(tol=p.gn_tol, seed=0) if p.gauss_newton else None
    model = problem.model
    if p.layerwise and not (hasattr(model, "linear_layers") and hasattr(model, "activation_fn")):
        raise ConfigError(
            f"probe.layerwise: the layerwise decomposition needs an MLP, not {cfg.model.name!r}; "
            "use probe.gauss_newton for the architecture-independent part"
        )

    ckpt = store.load_checkpoint(device=device)
    if ckpt is not None and ckpt[1].get("final"):
        return store.status()  # the run has ended; nothing to resume
    if ckpt is not None:
        tensors, meta = ckpt
        theta, theta0 = tensors["theta"], tensors["theta0"]
        state = {k[len("state/") :]: v for k, v in tensors.items() if k.startswith("state/")}
        warm = {k[len("warm/") :]: v for k, v in tensors.items() if k.startswith("warm/")}
        step, t, lr = int(meta["step"]), float(meta["time"]), float(meta["lr"])
        loss0, last_probe = float(meta["initial_loss"]), int(meta["last_probe"])
        totals = dict(meta["totals"])
        if theta.numel() != P:
            raise StoreError(
                f"{store.path}/checkpoint.safetensors holds θ of size {theta.numel()}, "
                f"but the config builds a model with P={P}"
            )
        store.truncate_metrics(step)
    else:
        theta = theta0 = problem.initial_theta().detach().clone()
        state = integrator.init_state(problem, theta)
        warm, step, t, lr, loss0, last_probe = {}, 0, 0.0, opt.lr, math.nan, -1
        totals = dict(n_grads=0, n_matvecs=0)
        store.truncate_metrics(0)
    store.set_status("running", step=step)

    max_steps = cfg.stop.max_steps
    bar = _Progress(max_steps, step, progress, cfg.name)
    wall0 = time.perf_counter()
    status, reason = "completed", ""

    def do_probe(theta, step, t, lr):
        nonlocal last_probe
        thr = integrator.threshold(lr)
        res = suite(problem, theta, lr=lr, threshold=thr, theta0=theta0, v0=warm.get("probe"))
        if res.eig is not None:
            warm["probe"] = res.eig.warm_start
        totals["n_matvecs"] += res.n_matvecs
        totals["n_grads"] += res.n_grads
        row = dict(step=step, time=t, lr=lr, **res.metrics)
        row.update(probe_matvecs=res.n_matvecs, probe_grads=res.n_grads)
        if gn_probe is not None or p.layerwise:
            row.update(_decomposition(problem, theta, gn_probe, p.layerwise, warm, totals))
        store.append("probes", row)
        last_probe = step
        return res

    try:
        while True:
            if _probe_due(cfg, step, every) and last_probe != step:
                res = do_probe(theta, step, t, lr)
                bar.update(0, lam1=res.metrics.get("lambda_1", math.nan))
            if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                store.save_snapshot(step, theta, dict(time=t, lr=lr))
            if max_steps is not None and step >= max_steps:
                reason = f"max_steps={max_steps} reached"
                break
            if cfg.stop.max_time is not None and t >= cfg.stop.max_time:
                reason = f"flow time {t:.6g} ≥ max_time={cfg.stop.max_time}"
                break

            r = integrator.step(problem, theta, state)
            totals["n_grads"] += r.n_grads
            totals["n_matvecs"] += r.n_matvecs
            if step == 0 and not math.isfinite(loss0):
                loss0 = r.loss
            row = dict(step=step, time=t, lr=r.lr, loss=r.loss, grad_norm=r.grad_norm)
            row.update(threshold=integrator.threshold(r.lr), **r.info)
            row.update(n_grads=r.n_grads, n_matvecs=r.n_matvecs)
            row["wall"] = time.perf_counter() - wall0
            store.append("steps", row)
            if not math.isfinite(r.loss) or (
                math.isfinite(loss0) and r.loss > cfg.stop.diverge_factor * max(loss0, 1e-12)
            ):
                status, reason = "diverged", f"loss {r.loss:.4g} at step {step}"
                break
            if cfg.stop.loss_below is not None and r.loss < cfg.stop.loss_below:
                reason = f"loss {r.loss:.6g} < loss_below={cfg.stop.loss_below}"
                break
            if not bool(torch.isfinite(r.theta).all()):
                status, reason = "diverged", f"non-finite parameters after step {step}"
                break
            theta, state, lr = r.theta, r.state, r.lr
            step += 1
            t += r.lr
            bar.update(1, loss=r.loss, thr=integrator.threshold(r.lr))
            if step % cfg.checkpoint_every == 0:
                _checkpoint(
                    store, theta, theta0, state, warm, step, t, lr, loss0, last_probe, totals
                )
        # the final point: probe and snapshot it unless the schedule already did
        if cfg.probe.enabled and last_probe != step and status != "diverged":
            do_probe(theta, step, t, lr)
        if cfg.snapshot_every and not store.snapshot_path(step).exists():
            store.save_snapshot(step, theta, dict(time=t, lr=lr))
        _checkpoint(
            store, theta, theta0, state, warm, step, t, lr, loss0, last_probe, totals, final=True
        )
    except KeyboardInterrupt:
        store.set_status("interrupted", step=step, reason="interrupted; resume with --resume")
        bar.close()
        raise
    except BaseException as err:
        store.set_status("failed", step=step, reason=f"{type(err).__name__}: {err}")
        bar.close()
        raise
    bar.close()
    store.set_status(
        status,
        step=step,
        reason=reason,
        time=t,
        n_grads=totals["n_grads"],
        n_matvecs=totals["n_matvecs"],
        wall=time.perf_counter() - wall0,
    )
    return store.status()


def _decomposition(problem, theta, gn_probe, layerwise: bool, warm: dict, totals: dict) -> dict:
    """Gauss–Newton (``METHODS.md`` §4) and layerwise (§5) metrics at a probe step."""
    out: dict[str, float] = {}
    em2 = None
    if layerwise:
        if not (
            hasattr(problem.model, "linear_layers") and hasattr(problem.model, "activation_fn")
        ):
            raise ConfigError("probe.layerwise: the layerwise decomposition needs an MLP")
        stats = layerwise_stats(problem, theta)
        out.update(stats.metrics())
        em2 = float(stats.EM2)
    if gn_probe is not None:
        if em2 is None:
            em2 = float(per_sample_m_norm_sq(problem, theta).mean())
        gw = {k[3:]: v for k, v in warm.items() if k.startswith("gn/")}
        res = gn_probe(problem, theta, warm=gw or None, m_norm_sq_mean=em2)
        warm.update({f"gn/{k}": v for k, v in res.warm.items()})
        totals["n_matvecs"] += res.n_matvecs
        out.update(res.metrics)
    return out


def _checkpoint(
    store, theta, theta0, state, warm, step, t, lr, loss0, last_probe, totals, *, final=False
) -> None:
    tensors = {"theta": theta, "theta0": theta0}
    tensors.update({f"state/{k}": v for k, v in state.items()})
    tensors.update({f"warm/{k}": v for k, v in warm.items()})
    meta = dict(
        step=step,
        time=t,
        lr=lr,
        initial_loss=loss0,
        last_probe=last_probe,
        totals=totals,
        final=final,
        pid=os.getpid(),
    )
    store.save_checkpoint(tensors, meta)
