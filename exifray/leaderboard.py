"""Trials → a ranked table with one row per trial (errored and stopped trials included, never dropped).

    rows = [trial_row(trial_id, status, settings, result, error=..., checkpoint=...) for ...]
    frame = rank(rows, metric="val_f1_macro", mode="max")

The sweep refreshes `leaderboard.csv` with these rows every time a trial finishes. Ranking orders by a
validation metric: the test columns are shown, never used to choose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from exifray import schema

if TYPE_CHECKING:
    import pandas as pd
    from ray.tune.experiment import Trial

    from exifray.space import SearchSpace

SETTING_COLUMNS: Final = ("modality", "backbone", "image_size", "fine_tune_layers", "exif_tags", "fusion_width",
                          "learning_rate", "batch_size", "dropout")
METRIC_COLUMNS: Final = (schema.VAL_F1_MACRO, schema.VAL_LOSS, schema.TEST_F1_MACRO, schema.TEST_F1_MICRO,
                         schema.TEST_ACCURACY, schema.EMISSIONS_KG, schema.ENERGY_KWH, schema.TRAIN_TIME_S,
                         schema.EPOCHS, schema.PARAMS, schema.INFERENCE_MS, schema.FEATURE_BUILD_S,
                         schema.FEATURE_BUILD_KG)
TEXT_COLUMNS: Final = (schema.FEATURE_CACHE, schema.POWER_SOURCE, schema.DATA_SOURCE)  # cache: hit / built / off / n.a.
COLUMNS: Final = ("rank", "trial_id", "status", *SETTING_COLUMNS, *METRIC_COLUMNS, *TEXT_COLUMNS, "checkpoint",
                  "error")
INTEGER_COLUMNS: Final = ("image_size", "fine_tune_layers", "fusion_width", "batch_size", schema.EPOCHS,
                          schema.PARAMS)
_STATUS_ORDER: Final = {schema.STATUS_COMPLETE: 0, schema.STATUS_STOPPED: 1, schema.STATUS_RUNNING: 2,
                        schema.STATUS_PENDING: 3, schema.STATUS_ERROR: 4}


def readable_tags(tags: Sequence[str] | str | None) -> str | None:
    if tags is None:
        return None
    return tags if isinstance(tags, str) else "+".join(tags)


def trial_row(trial_id: str, status: str, settings: Mapping[str, Any], result: Mapping[str, Any] | None, *,
              best_val: float | None = None, checkpoint: str | None = None, error: str | None = None
              ) -> dict[str, object]:
    """One leaderboard row. Settings a trial's modality does not use are left empty."""
    result = result or {}
    modality = settings.get("modality", "fusion")
    row: dict[str, object] = {"trial_id": trial_id, "status": status}
    for name in SETTING_COLUMNS:
        used = modality in schema.applies_to(name)
        value = settings.get(name) if used else None
        row[name] = readable_tags(value) if name == "exif_tags" else value
    for name in METRIC_COLUMNS:
        row[name] = _number(result.get(name))
    # A complete trial reports the validation F1 of the epoch whose weights it kept (lowest val loss); a
    # trial stopped early or still running has no such report, so it shows its best epoch so far.
    if best_val is not None and status != schema.STATUS_COMPLETE:
        row[schema.VAL_F1_MACRO] = best_val
    if row[schema.EPOCHS] is None and result.get(schema.EPOCH) is not None:
        row[schema.EPOCHS] = _number(result.get(schema.EPOCH))
    for name in TEXT_COLUMNS:
        row[name] = result.get(name) if isinstance(result.get(name), str) else None
    row["checkpoint"] = checkpoint
    row["error"] = error
    return row


def _number(value: object) -> float | int | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if isinstance(value, float) and not math.isfinite(value) else value


