"""A bundle as an MLflow model: `exifray export-best --mlflow-register NAME`.

    exifray export-best experiments/fusion --out models/best --mlflow-register photo-tagger
    model = mlflow.pyfunc.load_model("models:/photo-tagger/1")
    model.predict(pd.DataFrame({"path": ["photos/"]}))   # a row per photo, as `exifray predict` writes them

The registered model is the whole bundle (model, EXIF encoder, decode settings, classes, thresholds) behind a
pyfunc that decodes and tags photos with the same code as `exifray predict` (`predict.DecodeStage` and
`predict.PredictStage`, run in-process instead of in Ray Data), so the preprocessing travels with the model and
its predictions equal the command's. Its environment names `exifray` at this version: the serving environment
needs exifray installed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import mlflow.pyfunc

from exifray.errors import ConfigError
from exifray.tracking import EXPERIMENT_TAG, TRIAL_TAG, find_run, mlflow_client, sweep_experiment
from exifray.version import __version__

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models.model import ModelInfo

    from exifray.predict import PredictStage

BUNDLE_ARTIFACT: Final = "bundle"
BATCH: Final = 32


class BundleModel(mlflow.pyfunc.PythonModel):
    """The pyfunc: `predict` takes photo paths (a DataFrame with a `path` column, a list, or one path; folders
    are searched as `exifray predict` searches them) and returns its rows: path, sha256, bundle id, tags
    (`;`-joined), whether EXIF was found, any error, and a `p_<class>` probability per class."""

    stage: PredictStage

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from exifray.predict import PredictStage
        from exifray.tagging import make_policy

        bundle = context.artifacts[BUNDLE_ARTIFACT]
        stage = PredictStage(bundle, make_policy(False))  # the bundle is loaded once; its own policy follows
        loaded = stage.loaded
        stage.policy = make_policy(loaded.multi_label, calibrated=loaded.thresholds)
        self.stage = stage

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: object,
                params: dict[str, object] | None = None) -> pd.DataFrame:
        import numpy as np

        from exifray.predict import DecodeStage, list_photos, prediction_row, predictions_frame

        photos = list_photos(_paths(model_input))
        loaded = self.stage.loaded
        decode = DecodeStage(loaded.decode_params())
        rows = []
        for start in range(0, len(photos), BATCH):
            batch = self.stage(decode({"path": np.array(photos[start:start + BATCH], dtype=object)}))
            rows += [prediction_row({key: value[index] for key, value in batch.items()}, loaded.classes)
                     for index in range(len(batch["path"]))]
        return predictions_frame(rows, loaded.classes)


def _paths(model_input: object) -> list[str]:
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if "path" not in model_input:
            raise ConfigError(f"the model's input needs a 'path' column; got columns {list(model_input.columns)}")
        return [str(path) for path in model_input["path"]]
    if isinstance(model_input, str | os.PathLike):
        return [str(model_input)]
    if isinstance(model_input, Sequence):
        return [str(path) for path in model_input]
    raise ConfigError(f"the model takes photo paths (a DataFrame with a 'path' column, a list or a path), got "
                      f"{type(model_input).__name__}")


def register_bundle(bundle: str | Path, name: str, experiment: str, *, uri: str | None = None) -> ModelInfo:
    """Log the bundle `export-best` wrote from `experiment` as a pyfunc in its trial's MLflow run (the one a
    tracked sweep made, else a new run in the sweep's MLflow experiment) and register it as a new version of
    `name` (its `registered_model_version`)."""
    import json

    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from exifray.bundle import BUNDLE_FILE
    from exifray.experiment_files import ExperimentFiles

    manifest = json.loads((Path(bundle) / BUNDLE_FILE).read_text(encoding="utf-8"))
    sweep, trial_id = str(manifest["experiment"]), str(manifest["trial_id"])
    experiment = ExperimentFiles.at(experiment).uri

    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise ConfigError("--mlflow-register needs a tracking URI: pass --mlflow URI or set MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    client = mlflow_client(uri)
    experiment_id = sweep_experiment(client, sweep, experiment)
    run_id = find_run(client, experiment_id, experiment, trial_id) or None
    with mlflow.start_run(run_id=run_id, experiment_id=experiment_id,
                          run_name=None if run_id else f"export-best trial_{trial_id}",
                          tags=None if run_id else {EXPERIMENT_TAG: experiment, TRIAL_TAG: trial_id}):
        return mlflow.pyfunc.log_model(
            name=BUNDLE_ARTIFACT, python_model=BundleModel(), artifacts={BUNDLE_ARTIFACT: str(bundle)},
            registered_model_name=name, pip_requirements=[f"exifray=={__version__}"],
            signature=ModelSignature(inputs=Schema([ColSpec("string", "path")])))
