"""Search space files (`search_spaces/*.yaml`): loaded and validated before anything starts.

    plan = load_sweep("search_spaces/demo.yaml")   # SweepPlan: plan.space (what to search), plan.config (how)
    space = load_space("search_spaces/demo.yaml")  # the SearchSpace alone

The format is documented in `search_spaces/README.md`; every error names the key and the bad value.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Final

import yaml

from exifray import schema
from exifray.config import (
    MAX_TRIALS_PER_WORKER,
    WORKER_GROWTH_MB,
    DataConfig,
    Resources,
    SweepConfig,
    TrialConfig,
    yaml_boolean_choice,
)
from exifray.errors import ConfigError, InputNotFoundError, UnknownNameError, require
from exifray.exif.tags import TAG_NAMES, resolve_tags
from exifray.space import (
    MODES,
    OPERATORS,
    RESERVED,
    SCHEDULERS,
    SEARCHES,
    SUBSET_SEPARATOR,
    Param,
    Scheduler,
    SearchSpace,
    SweepPlan,
)

_TOP_LEVEL: Final = ("name", "metric", "mode", "seed", "n_startup_trials", "search", "num_samples", "max_concurrent",
                     "scheduler", "resources", "max_failures", "checkpoint_every", "data", "warm_workers",
                     "max_trials_per_worker", "worker_growth_mb", "tag_subsets", "fixed", "params")
FIXED_ONLY: Final = ("feature_cache",)
_TRIAL_FIELDS: Final = tuple(f.name for f in fields(TrialConfig) if f.name not in RESERVED)


def load_sweep(path: str | Path, fixed: Mapping[str, object] | None = None) -> SweepPlan:
    """A search space file, validated: what to search and how to run it. `fixed`: settings to fix on top of the
    file's (`with_fixed`)."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"search space file does not exist: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return parse_sweep(with_fixed(data, fixed), default_name=path.stem)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def with_fixed(document: object, fixed: Mapping[str, object] | None) -> object:
    """The document with `fixed` merged into its `fixed` settings; a swept setting named there stops being swept.
    Anything but a mapping with mapping `fixed`/`params` is returned as it is, for `parse_sweep` to refuse."""
    if not fixed or not isinstance(document, dict):
        return document
    current, params = document.get("fixed") or {}, document.get("params") or {}
    if not isinstance(current, dict) or not isinstance(params, dict):
        return document
    return {**document, "fixed": {**current, **fixed},
            "params": {name: value for name, value in params.items() if name not in fixed}}


def load_space(path: str | Path) -> SearchSpace:
    return load_sweep(path).space


def parse_sweep(data: object, default_name: str = "sweep") -> SweepPlan:
    """Validate a loaded YAML document; every error names the key and the bad value."""
    space = parse_space(data, default_name)
    assert isinstance(data, dict)  # parse_space refused anything else
    config = SweepConfig(resources=Resources.from_yaml(data.get("resources") or {}),
                         max_failures=_integer(data, "max_failures", 1, minimum=-1),
                         checkpoint_every=_integer(data, "checkpoint_every", 1, minimum=1),
                         data=DataConfig.from_yaml(data.get("data") or {}),
                         warm_workers=data.get("warm_workers"),
                         max_trials_per_worker=_integer(data, "max_trials_per_worker", MAX_TRIALS_PER_WORKER,
                                                        minimum=1),
                         worker_growth_mb=data.get("worker_growth_mb", WORKER_GROWTH_MB))
    return SweepPlan(space, config)


def parse_space(data: object, default_name: str = "sweep") -> SearchSpace:
    """The search part of a loaded YAML document (the run settings are `parse_sweep`'s)."""
    if not isinstance(data, dict):
        raise ConfigError(f"a search space must be a mapping of settings, got {type(data).__name__}")
    _unknown_keys(data, _TOP_LEVEL, "")
    metrics, modes = _objectives(data.get("metric", schema.VAL_F1_MACRO), data.get("mode", "max"))
    tag_subsets = _tag_subsets(data.get("tag_subsets") or {})
    fixed = _fixed(data.get("fixed") or {}, tag_subsets)
    params = _params(data.get("params") or {}, fixed, tag_subsets)
    if any(p.kind == "grid" for p in params):
        mixed = [p.name for p in params if p.kind != "grid"]
        require(not mixed, f"params.{mixed[0] if mixed else ''}: a file that uses `grid` must use it for every "
                           f"parameter (Optuna cannot sample a grid), got {mixed!r}")
        for key in ("num_samples", "search"):
            require(key not in data, f"{key}: a grid file runs every combination once, got {data.get(key)!r}")
    scheduler = _scheduler(data.get("scheduler", "asha"))
    require(not (len(metrics) > 1 and scheduler.type != "none"),
            f"scheduler: a multi-objective sweep cannot use a pruning scheduler (it stops on one metric), got "
            f"{scheduler.type!r}; use `scheduler: none`")
    space = SearchSpace(
        name=_name(data.get("name", default_name)), metrics=metrics, modes=modes,
        seed=_integer(data, "seed", 0, minimum=0),
        n_startup_trials=_integer(data, "n_startup_trials", 10, minimum=0),
        search=_choice(data, "search", "tpe", SEARCHES),
        num_samples=_integer(data, "num_samples", 10, minimum=1),
        max_concurrent=_integer(data, "max_concurrent", 1, minimum=1),
        scheduler=scheduler, tag_subsets=tag_subsets, fixed=fixed, params=params)
    _check_modalities(space)
    return space