def rank(rows: Sequence[Mapping[str, Any]], metric: str = schema.VAL_F1_MACRO, mode: str = "max") -> pd.DataFrame:
    """A pandas DataFrame in COLUMNS order: finished trials by `metric` (best first), then the rest by status."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=[c for c in COLUMNS if c != "rank"])
    for column in set(METRIC_COLUMNS) - set(INTEGER_COLUMNS):  # numbers even when no trial has one (NaN, not None)
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column in INTEGER_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    return order(frame, metric, mode)


def order(frame: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """`frame` (any leaderboard columns) re-ranked: finished trials by `metric`, then the rest by status; the
    `rank` column renumbered."""
    import pandas as pd

    out = frame.drop(columns=["rank"], errors="ignore")
    key = pd.to_numeric(out[metric], errors="coerce") if metric in out else pd.Series(math.nan, index=out.index)
    status = out["status"].map(_STATUS_ORDER).fillna(5)
    out = out.assign(_status=status, _key=-key if mode == "max" else key)
    out = out.sort_values(["_status", "_key", "trial_id"], na_position="last", kind="stable")
    out = out.drop(columns=["_status", "_key"]).reset_index(drop=True)
    out.insert(0, "rank", range(1, len(out) + 1))
    return out


def format_top(frame: pd.DataFrame, k: int = 10) -> str:
    """A compact plain-text table of the top `k` rows for terminals and job logs."""
    shown = ["rank", "status", "modality", "backbone", "image_size", "exif_tags", schema.VAL_F1_MACRO,
             schema.TEST_F1_MACRO, schema.EMISSIONS_KG, schema.TRAIN_TIME_S]
    top = frame[shown].head(k).copy()
    for column in (schema.VAL_F1_MACRO, schema.TEST_F1_MACRO):
        top[column] = top[column].map(lambda v: "" if v is None or v != v else f"{v:.3f}")
    top[schema.EMISSIONS_KG] = top[schema.EMISSIONS_KG].map(grams)
    top[schema.TRAIN_TIME_S] = top[schema.TRAIN_TIME_S].map(lambda v: "" if v is None or v != v else f"{v:.0f}")
    top["exif_tags"] = top["exif_tags"].map(lambda v: "" if not isinstance(v, str) else
                                            (v if len(v) <= 40 else v[:37] + "..."))
    top = top.rename(columns={schema.EMISSIONS_KG: "co2_eq_g"})  # grams, as the report and the summary say it
    return top.astype(object).where(top.notna(), "").to_string(index=False)


def grams(kg: object) -> str:
    """CO2-eq in grams, 3 significant digits (what every human-readable output uses; the files keep kg)."""
    return "" if not isinstance(kg, int | float) or kg != kg else f"{kg * 1000:.3g}"


# --- Tune's trial objects → rows ----------------------------------------------------------------------------

def trial_status(trial: Trial) -> str:
    """A Tune trial's leaderboard status: complete only when its final report (with test metrics) arrived."""
    if trial.status == "ERROR":
        return schema.STATUS_ERROR
    if trial.status == "TERMINATED":
        return schema.STATUS_COMPLETE if schema.is_final(trial.last_result) else schema.STATUS_STOPPED
    return schema.STATUS_RUNNING if trial.status == "RUNNING" else schema.STATUS_PENDING


def error_summary(trial: Trial) -> str | None:
    """The last line of an errored trial's exception, with its type; None for other trials."""
    if trial.status != "ERROR":
        return None
    try:
        error = trial.get_pickled_error()
    except Exception as exc:  # the error file may be unreadable on remote storage; say so rather than hide it
        return f"(error details unreadable: {exc})"
    cause = getattr(error, "cause", None) or error
    if cause is None:
        text = trial.get_error() or "unknown error"
        return str(text).strip().splitlines()[-1]
    message = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {message[-1] if message else ''}"[:500]


def trials_frame(space: SearchSpace, trials: Sequence[Trial], best_val: Mapping[str, float],
                 ended: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Tune trials as a ranked leaderboard (validation macro F1, best first); `best_val` is each trial's best
    epoch so far, shown for trials that have not finished; `ended` overrides the status of trials known to have
    ended (a callback learns it before Tune updates the trial)."""
    rows = []
    for trial in trials:
        settings = space.trial_settings({**space.fixed, **(trial.config or {})})
        checkpoint = trial.checkpoint.path if trial.checkpoint is not None else None
        status = (ended or {}).get(trial.trial_id) or trial_status(trial)
        rows.append(trial_row(trial.trial_id, status, settings, trial.last_result,
                              best_val=best_val.get(trial.trial_id), checkpoint=checkpoint,
                              error=error_summary(trial)))
    return rank(rows, schema.VAL_F1_MACRO, "max")
