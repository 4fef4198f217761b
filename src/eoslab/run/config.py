"""Run configuration: YAML validated into frozen, typed models (``DESIGN.md`` rule 5).

One :class:`RunConfig` tree describes a run completely; it is saved beside the run's results
(``config.yaml``) and a resumed run must match it. Every default lives here, in the field
declarations, and nowhere else. Unknown keys and wrong types are errors naming the field
(``optimizer.lr: …``); ``--set a.b=value`` overrides are parsed as YAML scalars and validated
with the rest.

The schedules follow ``METHODS.md`` §3/§8: probes every ``probe.every`` steps, by default
every round(1/η) steps as in Lowell 2022, plus an optional dense window (every
``probe.dense_every`` steps while step < ``probe.dense_until``, the "entering EoS"
experiment); stop rules on steps, flow time t = Σ η_step (``METHODS.md`` §2) and loss.
"""

from __future__ import annotations

import copy
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from eoslab._yaml import safe_load

__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "ProbeConfig",
    "RunConfig",
    "StopConfig",
    "apply_overrides",
    "load_config",
    "parse_config",
]

#: Packaged example configurations; ``eoslab run demo`` finds ``configs/demo.yaml`` here.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names each offending field."""


def _integral(x: Any) -> Any:
    """A float with no fractional part as an int (``5e4`` → 50000), anything else unchanged.

    YAML 1.2 reads ``5e4`` as a float; a count written that way is still a count. A float
    with a fractional part is left for validation to refuse ("should be a valid integer").
    """
    if isinstance(x, float) and x.is_integer() and abs(x) < 2**63:
        return int(x)
    return x


