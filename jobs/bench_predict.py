"""Benchmark: `exifray predict` against a plain single-process loop (decode + `model.predict`) on the same photos.

    python jobs/bench_predict.py                  # 2,000 photos at 480 px, a SmallCNN fusion model at 64 px
    ray job submit --working-dir . -- python jobs/bench_predict.py --smoke-test

Both read the same JPEGs with the same decoder (`read_photo`, the bundle's decode parameters) and the same model.
The loop: one process, batches of 32, `model.predict`. `exifray predict`: the Ray Data pipeline (decode tasks,
`--concurrency` model actors), timed whole (including starting the actors) and as photos/s. Prints both and the
ratio. Joins the cluster in RAY_ADDRESS when set, otherwise starts Ray in-process.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path


def _loop(bundle: Path, photos: list[Path], batch_size: int = 32) -> float:
    """Photos per second of the plain loop (model loaded before the clock starts, as a notebook would)."""
    import numpy as np

    from exifray.bundle import load_model
    from exifray.data.photo import read_photo

    loaded = load_model(bundle)
    params = loaded.decode_params()
    size = loaded.image_size or 32
    started = time.perf_counter()
    for start in range(0, len(photos), batch_size):
        decoded = [read_photo(path.read_bytes(), params) for path in photos[start:start + batch_size]]
        inputs = loaded.photo_inputs(np.stack([p.images[size] for p in decoded]), [p.exif.as_floats() for p in decoded])
        loaded.model.predict(inputs, batch_size=batch_size, verbose=0)
    return len(photos) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--photo-px", type=int, default=480)
    parser.add_argument("--backbone", default="SmallCNN")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--smoke-test", action="store_true", help="120 photos at 160 px, TestTinyCNN at 24 px")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.smoke_test:
        args.photos, args.photo_px, args.backbone, args.image_size = 120, 160, "TestTinyCNN", 24

    import ray

    from exifray.predict import predict
    from exifray.testing.photos import train_bundle, write_labelled_jpegs

    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        root = Path(tmp)
        _, _, bundle = train_bundle(root / "train", photos=200, photo_px=args.photo_px, sizes=(args.image_size,),
                                    backbone=args.backbone, epochs=1)
        inbox = root / "inbox"
        write_labelled_jpegs(inbox, args.photos, size=args.photo_px, seed=77)
        photos = sorted(inbox.rglob("*.jpg"))
        loop = _loop(bundle, photos)
        started = time.perf_counter()
        summary = predict(str(bundle), [str(inbox)], str(root / "tags.jsonl"), concurrency=args.concurrency)
        whole = time.perf_counter() - started
    command = len(photos) / whole
    print(f"photos={len(photos)} at {args.photo_px} px, {args.backbone} fusion model at {args.image_size} px, "
          f"{ray.cluster_resources().get('CPU', 0):g} CPUs, concurrency={args.concurrency}", flush=True)
    print(f"plain loop, 1 process (decode + model.predict) : {loop:8.1f} photos/s  (1.00x)", flush=True)
    print(f"exifray predict, whole command                 : {command:8.1f} photos/s  ({command / loop:.2f}x; "
          f"{whole:.1f} s incl. starting the actors)", flush=True)
    print(f"exifray predict, from the pipeline start      : {summary.photos_per_second:8.1f} photos/s  "
          f"({summary.photos_per_second / loop:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
