"""`exifray leaderboard --watch` on a running sweep: the report in Chromium shows more finished trials as the sweep
goes on, reloads itself while it runs and stops reloading when it ends; a sweep whose driver died is named."""

from __future__ import annotations

import json
import re
import tarfile
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from exifray.space_file import parse_sweep
from exifray.sweep import run_sweep
from exifray.sweep_status import FINISHED, LOST, LOST_AFTER_S, RUNNING, STATUS_FILE
from exifray.testing.browser import chromium
from exifray.watch import watch

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "saved-experiment.tar.gz"
REFRESH = '<meta http-equiv="refresh"'


def _complete(text: str) -> int:
    found = re.search(r"(\d+) complete", text)
    return int(found.group(1)) if found else 0


def _shown(page: Page) -> tuple[int, bool] | None:
    """(trials complete, whether the page reloads itself), both read from one loaded document; None when the page
    is reloading itself at that moment (reading the two apart could see the old page's text and the new one's
    half-parsed head)."""
    try:
        text, refreshes = page.evaluate(
            "() => document.readyState === 'complete' ? [document.body.innerText, "
            "document.querySelectorAll('meta[http-equiv=\"refresh\"]').length] : [null, 0]")
    except PlaywrightError as error:
        if "context was destroyed" not in str(error):
            raise
        return None
    return None if text is None else (_complete(text), refreshes == 1)


def test_the_watched_report_follows_a_running_sweep_in_chromium(small_dataset: Path, tmp_path: Path) -> None:
    plan = parse_sweep({"name": "watched", "seed": 3, "num_samples": 4, "max_concurrent": 1, "scheduler": "none",
                        "resources": {"cpus": 1}, "fixed": {"modality": "exif", "epochs": 4, "batch_size": 32},
                        "params": {"learning_rate": {"loguniform": [0.0005, 0.005]}}})
    experiment = tmp_path / "watched"
    out = tmp_path / "live"
    swept: dict[str, object] = {}
    sweep = threading.Thread(target=lambda: swept.update(result=run_sweep(plan, small_dataset,
                                                                          storage_path=str(tmp_path))))
    lines: list[str] = []
    watcher_result: dict[str, object] = {}

    def watcher() -> None:
        try:
            while not (experiment / STATUS_FILE).exists():  # the sweep writes its status before Tune starts
                time.sleep(0.1)
            watcher_result["watched"] = watch(str(experiment), str(out), ["html", "csv"], interval_s=0.5,
                                              say=lines.append)
        except BaseException as exc:  # re-raised by the test below
            watcher_result["error"] = exc

    follow = threading.Thread(target=watcher)
    sweep.start()
    follow.start()
    seen: list[int] = []
    refreshing: list[bool] = []
    report = out / "report.html"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        deadline = time.monotonic() + 400
        while not report.exists() and follow.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if "error" in watcher_result:
            raise AssertionError("the watch failed") from watcher_result["error"]  # type: ignore[arg-type]
        page.goto(report.as_uri())
        while follow.is_alive() and time.monotonic() < deadline:
            shown = _shown(page)
            if shown is not None:
                seen.append(shown[0])
                refreshing.append(shown[1])
            try:
                with page.expect_event("load", timeout=30_000):  # the page reloads itself, nobody else does
                    pass
            except PlaywrightTimeout:  # the final report, which no longer reloads, was already showing
                break
        follow.join(timeout=60)
        sweep.join(timeout=60)
        page.goto(report.as_uri())
        final = page.inner_text("body")
    assert "error" not in watcher_result, watcher_result.get("error")
    watched = watcher_result["watched"]
    assert watched.verdict == FINISHED and watched.finished == 4  # type: ignore[attr-defined]
    assert len(seen) >= 2 and seen == sorted(seen) and seen[0] < 4
    # Every page shown while the sweep ran reloads itself; only the last one read may be the final report already
    # (the watch writes it just before it returns, and a loaded machine can show it to the loop before that).
    assert all(refreshing[:-1]) and (refreshing[-1] or seen[-1] == 4), list(zip(seen, refreshing, strict=True))
    assert _complete(final) == 4 and REFRESH not in report.read_text()  # the final report stays still
    assert "Live: this page reloads" not in final
    assert json.loads((experiment / STATUS_FILE).read_text())["state"] == FINISHED
    assert any("4/4 trials finished (sweep finished)" in line for line in lines)
    assert len((out / "leaderboard.csv").read_text().splitlines()) == 5


def test_a_sweep_whose_heartbeat_stopped_is_named_and_the_watch_ends(tmp_path: Path) -> None:
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(tmp_path, filter="data")
    experiment = tmp_path / "saved"
    stale = time.time() - LOST_AFTER_S - 5
    (experiment / STATUS_FILE).write_text(json.dumps({"state": RUNNING, "started": stale - 60, "heartbeat": stale,
                                                      "host": "gone-host", "pid": 4242}))
    lines: list[str] = []
    watched = watch(str(experiment), str(tmp_path / "out"), ["html"], interval_s=0.5, say=lines.append)
    assert watched.verdict == LOST and watched.reports == 1
    assert any("stopped sending heartbeats" in line and "gone-host" in line and "4242" in line for line in lines)
    assert REFRESH not in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize("interval", [0.0, -1.0])
def test_the_cli_refuses_a_watch_interval_that_is_not_positive(interval: float, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from exifray.cli import main

    assert main(["leaderboard", str(tmp_path), "--watch", "--interval", str(interval)]) != 0
    assert f"--interval must be > 0 seconds, got {interval}" in capsys.readouterr().err
