"""Writing an analysis: every table in CSV/Markdown/JSON/Parquet, and the self-contained HTML report (tables and
inline SVG plots by matplotlib, no network).

    write_analysis(analyse(open_experiment("experiments/demo")), "experiments/demo/analysis", ("csv", "html"))

Sections: the leaderboard, the F1/CO2 Pareto scatter, fusion vs image (table and delta bars per backbone
and image size), validation-F1 curves of the top trials, the per-hyperparameter effects, Optuna's
hyperparameter importance and the EXIF tag importance chart.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from exifray import schema
from exifray.analysis import PARETO_COST, Analysis, metric_mode
from exifray.errors import ConfigError, InputNotFoundError
from exifray.experiment import ExperimentFiles
from exifray.machine_emissions import describe
from exifray.report_charts import category_order, figure, figure_setup, plain_ticks, svg

if TYPE_CHECKING:
    pass

FORMATS = ("csv", "md", "html", "json", "parquet")

MODALITY_COLOURS = {"exif": "#d95f02", "image": "#1b9e77", "fusion": "#7570b3"}
# The leaderboard's leading columns after rank, status, modality and the ranking metric.
LEAD_METRICS = (schema.VAL_F1_MACRO, schema.TEST_F1_MACRO, schema.EMISSIONS_KG, "f1_per_gram_co2", "pareto")
TOP_CURVES = 8
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0}th,td{border:1px solid #ddd;padding:2px 6px}
th{background:#f3f3f3;position:sticky;top:0}tr:nth-child(even){background:#fafafa}
.scroll{overflow-x:auto;max-height:600px}.note{color:#555;font-size:13px}figure{margin:0.5em 0}
"""


def _table(frame: pd.DataFrame, table_id: str, limit: int = 28) -> str:
    """A table as a person reads it (`_displayed`): grams, a few digits, no empty columns, long tag lists
    shortened to their first items (the whole list on hover)."""
    shown = _displayed(frame)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = "".join("<tr>" + "".join(_cell(column, value, limit) for column, value in zip(shown.columns, row,
                                                                                          strict=True)) + "</tr>"
                   for row in shown.itertuples(index=False, name=None))
    return (f'<div class="scroll"><table id="{html.escape(table_id)}" class="dataframe"><thead><tr>{head}</tr>'
            f"</thead><tbody>{rows}</tbody></table></div>")


def _displayed(frame: pd.DataFrame) -> pd.DataFrame:
    """One unit of CO2-eq in the whole report, grams (the CSV keeps the leaderboard's kg columns): `*_kg` columns
    become `*_g`; a column with no value in any row is left out (`fine_tune_layers` of a sweep that never
    fine-tunes)."""
    shown = frame.copy()
    renamed = {}
    for column in shown.columns:
        if str(column).endswith("_kg") and pd.api.types.is_numeric_dtype(shown[column]):
            shown[column] = shown[column] * 1000
            renamed[column] = str(column)[: -len("_kg")] + "_g"
    shown = shown.rename(columns=renamed)
    empty = [c for c in shown.columns if shown[c].isna().all() or shown[c].astype(str).str.strip().eq("").all()]
    return shown.drop(columns=empty)


def _text(column: str, value: object) -> str:
    """A value as the report prints it: scores to 3 decimals, seconds and milliseconds to 1, others to 3
    significant digits."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, float | np.floating):
        return str(value)
    name = column.lower()
    if name.startswith("delta_") and ("f1" in name or name in ("delta_low", "delta_high")):
        return f"{value:+.3f}"
    if "_per_" not in name and any(key in name for key in ("f1", "accuracy", "loss", "importance", "drop", "share")):
        return f"{value:.3f}"
    if name.endswith(("_s", "_ms")):
        return f"{value:.1f}"
    return f"{value:.3g}"


def _cell(column: str, value: object, limit: int) -> str:
    """One table cell: blanks for missing values, the value as `_text` prints it, and a long value shortened at
    a separator or a word, never inside one (the whole value on hover)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "<td></td>"
    text = _text(column, value)
    if len(text) <= limit:
        return f"<td>{html.escape(text)}</td>"
    separator = "+" if "+" in text and "," not in text else ","  # tag lists read "ExposureTime+FNumber+ISO"
    items = [item.strip() for item in text.split(separator)]
    if len(items) == 2:  # two long tag names: both whole, the cell may wrap at the separator
        return f"<td>{html.escape(items[0] + separator)}<wbr>{html.escape(items[1])}</td>"
    if len(items) > 2:
        short = f"{separator.join(items[:2]) if separator == '+' else ', '.join(items[:2])} (+{len(items) - 2} more)"
    else:
        short = text[:limit].rsplit(" ", 1)[0].rstrip(",+") + " …"
    return f'<td title="{html.escape(text)}">{html.escape(short)}</td>'


