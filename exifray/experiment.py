"""The EXPERIMENT DIR: its layout, its files, and reading it back (local path or any pyarrow URI).

    files = ExperimentFiles.at("experiments/demo")                 # or s3://bucket/experiments/demo
    experiment = open_experiment("experiments/demo")             # the trials as a ranked table + histories

`storage_path/name` holds Ray Tune's own results (per-trial `result.json`, `progress.csv`, TensorBoard
events, `checkpoint_*` folders), and next to them the files exifray keeps: `sweep.yaml` (the resolved search
space), `optuna.journal` (the study, for optuna-dashboard), `leaderboard.csv` (refreshed as trials finish),
`sweep_status.json` (the driver's heartbeat, `sweep_status.py`) and, in a trial folder, `exifray_error.txt` (a
deterministic failure, so a retry re-raises it). A trial's resume
checkpoint holds `model.keras`, `best_weights.npz` and `resume.json`; its final checkpoint (and a bundle)
holds TRIAL_FILES. The names and `ExperimentFiles` are in `experiment_files.py` (imported from here too).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exifray import schema
from exifray.errors import InputNotFoundError
from exifray.experiment_files import (  # re-exported: the names live there, readers import them from here too
    ANALYSIS_DIR as ANALYSIS_DIR,
)
from exifray.experiment_files import (
    BEST_WEIGHTS_FILE as BEST_WEIGHTS_FILE,
)
from exifray.experiment_files import (
    CODECARBON_DIR as CODECARBON_DIR,
)
from exifray.experiment_files import (
    DEFAULT_STORAGE as DEFAULT_STORAGE,
)
from exifray.experiment_files import (
    ERROR_MARKER as ERROR_MARKER,
)
from exifray.experiment_files import (
    HEAD_ONLY_TRIAL_FILES as HEAD_ONLY_TRIAL_FILES,
)
from exifray.experiment_files import (
    JOURNAL_FILE as JOURNAL_FILE,
)
from exifray.experiment_files import (
    LEADERBOARD_FILE as LEADERBOARD_FILE,
)
from exifray.experiment_files import (
    RESUME_FILE as RESUME_FILE,
)
from exifray.experiment_files import (
    SWEEP_FILE as SWEEP_FILE,
)
from exifray.experiment_files import (
    TRIAL_FILES as TRIAL_FILES,
)
from exifray.experiment_files import (
    ExperimentFiles as ExperimentFiles,
)
from exifray.experiment_files import (
    split_experiment_path as split_experiment_path,
)
from exifray.experiment_files import (
    storage_uri as storage_uri,
)
from exifray.fsutil import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_jsonl,
    jsonable,
)

if TYPE_CHECKING:
    import numpy as np
    import optuna
    import pandas as pd

    from exifray.machine_emissions import MachineRecord
    from exifray.space import SearchSpace, SweepPlan
    from exifray.trial_result import TrialResult

def save_trial(result: TrialResult, out_dir: str | Path) -> None:
    """A trial's final folder (TRIAL_FILES; a bundle has the same): `model.keras`, `metrics.json`, `settings.json`
    and `history.jsonl`, each written atomically. A head-only trial (`result.backbone`) has `head.keras` and
    `backbone.json` in place of `model.keras` (HEAD_ONLY_FILES; `models.assembly` builds its full model)."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = schema.MODEL_FILE if result.backbone is None else schema.HEAD_MODEL_FILE
    with tempfile.TemporaryDirectory(dir=out, prefix=".tmp-model-") as staging:
        staged = Path(staging) / name
        result.model.save(staged)
        staged.replace(out / name)
    if result.backbone is not None:
        atomic_write_json(out / schema.BACKBONE_FILE, result.backbone)
    atomic_write_json(out / schema.METRICS_FILE, jsonable(result.metrics))
    atomic_write_json(out / schema.SETTINGS_FILE, result.settings)
    atomic_write_jsonl(out / schema.HISTORY_FILE, (jsonable(row) for row in result.history))
    for name, data in result.emissions_files.items():  # CodeCarbon's emissions.csv and per-segment rows
        atomic_write_bytes(out / name, data)
    if result.test_predictions:
        import io

        import numpy as np

        buffer = io.BytesIO()
        scored = result.test_predictions
        np.savez_compressed(buffer, photo_ids=scored["photo_ids"], targets=scored["targets"],
                            probabilities=scored["probabilities"])
        atomic_write_bytes(out / schema.TEST_PREDICTIONS_FILE, buffer.getvalue())


def trial_error_marker(trial_dir: str | Path) -> Path:
    """Where a trial records a deterministic failure (`exifray_error.txt` in its Tune folder)."""
    return Path(trial_dir) / ERROR_MARKER


# --- reading an experiment back ---------------------------------------------------------------------------

def read_space(files: ExperimentFiles) -> SearchSpace:
    """The resolved search space the sweep was started with (`sweep.yaml`)."""
    import yaml

    from exifray.space_file import parse_space

    return parse_space(yaml.safe_load(files.read_text(SWEEP_FILE)), default_name=files.name)


def space_yaml(plan: SweepPlan) -> bytes:
    """`sweep.yaml`: the resolved search space file that ran."""
    import yaml

    return yaml.safe_dump(plan.to_yaml(), sort_keys=False).encode("utf-8")


