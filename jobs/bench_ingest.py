"""Benchmark: ingest throughput against a process pool doing the same work, measured in the same run.

    python jobs/bench_ingest.py                        # 6,000 synthetic 480-px photos, sizes 50,150
    ray job submit --working-dir . -- python jobs/bench_ingest.py --smoke-test

1. one process, full decode (no draft mode) and draft mode: the decode alone (`read_photo`);
2. the pool: a `ProcessPoolExecutor` with a worker per CPU running `process_shard` on the same shards ingest
   plans (decode, EXIF parse, Parquet write, summary) — the work without Ray;
3. the whole `exifray ingest` on Ray Data: listing and planning, starting Ray (reported on its own), the shard
   tasks, the card.
Prints photos/s for each, the pipeline's ratio to the pool (shard tasks only, and whole), and where one shard's
time goes (decode, EXIF parse, Parquet write) from a profile of one shard in this process. Joins the Ray cluster in
RAY_ADDRESS when set, otherwise starts Ray in-process.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path


def _decode_all(paths: list[Path], sizes: tuple[int, ...], draft: bool) -> float:
    from exifray.data.photo import DecodeParams, read_photo

    # draft=None: Pillow's DCT scaling to the largest size (what ingest does); a huge target decodes in full.
    params = DecodeParams(sizes, draft=None if draft else 10**6, max_pixels=10**9)
    started = time.perf_counter()
    for path in paths:
        read_photo(path.read_bytes(), params, with_exif=False)
    return len(paths) / (time.perf_counter() - started)


def _pool(items: list[dict], workers: int) -> float:
    """Seconds for a process pool to run every shard (workers started before the clock, as a warm pool)."""
    from concurrent.futures import ProcessPoolExecutor

    from exifray.data.ingest import process_shard

    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(abs, range(workers)))  # start the workers
        started = time.perf_counter()
        list(pool.map(process_shard, items))
        return time.perf_counter() - started


def _where_the_time_goes(item: dict) -> dict[str, float]:
    """One shard in this process, split into reading+decoding (with EXIF), and writing Parquet."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from exifray.data.ingest import decode_record
    from exifray.data.photo import DecodeParams, Rejected

    records = json.loads(item["records"])
    params = DecodeParams(tuple(item["sizes"]), max_pixels=item["max_pixels"], max_bytes=item["max_bytes"])
    started = time.perf_counter()
    decoded = []
    for record in records:
        try:
            decoded.append(decode_record(record, params))
        except Rejected:
            continue
    decode_s = time.perf_counter() - started
    started = time.perf_counter()
    table = pa.table({f"image_{size}": [d.images[size] for d in decoded] for size in params.sizes})
    pq.write_table(table, pa.BufferOutputStream(), compression="zstd")
    write_s = time.perf_counter() - started
    return {"decode_and_exif_s": decode_s, "parquet_s": write_s, "photos": len(decoded)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=6000)
    parser.add_argument("--image-size", type=int, default=480, help="rendered photo size in px")
    parser.add_argument("--sizes", default="50,150")
    parser.add_argument("--smoke-test", action="store_true", help="100 photos at 320 px")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.smoke_test:
        args.photos, args.image_size = 100, 320
    sizes = tuple(int(s) for s in args.sizes.split(","))

    import ray

    from exifray.config import IngestConfig
    from exifray.data.ingest import plan_ingest, run_ingest
    from exifray.data.synth import SynthConfig, generate

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        crawl = Path(tmp) / "crawl"
        generate(crawl, SynthConfig(photos=args.photos, image_size=args.image_size, seed=0))
        paths = sorted((crawl / "images").iterdir())
        baseline = _decode_all(paths[:500], sizes, draft=False)
        drafted = _decode_all(paths[:500], sizes, draft=True)
        pool_config = IngestConfig(inputs=(str(crawl),), out=str(Path(tmp) / "pool"), sizes=sizes)
        items = plan_ingest(pool_config).items(pool_config, "pool")
        workers = os.cpu_count() or 1
        pool_s = _pool(items, workers)
        split = _where_the_time_goes(items[0])
        started = time.perf_counter()
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        ray_start_s = time.perf_counter() - started
        summary = run_ingest(IngestConfig(inputs=(str(crawl),), out=str(Path(tmp) / "dataset"), sizes=sizes))
    photos = summary.photos
    pool = photos / pool_s
    whole = photos / summary.seconds
    print(f"photos={photos} image_size={args.image_size} sizes={args.sizes} cpus={workers}", flush=True)
    print(f"1 process, full decode (500 photos)     : {baseline:8.1f} photos/s", flush=True)
    print(f"1 process, draft-mode decode (500)      : {drafted:8.1f} photos/s  ({drafted / baseline:.2f}x full)",
          flush=True)
    print(f"process pool, {workers} workers, same shards : {pool:8.1f} photos/s  (1.00x: decode, EXIF, Parquet)",
          flush=True)
    print(f"exifray ingest, whole command          : {whole:8.1f} photos/s  ({whole / pool:.2f}x the pool; "
          f"{summary.seconds:.1f} s incl. listing, planning, the card)", flush=True)
    pipeline = photos / summary.pipeline_s
    print(f"exifray ingest, the shard tasks alone  : {pipeline:8.1f} photos/s  ({pipeline / pool:.2f}x the pool; "
          f"Ray Data over the same shards)", flush=True)
    print(f"Ray start (reported apart)             : {ray_start_s:8.1f} s", flush=True)
    print(f"warming workers and Ray Data's actors  : {summary.warm_s:8.1f} s  (inside the whole command)", flush=True)
    total = split["decode_and_exif_s"] + split["parquet_s"]
    print(f"one shard of {split['photos']:.0f} photos in one process: decode+EXIF "
          f"{100 * split['decode_and_exif_s'] / total:.0f} %, Parquet write {100 * split['parquet_s'] / total:.0f} %",
          flush=True)

if __name__ == "__main__":
    main()