def _leaderboard_table(frame: pd.DataFrame, metric: str, limit: int = 28) -> str:
    """The leaderboard as a person reads it: rank, status, modality, the metrics and the Pareto flag first, then
    the trial and its settings."""
    lead = list(dict.fromkeys(c for c in ("rank", "status", "modality", metric, *LEAD_METRICS) if c in frame.columns))
    return _table(frame[lead + [c for c in frame.columns if c not in lead]], "leaderboard", limit)


def _pareto_plot(analysis: Analysis) -> str:
    board = analysis.tables["leaderboard"]
    score = analysis.metric if metric_mode(analysis.metric) == "max" else schema.VAL_F1_MACRO
    done = board[(board["status"] == schema.STATUS_COMPLETE) & board[PARETO_COST].notna() & board[score].notna()]
    if done.empty:
        return '<p class="note">No complete trial with emissions yet.</p>'
    fig, ax = figure()
    for modality, rows in done.groupby("modality"):
        ax.scatter(rows[PARETO_COST] * 1000, rows[score], label=str(modality), alpha=0.8,
                   color=MODALITY_COLOURS.get(str(modality), "#666"))
    front = done[done["pareto"]].sort_values(PARETO_COST)
    ax.step(front[PARETO_COST] * 1000, front[score], where="post", color="black", linewidth=1,
            label="Pareto front")
    ax.set_xscale("log")
    plain_ticks(ax.xaxis, log=True)
    ax.set_xlabel("CO2-eq per trial (g, CodeCarbon)")
    ax.set_ylabel(score)
    ax.set_title(f"{score} against emissions ({len(front)} of {len(done)} trials on the front)")
    ax.legend()
    return svg(fig)


def _speed_plot(analysis: Analysis) -> str:
    board = analysis.tables["leaderboard"]
    done = board[(board["status"] == schema.STATUS_COMPLETE) & board[schema.INFERENCE_MS].notna()
                 & board[schema.TEST_F1_MACRO].notna()]
    if done.empty:
        return '<p class="note">No complete trial with a test F1 and a latency yet.</p>'
    fig, ax = figure()
    for modality, rows in done.groupby("modality"):
        ax.scatter(rows[schema.INFERENCE_MS], rows[schema.TEST_F1_MACRO], label=str(modality), alpha=0.8,
                   color=MODALITY_COLOURS.get(str(modality), "#666"))
    front = analysis.tables["speed_accuracy"]
    ax.step(front[schema.INFERENCE_MS], front[schema.TEST_F1_MACRO], where="post", color="black", linewidth=1,
            label="speed/accuracy front")
    ax.set_xscale("log")
    plain_ticks(ax.xaxis, log=True)
    ax.set_xlabel("inference per photo (ms, batched, as each trial measured it)")
    ax.set_ylabel(schema.TEST_F1_MACRO)
    ax.set_title(f"test macro F1 against latency ({len(front)} of {len(done)} trials on the front)")
    ax.legend()
    return svg(fig)


