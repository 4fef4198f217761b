"""Run configuration: YAML validated into frozen, typed models (``docs/architecture.md`` rule 5).

One :class:`RunConfig` tree describes a run completely; it is saved beside the run's results
(``config.yaml``) and a resumed run must match it. Every default lives here, in the field
declarations, and nowhere else. Unknown keys and wrong types are errors naming the field
(``optimizer.lr: …``); ``--set a.b=value`` overrides are parsed as YAML scalars and validated
with the rest.

The schedules follow ``docs/methods.md`` §3/§8: probes every ``probe.every`` steps, by default
every round(1/η) steps as in Lowell 2022, plus an optional dense window (every
``probe.dense_every`` steps while step < ``probe.dense_until``, the "entering EoS"
experiment); stop rules on steps, flow time t = Σ η_step (``docs/methods.md`` §2) and loss.
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
from eoslab.dynamics import (
    ADAPTIVE_FIELDS,
    DEFAULT_C,
    DEFAULT_MOMENTUM,
    INTEGRATORS,
    STEP_SOLVER,
    Integrator,
    build_integrator,
    reads,
    unused_fields,
)
from eoslab.eigen import SOLVERS
from eoslab.eigen.spec import EigSpec
from eoslab.probes import DEFAULT_GN_SOLVER, DEFAULT_SOLVER

__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "ProbeConfig",
    "RunConfig",
    "SolverConfig",
    "StopConfig",
    "apply_overrides",
    "load_config",
    "parse_config",
]

#: Packaged example configurations; ``eoslab run demo`` finds ``configs/demo.yaml`` here.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names each offending field."""


class DataUnavailableError(ConfigError):
    """The data a config names cannot be read where it says (the OSError is the cause)."""


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


#: Solver names, the keys of :data:`eoslab.eigen.SOLVERS` (a config typo is a ConfigError).
SolverName = Literal[tuple(SOLVERS)]  # type: ignore[valid-type]


class SolverConfig(_Section):
    """One eigensolve, :class:`eoslab.eigen.EigSpec` (``docs/methods.md`` §6).

    ``method`` (a key of ``eoslab.eigen.SOLVERS``), ``tol`` (0 < tol < 1: relative residual,
    or relative eigenvalue change under ``criterion: eigenvalue_change``, block_power only,
    not verified), ``max_iter`` (None: the solver's own), ``seed``, ``verify_steps`` (the
    check for a missed eigenvalue, 0 = off). Fields left out take the defaults of the part
    that runs the solve: :data:`eoslab.probes.DEFAULT_SOLVER` (``probe.solver``),
    :data:`eoslab.probes.DEFAULT_GN_SOLVER` (``probe.gauss_newton_solver``),
    :data:`eoslab.dynamics.STEP_SOLVER` (``optimizer.solver``).
    """

    method: SolverName
    tol: float
    max_iter: Int | None
    seed: Int
    criterion: Literal["residual", "eigenvalue_change"]
    verify_steps: Int

    @model_validator(mode="after")
    def _valid(self) -> SolverConfig:
        self.spec()  # EigSpec validates every field once; its ValueError names the field
        return self

    def spec(self, which: str = "LA") -> EigSpec:
        """The :class:`~eoslab.eigen.EigSpec` these settings describe."""
        return EigSpec(which=which, **self.model_dump())

    @staticmethod
    def fields_of(spec: EigSpec) -> dict[str, Any]:
        """The config fields of ``spec`` (all but ``which``, which the consumer sets)."""
        return {k: v for k, v in spec.to_dict().items() if k != "which"}


