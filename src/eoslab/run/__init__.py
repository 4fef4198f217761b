"""Runs: validated configs, objects built from them, the run loop and reading runs back.

``eoslab run CONFIG`` (``eoslab.cli``) and :func:`run` carry out one training run with
edge-of-stability telemetry (``docs/methods.md`` §2, §3, §7) into a run directory
(:mod:`eoslab.store`); :func:`load_run` reads it back.
"""

from __future__ import annotations

from pathlib import Path

from eoslab.run.config import (
    CONFIG_DIR,
    ConfigError,
    RunConfig,
    apply_overrides,
    load_config,
    parse_config,
    read_yaml,
)
from eoslab.store import RunStore

__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "RunConfig",
    "apply_overrides",
    "load_config",
    "load_run",
    "parse_config",
    "read_yaml",
    "run",
]


def run(*args, **kwargs):
    """Carry out a run; see :func:`eoslab.run.loop.run` (imported lazily: it builds models)."""
    from eoslab.run.loop import run as _run

    return _run(*args, **kwargs)


def load_run(path: str | Path):
    """The configuration and a tidy DataFrame of a run directory, in one call.

    Returns:
        ``(config, df)``: the validated :class:`RunConfig` and a pandas DataFrame with one
        row per step (``step``, ``time`` = flow time Σ η, ``lr``, ``loss``, ``grad_norm``,
        ``threshold`` …) and the probe columns (``lambda_1``…``lambda_k``, ``rho_i``,
        ``proj_top``, ``proj_bulk``, ``dL_top``, ``dL_bulk``, ``dL_full``, ``accuracy`` …)
        at the probed steps (NaN elsewhere). ``df.attrs["status"]`` holds status.json.

    Raises:
        StoreError: if ``path`` is not a run directory or a file in it is corrupt.
        ConfigError: if the saved config no longer validates.
    """
    store = RunStore.open(path)
    cfg = parse_config(store.read_config())
    df = store.dataframe()
    df.attrs["status"] = store.status()
    return cfg, df
