"""Ray job entrypoint: crawl Flickr into a CRAWL DIR (the arguments of `exifray crawl`).

    ray job submit --runtime-env jobs/runtime_env.yaml \
        -- python jobs/crawl.py search "kitchen interior" --out /mnt/shared/crawl --exif --page-limit 4

The key comes from FLICKR_API_KEY on the node that runs the job's driver (set it in the cluster's
environment: job submissions and their runtime envs are visible on the dashboard, so do not put it there).
    ray job submit --runtime-env jobs/runtime_env.yaml -- python jobs/crawl.py --smoke-test

`--smoke-test [--out DIR]` needs no key and no network: it renders 60 synthetic photos, serves them from
the fake Flickr in `exifray/testing/simulator.py` on 127.0.0.1 (with a few injected faults) and crawls them
into DIR/crawl (default: a fresh temporary folder).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


async def _smoke(root: Path) -> int:
    from exifray.cli import main as cli
    from exifray.data.synth import SynthConfig, generate
    from exifray.testing.simulator import FlickrSimulator

    generate(root / "source", SynthConfig(photos=60, seed=0, image_size=96))
    key = "smoke-test-key"
    simulator = FlickrSimulator.from_crawl_dir(root / "source", groups={"42@N01": None}, api_keys={key})
    for photo_id in simulator.order[::7]:
        simulator.faults.add(f"image:{photo_id}", "http500", "truncated")
    api, static = await simulator.start()
    import os

    os.environ["FLICKR_API_KEY"] = key
    try:
        argv = ["crawl", "group", "42@N01", "--out", str(root / "crawl"), "--exif", "--per-page", "25",
                "--api-url", api, "--static-url", static, "--rate-limit", "1000000"]
        return await asyncio.to_thread(cli, argv)
    finally:
        await simulator.stop()


def main() -> int:
    if "--smoke-test" in sys.argv[1:]:
        from exifray.testing.smoke import smoke_arguments

        out = smoke_arguments(sys.argv[1:], "crawl")
        print(f"crawl smoke test: writing to {out}", flush=True)
        return asyncio.run(_smoke(out))
    from exifray.cli import main as cli

    return cli(["crawl", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