def _solvers_filled(data: Any, defaults: dict[str, EigSpec]) -> Any:
    """``data`` with each solver section completed from its consumer's default spec."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for key, spec in defaults.items():
        given = out.get(key)
        if isinstance(given, dict):
            out[key] = {**SolverConfig.fields_of(spec), **given}
        elif isinstance(given, SolverConfig):
            out[key] = given.model_dump()
    return out


def _solver_field(spec: EigSpec):
    return Field(default_factory=lambda: SolverConfig(**SolverConfig.fields_of(spec)))


class OptimizerConfig(_Section):
    """Integrator and step size (``docs/methods.md`` §2, §3, §7).

    ``lr`` is η for gd/heavy_ball/nesterov/euler/rk4 (the maximum η when ``adaptive``: then
    η_t = min(lr, c/λ_1(θ_t)), Lowell 2022's "exact flow") and the dimensionless η < 2 of
    exponential Euler, whose step is τ = min(tau_max, lr/λ_{k+1}) with k = ``n_exact``
    directions integrated exactly (None: the number of outputs). ``momentum`` is β of
    heavy_ball/nesterov; ``solver`` is the per-step eigensolve of an adaptive step or of
    exponential Euler (``{method: block_power, criterion: eigenvalue_change}`` is Lowell 2024
    §7.1's warm-started power iteration; the default Lanczos verifies residuals). Which
    integrator reads which field is decided in one place, :data:`eoslab.dynamics.READS`: a
    field set away from its default that the integrator would ignore is an error.
    """

    name: Literal[tuple(INTEGRATORS)] = "gd"  # type: ignore[valid-type]
    lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(DEFAULT_MOMENTUM, ge=0.0, lt=1.0)
    adaptive: bool = False
    c: float = Field(DEFAULT_C, gt=0.0)
    n_exact: Int | None = Field(None, ge=1)
    tau_max: float | None = Field(None, gt=0.0)
    solver: SolverConfig = _solver_field(STEP_SOLVER)

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any) -> Any:
        return _solvers_filled(data, {"solver": STEP_SOLVER})

    @model_validator(mode="after")
    def _check(self) -> OptimizerConfig:
        unused = unused_fields(self.name, self.adaptive, self._changed())
        if unused:
            raise ValueError(
                f"{', '.join(unused)}: not used by {self.name}"
                + (" with adaptive: false" if set(unused) <= ADAPTIVE_FIELDS else "")
            )
        try:
            self.integrator()  # the integrator's own checks (e.g. exp_euler's lr < 2)
        except ValueError as err:
            msg = str(err).removeprefix(f"{self.name}: ")
            word = msg.split(" ", 1)[0]
            raise ValueError(f"{word}: {msg}" if word in type(self).model_fields else msg) from None
        return self

    def _changed(self) -> dict[str, Any]:
        """Fields (other than name and lr) set away from their defaults."""
        out = {}
        for field in ("momentum", "adaptive", "c", "n_exact", "tau_max", "solver"):
            default = type(self).model_fields[field].get_default(call_default_factory=True)
            if getattr(self, field) != default:
                out[field] = getattr(self, field)
        return out

    def integrator(self) -> Integrator:
        """The :class:`~eoslab.dynamics.Integrator` of this section.

        Raises:
            ValueError: from the integrator's own checks (naming the field).
        """
        fields = reads(self.name, self.adaptive) - {"lr", "adaptive"}
        kwargs = {f: getattr(self, f) for f in fields}
        if "solver" in kwargs:
            kwargs["solver"] = self.solver.spec()
        return build_integrator(self.name, lr=self.lr, adaptive=self.adaptive, **kwargs)


class ProbeConfig(_Section):
    """Telemetry schedule and settings (``docs/methods.md`` §3).

    ``every``: probe every this many steps; None means round(1/lr) (the paper's default, at
    least 1). ``dense_every``/``dense_until``: additionally every ``dense_every`` steps while
    step < ``dense_until``. ``k``: eigenpairs per probe; ``n_top``: size of the top subspace
    (None → n_classes − 1). ``solver``: the probe's eigensolve. ``enabled: false`` records
    only the per-step metrics. ``gauss_newton: true`` adds λ_1 of G and H − G, per-layer
    sharpness and ζ (``docs/methods.md`` §4) to every probe, with ``gauss_newton_solver``
    (also what ``eoslab analyze`` uses), ``layerwise: true`` the layerwise decomposition of
    an MLP (§5); both can instead run afterwards on snapshots with ``eoslab analyze``.
    """

    enabled: bool = True
    every: Int | None = Field(None, ge=1)
    dense_every: Int = Field(10, ge=1)
    dense_until: Int = Field(0, ge=0)
    k: Int = Field(20, ge=1)
    n_top: Int | None = Field(None, ge=1)
    solver: SolverConfig = _solver_field(DEFAULT_SOLVER)
    projections: bool = True
    loss_changes: bool = True
    gauss_newton: bool = False
    gauss_newton_solver: SolverConfig = _solver_field(DEFAULT_GN_SOLVER)
    layerwise: bool = False

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any) -> Any:
        return _solvers_filled(
            data, {"solver": DEFAULT_SOLVER, "gauss_newton_solver": DEFAULT_GN_SOLVER}
        )


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


#: Keys of configs written before the eigensolver settings became one ``solver`` section
#: (eoslab 0.1 run directories), and where they live now; read, never written.
LEGACY_KEYS = {
    ("probe", "tol"): ("probe", "solver", "tol"),
    ("probe", "method"): ("probe", "solver", "method"),
    ("probe", "max_iter"): ("probe", "solver", "max_iter"),
    ("probe", "gn_tol"): ("probe", "gauss_newton_solver", "tol"),
    ("optimizer", "eig_tol"): ("optimizer", "solver", "tol"),
    ("optimizer", "eig_method"): ("optimizer", "solver", "method"),
    ("optimizer", "eig_criterion"): ("optimizer", "solver", "criterion"),
    ("optimizer", "k"): ("optimizer", "n_exact"),
}


def _upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with the :data:`LEGACY_KEYS` moved to their current place (a copy if any)."""
    if not any(isinstance(raw.get(old[0]), dict) and old[1] in raw[old[0]] for old in LEGACY_KEYS):
        return raw
    out = copy.deepcopy(raw)
    for (section, key), new in LEGACY_KEYS.items():
        node = out.get(section)
        if not isinstance(node, dict) or key not in node:
            continue
        value = node.pop(key)
        for part in new[1:-1]:
            node = node.setdefault(part, {})
        node.setdefault(new[-1], value)
    return out


def parse_config(raw: dict[str, Any] | None) -> RunConfig:
    """Validate a nested dict into a :class:`RunConfig`.

    Raises:
        ConfigError: listing every offending field with its dotted path and the reason.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(raw).__name__}")
    raw = _upgrade(raw)
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            msg = e["msg"].removeprefix("Value error, ")
            path = _field_path(e["loc"])
            head, sep, rest = msg.partition(": ")
            if sep and head.isidentifier():  # "field: reason" from a section's own check
                path, msg = f"{path}.{head}" if e["loc"] else head, rest
            lines.append(f"{path}: {msg}{shown}")
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
