"""The crawler against the fake Flickr (a real aiohttp server on 127.0.0.1): modes, faults, resume, safety."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exifray.config import ClientConfig, CrawlConfig
from exifray.crawl.client import CrawlError, InvalidKeyError
from exifray.crawl.crawler import crawl
from exifray.crawl.records import CrawlDir
from exifray.errors import ConfigError
from exifray.testing.simulator import FlickrSimulator, SimPhoto

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from exifray.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("flickr") / "src"
    generate(root, SynthConfig(photos=40, seed=4, image_size=64))
    return root


def _run(simulator: FlickrSimulator, **options: object):
    async def go():
        api, static = await simulator.start()
        client = ClientConfig(api_url=api, static_url=static, rate_limit=1e7, backoff_initial_s=0.01,
                              backoff_max_s=0.05, read_timeout_s=float(options.pop("read_timeout_s", 30.0)),
                              max_attempts=int(options.pop("max_attempts", 5)))
        try:
            return await crawl(CrawlConfig(client=client, **options), KEY)
        finally:
            await simulator.stop()

    return asyncio.run(go())


def _ids(out: Path) -> list[str]:
    return [record.id for _, record, _ in CrawlDir(out).iter_records() if record is not None]


def test_group_crawl_survives_every_fault_and_keeps_every_good_photo(source: Path, tmp_path: Path) -> None:
    simulator = FlickrSimulator.from_crawl_dir(source, groups={"42@N01": None}, api_keys={KEY}, slow_seconds=2)
    ids = simulator.order
    simulator.faults.add(f"exif:{ids[0]}", "http500", "http429")
    simulator.faults.add(f"image:{ids[1]}", "truncated", "html", "notjpeg")
    simulator.faults.add(f"exif:{ids[2]}", "fail105", "slow")
    simulator.faults.add("page:2", "http500")
    simulator.faults.permanent[f"image:{ids[5]}"] = "http500"  # never recovers: failed, with the reason
    simulator.photos[ids[3]].media = "video"
    simulator.photos[ids[4]].deleted = True
    out = tmp_path / "crawl"
    report = _run(simulator, mode="group", target="42@N01", out=str(out), exif=True, per_page=15,
                  read_timeout_s=0.5, max_attempts=4)
    expected = set(ids) - {ids[3], ids[4], ids[5]}
    assert set(_ids(out)) == expected and len(_ids(out)) == len(expected)
    assert report.skipped == {"video": 1, "not_found": 1} and set(report.failed) == {ids[5]}
    assert "HTTP 500" in report.failed[ids[5]] and report.retried >= 8 and report.pages == 3
    for record in CrawlDir(out).iter_records():
        photo = record[1]
        assert (out / photo.image).read_bytes() == simulator.photos[photo.id].jpeg
        assert json.loads((out / photo.exif).read_text()) == simulator.photos[photo.id].exif
    saved = json.loads((out / "crawl_report.json").read_text())
    assert saved["downloaded"] == len(expected) and KEY not in (out / "crawl_report.json").read_text()
    assert not list(out.rglob(".tmp-*"))


def test_retry_after_dates_are_honoured_and_hour_long_waits_fail_the_photo(source: Path, tmp_path: Path) -> None:
    simulator = FlickrSimulator.from_crawl_dir(source, groups={"g": None}, api_keys={KEY})
    ids = simulator.order
    simulator.faults.add(f"image:{ids[0]}", "http429_date")
    simulator.faults.permanent[f"image:{ids[1]}"] = "http429_long"
    out = tmp_path / "crawl"
    started = time.monotonic()
    report = _run(simulator, mode="group", target="g", out=str(out), max_attempts=3)
    assert set(report.failed) == {ids[1]} and "asks to wait 3600 s" in report.failed[ids[1]]
    assert set(_ids(out)) == set(ids) - {ids[1]}  # the rest of the crawl went on
    assert simulator.requests["image"] == len(ids) + 1  # the dated 429 retried once, the hour-long one not at all
    assert time.monotonic() - started < 120


def test_rerun_resumes_without_duplicates(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "crawl"
    first = FlickrSimulator.from_crawl_dir(source, groups={"g": None}, api_keys={KEY})
    first.faults.permanent.update({f"image:{pid}": "http500" for pid in first.order[:10]})
    _run(first, mode="group", target="g", out=str(out), max_attempts=1)
    assert len(_ids(out)) == 30
    with open(out / "photos.jsonl", "a") as handle:
        handle.write('{"id": "123", "secr')  # a torn line, as a kill -9 mid-append leaves it
    (out / "images" / ".tmp-stray").write_bytes(b"half")
    second = FlickrSimulator.from_crawl_dir(source, groups={"g": None}, api_keys={KEY})
    report = _run(second, mode="group", target="g", out=str(out))
    assert sorted(_ids(out)) == sorted(second.order) and report.already_complete == 30 and report.downloaded == 10
    assert second.requests["image"] == 10 and not list(out.rglob(".tmp-*"))


def test_require_tags_drops_photo_and_exif(source: Path, tmp_path: Path) -> None:
    simulator = FlickrSimulator.from_crawl_dir(source, groups={"g": None}, api_keys={KEY})
    has_light = {pid for pid, p in simulator.photos.items()
                 if any(e.get("tag") == "LightSource" for e in p.exif["photo"]["exif"])}
    assert 0 < len(has_light) < 40
    out = tmp_path / "crawl"
    report = _run(simulator, mode="group", target="g", out=str(out), exif=True, require_tags=("LightSource",))
    assert set(_ids(out)) == has_light and report.skipped["missing_tags"] == 40 - len(has_light)
    assert {p.stem for p in (out / "exif").glob("*.json")} == has_light


def test_search_pages_and_labels(source: Path, tmp_path: Path) -> None:
    simulator = FlickrSimulator.from_crawl_dir(source, api_keys={KEY})
    indoor = [pid for pid, p in simulator.photos.items() if "indoor" in p.text]
    out = tmp_path / "crawl"
    report = _run(simulator, mode="search", target="indoor", out=str(out), per_page=5, start_page=2, page_limit=2,
                  labels=("inside",))
    assert _ids(out) and set(_ids(out)) == set(indoor[5:15]) and report.pages == 2
    assert {tuple(r.labels) for _, r, _ in CrawlDir(out).iter_records()} == {("inside",)}


def test_filter_tag_size_and_search_for_photos_only(source: Path, tmp_path: Path) -> None:
    simulator = FlickrSimulator.from_crawl_dir(source, groups={"g": None}, api_keys={KEY})
    kitchen = [pid for pid, p in simulator.photos.items() if "kitchen" in p.text.split()]
    assert 0 < len(kitchen) < 40
    out = tmp_path / "kitchen"
    _run(simulator, mode="group", target="g", out=str(out), filter_tag="kitchen", size="z")
    assert set(_ids(out)) == set(kitchen)
    assert all(path.endswith("_z.jpg") for path in simulator.image_paths) and len(simulator.image_paths) == len(kitchen)
    assert all(r.image.endswith("_z.jpg") for _, r, _ in CrawlDir(out).iter_records())

    simulator = FlickrSimulator.from_crawl_dir(source, api_keys={KEY})
    indoor = [pid for pid, p in simulator.photos.items() if "indoor" in p.text]
    simulator.photos[indoor[0]].media = "video"
    report = _run(simulator, mode="search", target="indoor", out=str(tmp_path / "search"))
    assert set(_ids(tmp_path / "search")) == set(indoor[1:]) and report.listed == len(indoor) - 1  # media=photos
    assert not any(path.rsplit("/", 1)[1].count("_") > 1 for path in simulator.image_paths)  # empty size: 500 px


@pytest.mark.parametrize(("options", "message"), [
    ({"mode": "group", "target": "nope@N01"}, r"group 'nope@N01': Group not found \(Flickr code 1\)"),
    ({"mode": "search", "target": "zebra"}, r"search 'zebra' has no photos"),
    ({"mode": "search", "target": "indoor", "start_page": 9, "per_page": 50}, r"--start-page 9 is past the last page"),
])
def test_bad_targets_fail_before_any_download(source: Path, tmp_path: Path, options: dict, message: str) -> None:
    simulator = FlickrSimulator.from_crawl_dir(source, groups={"g": None}, api_keys={KEY})
    with pytest.raises(CrawlError, match=message):
        _run(simulator, out=str(tmp_path / "crawl"), **options)
    assert simulator.requests["image"] == 0 and not (tmp_path / "crawl").exists()


def test_invalid_key_aborts_and_is_never_echoed(source: Path, tmp_path: Path) -> None:
    simulator = FlickrSimulator.from_crawl_dir(source, groups={"g": None}, api_keys={"another-key"})
    with pytest.raises(InvalidKeyError, match="rejected by Flickr") as caught:
        _run(simulator, mode="group", target="g", out=str(tmp_path / "crawl"))
    assert KEY not in str(caught.value) and simulator.requests["image"] == 0


def test_photos_mode_merges_labels_resolves_placeholders_and_rejects_unsafe(source: Path, tmp_path: Path) -> None:
    simulator = FlickrSimulator.from_crawl_dir(source, api_keys={KEY})
    a, b, c = (simulator.photos[pid] for pid in simulator.order[:3])
    metadata = {"moving,boat": [{"id": a.id, "secret": a.secret, "server": a.server},
                                {"id": b.id, "secret": "0", "server": "1234"}],  # thesis placeholder server
                "moving": [{"id": a.id, "secret": a.secret, "server": a.server},
                           {"id": "../../etc/passwd", "secret": "x", "server": "1"},
                           {"id": c.id, "secret": "<script>", "server": c.server}]}
    path = tmp_path / "meta.json"
    path.write_text(json.dumps(metadata))
    out = tmp_path / "crawl"
    report = _run(simulator, mode="photos", target=str(path), out=str(out))
    records = {r.id: r for _, r, _ in CrawlDir(out).iter_records()}
    assert set(records) == {a.id, b.id} and records[a.id].labels == ["moving", "boat"]
    assert records[b.id].server == b.server and records[b.id].secret == b.secret  # resolved with getInfo
    assert report.skipped["unsafe_id"] == 2
    assert {p.name for p in tmp_path.iterdir()} == {"meta.json", "crawl"}  # nothing written outside --out


THESIS = Path(__file__).parents[1] / "fixtures" / "thesis"


def test_thesis_metadata_slices_crawl_with_merged_labels_and_resolved_servers(source: Path, tmp_path: Path) -> None:
    path = THESIS / "moving_static.slice.json"
    raw = json.loads(path.read_text())
    expected: dict[str, set[str]] = {}
    for key, entries in raw.items():
        for entry in entries:
            expected.setdefault(entry["id"], set()).update(key.split(","))
    placeholder = [e["id"] for entries in raw.values() for e in entries if e["server"] == "1234"]
    assert len(expected) == 49 and len(placeholder) == 1 and any(len(labels) == 2 for labels in expected.values())
    simulator = FlickrSimulator.for_metadata_file(path, source, api_keys={KEY})
    deleted = raw["static"][0]["id"]  # gone from Flickr since the thesis listed it
    simulator.photos[deleted].deleted = True
    out = tmp_path / "moving"
    report = _run(simulator, mode="photos", target=str(path), out=str(out), exif=True)
    records = {r.id: r for _, r, _ in CrawlDir(out).iter_records()}
    assert set(records) == set(expected) - {deleted} and report.listed == 49
    assert report.skipped == {"not_found": 1} and not report.failed
    assert all(set(r.labels) == expected[pid] for pid, r in records.items())
    assert simulator.requests["flickr.photos.getInfo"] == 1 and records[placeholder[0]].server == "65535"
    assert simulator.requests["image"] == 48  # no URL was tried with the placeholder server

    kitchen = THESIS / "indoor,kitchen.json"  # a plain list named by its label, every server a placeholder
    simulator = FlickrSimulator.for_metadata_file(kitchen, source, api_keys={KEY})
    report = _run(simulator, mode="photos", target=str(kitchen), out=str(tmp_path / "kitchen"))
    records = {r.id: r for _, r, _ in CrawlDir(tmp_path / "kitchen").iter_records()}
    assert set(records) == {e["id"] for e in json.loads(kitchen.read_text())} and report.downloaded == 20
    assert {tuple(r.labels) for r in records.values()} == {("indoor", "kitchen")}
    assert simulator.requests["flickr.photos.getInfo"] == 20 and simulator.requests["image"] == 20
    assert all(r.server == "65535" and "_1234_" not in r.image for r in records.values())


def test_label_option_on_metadata_files(source: Path, tmp_path: Path) -> None:
    kitchen = THESIS / "indoor,kitchen.json"
    simulator = FlickrSimulator.for_metadata_file(kitchen, source, api_keys={KEY})
    _run(simulator, mode="photos", target=str(kitchen), out=str(tmp_path / "a"), labels=("indoor",))
    assert {tuple(r.labels) for _, r, _ in CrawlDir(tmp_path / "a").iter_records()} == {("indoor",)}
    simulator = FlickrSimulator.for_metadata_file(kitchen, source, api_keys={KEY})
    with pytest.raises(ConfigError, match=r"--label 'moving'.* is a dict whose keys are the labels"):
        _run(simulator, mode="photos", target=str(THESIS / "moving_static.slice.json"), out=str(tmp_path / "b"),
             labels=("moving",))
    assert simulator.requests["image"] == 0


def test_rate_limit_holds_across_concurrent_requests(source: Path, tmp_path: Path) -> None:
    simulator = FlickrSimulator.from_crawl_dir(source, groups={"g": None}, api_keys={KEY})
    rate = 72000.0  # requests/hour: 20 per second

    async def go():
        api, static = await simulator.start()
        client = ClientConfig(api_url=api, static_url=static, rate_limit=rate, concurrency=16)
        try:
            return await crawl(CrawlConfig(mode="group", target="g", out=str(tmp_path / "crawl"), exif=True,
                                           client=client), KEY)
        finally:
            await simulator.stop()

    report = asyncio.run(go())
    arrivals = simulator.arrivals
    assert report.downloaded == 40 and len(arrivals) == report.requests == 82  # key check, 1 page, 2 per photo
    window = 20  # any 21 consecutive requests span at least 20 intervals of 1/20 s (5 % arrival jitter allowed)
    spans = [arrivals[i + window] - arrivals[i] for i in range(len(arrivals) - window)]
    assert min(spans) >= window / (rate / 3600) * 0.95, min(spans)


def test_metadata_only_writes_the_thesis_format(source: Path, tmp_path: Path) -> None:
    simulator = FlickrSimulator.from_crawl_dir(source, groups={"g": None}, api_keys={KEY})
    target = tmp_path / "ids.json"
    _run(simulator, mode="group", target="g", out=str(tmp_path / "crawl"), metadata_only=True,
         metadata_out=str(target), labels=("indoor", "kitchen"))
    data = json.loads(target.read_text())
    assert list(data) == ["indoor,kitchen"] and len(data["indoor,kitchen"]) == 40
    assert set(data["indoor,kitchen"][0]) == {"id", "secret", "server"} and simulator.requests["image"] == 0


def test_crawl_dir_is_what_ingest_reads(source: Path, tmp_path: Path, ray_local: None) -> None:
    from exifray.config import IngestConfig
    from exifray.data.dataset import read_card
    from exifray.data.ingest import run_ingest

    simulator = FlickrSimulator.from_crawl_dir(source, groups={"g": None}, api_keys={KEY})
    _run(simulator, mode="group", target="g", out=str(tmp_path / "crawl"), exif=True, labels=("indoor",))
    run_ingest(IngestConfig(inputs=(str(tmp_path / "crawl"),), out=str(tmp_path / "dataset"), sizes=(32,)))
    card = read_card(tmp_path / "dataset")
    assert sum(card.counts[split]["indoor"] for split in ("train", "val", "test")) == 40


def _lines(path: Path) -> int:
    try:
        return sum(1 for _ in path.open())
    except FileNotFoundError:
        return 0


@contextlib.contextmanager
def _served(simulator: FlickrSimulator) -> Iterator[tuple[str, str]]:
    """The fake Flickr on its own event loop in a thread, for crawls run as subprocesses."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    try:
        yield asyncio.run_coroutine_threadsafe(simulator.start(), loop).result()
    finally:
        asyncio.run_coroutine_threadsafe(simulator.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)