def experiment_trials(space: SearchSpace, storage_path: str, name: str) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """(ranked leaderboard, per-trial epoch histories) of an experiment as Tune stored it so far; an empty
    leaderboard when Tune has not saved any state yet."""
    from ray.tune import ExperimentAnalysis

    from exifray.leaderboard import trials_frame

    files = ExperimentFiles(storage_path, name)
    if not files.has_tune_state():
        return trials_frame(space, [], {}), {}
    # With an explicit filesystem Tune wants the path inside it (bucket/key), not the s3:// URI.
    analysis = ExperimentAnalysis(files.root, storage_filesystem=files.fs)
    best_val, histories = {}, {}
    for trial_id, frame in analysis.trial_dataframes.items():
        if schema.VAL_F1_MACRO in frame:
            values = frame[schema.VAL_F1_MACRO].dropna()
            if len(values):
                best_val[trial_id] = float(values.max())
        histories[trial_id] = epoch_rows(frame)
    return trials_frame(space, list(analysis.trials), best_val), histories


def epoch_rows(progress: pd.DataFrame) -> pd.DataFrame:
    """A trial's per-epoch reports (its `progress.csv`) without the final report."""
    if schema.FINAL_RESULT not in progress:
        return progress.reset_index(drop=True)
    final = progress[schema.FINAL_RESULT].astype("boolean").fillna(False).astype(bool)
    return progress[~final].reset_index(drop=True)


@dataclass
class Experiment:
    uri: str
    name: str
    space: SearchSpace
    frame: pd.DataFrame  # one row per trial (leaderboard.COLUMNS + label_mode), in Tune's ranking
    histories: dict[str, pd.DataFrame]  # trial id → per-epoch rows (training_iteration, val_f1_macro, ...)
    files: ExperimentFiles
    study: optuna.Study | None = None  # the Optuna study mirrored in optuna.journal (None when there is none yet)
    machine: MachineRecord | None = None  # machine_emissions.json: the nodes' machine-mode total (None: none yet)


def open_experiment(path: str) -> Experiment:
    """An experiment directory as Tune wrote it, finished or still running; clear errors when there is none."""
    import pandas as pd

    files = ExperimentFiles.at(path)
    if not files.exists():
        raise InputNotFoundError(f"no experiment at {path}: the directory does not exist")
    if not files.exists(SWEEP_FILE):
        raise InputNotFoundError(f"{path} is not an exifray experiment: it has no {SWEEP_FILE} "
                                 f"(written by `exifray sweep` when a sweep starts)")
    space = read_space(files)
    frame, histories = experiment_trials(space, files.storage_path, files.name)
    if frame.empty:
        raise InputNotFoundError(f"experiment {path} has no trials yet (Tune has not saved its state; try again "
                                 f"once the first trial has started)")
    settings = [checkpoint_settings(files, c) for c in frame["checkpoint"]]
    frame.insert(list(frame.columns).index("modality"), "label_mode", [s.get("label_mode") for s in settings])
    # A space that leaves image_size to the dataset: show the size the trial resolved and trained with.
    resolved = pd.array([s.get("image_size") for s in settings], dtype="Int64")
    visual = frame["modality"].isin(schema.IMAGE_MODALITIES)
    frame["image_size"] = frame["image_size"].where(frame["image_size"].notna() | ~visual, resolved)
    from exifray.machine_emissions import read_record

    return Experiment(files.uri, files.name, space, frame, histories, files, load_study(files), read_record(files))


def checkpoint_settings(files: ExperimentFiles, checkpoint: object) -> dict[str, Any]:
    """A trial's final `settings.json` (label mode, resolved image size, ...); empty for trials without one."""
    if not isinstance(checkpoint, str) or not checkpoint:
        return {}
    try:
        with files.fs.open_input_stream(f"{checkpoint}/{schema.SETTINGS_FILE}") as stream:
            return dict(json.loads(stream.readall()))
    except (FileNotFoundError, OSError):  # an intermediate checkpoint (the trial is still running) has no settings
        return {}


def test_predictions(files: ExperimentFiles, checkpoint: object) -> dict[str, np.ndarray] | None:
    """A trial's scored test split (`test_predictions.npz`: photo_ids, targets, probabilities); None for trials
    saved before it was kept, or without a final checkpoint."""
    import io

    import numpy as np

    if not isinstance(checkpoint, str) or not checkpoint:
        return None
    try:
        with files.fs.open_input_stream(f"{checkpoint}/{schema.TEST_PREDICTIONS_FILE}") as stream:
            data = stream.readall()
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            return {key: saved[key] for key in saved.files}
    except (FileNotFoundError, OSError):
        return None


def load_study(files: ExperimentFiles) -> optuna.Study | None:
    """The study in `optuna.journal`, copied into memory (the live file is never opened for writing)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if not files.exists(JOURNAL_FILE):
        return None
    with tempfile.TemporaryDirectory(prefix="exifray-journal-") as folder:  # read a copy: never lock the live file
        local = Path(folder) / JOURNAL_FILE
        local.write_bytes(files.read_bytes(JOURNAL_FILE))
        storage = JournalStorage(JournalFileBackend(str(local)))
        try:
            study = optuna.load_study(study_name=files.name, storage=storage)
        except KeyError:
            return None
        # Copy into memory: the temporary file goes away with this block.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        copy = optuna.create_study(directions=study.directions)
        copy.add_trials(study.trials)
        return copy
