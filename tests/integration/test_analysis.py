"""`exifray leaderboard`, the HTML report in headless Chromium, export-best bundles and permutation importance,
on a real smoke sweep (Ray Tune + Optuna, tiny Keras models)."""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from exifray.cli import main
from exifray.errors import InputNotFoundError
from exifray.experiment import open_experiment
from exifray.space_file import parse_sweep
from exifray.sweep import run_sweep

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def experiment(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six trials: image, fusion and EXIF-only at two learning rates each, one after another on one warm worker."""
    space = parse_sweep({
        "name": "board", "seed": 2, "max_concurrent": 1, "scheduler": "none", "resources": {"cpus": 1},
        "fixed": {"backbone": "TestTinyCNN", "epochs": 2, "batch_size": 32,
                  "exif_tags": ["ExposureTime", "FNumber", "ISO", "Flash"], "fusion_width": 8},
        "params": {"modality": {"grid": ["image", "fusion", "exif"]}, "learning_rate": {"grid": [0.002, 0.004]}},
    })
    storage = tmp_path_factory.mktemp("board")
    result = run_sweep(space, small_dataset, storage_path=str(storage))
    assert set(result.leaderboard["status"]) == {"complete"}
    return storage / "board"


class _Tables(HTMLParser):
    """Rows of every <table id=...> and the number of <svg> elements in an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.svgs = 0
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "svg":
            self.svgs += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Tables:
    parser = _Tables()
    parser.feed(text)
    return parser


def test_every_format_has_one_row_per_trial_and_the_same_numbers(experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "analysis"
    assert main(["leaderboard", str(experiment), "--format", "csv,md,html,json,parquet", "--out", str(out)]) == 0
    csv = pd.read_csv(out / "leaderboard.csv")
    json_rows = pd.DataFrame(json.loads((out / "leaderboard.json").read_text()))
    parquet = pd.read_parquet(out / "leaderboard.parquet")
    markdown = pd.read_csv(io.StringIO("\n".join(
        line.strip().strip("|") for i, line in enumerate((out / "leaderboard.md").read_text().splitlines())
        if i != 1)), sep="|", skipinitialspace=True)
    markdown.columns = [c.strip() for c in markdown.columns]
    html_rows = _parse((out / "report.html").read_text()).tables["leaderboard"]
    html = pd.DataFrame(html_rows[1:], columns=html_rows[0])
    assert len(csv) == len(json_rows) == len(parquet) == len(markdown) == len(html) == 6
    assert list(csv["trial_id"]) == list(json_rows["trial_id"]) == list(parquet["trial_id"]) == list(html["trial_id"])
    assert list(csv["rank"]) == list(range(1, 7)) and csv["val_f1_macro"].is_monotonic_decreasing
    for column in ("val_f1_macro", "test_f1_macro", "emissions_kg", "f1_per_gram_co2", "learning_rate"):
        expected = csv[column].astype(float)
        for other in (json_rows, parquet):
            assert other[column].astype(float).tolist() == pytest.approx(expected.tolist(), rel=1e-12)
        assert pd.to_numeric(markdown[column]).tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    # the report prints what a person reads: scores to 3 decimals, CO2-eq in grams to 3 significant digits
    for column, shown, digits in (("val_f1_macro", "val_f1_macro", "{:.3f}"), ("test_f1_macro", "test_f1_macro",
                                  "{:.3f}"), ("f1_per_gram_co2", "f1_per_gram_co2", "{:.3g}")):
        assert html[shown].tolist() == [digits.format(v) for v in csv[column]]
    assert html["emissions_g"].tolist() == [f"{v * 1000:.3g}" for v in csv["emissions_kg"]]
    assert "emissions_kg" not in html.columns
    assert csv["pareto"].tolist() == json_rows["pareto"].tolist() == parquet["pareto"].tolist()
    assert csv["pareto"].any() and (csv["emissions_kg"] > 0).all()
    assert (csv["f1_per_gram_co2"] - csv["val_f1_macro"] / (csv["emissions_kg"] * 1000)).abs().max() < 1e-9
    assert set(csv["modality"]) == {"image", "fusion", "exif"} and set(csv["label_mode"]) == {"single"}
    assert csv.loc[csv["modality"] == "exif", "backbone"].isna().all()  # unused settings stay empty
    for table in ("pareto", "speed_accuracy", "fusion_vs_image", "by_modality", "hyperparameters",
                  "optuna_importance"):
        for fmt in ("csv", "md", "json", "parquet"):
            assert (out / f"{table}.{fmt}").stat().st_size > 0

    headline = pd.read_csv(out / "fusion_vs_image.csv").iloc[0]
    best = {m: rows.sort_values("val_f1_macro").iloc[-1] for m, rows in csv.groupby("modality")}
    assert headline["image_test_f1_macro"] == pytest.approx(best["image"]["test_f1_macro"])
    assert headline["fusion_test_f1_macro"] == pytest.approx(best["fusion"]["test_f1_macro"])
    assert headline["exif_only_test_f1_macro"] == pytest.approx(best["exif"]["test_f1_macro"])
    assert headline["delta_test_f1_macro"] == pytest.approx(best["fusion"]["test_f1_macro"]
                                                            - best["image"]["test_f1_macro"])
    emissions = best["fusion"]["emissions_kg"] - best["image"]["emissions_kg"]
    assert headline["delta_emissions_kg"] == pytest.approx(emissions)
    # the delta's noise: a paired bootstrap over the test photos both trials saved their predictions for
    assert headline["delta_low"] <= headline["delta_test_f1_macro"] <= headline["delta_high"]
    assert headline["within_noise"] == (headline["delta_low"] <= 0 <= headline["delta_high"])


def test_metric_top_and_by_options(experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "a"
    assert main(["leaderboard", str(experiment), "--format", "csv", "--out", str(out), "--metric", "emissions_kg",
                 "--top", "3", "--by", "image_size"]) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert len(board) == 3 and board["emissions_kg"].is_monotonic_increasing  # a cost: lowest first
    grouped = pd.read_csv(out / "by_image_size.csv")
    assert grouped["trials"].sum() == 6 and "(n/a)" in grouped["image_size"].astype(str).tolist()


def test_report_renders_in_headless_chromium(experiment: Path, small_dataset: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None, "Debian's chromium package is needed (.ci/run installs it)"
    fusion = open_experiment(str(experiment)).frame.query("modality == 'fusion'").iloc[0]
    assert main(["importance", fusion["checkpoint"], "--data", str(small_dataset), "--out", str(tmp_path / "imp"),
                 "--permutations", "2"]) == 0
    out = tmp_path / "analysis"
    assert main(["leaderboard", str(experiment), "--format", "html", "--out", str(out), "--importance",
                 str(tmp_path / "imp" / "importance.csv")]) == 0
    report = (out / "report.html").read_text()
    fetches = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import|<link""",
                         report, flags=re.IGNORECASE)
    assert not fetches and "<script" not in report  # self-contained: nothing to fetch
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                             (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    page = _parse(result.stdout)
    rows = page.tables["leaderboard"]
    assert len(rows) == 7 and rows[0][:3] == ["rank", "status", "modality"]  # header + one row per trial
    assert len(page.tables["fusion-vs-image"]) == 2 and len(page.tables["pareto"]) >= 2
    front = page.tables["speed-accuracy"]  # the speed/accuracy front: no row both slower and less accurate
    speed, score = front[0].index("inference_ms"), front[0].index("test_f1_macro")
    assert len(front) >= 2
    points = [(float(row[speed]), float(row[score])) for row in front[1:]]
    # faster first, each next one more accurate (>=: the report prints 3 decimals, which can tie)
    assert points == sorted(points) and all(b[1] >= a[1] for a, b in zip(points, points[1:], strict=False))
    assert len(page.tables["tag-importance"]) == 5  # header + the fusion model's 4 tags, with its chart
    # Pareto and speed scatters, delta bars, validation curves, hyperparameter effects, Optuna and tag importance
    assert page.svgs >= 7
    for section in ("F1 against CO2-eq", "Speed against accuracy", "Fusion against image only",
                    "Validation F1 of the top trials", "EXIF tag importance"):
        assert section in result.stdout


def test_two_reports_of_one_experiment_differ_in_the_footer_stamp_only(experiment: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from exifray import report
    from exifray.analysis import analyse

    analysis = analyse(open_experiment(str(experiment)))
    first = report.render_report(analysis).splitlines()

    class Later(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return dt.datetime(2030, 1, 2, 3, 4, tzinfo=tz)

    monkeypatch.setattr(report, "datetime", Later)
    second = report.render_report(analysis).splitlines()
    changed = [(a, b) for a, b in zip(first, second, strict=True) if a != b]
    assert changed == [(first[-2], '<footer class="note">written 2030-01-02 03:04 UTC</footer>')]


def test_leaderboard_errors_for_missing_or_empty_experiments(tmp_path: Path, experiment: Path) -> None:
    with pytest.raises(InputNotFoundError, match="no experiment at .*: the directory does not exist"):
        open_experiment(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputNotFoundError, match="is not an exifray experiment: it has no sweep.yaml"):
        open_experiment(str(tmp_path / "empty"))
    started = tmp_path / "started"
    started.mkdir()
    shutil.copy(experiment / "sweep.yaml", started / "sweep.yaml")  # a sweep that has not saved any state yet
    with pytest.raises(InputNotFoundError, match="has no trials yet"):
        open_experiment(str(started))
    assert main(["leaderboard", str(tmp_path / "nothing")]) != 0


def test_export_best_bundle_reproduces_test_f1_in_a_fresh_process(experiment: Path, small_dataset: Path,
                                                                   tmp_path: Path) -> None:
    bundle = tmp_path / "best"
    assert main(["export-best", str(experiment), "--out", str(bundle), "--modality", "fusion"]) == 0
    board = open_experiment(str(experiment)).frame
    fusion = board[board["modality"] == "fusion"].sort_values("val_f1_macro").iloc[-1]
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["trial_id"] == fusion["trial_id"] and manifest["modality"] == "fusion"
    assert manifest["classes"] == ["indoor", "outdoor"] and manifest["exif_tags"]
    assert {p.name for p in bundle.iterdir()} == {"bundle.json", "model.keras", "settings.json", "metrics.json",
                                                   "history.jsonl", "emissions.csv", "emissions_tasks.csv"}
    # CodeCarbon's own files: its standard header, and the per-segment rows add up to the leaderboard's emissions
    run = pd.read_csv(bundle / "emissions.csv")
    assert {"timestamp", "project_name", "run_id", "duration", "emissions", "energy_consumed", "cpu_model",
            "tracking_mode", "pue", "codecarbon_version"} <= set(run.columns) and len(run) == 1
    tasks = pd.read_csv(bundle / "emissions_tasks.csv")
    assert abs(tasks["emissions"].sum() - fusion["emissions_kg"]) < 1e-12 and tasks["task_name"].iloc[-1] == "test"
    assert isinstance(fusion["power_source"], str) and fusion["power_source"].startswith("CPU: ")
    trial_folder = Path(fusion["checkpoint"]).parent / "codecarbon"  # the trial's own folder keeps them too
    assert (trial_folder / "emissions.csv").read_bytes() == (bundle / "emissions.csv").read_bytes()
    for path in bundle.iterdir():
        if path.suffix in (".json", ".jsonl"):
            assert str(experiment) not in path.read_text()  # nothing points back into the experiment
    moved = tmp_path / "elsewhere"
    bundle.rename(moved)
    result = subprocess.run([sys.executable, "-m", "exifray", "evaluate", str(moved), "--data", str(small_dataset)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores["test_f1_macro"] == pytest.approx(fusion["test_f1_macro"], abs=1e-9)
    assert scores["test_f1_macro"] == pytest.approx(json.loads((moved / "metrics.json").read_text())["test_f1_macro"])
    assert main(["export-best", str(experiment), "--out", str(moved)]) != 0  # never into a non-empty folder


def test_export_best_within_a_latency_budget_measures_here(experiment: Path, tmp_path: Path) -> None:
    from exifray.bundle import model_id

    assert main(["export-best", str(experiment), "--out", str(tmp_path / "plain")]) == 0
    best = json.loads((tmp_path / "plain" / "bundle.json").read_text())
    bundle = tmp_path / "fast"
    assert main(["export-best", str(experiment), "--out", str(bundle), "--max-inference-ms", "1e6",
                 "--candidates", "2"]) == 0
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["trial_id"] == best["trial_id"]  # the best model is within a generous budget
    assert manifest["selected_value"] == max(open_experiment(str(experiment)).frame["val_f1_macro"].dropna())
    assert [m["trial_id"] for m in manifest["measured_inference_ms"]] == [best["trial_id"]]
    assert manifest["measured_inference_ms"][0]["inference_ms"] > 0 and manifest["latency_budget_ms"] == 1e6
    assert manifest["bundle_id"] == model_id(bundle) and manifest["decode"]["draft"] == 32
    assert main(["export-best", str(experiment), "--out", str(tmp_path / "none"), "--max-inference-ms", "1e-9",
                 "--candidates", "2"]) != 0  # nothing is that fast: an error, and no folder
    assert not (tmp_path / "none").exists() and not list(tmp_path.glob(".tmp-bundle-*"))


def _one_tag_dataset(root: Path) -> Path:
    """Synthetic photos whose EXIF carries the label only in FNumber: every other tag is shuffled across photos."""
    from exifray.config import IngestConfig
    from exifray.data.ingest import run_ingest
    from exifray.data.synth import SynthConfig, generate

    generate(root / "crawl", SynthConfig(photos=300, seed=8, image_size=32, label_noise=0.0))
    records = [json.loads(line) for line in (root / "crawl" / "photos.jsonl").read_text().splitlines()]
    bodies = {r["id"]: json.loads((root / "crawl" / r["exif"]).read_text()) for r in records}
    by_tag: dict[str, list[dict]] = {}
    for body in bodies.values():
        for entry in body["photo"]["exif"]:
            by_tag.setdefault(entry["tag"], []).append(entry)
    rng = random.Random(0)
    for entries in by_tag.values():
        rng.shuffle(entries)
    cursor = {tag: iter(entries) for tag, entries in by_tag.items()}
    for record in records:
        body = bodies[record["id"]]
        body["photo"]["exif"] = [next(cursor[e["tag"]]) for e in body["photo"]["exif"] if e["tag"] != "FNumber"]
        fnumber = "2.0" if record["labels"][0] == "indoor" else "11.0"
        body["photo"]["exif"].append({"tagspace": "ExifIFD", "tagspaceid": 0, "tag": "FNumber", "label": "Aperture",
                                      "raw": {"_content": fnumber}})
        (root / "crawl" / record["exif"]).write_text(json.dumps(body))
    run_ingest(IngestConfig(inputs=(str(root / "crawl"),), out=str(root / "dataset"), sizes=(32,)))
    return root / "dataset"


def test_permutation_importance_ranks_the_one_informative_tag_first(tmp_path: Path, ray_local: None) -> None:
    from exifray.config import TrialConfig
    from exifray.train import run_trial

    dataset = _one_tag_dataset(tmp_path)
    tags = ["ExposureTime", "ISO", "FNumber", "Flash", "LightSource"]
    config = TrialConfig(modality="exif", exif_tags=tuple(tags), epochs=25, learning_rate=0.01, batch_size=32,
                         early_stopping_patience=25)
    result = run_trial(config, dataset, out_dir=tmp_path / "model")
    assert result.metrics["test_f1_macro"] > 0.9
    out = tmp_path / "importance"
    assert main(["importance", str(tmp_path / "model"), "--data", str(dataset), "--out", str(out),
                 "--permutations", "20"]) == 0
    table = pd.read_csv(out / "importance.csv")
    assert table.iloc[0]["tag"] == "FNumber" and table.iloc[0]["mean_drop"] > 0.3
    assert (table.iloc[1:]["mean_drop"].abs() < 0.05).all() and len(table) == len(tags)
    assert (out / "importance.svg").read_text().lstrip().startswith("<svg")
    assert main(["importance", str(tmp_path / "model"), "--data", str(dataset), "--out", str(out),
                 "--permutations", "0"]) != 0


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get_json(url: str, timeout_s: float = 120) -> object:
    """GET url once the server answers (polled until then: servers take a while to start on a busy machine)."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_the_viewers_from_the_viz_extra_show_every_trial(experiment: Path) -> None:
    """`pip install exifray[viz]` brings the two viewers a sweep's summary points to; both read the experiment."""
    bin_dir = Path(sys.executable).parent
    trials = sorted(p.name for p in experiment.glob("trial_*"))
    board, dash = _free_port(), _free_port()
    servers = [subprocess.Popen([str(bin_dir / "tensorboard"), "--logdir", str(experiment), "--host", "127.0.0.1",
                                 "--port", str(board)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
               subprocess.Popen([str(bin_dir / "optuna-dashboard"), str(experiment / "optuna.journal"), "--host",
                                 "127.0.0.1", "--port", str(dash)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)]
    try:
        runs = _get_json(f"http://127.0.0.1:{board}/data/runs")
        assert isinstance(runs, list) and sorted({run.split("/")[0] for run in runs}) == trials
        studies = _get_json(f"http://127.0.0.1:{dash}/api/studies")
        assert isinstance(studies, dict)
        (study,) = studies["study_summaries"]
        assert study["study_name"] == experiment.name
        detail = _get_json(f"http://127.0.0.1:{dash}/api/studies/{study['study_id']}")
        assert isinstance(detail, dict)
        assert [t["state"] for t in detail["trials"]] == ["Complete"] * len(trials)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)


def test_the_leaderboard_leads_with_the_metrics_inside_a_1280_px_window(experiment: Path, tmp_path: Path) -> None:
    from exifray.testing.browser import chromium

    out = tmp_path / "analysis"
    assert main(["leaderboard", str(experiment), "--format", "html", "--out", str(out)]) == 0
    lead = ["rank", "status", "modality", "val_f1_macro", "test_f1_macro", "emissions_g", "f1_per_gram_co2",
            "pareto"]
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((out / "report.html").as_uri())
        heads = page.eval_on_selector_all(
            "#leaderboard thead th", "els => els.map(e => [e.textContent, e.getBoundingClientRect().right])")
        assert [name for name, _ in heads[:len(lead)]] == lead
        assert all(right <= 1280 for _, right in heads[:len(lead)]), heads[:len(lead)]  # no scrolling to see them
        assert heads[-1][1] > 0 and "trial_id" in [name for name, _ in heads]
        cells = page.eval_on_selector_all(
            "#leaderboard td", "els => els.map(e => [e.textContent, e.title || e.textContent])")
        lists = [(re.fullmatch(r"(.+) \(\+(\d+) more\)", shown), whole) for shown, whole in cells if shown != whole]
        lists = [(match.groups(), whole) for match, whole in lists if match]
        assert lists, "the 4-tag lists should be shortened"
        for (first, more), whole in lists:  # "ExposureTime+FNumber (+2 more)" keeps the whole list on hover
            assert whole.startswith(first) and len(re.split("[+,]", whole)) == 2 + int(more)


def test_the_machine_total_is_recorded_next_to_the_trials_and_shown(experiment: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from exifray import schema

    record = json.loads((experiment / "machine_emissions.json").read_text())
    board = pd.read_csv(experiment / "leaderboard.csv")
    trials = board[schema.EMISSIONS_KG].fillna(0).sum() + board[schema.FEATURE_BUILD_KG].fillna(0).sum()
    assert record["trials_kg"] == pytest.approx(trials, rel=1e-9) and trials > 0
    assert [len(run["nodes"]) for run in record["runs"]] == [1]  # one node, one run of the sweep
    node = record["runs"][0]["nodes"][0]
    assert node["codecarbon"]["tracking_mode"] == "machine" and node["emissions_kg"] == record["machine_kg"]
    assert record["trials_kg"] <= record["machine_kg"] and 0 <= record["unattributed_share"] <= 1
    assert record["unattributed_share"] == pytest.approx(1 - record["trials_kg"] / record["machine_kg"])
    capsys.readouterr()
    assert main(["leaderboard", str(experiment), "--format", "html", "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    share = f"unattributed {100 * record['unattributed_share']:.0f} %"
    assert "machine total" in printed and share in printed
    assert share in (tmp_path / "a" / "report.html").read_text()


def test_the_report_at_1280_px_overlaps_nothing_and_uses_one_unit(experiment: Path, tmp_path: Path) -> None:
    """No table cell overlaps another, no chart's tick label overlaps another, CO2-eq is in grams throughout, the
    fusion delta is drawn with its noise, and a column no trial fills is left out."""
    from exifray.testing.browser import chromium

    out = tmp_path / "analysis"
    assert main(["leaderboard", str(experiment), "--format", "html", "--out", str(out)]) == 0
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((out / "report.html").as_uri())
        cells = page.evaluate("""() => [...document.querySelectorAll('table')].map(t =>
            [...t.querySelectorAll('th, td')].map(c => { const r = c.getBoundingClientRect();
                return [c.textContent, r.left, r.top, r.right, r.bottom]; }))""")
        labels = page.evaluate("""() => [...document.querySelectorAll('svg')].map(svg => ['x', 'y'].map(axis =>
            [...svg.querySelectorAll(`g[id^="${axis}tick_"] > g[id^="text_"]`)].map(g => {
                const r = g.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })))""")
        text = page.inner_text("body")
        headers = page.eval_on_selector_all("#leaderboard th, #pareto th", "els => els.map(e => e.textContent)")

    def overlap(a: list[float], b: list[float]) -> float:
        return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

    assert sum(len(table) for table in cells) > 50
    for table in cells:
        for i, first in enumerate(table):
            for second in table[i + 1:]:
                assert overlap(first[1:], second[1:]) < 1, (first, second)
    ticks = 0
    for figure in labels:
        for axis in figure:
            ticks += len(axis)
            for i, first in enumerate(axis):
                for second in axis[i + 1:]:
                    assert overlap(first, second) < 0.5, (first, second)
    assert ticks > 20
    assert not re.search(r"\bkg\b|_kg\b", text), re.findall(r".{30}kg.{10}", text)
    assert "g CO2-eq" in text and "emissions_g" in headers
    assert "fine_tune_layers" not in headers  # no trial of this sweep fine-tunes: the empty column is hidden
    assert "paired bootstrap" in text and "within noise" in text