def _delta_plot(analysis: Analysis) -> str:
    """Best fusion − best image-only test macro F1 per backbone × image size, with its 95 % paired-bootstrap
    interval; a difference whose interval holds 0 is drawn grey and said to be within noise. The axis spans at
    least ±0.05, so a negligible difference looks negligible."""
    table = analysis.tables["fusion_vs_image"].dropna(subset=["delta_test_f1_macro"]).reset_index(drop=True)
    if table.empty:
        return '<p class="note">No backbone × image size has both a complete image-only and a fusion trial.</p>'
    fig, ax = figure(6.4, 0.9 + 0.45 * len(table))
    labels = [f"{row['backbone']} {row['image_size']}px {row['label_mode'] or ''}".strip()
              for _, row in table.iterrows()]
    deltas = table["delta_test_f1_macro"].to_numpy(float)
    low = table["delta_low"].to_numpy(float)
    high = table["delta_high"].to_numpy(float)
    known = ~np.isnan(low)
    errors = np.vstack([np.where(known, deltas - low, 0), np.where(known, high - deltas, 0)])
    noise = table["within_noise"].fillna(False).astype(bool).to_numpy()
    colours = ["#999999" if quiet else ("#1b9e77" if d >= 0 else "#d95f02") for d, quiet in zip(deltas, noise,
                                                                                             strict=True)]
    ax.barh(labels, deltas, xerr=errors, color=colours, capsize=3, ecolor="#333333")
    ax.axvline(0, color="black", linewidth=0.8)
    span = max(0.05, 1.15 * float(np.nanmax(np.abs(np.concatenate([deltas, low[known], high[known]])))))
    ax.set_xlim(-span, span)
    plain_ticks(ax.xaxis, log=False)
    ax.set_xlabel("test macro F1: best fusion − best image-only (whiskers: 95 % bootstrap)")
    ax.invert_yaxis()
    return svg(fig)


def _delta_note(analysis: Analysis) -> str:
    table = analysis.tables["fusion_vs_image"].dropna(subset=["delta_test_f1_macro"])
    if table.empty:
        return ""
    measured = table["within_noise"].notna()
    quiet = int(table.loc[measured, "within_noise"].astype(bool).sum())
    text = (f"Whiskers and <code>delta_low</code>/<code>delta_high</code>: a 95 % paired bootstrap over the test "
            f"photos of both trials' predictions (1,000 resamples). {quiet} of {int(measured.sum())} differences are "
            "within noise (the interval holds 0; grey bars): those say nothing about fusion against image only.")
    if not measured.all():
        text += f" {int((~measured).sum())} without an interval: a trial saved before test predictions were kept."
    return f'<p class="note" id="fusion-noise">{text}</p>'


def _curves_plot(analysis: Analysis) -> str:
    board = analysis.tables["leaderboard"]
    histories = analysis.experiment.histories
    top = [t for t in board["trial_id"] if t in histories and schema.VAL_F1_MACRO in histories[t]][:TOP_CURVES]
    if not top:
        return '<p class="note">No epoch reported yet.</p>'
    fig, ax = figure()
    for trial_id in top:
        history = histories[trial_id]
        row = board[board["trial_id"] == trial_id].iloc[0]
        ax.plot(history["training_iteration"], history[schema.VAL_F1_MACRO], marker=".",
                label=f"#{row['rank']} {trial_id} ({row['modality']})")
    ax.set_xlabel("epoch (Tune training_iteration)")
    ax.set_ylabel(schema.VAL_F1_MACRO)
    ax.legend(fontsize=8)
    return svg(fig)


