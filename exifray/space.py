"""Search spaces: what a sweep searches, turned into what Tune and Optuna run (files: `space_file.py`).

    space = load_space("search_spaces/demo.yaml")  # exifray.space_file
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

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from exifray import schema
from exifray.config import SweepConfig, TrialConfig
from exifray.errors import ConfigError, require
from exifray.exif.tags import resolve_tags

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

OPERATORS: Final = ("choice", "uniform", "loguniform", "randint", "grid", "subset_of")
SCHEDULERS: Final = ("asha", "median", "none")
MODES: Final = ("max", "min")
# tpe: multivariate TPE over grouped (conditional) parameters with the constant liar; independent_tpe: one
# TPE per parameter (Optuna's default TPESampler, constant liar on since Optuna 5); random: RandomSampler.
SEARCHES: Final = ("tpe", "independent_tpe", "random")
TAG_FLAG_PREFIX: Final = "exif_tag_"  # one boolean Optuna parameter per tag of a `subset_of`
SUBSET_SEPARATOR: Final = "+"

# Set by the sweep itself, not by a search space.
RESERVED: Final = ("threads",)
SMOKE_BACKBONE: Final = "TestTinyCNN"



@dataclass(frozen=True)
class Param:
    """One swept setting: `kind` is an operator of OPERATORS, `values` its choices or [low, high]."""

    name: str
    kind: str
    values: tuple[Any, ...]

    @property
    def applies_to(self) -> tuple[str, ...]:
        return schema.applies_to(self.name)

    def to_yaml(self) -> dict[str, object]:
        return {self.kind: list(self.values)}


@dataclass(frozen=True)
class Scheduler:
    type: str = "asha"
    grace_period: int = 1
    reduction_factor: int = 3
    max_t: int | None = None  # None: every epoch of both phases plus the final report
    min_samples_required: int = 3  # median stopping only

    def to_yaml(self) -> dict[str, object]:
        return {key: value for key, value in vars(self).items() if value is not None}


@dataclass(frozen=True)
class SearchSpace:
    name: str
    metrics: tuple[str, ...] = (schema.VAL_F1_MACRO,)
    modes: tuple[str, ...] = ("max",)
    seed: int = 0
    n_startup_trials: int = 10
    search: str = "tpe"  # one of SEARCHES; grid files do not sample
    num_samples: int = 10
    max_concurrent: int = 1
    scheduler: Scheduler = field(default_factory=Scheduler)
    tag_subsets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    params: tuple[Param, ...] = ()

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
        return tuple(str(modality) for modality in self.values_of("modality"))

    def values_of(self, name: str) -> tuple[Any, ...]:
        """The values a trial setting can take: the swept choices, else the fixed value or the default."""
        swept = self.param(name)
        if swept is not None:
            return tuple(swept.values)
        return (self.fixed.get(name, getattr(TrialConfig, name)),)

    def may_cache_features(self) -> bool:
        """Whether some trial could train a phase on cached features or activations (`feature_cache.route`): a model
        with images, a pretrained backbone (weights neither `none` nor `auto` over a backbone without ImageNet
        weights), the cache not off. A sweep starts the cache's coordinator actor only when one could."""
        from exifray.models.fusion import resolve_weights
        from exifray.models.registry import get_backbone_spec

        if not any(schema.uses_image(m) for m in self.modalities()):
            return False
        if all(str(mode).lower() in ("off", "false") for mode in self.values_of("feature_cache")):
            return False
        for backbone, weights in itertools.product(self.values_of("backbone"), self.values_of("weights")):
            try:
                if resolve_weights(str(_weights_for(weights, backbone)), get_backbone_spec(str(backbone))) is not None:
                    return True
            except ConfigError:  # a backbone not registered here, or a weights file not on this machine: maybe
                return True
        return False

    def image_sizes(self) -> tuple[int | None, ...]:
        """Image sizes the trials may use (None: the dataset's first size)."""
        if not any(schema.uses_image(m) for m in self.modalities()):
            return ()
        swept = self.param("image_size")
        if swept is not None:
            return tuple(int(v) for v in swept.values)
        size = self.fixed.get("image_size")
        return (None if size is None else int(size),)

    # --- Optuna ---------------------------------------------------------------------------------
    def define_by_run(self, trial: optuna.Trial) -> None:
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

    def optuna_distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter name define_by_run can suggest (and scalar grid parameters), with its Optuna
        distribution: what the journal mirror records per trial."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        result: dict[str, BaseDistribution] = {}
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
    def grid_points(self) -> list[dict[str, object]]:
        """Every combination of the `grid` values; a setting the modality does not use is not multiplied
        in (so an EXIF-only point is not repeated once per backbone)."""
        points: list[dict[str, object]] = []
        for modality in self.modalities():
            grid = [p for p in self.params if p.name != "modality" and modality in p.applies_to]
            for combination in itertools.product(*(p.values for p in grid)):
                point: dict[str, object] = {"modality": modality} if self.param("modality") else {}
                point.update(zip((p.name for p in grid), combination, strict=True))
                if point not in points:
                    points.append(point)
        return points

    # --- trials ---------------------------------------------------------------------------------
    def trial_settings(self, config: Mapping[str, object]) -> dict[str, object]:
        """A Tune config (fixed settings + sampled parameters) as TrialConfig settings."""
        settings = {key: value for key, value in config.items() if not key.startswith(TAG_FLAG_PREFIX)}
        flags = {key[len(TAG_FLAG_PREFIX):]: bool(value) for key, value in config.items()
                 if key.startswith(TAG_FLAG_PREFIX)}
        if flags:
            chosen = [tag for tag, on in flags.items() if on]
            # An empty EXIF input is not a model: a draw that selects no tag uses every candidate tag.
            settings["exif_tags"] = chosen or list(flags)
        if isinstance(subset := settings.get("exif_tags"), str):
            settings["exif_tags"] = list(self.resolve_subset(subset))
        if "weights" in settings:
            settings["weights"] = _weights_for(settings["weights"], settings.get("backbone", TrialConfig.backbone))
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

    # --- the resolved file ----------------------------------------------------------------------
    @property
    def total_trials(self) -> int:
        return len(self.grid_points()) if self.is_grid else self.num_samples

    def to_yaml(self) -> dict[str, object]:
        return {"name": self.name,
                "metric": self.metric if not self.multi_objective else list(self.metrics),
                "mode": self.mode if not self.multi_objective else list(self.modes),
                "seed": self.seed, "n_startup_trials": self.n_startup_trials,
                **({} if self.is_grid else {"search": self.search, "num_samples": self.num_samples}),
                "max_concurrent": self.max_concurrent, "scheduler": self.scheduler.to_yaml(),
                "tag_subsets": {k: list(v) for k, v in self.tag_subsets.items()},
                "fixed": dict(self.fixed), "params": {p.name: p.to_yaml() for p in self.params}}


