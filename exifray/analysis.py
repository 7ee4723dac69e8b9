"""The comparisons a researcher asks of an experiment, as tables (pure: reading is `experiment.py`'s, writing
`report.py`'s).

    experiment = open_experiment("experiments/fusion")          # exifray.experiment; or s3://bucket/...
    analysis = analyse(experiment, metric="val_f1_macro", by="modality")
    write_analysis(analysis, "experiments/fusion/analysis", formats=("csv", "md", "html"))  # exifray.report

Works on a finished sweep and on one still running (it reads what Tune has written so far). Selection,
ranking and the Pareto front use a validation metric unless `metric` says otherwise; test columns are shown,
never used to choose.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from exifray import schema
from exifray.errors import ConfigError
from exifray.experiment import Experiment
from exifray.space import SearchSpace

if TYPE_CHECKING:
    import optuna
    from pandas._typing import Scalar

logger = logging.getLogger(__name__)

BY_CHOICES = ("modality", "backbone", "image_size")
# Metrics where lower is better; every other numeric column is maximised.
MIN_METRICS = frozenset({schema.VAL_LOSS, schema.EMISSIONS_KG, schema.ENERGY_KWH, schema.TRAIN_TIME_S,
                         schema.INFERENCE_MS, schema.PARAMS, schema.EPOCHS, schema.EPOCH_TIME_S})
PARETO_COST = schema.EMISSIONS_KG


# --- metric choice, Pareto front --------------------------------------------------------------------------

def metric_mode(metric: str) -> str:
    return "min" if metric in MIN_METRICS else "max"


def check_metric(frame: pd.DataFrame, metric: str) -> None:
    if metric not in frame.columns or not pd.api.types.is_numeric_dtype(frame[metric].dropna().infer_objects()):
        numeric = [c for c in frame.columns if c not in ("rank",) and pd.api.types.is_numeric_dtype(frame[c])]
        raise ConfigError(f"--metric {metric!r} is not a numeric leaderboard column; choose one of "
                          f"{', '.join(numeric)}")


def pareto_flags(score: Sequence[float], cost: Sequence[float]) -> list[bool]:
    """True where no other point has score >= and cost <= with one of them strict (NaN: never on the front)."""
    points = [(float(s), float(c)) for s, c in zip(score, cost, strict=True)]
    flags = []
    for i, (s, c) in enumerate(points):
        if math.isnan(s) or math.isnan(c):
            flags.append(False)
            continue
        dominated = any(j != i and not math.isnan(s2) and not math.isnan(c2) and s2 >= s and c2 <= c
                        and (s2 > s or c2 < c) for j, (s2, c2) in enumerate(points))
        flags.append(not dominated)
    return flags


def ranked(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Complete trials first by `metric`, then the rest (stopped, running, pending, errored) by status."""
    from exifray.leaderboard import order

    check_metric(frame, metric)
    return order(frame, metric, metric_mode(metric))