def _effects_plot(analysis: Analysis) -> str:
    board = analysis.tables["leaderboard"]
    done = board[board["status"] == schema.STATUS_COMPLETE]
    names = [n for n in dict.fromkeys(analysis.tables["hyperparameters"]["hyperparameter"])
             if not n.startswith("exif_tags has")]
    if done.empty or not names:
        return ""
    import matplotlib.pyplot as plt

    figure_setup()
    columns = min(len(names), 4)
    fig, axes = plt.subplots((len(names) + columns - 1) // columns, columns,
                             figsize=(3.2 * columns, 2.8 * ((len(names) + columns - 1) // columns)), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):  # the grid may have spare axes
        values = done[name]
        score = pd.to_numeric(done[analysis.metric], errors="coerce")
        if pd.api.types.is_numeric_dtype(values.dropna().infer_objects()) and values.nunique() > 4:
            ax.scatter(values.astype(float), score, s=12, alpha=0.8)
            if name == "learning_rate":
                ax.set_xscale("log")
            plain_ticks(ax.xaxis, log=name == "learning_rate")
        else:
            categories = sorted(values.dropna().astype(str).unique(), key=category_order)
            positions = values.astype(str).map({c: i for i, c in enumerate(categories)})
            jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(values))
            ax.scatter(positions + jitter, score, s=12, alpha=0.8)
            ax.set_xticks(range(len(categories)), categories, rotation=30, fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(analysis.metric, fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.tight_layout()
    return svg(fig)


def importance_chart(values: pd.Series, errors: pd.Series | None, xlabel: str) -> str:
    fig, ax = figure(6.4, 0.6 + 0.3 * len(values))
    ax.barh(list(values.index), values.to_numpy(float),
            xerr=None if errors is None else errors.to_numpy(float), color="#7570b3")
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    return svg(fig)


def _optuna_section(analysis: Analysis) -> str:
    table = analysis.tables["optuna_importance"]
    if table.empty:
        return '<p class="note">Not computed: it needs the study journal and at least two complete trials.</p>'
    parts = []
    for objective, rows in table.groupby("objective", sort=False):
        series = rows.set_index("hyperparameter")["importance"].head(20)
        parts.append(importance_chart(series, None, f"Optuna PED-ANOVA importance for {objective}"))
    return "".join(parts) + _table(table, "optuna-importance")


def _tag_section(analysis: Analysis) -> str:
    if analysis.importance is not None and not analysis.importance.empty:
        parts = []
        for model, rows in analysis.importance.groupby("model", sort=False):
            ordered = rows.sort_values("mean_drop", ascending=False).set_index("tag")
            parts.append(f"<h3>{html.escape(str(model))}</h3>")
            parts.append(importance_chart(ordered["mean_drop"], ordered["std_drop"],
                                          "test macro-F1 drop when the tag is permuted (mean ± std)"))
        return "".join(parts) + _table(analysis.importance, "tag-importance")
    flags = analysis.tables["optuna_importance"]
    flags = flags[flags["hyperparameter"].str.startswith("exif_tag_")]
    note = ('<p class="note">Permutation importance not given: run <code>exifray importance CHECKPOINT --data '
            'DATASET --out DIR</code> and pass <code>--importance DIR/importance.csv</code>.')
    if flags.empty:
        return note + "</p>"
    series = flags.set_index(flags["hyperparameter"].str.removeprefix("exif_tag_"))["importance"]
    return (note + " Shown instead: Optuna's importance of each tag's on/off flag in the sweep.</p>"
            + importance_chart(series, None, "Optuna importance of including the tag"))


def render_report(analysis: Analysis, refresh_s: int | None = None) -> str:
    """The self-contained HTML report; `refresh_s`: it reloads itself that often (a live report)."""
    experiment = analysis.experiment
    counts = ", ".join(f"{n} {s}" for s, n in experiment.frame["status"].value_counts().items())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        ("Leaderboard", f'<p class="note">Ranked by {html.escape(analysis.metric)} '
                        f'({metric_mode(analysis.metric)}); test columns are shown, never used to choose. '
                        "<code>pareto</code>: on the F1/CO2-eq front; <code>f1_per_gram_co2</code>: that F1 per "
                        "gram CO2-eq. Hover over a shortened tag list for all of it.</p>"
                        + _leaderboard_table(analysis.tables["leaderboard"], analysis.metric)),
        ("F1 against CO2-eq", f'<p class="note" id="machine-total">{html.escape(describe(experiment.machine))}. '
                              "Each trial is measured in CodeCarbon's process mode (its own share of CPU and RAM); "
                              "the machine total is one machine-mode tracker per node for the whole sweep.</p>"
         + _pareto_plot(analysis) + _table(analysis.tables["pareto"], "pareto")),
        ("Speed against accuracy", '<p class="note">For picking a model to deploy: <code>exifray export-best '
                                   '--max-inference-ms X</code> re-measures the best candidates on the machine it '
                                   'runs on.</p>' + _speed_plot(analysis)
         + _table(analysis.tables["speed_accuracy"], "speed-accuracy")),
        ("Fusion against image only", _delta_note(analysis) + _delta_plot(analysis)
         + _table(analysis.tables["fusion_vs_image"], "fusion-vs-image")),
        ("Validation F1 of the top trials", _curves_plot(analysis)),
        (f"By {analysis.by}", _table(analysis.tables[f"by_{analysis.by}"], f"by-{analysis.by}")),
        ("Hyperparameters", _effects_plot(analysis) + _table(analysis.tables["hyperparameters"], "hyperparameters")),
        ("Optuna hyperparameter importance", _optuna_section(analysis)),
        ("EXIF tag importance", _tag_section(analysis)),
    ]
    body = "".join(f'<section id="{title.lower().replace(" ", "-")}"><h2>{html.escape(title)}</h2>{content}'
                   f"</section>" for title, content in sections)
    live = (f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else "")
    watching = (f'<p class="note" id="live">Live: this page reloads every {refresh_s} s while the sweep runs '
                f"(<code>exifray leaderboard --watch</code>).</p>" if refresh_s else "")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{live}<title>exifray report: '
            f"{html.escape(experiment.name)}</title><style>{_CSS}</style></head><body>"
            f"<h1>exifray experiment <code>{html.escape(experiment.name)}</code></h1>{watching}"
            f'<p class="note">{html.escape(experiment.uri)} · {len(experiment.frame)} trials ({counts})</p>{body}\n'
            f'<footer class="note">written {stamp}</footer>\n</body></html>\n')


# --- writing tables and the report --------------------------------------------------------------------------

def table_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return frame.to_csv(index=False).encode("utf-8")
    if fmt == "md":
        return (frame.astype(object).where(frame.notna(), "").to_markdown(index=False, floatfmt=".6g") + "\n"
                ).encode("utf-8")
    if fmt == "json":
        return (frame.to_json(orient="records", indent=1, double_precision=15) + "\n").encode("utf-8")
    if fmt == "parquet":
        import io

        buffer = io.BytesIO()
        frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object}).to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise ConfigError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"--format {text!r}: unknown {', '.join(unknown) or '(empty)'}; choose from "
                          f"{', '.join(FORMATS)}")
    return formats


