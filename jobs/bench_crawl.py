"""Benchmark: crawl throughput against the fake Flickr with 100 ms latency, and the rate limit's share.

    python jobs/bench_crawl.py
    ray job submit --working-dir . -- python jobs/bench_crawl.py --smoke-test

The fake Flickr (`exifray/testing/simulator.py`) runs in its own process and answers every API call and
image after `--latency` seconds, as a distant server would. Each run is a whole `exifray crawl group ...
--exif` (key check, listing, getExif + image per photo, files written) into a fresh CRAWL DIR:

1. concurrency 1 (the baseline), 4, 16, 64 with the rate limit out of the way: photos/s and the ratio to
   the baseline;
2. concurrency 16 with `--rate-limit` far below what the server could answer: requests/s reached as a
   share of the limit (the limiter must neither exceed it nor waste much of it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import tempfile
import time
from pathlib import Path

KEY = "bench-key"


def _serve(source: str, latency_s: float, groups: dict[str, int], ready: multiprocessing.Queue,
           stop: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    from exifray.testing.simulator import FlickrSimulator

    async def run() -> None:
        simulator = FlickrSimulator.from_crawl_dir(source, api_keys={KEY}, latency_s=latency_s)
        simulator.groups = {gid: simulator.order[:n] for gid, n in groups.items()}
        ready.put(await simulator.start())
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await simulator.stop()

    asyncio.run(run())


def _crawl(api: str, static: str, group: str, out: Path, concurrency: int, rate_limit: float):
    from exifray.config import ClientConfig, CrawlConfig
    from exifray.crawl.crawler import crawl

    client = ClientConfig(api_url=api, static_url=static, concurrency=concurrency, rate_limit=rate_limit)
    config = CrawlConfig(mode="group", target=group, out=str(out), exif=True, per_page=500, client=client)
    started = time.perf_counter()
    report = asyncio.run(crawl(config, KEY))
    wall = time.perf_counter() - started
    if report.failed or report.downloaded != report.listed:
        raise SystemExit(f"bench run incomplete: {report.line()}")
    return report, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the fake server takes per answer")
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--photos-per-connection", type=int, default=12,
                        help="each run crawls max(40, this x concurrency) photos, so every run lasts a few rounds")
    parser.add_argument("--rate-limit", type=float, default=36000.0,
                        help="requests/hour for the rate-limited run (36,000 = 10/s)")
    parser.add_argument("--rate-photos", type=int, default=100)
    parser.add_argument("--smoke-test", action="store_true", help="concurrency 1 and 4, a short rate run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.smoke_test:
        levels, args.photos_per_connection, args.rate_photos = [1, 4], 6, 30
    counts = {f"c{c}": max(40, args.photos_per_connection * c) for c in levels}
    counts["rate"] = args.rate_photos

    from exifray.data.synth import SynthConfig, generate

    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-crawl-") as tmp:
        source = Path(tmp) / "source"
        generate(source, SynthConfig(photos=max(counts.values()), image_size=96, seed=0))
        ready, stop = ctx.Queue(), ctx.Event()
        server = ctx.Process(target=_serve, args=(str(source), args.latency, counts, ready, stop), daemon=True)
        server.start()
        try:
            api, static = ready.get(timeout=120)
            rows = []
            for c in levels:
                report, wall = _crawl(api, static, f"c{c}", Path(tmp) / f"out-c{c}", c, rate_limit=1e9)
                rows.append((c, report.downloaded, report.downloaded / wall, report.requests / wall))
            rate_report, rate_wall = _crawl(api, static, "rate", Path(tmp) / "out-rate", 16, args.rate_limit)
        finally:
            stop.set()
            server.join(timeout=10)

    print(f"fake Flickr latency {args.latency * 1000:.0f} ms per answer; each photo = getExif + image "
          f"(+ key check and listing per run)")
    baseline = rows[0][2]
    for c, photos, per_s, requests_per_s in rows:
        print(f"concurrency {c:3d}: {photos:5d} photos, {per_s:7.1f} photos/s, {requests_per_s:7.1f} requests/s "
              f"({per_s / baseline:5.2f}x concurrency {rows[0][0]})")
    limit_per_s = args.rate_limit / 3600
    reached = rate_report.requests / rate_wall
    print(f"rate limit {args.rate_limit:.0f}/h = {limit_per_s:.2f} requests/s at concurrency 16: "
          f"{rate_report.requests} requests in {rate_wall:.1f} s = {reached:.2f} requests/s "
          f"({reached / limit_per_s:.1%} of the limit), {rate_report.downloaded / rate_wall:.2f} photos/s")


if __name__ == "__main__":
    main()