def with_pareto(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Adds `pareto` (F1 against CO2-eq, complete trials) and `f1_per_gram_co2` (the same F1 per gram)."""
    score_column = metric if metric_mode(metric) == "max" else schema.VAL_F1_MACRO
    complete = frame["status"] == schema.STATUS_COMPLETE
    score = pd.to_numeric(frame[score_column], errors="coerce").where(complete)
    cost = pd.to_numeric(frame[PARETO_COST], errors="coerce").where(complete)
    out = frame.copy()
    out["pareto"] = pareto_flags(score.to_numpy(float).tolist(), cost.to_numpy(float).tolist())
    grams = cost * 1000.0
    out["f1_per_gram_co2"] = (score / grams).where(grams > 0)
    position = list(out.columns).index("checkpoint")
    columns = [c for c in out.columns if c not in ("pareto", "f1_per_gram_co2")]
    columns[position:position] = ["pareto", "f1_per_gram_co2"]
    return out[columns]


SPEED_COLUMNS = ("trial_id", "modality", "backbone", "image_size", schema.INFERENCE_MS, schema.TEST_F1_MACRO,
                 schema.PARAMS)


def speed_front(frame: pd.DataFrame) -> pd.DataFrame:
    """The speed/accuracy front for picking a model to deploy: complete trials whose test macro F1 no faster trial
    matches (`inference_ms` per photo, as each trial measured it), fastest first."""
    complete = frame["status"] == schema.STATUS_COMPLETE
    score = pd.to_numeric(frame[schema.TEST_F1_MACRO], errors="coerce").where(complete)
    cost = pd.to_numeric(frame[schema.INFERENCE_MS], errors="coerce").where(complete)
    flags = pareto_flags(score.to_numpy(float).tolist(), cost.to_numpy(float).tolist())
    columns = [c for c in SPEED_COLUMNS if c in frame.columns]
    return frame.loc[flags, columns].sort_values(schema.INFERENCE_MS, kind="stable").reset_index(drop=True)


# --- comparison tables ------------------------------------------------------------------------------------

def best_row(rows: pd.DataFrame, metric: str) -> pd.Series | None:
    """The row with the best `metric` value (in its direction); None when no row has one."""
    rows = rows[pd.to_numeric(rows[metric], errors="coerce").notna()]
    if rows.empty:
        return None
    values = pd.to_numeric(rows[metric]).to_numpy(float)
    best = rows.iloc[int(values.argmax() if metric_mode(metric) == "max" else values.argmin())]
    assert isinstance(best, pd.Series)
    return best


def fusion_vs_image(frame: pd.DataFrame, metric: str, scored: Scored | None = None) -> pd.DataFrame:
    """The thesis' headline table: per backbone × image size × label mode, the best image-only and the best
    fusion trial (chosen by `metric`), their test macro F1 and its delta with its noise (a paired bootstrap over
    the test photos of both trials' kept predictions, `scored`: trial id → `test_predictions`; `within_noise`
    when the 95 % interval holds 0), the best EXIF-only trial's test F1 for that label mode, and the deltas in
    training time and emissions (fusion minus image)."""
    done = frame[frame["status"] == schema.STATUS_COMPLETE]
    columns = ["backbone", "image_size", "label_mode", "image_trials", "fusion_trials", "image_trial",
               "fusion_trial", "image_test_f1_macro", "fusion_test_f1_macro", "delta_test_f1_macro",
               "delta_low", "delta_high", "within_noise", "exif_only_test_f1_macro", "image_train_time_s",
               "fusion_train_time_s", "delta_train_time_s",
               "image_emissions_kg", "fusion_emissions_kg", "delta_emissions_kg"]
    visual = done[done["modality"].isin(schema.IMAGE_MODALITIES)]
    rows = []
    keys = visual[["backbone", "image_size", "label_mode"]].astype(object).drop_duplicates()
    for _, key in keys.sort_values(["backbone", "image_size"], key=lambda s: s.astype(str)).iterrows():
        cell = visual[_same(visual["backbone"], key["backbone"]) & _same(visual["image_size"], key["image_size"])
                      & _same(visual["label_mode"], key["label_mode"])]
        image = best_row(cell[cell["modality"] == "image"], metric)
        fusion = best_row(cell[cell["modality"] == "fusion"], metric)
        exif = best_row(done[(done["modality"] == "exif") & _same(done["label_mode"], key["label_mode"])], metric)
        row: dict[str, object] = {"backbone": key["backbone"], "image_size": key["image_size"],
                               "label_mode": key["label_mode"],
                               "image_trials": int((cell["modality"] == "image").sum()),
                               "fusion_trials": int((cell["modality"] == "fusion").sum()),
                               "image_trial": None if image is None else image["trial_id"],
                               "fusion_trial": None if fusion is None else fusion["trial_id"],
                               "exif_only_test_f1_macro": np.nan if exif is None else exif[schema.TEST_F1_MACRO]}
        for column, short in ((schema.TEST_F1_MACRO, "test_f1_macro"), (schema.TRAIN_TIME_S, "train_time_s"),
                              (schema.EMISSIONS_KG, "emissions_kg")):
            a = np.nan if image is None else float(image[column])
            b = np.nan if fusion is None else float(fusion[column])
            row[f"image_{short}"], row[f"fusion_{short}"], row[f"delta_{short}"] = a, b, b - a
        low, high = _delta_interval(image, fusion, scored)
        row["delta_low"], row["delta_high"] = low, high
        row["within_noise"] = None if math.isnan(low) else bool(low <= 0 <= high)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


Scored = Callable[[str], dict[str, np.ndarray] | None]


def _delta_interval(image: pd.Series | None, fusion: pd.Series | None, scored: Scored | None) -> tuple[float, float]:
    """The 95 % paired-bootstrap interval of test macro F1 (fusion − image); NaN when either trial's scored test
    split is missing or they were scored on different photos."""
    from exifray.metrics import macro_f1_difference_interval, outcomes

    if image is None or fusion is None or scored is None:
        return math.nan, math.nan
    a, b = scored(str(image["trial_id"])), scored(str(fusion["trial_id"]))
    if a is None or b is None or not np.array_equal(a["photo_ids"], b["photo_ids"]) or not len(a["photo_ids"]):
        return math.nan, math.nan
    multi = bool(image.get("label_mode") == "multi")
    return macro_f1_difference_interval(outcomes(a["targets"], a["probabilities"], multi),
                                        outcomes(b["targets"], b["probabilities"], multi))


def _same(series: pd.Series, value: Scalar) -> pd.Series:
    return series.isna() if pd.isna(value) else (series == value).fillna(False).astype(bool)


def grouped(frame: pd.DataFrame, by: str, metric: str) -> pd.DataFrame:
    """Per value of `by`: trials, complete, the best trial by `metric` with its test F1, mean metric, emissions."""
    rows = []
    for value, group in frame.groupby(frame[by].astype(object).where(frame[by].notna(), "(n/a)"), sort=True):
        done = group[group["status"] == schema.STATUS_COMPLETE]
        best = best_row(done, metric)
        rows.append({by: value, "trials": len(group), "complete": len(done),
                     "errored": int((group["status"] == schema.STATUS_ERROR).sum()),
                     f"best_{metric}": np.nan if best is None else float(best[metric]),
                     f"mean_{metric}": float(pd.to_numeric(done[metric], errors="coerce").mean()),
                     "best_trial": None if best is None else best["trial_id"],
                     "best_test_f1_macro": np.nan if best is None else float(best[schema.TEST_F1_MACRO]),
                     "mean_emissions_kg": float(pd.to_numeric(done[schema.EMISSIONS_KG], errors="coerce").mean())})
    return pd.DataFrame(rows)


def hyperparameter_effects(frame: pd.DataFrame, space: SearchSpace, metric: str, bins: int = 4) -> pd.DataFrame:
    """How `metric` depends on each searched hyperparameter: per value (numbers in quantile bins when there
    are more than `bins` distinct values), the complete trials' count, mean and best."""
    done = frame[frame["status"] == schema.STATUS_COMPLETE]
    score = pd.to_numeric(done[metric], errors="coerce")
    rows = []

    def add(name: str, keyed: pd.Series) -> None:
        for key, index in keyed.groupby(keyed, sort=False).groups.items():
            chosen = score.loc[index]
            rows.append({"hyperparameter": name, "value": key, "trials": int(chosen.notna().sum()),
                         f"mean_{metric}": float(chosen.mean()),
                         f"best_{metric}": float(chosen.max() if metric_mode(metric) == "max" else chosen.min())})

    for name in _searched_columns(space, frame):
        values = done[name]
        present = values[values.notna()]
        if present.empty:
            continue
        if name == "exif_tags":  # one row pair per tag: trials that used it against trials that did not
            sets = present.map(lambda v: set(str(v).split("+")))
            for tag in sorted(set().union(*sets), key=str):
                add(f"exif_tags has {tag}", sets.map(lambda s, t=tag: "with" if t in s else "without"))
            continue
        numeric = pd.api.types.is_numeric_dtype(present.infer_objects())
        if numeric and present.nunique() > bins:
            number = pd.to_numeric(present).astype(float)
            edges = np.unique(np.quantile(number, np.linspace(0, 1, bins + 1)))
            which = np.clip(np.searchsorted(edges, number, side="right") - 1, 0, len(edges) - 2)
            labels = [f"{edges[i]:.3g}–{edges[i + 1]:.3g}" for i in range(len(edges) - 1)]
            add(name, pd.Series([labels[i] for i in which], index=present.index).sort_values(
                key=lambda s: s.map(labels.index)))
        else:
            add(name, present.astype(str).sort_values(key=lambda s: s.map(
                lambda v: (0, float(v)) if _is_number(v) else (1, v))))
    return pd.DataFrame(rows, columns=["hyperparameter", "value", "trials", f"mean_{metric}", f"best_{metric}"])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _searched_columns(space: SearchSpace, frame: pd.DataFrame) -> list[str]:
    names = [p.name for p in space.params]
    if any(p.name.startswith("exif_tag_") for p in space.params) or "exif_tags" in names:
        names = [n for n in names if not n.startswith("exif_tag_")] + ["exif_tags"]
    return [n for n in dict.fromkeys(names) if n in frame.columns]


def optuna_importance(study: optuna.Study | None, space: SearchSpace) -> pd.DataFrame:
    """Optuna's PED-ANOVA importance (no scikit-learn needed) per objective, over the parameters every finished
    trial has (Optuna's
    rule for conditional spaces); `exif_tag_*` rows are the sweep's view of each tag's importance."""
    import optuna

    columns = ["objective", "hyperparameter", "importance"]
    if study is None:
        return pd.DataFrame(columns=columns)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return pd.DataFrame(columns=columns)
    rows = []
    for index, metric in enumerate(space.metrics):
        target = (lambda t, i=index: t.values[i]) if len(space.metrics) > 1 else None
        try:
            importances = optuna.importance.get_param_importances(
                study, target=target, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        except (RuntimeError, ValueError) as exc:  # e.g. no parameter shared by all trials
            logger.warning("Optuna importance for %s not computed: %s", metric, exc)
            continue
        rows += [{"objective": metric, "hyperparameter": k, "importance": float(v)} for k, v in importances.items()]
    return pd.DataFrame(rows, columns=columns)


# --- the whole analysis, written in every format -----------------------------------------------------------

@dataclass
class Analysis:
    experiment: Experiment
    metric: str
    by: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # name → table, "leaderboard" first
    importance: pd.DataFrame | None = None  # permutation importance (exifray importance), when given


def _scored(experiment: Experiment) -> Scored:
    from exifray.experiment import test_predictions

    checkpoints = dict(zip(experiment.frame["trial_id"], experiment.frame["checkpoint"], strict=True))
    return lambda trial_id: test_predictions(experiment.files, checkpoints.get(trial_id))


def analyse(experiment: Experiment, metric: str | None = None, by: str = "modality", top: int | None = None,
            importance: pd.DataFrame | None = None) -> Analysis:
    if by not in BY_CHOICES:
        raise ConfigError(f"--by must be one of {', '.join(BY_CHOICES)}, got {by!r}")
    if top is not None and top < 1:
        raise ConfigError(f"--top must be >= 1, got {top!r}")
    metric = metric or experiment.space.metrics[0]
    board = with_pareto(ranked(experiment.frame, metric), metric)
    tables = {
        "leaderboard": board if top is None else board.head(top),
        "pareto": board[board["pareto"]].sort_values(PARETO_COST).reset_index(drop=True),
        "speed_accuracy": speed_front(board),
        "fusion_vs_image": fusion_vs_image(board, metric, _scored(experiment)),
        f"by_{by}": grouped(board, by, metric),
        "hyperparameters": hyperparameter_effects(board, experiment.space, metric),
        "optuna_importance": optuna_importance(experiment.study, experiment.space),
    }
    return Analysis(experiment, metric, by, tables, importance)


def format_summary(analysis: Analysis, k: int = 10) -> str:
    from exifray.leaderboard import format_top

    board = analysis.tables["leaderboard"]
    head = f"{analysis.experiment.name}: {len(analysis.experiment.frame)} trials " + ", ".join(
        f"{n} {s}" for s, n in analysis.experiment.frame["status"].value_counts().items())
    front = int(board["pareto"].sum())
    from exifray.machine_emissions import describe

    return (f"{head}; ranked by {analysis.metric} ({metric_mode(analysis.metric)}); {front} on the F1/CO2 "
            f"Pareto front\n{describe(analysis.experiment.machine)}\n" + format_top(board, k))