def _crawl_command(out: Path, api: str, static: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "exifray", "crawl", "group", "g", "--out", str(out), "--exif", "--api-url", api,
            "--static-url", static, "--rate-limit", "10000000", *options]


def test_crawl_killed_twice_with_sigkill_ends_complete(tmp_path: Path) -> None:
    from exifray.data.synth import SynthConfig, generate

    generate(tmp_path / "src", SynthConfig(photos=300, seed=6, image_size=48))
    simulator = FlickrSimulator.from_crawl_dir(tmp_path / "src", groups={"g": None}, api_keys={KEY}, latency_s=0.03,
                                               slow_seconds=3)
    ids = list(simulator.order)
    for i, pid in enumerate(ids):  # every kind of transient fault, on images, EXIF and listing pages
        if i % 10 == 0:
            simulator.faults.add(f"image:{pid}", "http500", "truncated")
        elif i % 10 == 2:
            simulator.faults.add(f"image:{pid}", "html")
            simulator.faults.add(f"exif:{pid}", "fail105")
        elif i % 10 == 3:
            simulator.faults.add(f"image:{pid}", "notjpeg")
        elif i % 30 == 1:
            simulator.faults.add(f"exif:{pid}", "http429")  # Retry-After: 1
        elif i % 30 == 4:
            simulator.faults.add(f"exif:{pid}", "slow")  # longer than --timeout
    simulator.faults.add("page:2", "http500", "html")
    gone = {"video": {ids[5], ids[15]}, "deleted": {ids[6], ids[16]}, "failing": {ids[8]}}
    for pid in gone["video"]:
        simulator.photos[pid].media = "video"
    for pid in gone["deleted"]:
        simulator.photos[pid].deleted = True
    simulator.faults.permanent[f"image:{ids[8]}"] = "http500"
    model = simulator.photos[ids[9]]
    for unsafe in ("../../outside", "12ab"):  # listed with ids that must never become paths or URLs
        simulator.photos[unsafe] = SimPhoto(unsafe, model.secret, model.server, model.jpeg, model.exif)
        simulator.groups["g"].insert(50, unsafe)
    out, logs = tmp_path / "crawl", tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "FLICKR_API_KEY": KEY}
    with _served(simulator) as (api, static):
        command = _crawl_command(out, api, static, "--per-page", "100", "--concurrency", "4", "--timeout", "0.5",
                                 "--max-attempts", "3", "--backoff", "0.05")
        for stop_at in (60, 160):
            with (logs / f"killed-at-{stop_at}.log").open("wb") as log:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                deadline = time.monotonic() + 120
                while _lines(out / "photos.jsonl") < stop_at and process.poll() is None \
                        and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert process.poll() is None, (logs / f"killed-at-{stop_at}.log").read_text()[-2000:]
                process.send_signal(signal.SIGKILL)
                process.wait()
            assert 0 < _lines(out / "photos.jsonl") < 300
        final = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        (logs / "final.log").write_text(final.stdout + final.stderr)
        assert final.returncode == 0, final.stderr[-2000:]
    retrievable = set(ids) - gone["video"] - gone["deleted"] - gone["failing"]
    listed = _ids(out)
    assert sorted(listed) == sorted(retrievable) and len(listed) == len(set(listed))
    assert not list(out.rglob(".tmp-*"))
    assert sorted(p.name.split("_")[0] for p in (out / "images").iterdir()) == sorted(listed)
    assert sorted(p.stem for p in (out / "exif").iterdir()) == sorted(listed)
    for _, record, _ in CrawlDir(out).iter_records():
        assert (out / record.image).read_bytes() == simulator.photos[record.id].jpeg
        assert json.loads((out / record.exif).read_text()) == simulator.photos[record.id].exif
    report = json.loads((out / "crawl_report.json").read_text())
    assert report["skipped"] == {"video": 2, "not_found": 2, "unsafe_id": 2}
    assert list(report["failed"]) == [ids[8]] and "HTTP 500" in report["failed"][ids[8]]
    assert f"failed {ids[8]}: image: gave up after 3 attempts" in final.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"src", "crawl", "logs"}  # nothing outside --out
    assert simulator.requests["image"] >= len(retrievable) and KEY in simulator.seen_keys
    for path in [*out.rglob("*"), *logs.iterdir()]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_progress_bar_on_a_terminal_and_log_lines_otherwise(source: Path, tmp_path: Path) -> None:
    simulator = FlickrSimulator.from_crawl_dir(source, groups={"g": None}, api_keys={KEY})
    env = {**os.environ, "FLICKR_API_KEY": KEY}
    with _served(simulator) as (api, static):
        piped = subprocess.run(_crawl_command(tmp_path / "piped", api, static, "--progress-every", "0"),
                               capture_output=True, text=True, env=env, timeout=120)
        controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
        process = subprocess.Popen(_crawl_command(tmp_path / "tty", api, static, "--progress-every", "0"),
                                   stdout=subprocess.DEVNULL, stderr=terminal, env=env)
        os.close(terminal)
        seen = b""
        while True:  # read as it comes, so a full pty buffer never blocks the crawl
            ready, _, _ = select.select([controller], [], [], 120)
            try:
                chunk = os.read(controller, 65536) if ready else b""
            except OSError:  # EIO: the crawl closed its end
                chunk = b""
            if not chunk:
                break
            seen += chunk
        os.close(controller)
        assert process.wait(timeout=60) == 0, seen.decode(errors="replace")[-2000:]
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert "crawl: 40/40 photos handled, 40 downloaded, 0 skipped, 0 failed" in piped.stderr
    assert "photos handled" not in seen.decode(errors="replace")
    assert "40/40" in seen.decode(errors="replace") and "100%|" in seen.decode(errors="replace")


