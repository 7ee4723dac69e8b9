"""Benchmark: ingest throughput, against baselines measured in the same run.

    python jobs/bench_ingest.py --photos 1000 --image-size 640 --sizes 50,150
    ray job submit --working-dir . -- python jobs/bench_ingest.py --smoke-test

1. baseline: decode every JPEG at full resolution in one process (no draft mode), then resize;
2. draft mode: the same in one process with Pillow's JPEG DCT scaling (what ingest does);
3. the whole `exifray ingest` on Ray Data (listing, decoding, EXIF parsing, Parquet writing).
Prints photos/s for each and the ratios to the baseline. Joins the Ray cluster in RAY_ADDRESS when set
(as under `ray job submit`), otherwise starts Ray in-process.
"""

from __future__ import annotations

import argparse
import logging
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=640, help="rendered photo size (Flickr 'z' is 640)")
    parser.add_argument("--sizes", default="50,150")
    parser.add_argument("--smoke-test", action="store_true", help="100 photos at 320 px")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.smoke_test:
        args.photos, args.image_size = 100, 320
    sizes = tuple(int(s) for s in args.sizes.split(","))

    from exifray.config import IngestConfig
    from exifray.data.ingest import run_ingest
    from exifray.data.synth import SynthConfig, generate

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        crawl = Path(tmp) / "crawl"
        generate(crawl, SynthConfig(photos=args.photos, image_size=args.image_size, seed=0))
        paths = sorted((crawl / "images").iterdir())
        baseline = _decode_all(paths, sizes, draft=False)
        drafted = _decode_all(paths, sizes, draft=True)
        summary = run_ingest(IngestConfig(inputs=(str(crawl),), out=str(Path(tmp) / "dataset"), sizes=sizes))
        full = summary.photos_per_second
    print(f"photos={args.photos} image_size={args.image_size} sizes={args.sizes}")
    print(f"baseline full decode, 1 process : {baseline:8.1f} photos/s  (1.00x)")
    print(f"draft-mode decode,    1 process : {drafted:8.1f} photos/s  ({drafted / baseline:.2f}x)")
    print(f"exifray ingest (Ray Data, all)  : {full:8.1f} photos/s  ({full / baseline:.2f}x, incl. Ray start, "
          f"EXIF parsing, Parquet)")


if __name__ == "__main__":
    main()