#: An integer field that also accepts integral floats such as ``5e4`` (see :func:`_integral`).
Int = Annotated[int, BeforeValidator(_integral)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataConfig(_Section):
    """Training (and test) data: a registered data set, subset and preprocessing.

    ``options`` are keyword arguments of the data set's loader (e.g. ``n_per_class`` of
    ``synthetic`` or ``root`` of ``cifar10``); ``n_train`` takes a seeded class-balanced subset
    (``subset_seed``) after an optional seeded test split of ``test_fraction``.
    """

    name: str = "digits"
    options: dict[str, Any] = Field(default_factory=dict)
    classes: list[int | str] | None = None
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    split_seed: Int = 0
    n_train: Int | None = Field(None, ge=1)
    subset_seed: Int = 0
    flatten: bool = True
    standardize: bool = True


class ModelConfig(_Section):
    """Architecture (a key of ``eoslab.models.MODELS``) and its keyword arguments.

    Input size, channels and the number of outputs are derived from the data. Any other
    keyword of the architecture's constructor can be given next to ``name`` (e.g. ``width``,
    ``depth``, ``activation`` for ``mlp``); unknown ones are errors naming the field.
    ``init`` is a key of ``eoslab.models.init.INIT_SCHEMES``, drawn from ``init_seed``, or,
    for an architecture whose constructor takes ``init`` (``deep_linear``: also
    ``orthogonal`` and ``identity`` with ``init_scale``), one of its own schemes.
    """

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    name: str = "mlp"
    init: str = "kaiming"
    init_seed: Int = 0

    @property
    def options(self) -> dict[str, Any]:
        """The architecture keywords (everything but name/init/init_seed)."""
        return dict(self.model_extra or {})


class OptimizerConfig(_Section):
    """Integrator and step size (``METHODS.md`` §2, §3, §7).

    ``lr`` is η for gd/heavy_ball/nesterov/euler/rk4 (the maximum η when ``adaptive``: then
    η_t = min(lr, c/λ_1(θ_t)), Lowell 2022's "exact flow") and the dimensionless η < 2 of
    exponential Euler, whose step is τ = min(tau_max, lr/λ_{k+1}). ``eig_tol``,
    ``eig_method`` and ``eig_criterion`` set the per-step eigensolve of an adaptive step or of
    exponential Euler (``eig_method: block_power`` with ``eig_criterion: eigenvalue_change`` is
    Lowell 2024 §7.1's warm-started power iteration; the default Lanczos verifies residuals).
    """

    name: Literal["gd", "heavy_ball", "nesterov", "euler", "rk4", "exp_euler"] = "gd"
    lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    adaptive: bool = False
    c: float = Field(0.5, gt=0.0)
    k: Int | None = Field(None, ge=1)
    tau_max: float | None = Field(None, gt=0.0)
    eig_tol: float = Field(1e-6, gt=0.0)
    eig_method: Literal["lanczos", "lobpcg", "block_power", "arpack"] = "lanczos"
    eig_criterion: Literal["residual", "eigenvalue_change"] = "residual"

    @model_validator(mode="after")
    def _check(self) -> OptimizerConfig:
        if self.name == "exp_euler" and self.lr >= 2.0:
            raise ValueError(f"lr: exponential Euler needs the dimensionless lr < 2, got {self.lr}")
        if self.eig_criterion == "eigenvalue_change" and self.eig_method != "block_power":
            raise ValueError(
                "eig_criterion: 'eigenvalue_change' is block_power's rule; set "
                f"eig_method: block_power (got {self.eig_method!r})"
            )
        if self.adaptive and self.name not in ("gd", "euler", "rk4"):
            raise ValueError(
                f"adaptive: only gd, euler and rk4 take an adaptive step, not {self.name}"
            )
        return self


class ProbeConfig(_Section):
    """Telemetry schedule and settings (``METHODS.md`` §3).

    ``every``: probe every this many steps; None means round(1/lr) (the paper's default, at
    least 1). ``dense_every``/``dense_until``: additionally every ``dense_every`` steps while
    step < ``dense_until``. ``k``: eigenpairs per probe; ``n_top``: size of the top subspace
    (None → n_classes − 1). ``enabled: false`` records only the per-step metrics.
    ``gauss_newton: true`` adds λ_1 of G and H − G, per-layer sharpness and ζ
    (``METHODS.md`` §4) to every probe, ``layerwise: true`` the layerwise decomposition of
    an MLP (§5); both can instead run afterwards on snapshots with ``eoslab analyze``.
    """

    enabled: bool = True
    every: Int | None = Field(None, ge=1)
    dense_every: Int = Field(10, ge=1)
    dense_until: Int = Field(0, ge=0)
    k: Int = Field(20, ge=1)
    n_top: Int | None = Field(None, ge=1)
    tol: float = Field(1e-4, gt=0.0)
    method: Literal["lanczos", "lobpcg", "block_power", "arpack"] = "lanczos"
    max_iter: Int | None = Field(None, ge=1)
    projections: bool = True
    loss_changes: bool = True
    gauss_newton: bool = False
    gn_tol: float = Field(1e-6, gt=0.0)
    layerwise: bool = False


class StopConfig(_Section):
    """Stop rules; the first one met ends the run.

    ``max_steps``; ``max_time`` in flow time t = Σ η_step (40 with a constant η is Lowell
    2022's 40/η steps); ``loss_below`` (e.g. 0.1); divergence: a non-finite loss or a loss
    above ``diverge_factor`` × the initial loss ends the run with status ``diverged``.
    """

    max_steps: Int | None = Field(None, ge=0)
    max_time: float | None = Field(None, gt=0.0)
    loss_below: float | None = Field(None, gt=0.0)
    diverge_factor: float = Field(1e4, gt=1.0)

    @model_validator(mode="after")
    def _check(self) -> StopConfig:
        if self.max_steps is None and self.max_time is None:
            raise ValueError("give max_steps or max_time, or the run would never end")
        return self


class RunConfig(_Section):
    """One run: data, model, loss, optimizer, probes, snapshots, checkpoints, stop rules.

    ``tensorboard: true`` also writes every metric row as TensorBoard scalars to
    ``RUN/tensorboard/`` while the run goes (the ``tensorboard`` extra; :mod:`eoslab.run.live`).
    It changes nothing that is computed: it is no config difference for ``--resume`` (a
    resumed run can switch the view on) and is left out of sweep run ids.
    """

    name: str = "run"
    dtype: Literal["float32", "float64"] = "float64"
    device: str = "cpu"
    loss: Literal["mse", "cross_entropy"] = "mse"
    chunk_size: Int | None = Field(None, ge=1)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    snapshot_every: Int | None = Field(100, ge=1)
    checkpoint_every: Int = Field(100, ge=1)
    stop: StopConfig = Field(default_factory=lambda: StopConfig(max_steps=1000))
    tensorboard: bool = False

    def probe_every(self) -> int:
        """Probe period in steps: ``probe.every`` or round(1/lr) ≥ 1 (Lowell 2022)."""
        if self.probe.every is not None:
            return self.probe.every
        return max(1, round(1.0 / self.optimizer.lr))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON-able), model keywords included."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """The resolved configuration as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _field_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _check_types(fn, options: dict[str, Any], where: str) -> None:
    """Check keyword values against the annotations of ``fn`` (strict: ``'8'`` is no int).

    YAML lists are read as tuples where a tuple is annotated, and integral floats (``5e4``)
    as ints. Annotations that cannot be resolved or validated are skipped.

    Raises:
        ConfigError: naming ``where.key``, the expected type and the value given.
    """
    fn = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations are not checked
        return
    for key, value in options.items():
        ann = hints.get(key)
        if ann is None:
            continue
        try:
            adapter = TypeAdapter(ann, config=ConfigDict(arbitrary_types_allowed=True))
        except Exception:  # noqa: BLE001 - a type pydantic cannot check
            continue
        try:
            adapter.validate_python(_as_tuples(_integral(value)), strict=True)
        except ValidationError:
            shown = getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
            raise ConfigError(f"{where}.{key}: expected {shown}, got {value!r}") from None


