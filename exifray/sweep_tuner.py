"""The Tuner of a sweep: Optuna's sampler (or a grid) behind Tune's OptunaSearch, the scheduler, the run and
tune configs. The trainable it runs is `sweep_trainable.build_trainable`'s; `sweep.run_sweep` runs it.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from exifray.config import TrialConfig
from exifray.space import SearchSpace, SweepPlan

if TYPE_CHECKING:
    import optuna
    from ray import tune
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

    from exifray.feature_cache import CacheAccess


# --- Tuner assembly ---------------------------------------------------------------------------------------

def _max_epochs(space: SearchSpace, name: str) -> int:
    param = space.param(name)
    if param is not None:
        return int(max(param.values) if param.kind != "randint" else param.values[1] - 1)
    return int(space.fixed.get(name, getattr(TrialConfig, name)))


def build_scheduler(space: SearchSpace) -> TrialScheduler | None:
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

    scheduler = space.scheduler
    if scheduler.type == "none":
        return None
    if scheduler.type == "median":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=scheduler.grace_period,
                                  min_samples_required=scheduler.min_samples_required)
    # Every epoch of both phases is one report, plus the final report with the test metrics.
    max_t = scheduler.max_t or _max_epochs(space, "epochs") + _max_epochs(space, "fine_tune_epochs") + 1
    return ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=scheduler.grace_period,
                         reduction_factor=scheduler.reduction_factor)


def build_search(space: SearchSpace) -> Searcher:
    if space.is_grid:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        # a SearchAlgorithm rather than a Searcher; TuneConfig(search_alg=...) takes both
        return BasicVariantGenerator(points_to_evaluate=space.grid_points(), max_concurrent=space.max_concurrent,
                                     random_state=space.seed)
    from ray.tune.search.optuna import OptunaSearch

    metric: str | list[str] = list(space.metrics) if space.multi_objective else space.metric
    mode: str | list[str] = list(space.modes) if space.multi_objective else space.mode
    return OptunaSearch(space=functools.partial(_define_by_run, space), metric=metric, mode=mode,
                        sampler=build_sampler(space))


def build_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The Optuna sampler `search` names, seeded by the space's seed."""
    import optuna

    if space.search == "random":
        return optuna.samplers.RandomSampler(seed=space.seed)
    if space.search == "independent_tpe":
        return optuna.samplers.TPESampler(seed=space.seed, n_startup_trials=space.n_startup_trials)
    # multivariate + group: TPE models the conditional parameters jointly; constant liar: concurrent trials
    # do not all sample the same point while the first ones run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # `group` is marked experimental
        return optuna.samplers.TPESampler(seed=space.seed, n_startup_trials=space.n_startup_trials,
                                          multivariate=True, group=True, constant_liar=True)


def _define_by_run(space: SearchSpace, trial: optuna.Trial) -> None:
    """Module-level so OptunaSearch (which pickles itself into Tune's experiment state) can pickle it."""
    return space.define_by_run(trial)


def feature_cache_access(storage: str, space: SearchSpace) -> CacheAccess:
    """The FEATURE CACHE beside the experiments, and a coordinator actor owned by this driver when a trial of the
    space could use the cache (otherwise no actor: a worker process less per sweep)."""
    from exifray.feature_cache import CacheAccess, FeatureCache, coordinator

    return CacheAccess(FeatureCache.under(storage), coordinator() if space.may_cache_features() else None)


def trial_dirname(trial: Trial) -> str:
    """`trial_<id>` instead of Tune's default (every parameter in the folder name, cut at 130 characters)."""
    return f"trial_{trial.trial_id}"


def build_tuner(plan: SweepPlan, trainable: type[tune.Trainable], storage_path: str, name: str,
                echo_epochs: bool = False, callbacks: Sequence[tune.Callback] = ()) -> tune.Tuner:
    """`echo_epochs`: a line per trial epoch in the driver's log, for sweeps that join a cluster (`ray job logs`
    shows the driver's output; the trials' own output stays on their nodes, `log_to_driver=False`). `callbacks`:
    Tune callbacks of the caller's, after exifray's own."""
    from ray import tune

    from exifray.sweep_callback import tune_callback

    space = plan.space
    single = not space.multi_objective
    tune_config = tune.TuneConfig(
        search_alg=build_search(space), scheduler=build_scheduler(space), num_samples=space.total_trials,
        max_concurrent_trials=None if space.is_grid else space.max_concurrent,
        reuse_actors=plan.config.reuse_workers,
        trial_dirname_creator=trial_dirname,
        metric=space.metric if single else None, mode=space.mode if single else None)
    run_config = tune.RunConfig(
        name=name, storage_path=storage_path,
        callbacks=[tune_callback(space, storage_path, name, echo_epochs), *callbacks],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=plan.config.max_failures), verbose=0)
    return tune.Tuner(trainable, param_space=param_space(space), tune_config=tune_config, run_config=run_config)


def param_space(space: SearchSpace) -> dict[str, object]:
    """Fixed settings; for a grid also each grid key (its first value), because Tune's BasicVariantGenerator
    only fills points into keys the space has. A point that leaves a key out (an EXIF-only point has no
    backbone) keeps that unused first value, which the trial ignores and the leaderboard leaves blank."""
    values = dict(space.fixed)
    if space.is_grid:
        values.update({p.name: p.values[0] for p in space.params})
    return values
