"""The Python API: what the CLI does, one import away, for notebooks and scripts.

    from exifray import (best_trial, export_best, ingest, load_leaderboard, load_space, predict_photos, run_sweep,
                         synth)

    synth("data/crawl", photos=600)                # or `exifray crawl` for real Flickr photos
    dataset = ingest("data/crawl", "data/dataset", sizes=(32,))
    plan = load_space("search_spaces/demo.yaml", num_samples=4, fixed={"epochs": 3})
    result = run_sweep(plan, "data/dataset", storage_path="experiments")
    board = load_leaderboard(result)               # a DataFrame, the rows of leaderboard.csv
    bundle = export_best(result, "models/best")    # the best complete trial as a self-contained bundle
    tags = predict_photos(bundle, "photos/")       # one row per photo: tags and a p_<class> column per class

Every function raises the same errors as the command it mirrors (`ConfigError`, `InputNotFoundError`, ... from
`exifray.errors`), before Ray starts where the CLI checks first. `sweep` starts Ray in-process unless `address`
(or RAY_ADDRESS) names a cluster, as `exifray sweep` does; a notebook that already called `ray.init()` keeps its
Ray.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from exifray.space import SweepPlan

if TYPE_CHECKING:
    import pandas as pd
    from ray import tune

    from exifray.sweep import SweepResult
    from exifray.tagging import PolicyFlags


def synth(out: str | Path, *, scenario: str = "indoor_outdoor", photos: int = 1000, seed: int = 0,
          image_size: int = 160) -> Path:
    """A synthetic Flickr-shaped CRAWL DIR at `out`, as `exifray synth` writes it; returns `out`."""
    from exifray.data.synth import SynthConfig, generate

    generate(out, SynthConfig(scenario=scenario, photos=photos, seed=seed, image_size=image_size))
    return Path(out)


def ingest(inputs: str | Path | Sequence[str | Path], out: str | Path, *, sizes: Sequence[int] = (50, 150),
           **settings: object) -> str:
    """Decode CRAWL DIRs (or thesis, MIRFLICKR, label-folder layouts; local or s3://) once into a DATASET DIR
    with Ray Data, as `exifray ingest` does; `settings`: its other options by name (`label_level`, `seed`,
    `shard_size`, ...). Returns `out`."""
    from exifray.config import IngestConfig, coerce
    from exifray.data.ingest import run_ingest

    sources = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    values = {name: coerce(IngestConfig, name, value) for name, value in settings.items()}
    run_ingest(IngestConfig(inputs=tuple(str(s) for s in sources), out=str(out), sizes=tuple(sizes), **values))
    return str(out)


def load_space(source: str | Path | Mapping[str, object], *, fixed: Mapping[str, object] | None = None,
               num_samples: int | None = None, max_concurrent: int | None = None,
               smoke_test: bool = False) -> SweepPlan:
    """A search space, validated: from a YAML file (`search_spaces/*.yaml`) or a dict shaped like one.

    `fixed`: settings to fix, merged into the file's `fixed` (a swept setting named here stops being swept).
    `num_samples`, `max_concurrent`, `smoke_test`: as `exifray sweep --num-samples/--max-concurrent/--smoke-test`.
    """
    from exifray.space_file import load_sweep, parse_sweep, with_fixed

    if isinstance(source, Mapping):
        document = copy.deepcopy(dict(source))
        plan = parse_sweep(with_fixed(document, fixed), default_name=str(document.get("name", "sweep")))
    else:
        plan = load_sweep(source, fixed)
    return plan.with_overrides(num_samples=num_samples, max_concurrent=max_concurrent, smoke_test=smoke_test)


def run_sweep(space: SweepPlan | str | Path | Mapping[str, object], data: str | Path, *, name: str | None = None,
          storage_path: str | None = None, resume: bool = False, address: str | None = None,
          dashboard: bool = False, callbacks: Sequence[tune.Callback] = (), mlflow: str | bool | None = None,
          wandb: str | None = None) -> SweepResult:
    """Run (or `resume`) a sweep over the DATASET DIR `data`, as `exifray sweep` does; returns its experiment
    folder, ranked leaderboard and wall time. `space`: a `load_space` result, a file or a dict.
    `mlflow`: a tracking URI (True: MLFLOW_TRACKING_URI), `wandb`: a W&B project, as `--mlflow`/`--wandb`; pass them
    again with `resume=True` (they are never saved with the sweep)."""
    from exifray.sweep import run_sweep as run
    from exifray.tracking import Tracking

    tracking = Tracking("" if mlflow is True else (mlflow or None), wandb).checked()
    plan = space if isinstance(space, SweepPlan) else load_space(space)
    return run(plan, data, name=name, storage_path=storage_path, resume=resume, address=address,
               dashboard=dashboard, callbacks=callbacks, tracking=tracking)


def _experiment_path(experiment: str | Path | SweepResult) -> str:
    from exifray.sweep import SweepResult

    return experiment.experiment_dir if isinstance(experiment, SweepResult) else str(experiment)


def load_leaderboard(experiment: str | Path | SweepResult) -> pd.DataFrame:
    """The experiment's trials ranked, one row each, the columns of its `leaderboard.csv`; finished or still
    running, a local folder or an s3:// URI."""
    from exifray.experiment import open_experiment

    frame = open_experiment(_experiment_path(experiment)).frame.drop(columns=["label_mode"])
    text = frame.select_dtypes(include="object").columns  # missing text as pandas reads it from the CSV: NaN
    frame[text] = frame[text].where(frame[text].notna(), float("nan"))
    return frame


def best_trial(experiment: str | Path | SweepResult, metric: str | None = None,
               modality: str | None = None) -> pd.Series:
    """The best complete trial's row (by `metric`, default the sweep's; optionally of one modality)."""
    from exifray.bundle import best_trial as best
    from exifray.experiment import open_experiment

    opened = open_experiment(_experiment_path(experiment))
    return best(opened.frame, metric or opened.space.metric, modality)


def export_best(experiment: str | Path | SweepResult, out: str | Path, metric: str | None = None,
                modality: str | None = None, *, data: str | None = None) -> Path:
    """The best complete trial as a self-contained bundle at `out` (created whole or not at all), as
    `exifray export-best` writes it; returns `out`."""
    from exifray.bundle import export_best as export

    export(_experiment_path(experiment), out, metric, modality, data=data)
    return Path(out)


def predict_photos(bundle: str | Path, photos: str | Path | Sequence[str | Path], *, out: str | Path | None = None,
            threshold: float | str | None = None, top_k: int | None = None) -> pd.DataFrame:
    """Tag photos (folders, recursively; files; s3:// prefixes) with a bundle: one row per photo, in input order,
    with its tags (`;`-joined), a `p_<class>` probability per class, whether EXIF was found and any error.
    `out`: also write the JSONL or CSV file `exifray predict --out` writes (re-runs skip photos already in it).
    `threshold` (a probability or `calibrated`) and `top_k`: the tag policy, as the CLI's flags."""
    from exifray.bundle import load_model
    from exifray.predict import predict as run
    from exifray.predict import predictions_frame, ray_session

    inputs = [str(photos)] if isinstance(photos, str | Path) else [str(p) for p in photos]
    flags: PolicyFlags = {}
    if threshold is not None:
        flags["threshold"] = threshold
    if top_k is not None:
        flags["top_k"] = top_k
    with tempfile.TemporaryDirectory(prefix="exifray-predict-") as scratch:
        target = str(out) if out is not None else str(Path(scratch) / "predictions.jsonl")
        with ray_session(None, None):
            summary = run(str(bundle), inputs, target, policy_flags=flags)
    return predictions_frame(summary.rows, load_model(str(bundle)).classes)