def test_crawl_job_smoke_test_runs_offline(tmp_path: Path) -> None:
    job = Path(__file__).parents[2] / "jobs" / "crawl.py"
    result = subprocess.run([sys.executable, str(job), "--smoke-test", "--out", str(tmp_path)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "crawl: 60 downloaded" in result.stdout and "0 failed" in result.stdout


def test_downloads_over_the_size_bound_fail_without_retries(source: Path, tmp_path: Path) -> None:
    simulator = FlickrSimulator.from_crawl_dir(source, groups={"g": None}, api_keys={KEY})
    bound = sorted(len(p.jpeg) for p in simulator.photos.values())[20]  # about half the photos are larger
    small = {pid for pid, p in simulator.photos.items() if len(p.jpeg) <= bound}
    assert 0 < len(small) < 40
    out = tmp_path / "crawl"

    async def go():
        api, static = await simulator.start()
        client = ClientConfig(api_url=api, static_url=static, rate_limit=1e7, max_image_bytes=bound)
        try:
            return await crawl(CrawlConfig(mode="group", target="g", out=str(out), client=client), KEY)
        finally:
            await simulator.stop()

    report = asyncio.run(go())
    assert set(_ids(out)) == small and set(report.failed) == set(simulator.photos) - small
    assert all(f"{bound}-byte bound" in reason for reason in report.failed.values()) and report.retried == 0
    assert simulator.requests["image"] == 40