def write_analysis(analysis: Analysis, out: str, formats: Sequence[str], refresh_s: int | None = None) -> list[str]:
    """Every table in every format (html: one self-contained `report.html`); returns the paths written.

    `out` is a local folder or a folder on the experiment's filesystem (e.g. `s3://bucket/exp/analysis`).
    `refresh_s`: the report reloads itself that often (`leaderboard --watch` while the sweep runs).
    """
    target = ExperimentFiles.at(out)
    written = []
    for fmt in formats:
        if fmt == "html":
            target.write_bytes("report.html", render_report(analysis, refresh_s).encode("utf-8"))
            written.append(target.path("report.html"))
            continue
        for table_name, frame in analysis.tables.items():
            filename = f"{table_name}.{fmt}"
            target.write_bytes(filename, table_bytes(frame, fmt))
            written.append(target.path(filename))
    return written


def read_importance(paths: Sequence[str]) -> pd.DataFrame | None:
    frames = []
    for path in paths:
        try:
            frames.append(pd.read_csv(path))
        except FileNotFoundError:
            raise InputNotFoundError(f"--importance file does not exist: {path}") from None
    if not frames:
        return None
    frame = pd.concat(frames, ignore_index=True)
    missing = {"tag", "mean_drop", "std_drop", "model"} - set(frame.columns)
    if missing:
        raise ConfigError(f"--importance files must come from `exifray importance`; missing columns {sorted(missing)}")
    return frame
