"""Search spaces as YAML files: validated before anything starts, then turned into what Tune and Optuna run.

    space = load_space("search_spaces/demo.yaml")
    space.define_by_run          # Optuna define-by-run function (conditional parameters)
    space.grid_points()          # every combination, for files that use `grid`
    space.trial_config(config)   # a Tune trial's config -> TrialConfig

The format is documented in `search_spaces/README.md`. `fixed:` settings are kept apart from swept
`params:`. Parameters that only make sense for some modalities (the image branch's settings for image and
fusion models, `exif_tags` for EXIF and fusion, `fusion_width` for fusion) are only drawn when the sampled
modality uses them, so Optuna never learns from values that had no effect. This module imports neither Ray
nor Optuna (Optuna's distributions are built lazily for the journal mirror).
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

import yaml

from exifray import schema
from exifray.config import MODALITIES, TrialConfig
from exifray.errors import ConfigError, InputNotFoundError, UnknownNameError
from exifray.exif.tags import TAG_NAMES, resolve_tags

OPERATORS: Final = ("choice", "uniform", "loguniform", "randint", "grid", "subset_of")
SCHEDULERS: Final = ("asha", "median", "none")
MODES: Final = ("max", "min")
TAG_FLAG_PREFIX: Final = "exif_tag_"  # one boolean Optuna parameter per tag of a `subset_of`
SUBSET_SEPARATOR: Final = "+"

# Which modalities a setting affects; settings not listed affect every modality.
APPLIES_TO: Final[dict[str, tuple[str, ...]]] = {
    "backbone": ("image", "fusion"),
    "weights": ("image", "fusion"),
    "image_size": ("image", "fusion"),
    "fine_tune_layers": ("image", "fusion"),
    "fine_tune_learning_rate_factor": ("image", "fusion"),
    "fine_tune_epochs": ("image", "fusion"),
    "augment": ("image", "fusion"),
    "exif_tags": ("exif", "fusion"),
    "fusion_width": ("fusion",),
}
# Set by the sweep itself, not by a search space.
RESERVED: Final = ("threads",)
SMOKE_BACKBONE: Final = "TestTinyCNN"

_TOP_LEVEL: Final = ("name", "metric", "mode", "seed", "n_startup_trials", "num_samples", "max_concurrent",
                     "scheduler", "resources", "max_failures", "checkpoint_every", "tag_subsets", "fixed", "params")
_TRIAL_FIELDS: Final = tuple(f.name for f in fields(TrialConfig) if f.name not in RESERVED)


@dataclass(frozen=True)
class Param:
    """One swept setting: `kind` is an operator of OPERATORS, `values` its choices or [low, high]."""

    name: str
    kind: str
    values: tuple[Any, ...]

    @property
    def applies_to(self) -> tuple[str, ...]:
        return APPLIES_TO.get(self.name, MODALITIES)

    def to_yaml(self) -> dict[str, Any]:
        return {self.kind: list(self.values)}


@dataclass(frozen=True)
class Scheduler:
    type: str = "asha"
    grace_period: int = 1
    reduction_factor: int = 3
    max_t: int | None = None  # None: every epoch of both phases plus the final report
    min_samples_required: int = 3  # median stopping only

    def to_yaml(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items() if value is not None}


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0

    @property
    def threads(self) -> int:
        return max(1, math.ceil(self.cpus))


@dataclass(frozen=True)
class SearchSpace:
    name: str
    metrics: tuple[str, ...] = (schema.VAL_F1_MACRO,)
    modes: tuple[str, ...] = ("max",)
    seed: int = 0
    n_startup_trials: int = 10
    num_samples: int = 10
    max_concurrent: int = 1
    scheduler: Scheduler = field(default_factory=Scheduler)
    resources: Resources = field(default_factory=Resources)
    max_failures: int = 1
    checkpoint_every: int = 1  # epochs between a trial's resume checkpoints (the final one is always saved)
    tag_subsets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    smoke_test: bool = False  # set by --smoke-test; resources then shrink to what the cluster has

    # --- what kind of sweep this is -------------------------------------------------------------
    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    @property
    def is_grid(self) -> bool:
        return any(p.kind == "grid" for p in self.params)

    @property
    def metric(self) -> str:
        return self.metrics[0]

    @property
    def mode(self) -> str:
        return self.modes[0]

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def modalities(self) -> tuple[str, ...]:
        swept = self.param("modality")
        if swept is not None:
            return tuple(swept.values)
        return (str(self.fixed.get("modality", TrialConfig.modality)),)

    def image_sizes(self) -> tuple[int | None, ...]:
        """Image sizes the trials may use (None: the dataset's first size)."""
        if not any(m in ("image", "fusion") for m in self.modalities()):
            return ()
        swept = self.param("image_size")
        if swept is not None:
            return tuple(int(v) for v in swept.values)
        size = self.fixed.get("image_size")
        return (None if size is None else int(size),)

    # --- Optuna ---------------------------------------------------------------------------------
    def define_by_run(self, trial: Any) -> None:
        """Optuna define-by-run space: modality first, then only the settings that modality uses."""
        modality = self.fixed.get("modality", TrialConfig.modality)
        swept_modality = self.param("modality")
        if swept_modality is not None:
            modality = trial.suggest_categorical("modality", list(swept_modality.values))
        for param in self.params:
            if param.name == "modality" or modality not in param.applies_to:
                continue
            if param.kind == "choice":
                trial.suggest_categorical(param.name, list(param.values))
            elif param.kind in ("uniform", "loguniform"):
                trial.suggest_float(param.name, param.values[0], param.values[1], log=param.kind == "loguniform")
            elif param.kind == "randint":  # upper bound excluded, as with tune.randint
                trial.suggest_int(param.name, param.values[0], param.values[1] - 1)
            elif param.kind == "subset_of":
                for tag in param.values:
                    trial.suggest_categorical(TAG_FLAG_PREFIX + tag, [True, False])
        return None

    def optuna_distributions(self) -> dict[str, Any]:
        """Every parameter name define_by_run can suggest (and scalar grid parameters), with its Optuna
        distribution: what the journal mirror records per trial."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        result: dict[str, Any] = {}
        for param in self.params:
            if param.kind == "choice":
                result[param.name] = CategoricalDistribution(list(param.values))
            elif param.kind in ("uniform", "loguniform"):
                result[param.name] = FloatDistribution(param.values[0], param.values[1],
                                                       log=param.kind == "loguniform")
            elif param.kind == "randint":
                result[param.name] = IntDistribution(param.values[0], param.values[1] - 1)
            elif param.kind == "subset_of":
                result.update({TAG_FLAG_PREFIX + tag: CategoricalDistribution([True, False])
                               for tag in param.values})
            elif param.kind == "grid" and all(isinstance(v, bool | int | float | str) for v in param.values):
                # grid files do not sample with Optuna, but their journal records the points for analysis
                result[param.name] = CategoricalDistribution(list(param.values))
        return result

    # --- grid -----------------------------------------------------------------------------------
    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the `grid` values; a setting the modality does not use is not multiplied
        in (so an EXIF-only point is not repeated once per backbone)."""
        points: list[dict[str, Any]] = []
        for modality in self.modalities():
            grid = [p for p in self.params if p.name != "modality" and modality in p.applies_to]
            for combination in itertools.product(*(p.values for p in grid)):
                point = {"modality": modality} if self.param("modality") else {}
                point.update(zip((p.name for p in grid), combination))
                if point not in points:
                    points.append(point)
        return points

    # --- trials ---------------------------------------------------------------------------------
    def trial_settings(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A Tune config (fixed settings + sampled parameters) as TrialConfig settings."""
        settings = {key: value for key, value in config.items() if not key.startswith(TAG_FLAG_PREFIX)}
        flags = {key[len(TAG_FLAG_PREFIX):]: bool(value) for key, value in config.items()
                 if key.startswith(TAG_FLAG_PREFIX)}
        if flags:
            chosen = [tag for tag, on in flags.items() if on]
            # An empty EXIF input is not a model: a draw that selects no tag uses every candidate tag.
            settings["exif_tags"] = chosen or list(flags)
        if isinstance(settings.get("exif_tags"), str):
            settings["exif_tags"] = list(self.resolve_subset(settings["exif_tags"]))
        return settings

    def trial_config(self, config: Mapping[str, Any], threads: int | None = None) -> TrialConfig:
        settings = self.trial_settings(config)
        if threads is not None:
            settings["threads"] = threads
        return TrialConfig.from_tune(settings)

    def resolve_subset(self, value: str) -> tuple[str, ...]:
        """A named subset (`tag_subsets`, or `all`) or tags joined with '+' ("ExposureTime+FNumber")."""
        if value in self.tag_subsets:
            return tuple(self.tag_subsets[value])
        return resolve_tags("all" if value == "all" else value.replace(SUBSET_SEPARATOR, ","))

    # --- overrides and the resolved file --------------------------------------------------------
    def with_overrides(self, *, num_samples: int | None = None, max_concurrent: int | None = None,
                       smoke_test: bool = False) -> SearchSpace:
        space = self
        if num_samples is not None:
            if space.is_grid:
                raise ConfigError(f"num_samples: a grid file runs every combination once, got --num-samples "
                                  f"{num_samples}")
            _require(num_samples >= 1, f"num_samples must be >= 1, got {num_samples!r}")
            space = replace(space, num_samples=num_samples)
        if max_concurrent is not None:
            _require(max_concurrent >= 1, f"max_concurrent must be >= 1, got {max_concurrent!r}")
            space = replace(space, max_concurrent=max_concurrent)
        return _smoke(space) if smoke_test else space

    @property
    def total_trials(self) -> int:
        return len(self.grid_points()) if self.is_grid else self.num_samples

    def to_yaml(self) -> dict[str, Any]:
        return {"name": self.name,
                "metric": self.metric if not self.multi_objective else list(self.metrics),
                "mode": self.mode if not self.multi_objective else list(self.modes),
                "seed": self.seed, "n_startup_trials": self.n_startup_trials,
                **({} if self.is_grid else {"num_samples": self.num_samples}),
                "max_concurrent": self.max_concurrent, "scheduler": self.scheduler.to_yaml(),
                "resources": vars(self.resources).copy(), "max_failures": self.max_failures,
                "checkpoint_every": self.checkpoint_every,
                "tag_subsets": {k: list(v) for k, v in self.tag_subsets.items()},
                "fixed": dict(self.fixed), "params": {p.name: p.to_yaml() for p in self.params}}


def _smoke(space: SearchSpace) -> SearchSpace:
    """One tiny trial of the file's real code path: one epoch per phase, a tiny backbone, no weights."""
    fixed = {**space.fixed, "epochs": 1, "fine_tune_epochs": 1, "weights": "none"}
    if "backbone" in fixed:
        fixed["backbone"] = SMOKE_BACKBONE
    params = tuple(replace(p, values=(SMOKE_BACKBONE,)) if p.name == "backbone" else p for p in space.params)
    if space.is_grid:  # the first point only
        params = tuple(replace(p, values=p.values[:1]) for p in params)
    return replace(space, fixed=fixed, params=params, num_samples=1, max_concurrent=1,
                   n_startup_trials=1, scheduler=Scheduler(type="none"), smoke_test=True)


def fit_resources(space: SearchSpace, cluster: Mapping[str, float], can_grow: bool) -> SearchSpace:
    """Check per-trial resources against the Ray cluster's; a smoke test shrinks them to one CPU and, when
    the cluster has GPUs, at most one GPU (so `--smoke-test` of a GPU file also runs on a laptop)."""
    cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    wanted = space.resources
    if space.smoke_test:
        fitted = Resources(cpus=min(wanted.cpus, 1.0), gpus=min(wanted.gpus, 1.0) if gpus >= 1 else 0.0)
        return replace(space, resources=fitted)
    if not can_grow and (wanted.cpus > cpus or wanted.gpus > gpus):
        raise ConfigError(f"resources: each trial asks for {wanted.cpus:g} CPUs and {wanted.gpus:g} GPUs, but this "
                          f"Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs; lower `resources` in the file or run it "
                          f"on a cluster (--address)")
    return space


# --- loading and validation ------------------------------------------------------------------------

def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def load_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"search space file does not exist: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return parse_space(data, default_name=path.stem)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def parse_space(data: Any, default_name: str = "sweep") -> SearchSpace:
    """Validate a loaded YAML document; every error names the key and the bad value."""
    _require(isinstance(data, dict), f"a search space must be a mapping of settings, got {type(data).__name__}")
    _unknown_keys(data, _TOP_LEVEL, "")
    metrics, modes = _objectives(data.get("metric", schema.VAL_F1_MACRO), data.get("mode", "max"))
    tag_subsets = _tag_subsets(data.get("tag_subsets") or {})
    fixed = _fixed(data.get("fixed") or {}, tag_subsets)
    params = _params(data.get("params") or {}, fixed, tag_subsets)
    is_grid = any(p.kind == "grid" for p in params)
    if is_grid:
        mixed = [p.name for p in params if p.kind != "grid"]
        _require(not mixed, f"params.{mixed[0] if mixed else ''}: a file that uses `grid` must use it for every "
                            f"parameter (Optuna cannot sample a grid), got {mixed!r}")
        _require("num_samples" not in data, f"num_samples: a grid file runs every combination once, got "
                                            f"{data.get('num_samples')!r}")
    scheduler = _scheduler(data.get("scheduler", "asha"))
    _require(not (len(metrics) > 1 and scheduler.type != "none"),
             f"scheduler: a multi-objective sweep cannot use a pruning scheduler (it stops on one metric), got "
             f"{scheduler.type!r}; use `scheduler: none`")
    space = SearchSpace(
        name=_name(data.get("name", default_name)), metrics=metrics, modes=modes,
        seed=_integer(data, "seed", 0, minimum=0),
        n_startup_trials=_integer(data, "n_startup_trials", 10, minimum=0),
        num_samples=_integer(data, "num_samples", 10, minimum=1),
        max_concurrent=_integer(data, "max_concurrent", 1, minimum=1),
        scheduler=scheduler, resources=_resources(data.get("resources") or {}),
        max_failures=_integer(data, "max_failures", 1, minimum=-1),
        checkpoint_every=_integer(data, "checkpoint_every", 1, minimum=1),
        tag_subsets=tag_subsets, fixed=fixed, params=params)
    _check_modalities(space)
    return space


def _unknown_keys(data: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}{key}: unknown key{hint}; allowed: {', '.join(allowed)}")


def _name(value: Any) -> str:
    text = str(value)
    _require(bool(text) and all(c.isalnum() or c in "-_." for c in text) and not text.startswith("."),
             f"name must be letters, digits, '-', '_' or '.', got {value!r}")
    return text


def _integer(data: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = data.get(key, default)
    _require(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
             f"{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _objectives(metric: Any, mode: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    metrics = tuple(metric) if isinstance(metric, list) else (metric,)
    modes = tuple(mode) if isinstance(mode, list) else (mode,)
    _require(len(metrics) == len(modes), f"metric and mode must have the same length, got {list(metrics)!r} "
                                         f"and {list(modes)!r}")
    _require(len(set(metrics)) == len(metrics), f"metric must not repeat, got {list(metrics)!r}")
    for name in metrics:
        _require(name in schema.EPOCH_METRICS,
                 f"metric must be one of {', '.join(schema.EPOCH_METRICS)} (reported every epoch; the test split "
                 f"is never used for selection), got {name!r}")
    for value in modes:
        _require(value in MODES, f"mode must be 'max' or 'min', got {value!r}")
    return metrics, modes


def _tag_subsets(data: Any) -> dict[str, tuple[str, ...]]:
    _require(isinstance(data, dict), f"tag_subsets must map names to tag lists, got {data!r}")
    subsets = {}
    for name, tags in data.items():
        _require(isinstance(name, str) and name != "all" and SUBSET_SEPARATOR not in name,
                 f"tag_subsets.{name}: a subset name must be a plain word other than 'all', got {name!r}")
        subsets[name] = _tags(f"tag_subsets.{name}", tags)
    return subsets


def _tags(key: str, value: Any) -> tuple[str, ...]:
    _require(isinstance(value, list | str) and len(value) > 0, f"{key} must be a non-empty list of EXIF tags, "
                                                                f"got {value!r}")
    try:
        return resolve_tags(value)
    except UnknownNameError as exc:
        raise ConfigError(f"{key}: {exc.args[0]}") from exc


def _check_setting(key: str, name: str, value: Any, tag_subsets: Mapping[str, tuple[str, ...]]) -> None:
    """Check one value of a trial setting by building a TrialConfig with it."""
    from exifray.models.registry import get_backbone_spec

    if name == "exif_tags" and isinstance(value, str):
        if value not in tag_subsets and value != "all":
            _tags(key, value.replace(SUBSET_SEPARATOR, ","))
        return
    try:
        TrialConfig.from_tune({name: value})
        if name == "backbone":
            get_backbone_spec(str(value))
    except (ConfigError, UnknownNameError) as exc:
        raise ConfigError(f"{key}: {exc.args[0]}") from exc


def _fixed(data: Any, tag_subsets: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    _require(isinstance(data, dict), f"fixed must be a mapping of trial settings, got {data!r}")
    _unknown_keys(data, _TRIAL_FIELDS, "fixed.")
    for name, value in data.items():
        _check_setting(f"fixed.{name}", name, value, tag_subsets)
    fixed = dict(data)
    if isinstance(fixed.get("exif_tags"), list):
        fixed["exif_tags"] = list(_tags("fixed.exif_tags", fixed["exif_tags"]))
    return fixed


def _params(data: Any, fixed: Mapping[str, Any], tag_subsets: Mapping[str, tuple[str, ...]]) -> tuple[Param, ...]:
    _require(isinstance(data, dict), f"params must be a mapping of setting -> operator, got {data!r}")
    _unknown_keys(data, _TRIAL_FIELDS, "params.")
    params = []
    for name, spec in data.items():
        key = f"params.{name}"
        _require(name not in fixed, f"{key}: is also in fixed; a setting is either fixed or swept")
        _require(isinstance(spec, dict) and len(spec) == 1,
                 f"{key} must be one operator ({', '.join(OPERATORS)}) with its values, got {spec!r}")
        kind, values = next(iter(spec.items()))
        _require(kind in OPERATORS, f"{key}: unknown operator {kind!r}; use one of {', '.join(OPERATORS)}")
        params.append(_param(key, name, kind, values, tag_subsets))
    if any(p.name == "modality" for p in params):  # modality first: the other draws depend on it
        params.sort(key=lambda p: p.name != "modality")
    return tuple(params)


def _param(key: str, name: str, kind: str, values: Any, tag_subsets: Mapping[str, tuple[str, ...]]) -> Param:
    if kind == "subset_of":
        _require(name == "exif_tags", f"{key}: subset_of is only for exif_tags, got it for {name!r}")
        tags = TAG_NAMES if values == "all" else _tags(f"{key}.subset_of", values)
        return Param(name, kind, tags)
    _require(isinstance(values, list) and len(values) > 0, f"{key}.{kind} must be a non-empty list, got {values!r}")
    if kind in ("choice", "grid"):
        _require(all(isinstance(v, str | int | float | bool) for v in values),
                 f"{key}.{kind}: values must be strings, numbers or booleans (Optuna categoricals), got {values!r}")
        _require(len(set(map(repr, values))) == len(values), f"{key}.{kind}: values repeat in {values!r}")
        for value in values:
            _check_setting(key, name, value, tag_subsets)
        return Param(name, kind, tuple(values))
    values = [_yaml_number(v) for v in values]
    _require(len(values) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values),
             f"{key}.{kind} must be [low, high], got {values!r}")
    low, high = values
    _require(low < high, f"{key}.{kind}: low must be < high, got {values!r}")
    if kind == "randint":
        _require(isinstance(low, int) and isinstance(high, int), f"{key}.randint takes integers, got {values!r}")
        _require(name not in ("exif_tags", "modality", "backbone", "weights"),
                 f"{key}: randint is for integer settings, got it for {name!r}")
        _check_setting(key, name, low, tag_subsets)
        _check_setting(key, name, high - 1, tag_subsets)
        return Param(name, kind, (int(low), int(high)))
    _require(kind != "loguniform" or low > 0, f"{key}.loguniform needs low > 0, got {values!r}")
    _check_setting(key, name, float(low), tag_subsets)
    _check_setting(key, name, float(high) if name != "dropout" else float(low), tag_subsets)
    _require(name != "dropout" or high < 1, f"{key}.{kind}: dropout must stay below 1, got {values!r}")
    return Param(name, kind, (float(low), float(high)))


def _yaml_number(value: Any) -> Any:
    """PyYAML reads `1e-4` (no dot) as a string; accept it as the number the user meant."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _scheduler(data: Any) -> Scheduler:
    if isinstance(data, str) or data is None:
        data = {"type": data or "none"}
    _require(isinstance(data, dict), f"scheduler must be asha, median, none or a mapping, got {data!r}")
    _unknown_keys(data, ("type", "grace_period", "reduction_factor", "max_t", "min_samples_required"), "scheduler.")
    kind = data.get("type", "asha")
    _require(kind in SCHEDULERS, f"scheduler.type must be one of {', '.join(SCHEDULERS)}, got {kind!r}")
    values = {key: _integer(data, key, getattr(Scheduler, key) or 1, minimum=1)
              for key in ("grace_period", "reduction_factor", "min_samples_required") if key in data}
    if "reduction_factor" in values:
        _require(values["reduction_factor"] >= 2, f"scheduler.reduction_factor must be >= 2, "
                                                  f"got {values['reduction_factor']!r}")
    if data.get("max_t") is not None:
        values["max_t"] = _integer(data, "max_t", 1, minimum=1)
    return Scheduler(type=kind, **values)


def _resources(data: Any) -> Resources:
    _require(isinstance(data, dict), f"resources must be a mapping with cpus and gpus, got {data!r}")
    _unknown_keys(data, ("cpus", "gpus"), "resources.")
    cpus, gpus = data.get("cpus", 1), data.get("gpus", 0)
    _require(isinstance(cpus, int | float) and not isinstance(cpus, bool) and cpus > 0,
             f"resources.cpus must be a number > 0, got {cpus!r}")
    _require(isinstance(gpus, int | float) and not isinstance(gpus, bool) and gpus >= 0,
             f"resources.gpus must be a number >= 0 (fractions share a GPU), got {gpus!r}")
    _require(gpus <= 1 or float(gpus).is_integer(), f"resources.gpus above 1 must be whole GPUs, got {gpus!r}")
    return Resources(cpus=float(cpus), gpus=float(gpus))


def _check_modalities(space: SearchSpace) -> None:
    modalities = space.modalities()
    for param in space.params:
        if not set(param.applies_to) & set(modalities):
            raise ConfigError(f"params.{param.name}: only used by {'/'.join(param.applies_to)} models, but the file "
                              f"only trains {'/'.join(modalities)}")