def _unknown_keys(data: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}{key}: unknown key{hint}; allowed: {', '.join(allowed)}")


def _name(value: object) -> str:
    text = str(value)
    require(bool(text) and all(c.isalnum() or c in "-_." for c in text) and not text.startswith("."),
             f"name must be letters, digits, '-', '_' or '.', got {value!r}")
    return text


def _integer(data: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = data.get(key, default)
    require(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
             f"{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _choice(data: Mapping[str, Any], key: str, default: str, allowed: Sequence[str]) -> str:
    value = data.get(key, default)
    require(value in allowed, f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _objectives(metric: Any, mode: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    metrics = tuple(metric) if isinstance(metric, list) else (metric,)
    modes = tuple(mode) if isinstance(mode, list) else (mode,)
    require(len(metrics) == len(modes), f"metric and mode must have the same length, got {list(metrics)!r} "
                                         f"and {list(modes)!r}")
    require(len(set(metrics)) == len(metrics), f"metric must not repeat, got {list(metrics)!r}")
    for name in metrics:
        require(name in schema.EPOCH_METRICS,
                 f"metric must be one of {', '.join(schema.EPOCH_METRICS)} (reported every epoch; the test split "
                 f"is never used for selection), got {name!r}")
    for value in modes:
        require(value in MODES, f"mode must be 'max' or 'min', got {value!r}")
    return metrics, modes


def _tag_subsets(data: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(data, dict):
        raise ConfigError(f"tag_subsets must map names to tag lists, got {data!r}")
    subsets = {}
    for name, tags in data.items():
        require(isinstance(name, str) and name != "all" and SUBSET_SEPARATOR not in name,
                 f"tag_subsets.{name}: a subset name must be a plain word other than 'all', got {name!r}")
        subsets[name] = _tags(f"tag_subsets.{name}", tags)
    return subsets


def _tags(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | str) or not value:
        raise ConfigError(f"{key} must be a non-empty list of EXIF tags, got {value!r}")
    try:
        return resolve_tags(value)
    except UnknownNameError as exc:
        raise ConfigError(f"{key}: {exc.args[0]}") from exc


def _check_setting(key: str, name: str, value: object, tag_subsets: Mapping[str, tuple[str, ...]]) -> None:
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


def _fixed(data: object, tag_subsets: Mapping[str, tuple[str, ...]]) -> dict[str, object]:
    if not isinstance(data, dict):
        raise ConfigError(f"fixed must be a mapping of trial settings, got {data!r}")
    _unknown_keys(data, _TRIAL_FIELDS, "fixed.")
    # `feature_cache: off` unquoted is YAML's False: stored as the word it means, so sweep.yaml says `off`
    data = {name: (yaml_boolean_choice(TrialConfig, name, value) or value) if isinstance(value, bool) else value
            for name, value in data.items()}
    for name, value in data.items():
        if name == "weights" and isinstance(value, dict):  # {backbone: weights} for a sweep over backbones
            for backbone, weights in value.items():
                _check_setting(f"fixed.weights.{backbone}", "backbone", backbone, tag_subsets)
                _check_setting(f"fixed.weights.{backbone}", name, weights, tag_subsets)
            continue
        _check_setting(f"fixed.{name}", name, value, tag_subsets)
    fixed = dict(data)
    if isinstance(fixed.get("exif_tags"), list):
        fixed["exif_tags"] = list(_tags("fixed.exif_tags", fixed["exif_tags"]))
    return fixed


def _params(data: object, fixed: Mapping[str, Any], tag_subsets: Mapping[str, tuple[str, ...]]) -> tuple[Param, ...]:
    if not isinstance(data, dict):
        raise ConfigError(f"params must be a mapping of setting -> operator, got {data!r}")
    _unknown_keys(data, _TRIAL_FIELDS, "params.")
    params = []
    for name, spec in data.items():
        key = f"params.{name}"
        require(name not in fixed, f"{key}: is also in fixed; a setting is either fixed or swept")
        require(name not in FIXED_ONLY, f"{key}: {name} is a fixed setting (it changes how trials run, not what they "
                                        f"learn); put it under fixed")
        require(isinstance(spec, dict) and len(spec) == 1,
                 f"{key} must be one operator ({', '.join(OPERATORS)}) with its values, got {spec!r}")
        kind, values = next(iter(spec.items()))
        require(kind in OPERATORS, f"{key}: unknown operator {kind!r}; use one of {', '.join(OPERATORS)}")
        params.append(_param(key, name, kind, values, tag_subsets))
    if any(p.name == "modality" for p in params):  # modality first: the other draws depend on it
        params.sort(key=lambda p: p.name != "modality")
    return tuple(params)


def _param(key: str, name: str, kind: str, values: Any, tag_subsets: Mapping[str, tuple[str, ...]]) -> Param:
    if kind == "subset_of":
        require(name == "exif_tags", f"{key}: subset_of is only for exif_tags, got it for {name!r}")
        tags = TAG_NAMES if values == "all" else _tags(f"{key}.subset_of", values)
        return Param(name, kind, tags)
    require(isinstance(values, list) and len(values) > 0, f"{key}.{kind} must be a non-empty list, got {values!r}")
    if kind in ("choice", "grid"):
        require(all(isinstance(v, str | int | float | bool) for v in values),
                 f"{key}.{kind}: values must be strings, numbers or booleans (Optuna categoricals), got {values!r}")
        require(len(set(map(repr, values))) == len(values), f"{key}.{kind}: values repeat in {values!r}")
        for value in values:
            _check_setting(key, name, value, tag_subsets)
        return Param(name, kind, tuple(values))
    values = [_yaml_number(v) for v in values]
    require(len(values) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values),
             f"{key}.{kind} must be [low, high], got {values!r}")
    low, high = values
    require(low < high, f"{key}.{kind}: low must be < high, got {values!r}")
    if kind == "randint":
        require(isinstance(low, int) and isinstance(high, int), f"{key}.randint takes integers, got {values!r}")
        require(name not in ("exif_tags", "modality", "backbone", "weights"),
                 f"{key}: randint is for integer settings, got it for {name!r}")
        _check_setting(key, name, low, tag_subsets)
        _check_setting(key, name, high - 1, tag_subsets)
        return Param(name, kind, (int(low), int(high)))
    require(kind != "loguniform" or low > 0, f"{key}.loguniform needs low > 0, got {values!r}")
    _check_setting(key, name, float(low), tag_subsets)
    _check_setting(key, name, float(high) if name != "dropout" else float(low), tag_subsets)
    require(name != "dropout" or high < 1, f"{key}.{kind}: dropout must stay below 1, got {values!r}")
    return Param(name, kind, (float(low), float(high)))


def _yaml_number(value: object) -> object:
    """PyYAML reads `1e-4` (no dot) as a string; accept it as the number the user meant."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _scheduler(data: object) -> Scheduler:
    if isinstance(data, str) or data is None:
        data = {"type": data or "none"}
    if not isinstance(data, dict):
        raise ConfigError(f"scheduler must be asha, median, none or a mapping, got {data!r}")
    _unknown_keys(data, ("type", "grace_period", "reduction_factor", "max_t", "min_samples_required"), "scheduler.")
    kind = data.get("type", "asha")
    require(kind in SCHEDULERS, f"scheduler.type must be one of {', '.join(SCHEDULERS)}, got {kind!r}")
    values = {key: _integer(data, key, getattr(Scheduler, key) or 1, minimum=1)
              for key in ("grace_period", "reduction_factor", "min_samples_required") if key in data}
    if "reduction_factor" in values:
        require(values["reduction_factor"] >= 2, f"scheduler.reduction_factor must be >= 2, "
                                                  f"got {values['reduction_factor']!r}")
    if data.get("max_t") is not None:
        values["max_t"] = _integer(data, "max_t", 1, minimum=1)
    return Scheduler(type=kind, **values)


def _check_modalities(space: SearchSpace) -> None:
    modalities = space.modalities()
    for param in space.params:
        if not set(param.applies_to) & set(modalities):
            raise ConfigError(f"params.{param.name}: only used by {'/'.join(param.applies_to)} models, but the file "
                              f"only trains {'/'.join(modalities)}")