@dataclass(frozen=True)
class SweepPlan:
    """A search space file: what to search (`space`) and how to run it (`config`: resources, retries,
    checkpoints); `smoke_changes` says what `--smoke-test` changed."""

    space: SearchSpace
    config: SweepConfig = field(default_factory=SweepConfig)
    smoke_changes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.space.name

    def to_yaml(self) -> dict[str, object]:
        """The resolved file (`sweep.yaml`), keys in the documented order."""
        document = self.space.to_yaml()
        position = list(document).index("tag_subsets")
        items = list(document.items())
        items[position:position] = self.config.to_yaml().items()
        return dict(items)

    def with_overrides(self, *, num_samples: int | None = None, max_concurrent: int | None = None,
                       smoke_test: bool = False) -> SweepPlan:
        """`--smoke-test` shrinks the file to one tiny trial; explicit flags win over what it shrinks."""
        plan = _smoke(self) if smoke_test else self
        space = plan.space
        if num_samples is not None:
            if space.is_grid:
                raise ConfigError(f"num_samples: a grid file runs every combination once, got --num-samples "
                                  f"{num_samples}")
            require(num_samples >= 1, f"num_samples must be >= 1, got {num_samples!r}")
            space = replace(space, num_samples=num_samples)
        if max_concurrent is not None:
            require(max_concurrent >= 1, f"max_concurrent must be >= 1, got {max_concurrent!r}")
            space = replace(space, max_concurrent=max_concurrent)
        kept = {"num_samples": num_samples, "max_concurrent": max_concurrent}
        changes = tuple(c for c in plan.smoke_changes if kept.get(c.split(" ", 1)[0]) is None)
        return replace(plan, space=space, smoke_changes=changes)


def _weights_for(weights: object, backbone: object) -> object:
    """A trial's weights: `weights` itself, or its entry for `backbone` when it names one per backbone (default
    `auto`)."""
    return weights.get(str(backbone), "auto") if isinstance(weights, Mapping) else weights


def _smoke(plan: SweepPlan) -> SweepPlan:
    """One tiny trial of the file's real code path: one epoch per phase, a tiny backbone, no weights."""
    space = plan.space
    fixed = {**space.fixed, "epochs": 1, "fine_tune_epochs": 1, "weights": "none"}
    if "backbone" in fixed:
        fixed["backbone"] = SMOKE_BACKBONE
    params = tuple(replace(p, values=(SMOKE_BACKBONE,)) if p.name == "backbone" else p for p in space.params)
    if space.is_grid:  # the first point only
        params = tuple(replace(p, values=p.values[:1]) for p in params)
    smoke = replace(space, fixed=fixed, params=params, num_samples=1, max_concurrent=1, n_startup_trials=1,
                    scheduler=Scheduler(type="none"))
    changes = [f"{key} {getattr(space, key)} -> {getattr(smoke, key)}" for key in ("num_samples", "max_concurrent")
               if getattr(space, key) != getattr(smoke, key) and not (key == "num_samples" and space.is_grid)]
    if space.is_grid and space.total_trials > 1:
        changes.append(f"grid {space.total_trials} points -> its first point")
    if space.scheduler.type != "none":
        changes.append(f"scheduler {space.scheduler.type} -> none")
    changes += [f"{key} {_shown(space, key)} -> {fixed[key]}" for key in ("epochs", "fine_tune_epochs", "weights")
                if _shown(space, key) != str(fixed[key])]
    if space.param("backbone") is not None or "backbone" in space.fixed:
        changes.append(f"backbone {_shown(space, 'backbone')} -> {SMOKE_BACKBONE}")
    if plan.config.resources.cpus > 1 or plan.config.resources.gpus > 0:
        changes.append("resources -> at most 1 CPU (and 1 GPU where the cluster has one)")
    return SweepPlan(smoke, replace(plan.config, smoke_test=True), tuple(changes))


def _shown(space: SearchSpace, key: str) -> str:
    param = space.param(key)
    if param is not None:
        return "/".join(map(str, param.values))
    return str(space.fixed.get(key, getattr(TrialConfig, key)))
