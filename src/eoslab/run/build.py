"""Objects from a :class:`~eoslab.run.config.RunConfig`: data, model, problem, probes.

The only place where config fields turn into library objects, so a config always builds
the same run (``docs/architecture.md`` rules 5–6: device, dtype and every seed come from the
config).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from eoslab.data import DATASETS, Dataset, load_dataset
from eoslab.data.base import train_test_split
from eoslab.dynamics import Integrator
from eoslab.models import MODELS, build_model
from eoslab.models.init import init_model
from eoslab.problem import Problem
from eoslab.run.config import ConfigError, DataUnavailableError, RunConfig

__all__ = [
    "Built",
    "build",
    "integrator_from_config",
    "build_data",
    "build_model_from_config",
    "resolve_device",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Built:
    """Everything a run needs, built from its config."""

    config: RunConfig
    train: Dataset
    test: Dataset | None
    model: torch.nn.Module
    problem: Problem
    test_problem: Problem | None

    @property
    def n_classes(self) -> int:
        """Number of classes of the training data."""
        return self.train.n_classes


def resolve_device(name: str) -> torch.device:
    """The torch device named by the config, checked to exist.

    Raises:
        ConfigError: for an unknown device string or CUDA asked for without a GPU.
    """
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available here")
    return dev


def build_data(cfg: RunConfig) -> tuple[Dataset, Dataset | None]:
    """Load, split, subset and preprocess the data (test set standardised with train stats).

    Raises:
        ConfigError: naming ``data.*`` when the loader or a preprocessing step rejects it.
    """
    d = cfg.data
    dtype = DTYPES[cfg.dtype]
    kwargs = dict(d.options)
    if "dtype" in inspect.signature(DATASETS[d.name]).parameters:
        kwargs["dtype"] = dtype
    try:
        ds = load_dataset(d.name, **kwargs)
        if d.classes is not None:
            ds = ds.select_classes(d.classes)
        test = None
        if d.test_fraction > 0:
            ds, test = train_test_split(ds, d.test_fraction, seed=d.split_seed)
        if d.n_train is not None:
            ds = ds.subset(d.n_train, seed=d.subset_seed)
        if d.flatten:
            ds = ds.flatten()
            test = test.flatten() if test is not None else None
        if d.standardize:
            mean, std = ds.feature_stats()
            ds = ds.standardize(mean, std)
            test = test.standardize(mean, std) if test is not None else None
    except OSError as err:  # files not found or unreadable
        raise DataUnavailableError(f"data ({d.name}): {err}") from err
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"data ({d.name}): {err}") from None
    device = resolve_device(cfg.device)
    ds = ds.to(device=device, dtype=dtype)
    test = test.to(device=device, dtype=dtype) if test is not None else None
    return ds, test


def build_model_from_config(cfg: RunConfig, train: Dataset) -> torch.nn.Module:
    """The architecture of ``cfg.model`` sized for ``train``, initialised from ``init_seed``.

    Raises:
        ConfigError: naming ``model.*`` when the constructor or initialiser rejects it.
    """
    m = cfg.model
    params = inspect.signature(MODELS[m.name]).parameters
    shape = train.X.shape[1:]
    kwargs = dict(m.options)
    if "in_dim" in params:
        kwargs["in_dim"] = int(torch.tensor(shape).prod()) if len(shape) else 1
    if "in_channels" in params:
        if len(shape) != 3:
            raise ConfigError(
                f"model.name: {m.name!r} needs image inputs [C, H, W], got samples of shape "
                f"{tuple(shape)} (set data.flatten: false)"
            )
        kwargs["in_channels"] = int(shape[0])
        takes_kwargs = any(q.kind is q.VAR_KEYWORD for q in params.values())
        if ("input_size" in params or takes_kwargs) and "input_size" not in kwargs:
            kwargs["input_size"] = (int(shape[1]), int(shape[2]))
    if "n_out" in params:
        kwargs["n_out"] = train.n_classes
    kwargs["dtype"] = DTYPES[cfg.dtype]
    kwargs["device"] = resolve_device(cfg.device)
    own_init = "init" in params  # the model initialises itself (deep_linear's own schemes)
    if own_init:
        kwargs.update(init=m.init, seed=m.init_seed)
    try:
        model = build_model(m.name, **kwargs)
        if not own_init:
            init_model(model, m.init, seed=m.init_seed)
    except (ValueError, TypeError, RuntimeError) as err:
        raise ConfigError(f"model ({m.name}): {err}") from None
    return model


def build(cfg: RunConfig) -> Built:
    """Build data, model and problems for ``cfg``."""
    train, test = build_data(cfg)
    model = build_model_from_config(cfg, train)
    problem = Problem(model, cfg.loss, train.X, train.y, chunk_size=cfg.chunk_size)
    test_problem = problem.with_data(test.X, test.y) if test is not None and len(test) > 0 else None
    return Built(cfg, train, test, model, problem, test_problem)


def check_probe(cfg: RunConfig, built: Built) -> None:
    """Check that the probe's eigensolve covers the top subspace it projects onto.

    The projections and loss changes of ``docs/methods.md`` §3 use the top n_top eigenvectors
    (n_top = n_classes − 1 unless ``probe.n_top`` is set), so they need 1 ≤ n_top ≤ k.

    Raises:
        ConfigError: naming ``probe.k`` when the top subspace is larger than k.
    """
    p = cfg.probe
    n_top = p.n_top if p.n_top is not None else built.n_classes - 1
    if p.enabled and (p.projections or p.loss_changes):
        if not 1 <= n_top <= min(p.k, built.problem.size):
            raise ConfigError(
                f"probe.k: the top subspace has n_top = {n_top} directions "
                f"({'probe.n_top' if p.n_top is not None else 'n_classes − 1'}), so probe.k "
                f"must be at least {n_top} (got {p.k}); raise probe.k or set "
                "probe.projections and probe.loss_changes to false"
            )


def integrator_from_config(cfg: RunConfig) -> Integrator:
    """The integrator of ``cfg.optimizer`` (:meth:`~eoslab.run.config.OptimizerConfig.integrator`).

    Which fields it reads is decided by :data:`eoslab.dynamics.READS` alone.

    Raises:
        ConfigError: naming ``optimizer`` when the integrator rejects the values.
    """
    try:
        return cfg.optimizer.integrator()
    except ValueError as err:
        raise ConfigError(f"optimizer ({cfg.optimizer.name}): {err}") from None
