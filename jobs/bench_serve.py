"""Benchmark: `exifray serve` throughput and latency at 1, 8 and 32 concurrent clients, batching on vs off.

    python jobs/bench_serve.py                         # SmallCNN fusion model at 64 px, 480-px JPEGs
    ray job submit --working-dir . -- python jobs/bench_serve.py --smoke-test

Deploys the same application twice on the running Ray (`--max-batch-size 16`, `batch_wait_timeout_s` 0.01, then
`--max-batch-size 1`) and, for each, sends single-photo `POST /classify` requests from N client threads over
real HTTP. Prints photos/s, p50 and p99 latency per N, and the ratios of batching to no batching.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import statistics
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _load(url: str, payloads: list[bytes], clients: int, requests_per_client: int) -> tuple[float, float, float]:
    """(photos/s, p50 ms, p99 ms) with `clients` threads each sending `requests_per_client` requests."""

    def client(index: int) -> list[float]:
        latencies = []
        for step in range(requests_per_client):
            body = payloads[(index * requests_per_client + step) % len(payloads)]
            request = urllib.request.Request(f"{url}/classify", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=300) as response:
                response.read()
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(ms for result in pool.map(client, range(clients)) for ms in result)
    wall = time.perf_counter() - started
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return len(latencies) / wall, statistics.median(latencies), p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="SmallCNN")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--photo-px", type=int, default=480)
    parser.add_argument("--requests", type=int, default=256, help="requests per concurrency level")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--smoke-test", action="store_true", help="TestTinyCNN at 24 px, 160-px photos, 32 requests")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.smoke_test:
        args.backbone, args.image_size, args.photo_px, args.requests = "TestTinyCNN", 24, 160, 32

    import ray
    from ray import serve

    from exifray.serve import build_app
    from exifray.testing.photos import train_bundle

    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    results: dict[int, dict[int, tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        photos, _, bundle = train_bundle(Path(tmp), photos=120, photo_px=args.photo_px, sizes=(args.image_size,),
                                         backbone=args.backbone, epochs=1)
        payloads = [json.dumps({"images": [base64.b64encode(p.read_bytes()).decode()]}).encode()
                    for p in sorted(photos.rglob("*.jpg"))[:64]]
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        url = f"http://127.0.0.1:{args.port}"
        try:
            for batch in (16, 1):
                serve.run(build_app({"bundle": str(bundle), "max_batch_size": batch, "batch_wait_timeout_s": 0.01,
                                     "max_images": 64}), name="exifray", route_prefix="/")
                _load(url, payloads, 1, 4)  # warm up the route
                results[batch] = {n: _load(url, payloads, n, max(1, args.requests // n)) for n in (1, 8, 32)}
                serve.delete("exifray")
        finally:
            serve.shutdown()
    print(f"{args.backbone} fusion model at {args.image_size} px, single-photo POST /classify requests, "
          f"{ray.cluster_resources().get('CPU', 0):g} CPUs, 1 replica", flush=True)
    print("clients | batching (max 16): photos/s  p50 ms  p99 ms | no batching (max 1): photos/s  p50 ms  p99 ms "
          "| throughput ratio", flush=True)
    for n in (1, 8, 32):
        on, off = results[16][n], results[1][n]
        print(f"{n:7d} | {on[0]:27.1f} {on[1]:7.1f} {on[2]:7.1f} | {off[0]:28.1f} {off[1]:7.1f} {off[2]:7.1f} "
              f"| {on[0] / off[0]:.2f}x", flush=True)


if __name__ == "__main__":
    main()