def _as_tuples(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_as_tuples(v) for v in x)
    return _integral(x)


def _model_keywords(cfg: ModelConfig) -> None:
    """Check the architecture keywords against its constructor's signature."""
    from eoslab.models import MODELS
    from eoslab.models.init import INIT_SCHEMES

    if cfg.name not in MODELS:
        raise ConfigError(f"model.name: unknown model {cfg.name!r}; known: {sorted(MODELS)}")
    params = inspect.signature(MODELS[cfg.name]).parameters
    # a model whose constructor takes ``init`` (deep_linear: orthogonal, identity) checks it
    if "init" not in params and cfg.init not in INIT_SCHEMES:
        raise ConfigError(f"model.init: unknown scheme {cfg.init!r}; known: {sorted(INIT_SCHEMES)}")
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return  # checked when the model is built
    derived = {"in_dim", "in_channels", "n_out", "dtype", "device", "seed"}
    for key in cfg.options:
        if key in derived:
            raise ConfigError(f"model.{key}: derived from the data and dtype; remove it")
        if key not in params:
            allowed = sorted(k for k in params if k not in derived and k != "self")
            raise ConfigError(f"model.{key}: not a keyword of {cfg.name!r}; allowed: {allowed}")
    _check_types(MODELS[cfg.name], cfg.options, "model")


def _data_keywords(cfg: DataConfig) -> None:
    from eoslab.data import DATASETS

    if cfg.name not in DATASETS:
        raise ConfigError(f"data.name: unknown data set {cfg.name!r}; known: {sorted(DATASETS)}")
    params = inspect.signature(DATASETS[cfg.name]).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for key in cfg.options:
        if key == "dtype":
            raise ConfigError("data.options.dtype: set the run's top-level dtype instead")
        if key not in params:
            raise ConfigError(
                f"data.options.{key}: not a keyword of the {cfg.name!r} loader; "
                f"allowed: {sorted(k for k in params if k != 'dtype')}"
            )
    _check_types(DATASETS[cfg.name], cfg.options, "data.options")


def parse_config(raw: dict[str, Any] | None) -> RunConfig:
    """Validate a nested dict into a :class:`RunConfig`.

    Raises:
        ConfigError: listing every offending field with its dotted path and the reason.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(raw).__name__}")
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{_field_path(e['loc'])}: {msg}{shown}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines)) from None
    _model_keywords(cfg.model)
    _data_keywords(cfg.data)
    return cfg


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``a.b=value`` overrides applied.

    Values are parsed as YAML scalars (``0.1`` → float, ``true`` → bool, ``[1, 2]`` → list,
    ``null`` → None), so types are checked by the same validation as the file.

    Raises:
        ConfigError: for an item without ``=`` or an empty key.
    """
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optimizer.lr=0.01")
        path = key.strip().split(".")
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(path[: i + 1])} is not a section")
            node = child
        try:
            node[path[-1]] = safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: cannot parse the value: {err}") from None
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` (``yaml.safe_load``: no arbitrary objects).

    A bare name without a suffix that is not a file (``demo``) is looked up in
    :data:`CONFIG_DIR`.

    Raises:
        ConfigError: for a missing file, invalid YAML or a top level that is not a mapping.
    """
    p = Path(path)
    if not p.exists() and p.suffix == "" and (CONFIG_DIR / f"{p}.yaml").exists():
        p = CONFIG_DIR / f"{p}.yaml"
    if not p.is_file():
        known = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"config file {str(path)!r} not found (packaged configs: {known})")
    try:
        raw = safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from None
    if raw is None:
        raise ConfigError(
            f"{p}: the file is empty; a config needs at least the model's sections (see "
            f"{CONFIG_DIR / 'demo.yaml'} for a complete example)"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read, override and validate a config file (:func:`read_yaml`, :func:`apply_overrides`)."""
    return parse_config(apply_overrides(read_yaml(path), list(overrides)))
