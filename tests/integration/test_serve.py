"""`exifray serve` as a user runs it: its own process, real Ray Serve on local Ray, the bundle read from moto's S3,
an API key, real HTTP. Every bad-input case answered with its status and a body naming it; batching across
concurrent clients; schemathesis finds no 5xx; the albums page in Chromium (Playwright, Debian's chromium)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from exifray.bundle import load_model
from exifray.data.photo import read_photo
from exifray.tagging import make_policy
from exifray.testing.browser import chromium
from exifray.testing.photos import train_bundle
from exifray.testing.s3 import free_port, moto_server, s3_filesystem

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
KEY = "correct horse battery staple"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("serve")
    photos, _, bundle = train_bundle(root, photos=80, seed=9, exif_tags=("FNumber", "ISO"))
    with moto_server(root) as env:
        fs = s3_filesystem(env, "models")
        import pyarrow.fs as pafs

        pafs.copy_files(str(bundle), "models/best", destination_filesystem=fs)
        port = free_port()
        env = {**env, "EXIFRAY_TEST_KEY": KEY}
        log = (root / "serve.log").open("wb")
        process = subprocess.Popen(
            [str(BIN / "exifray"), "serve", "s3://models/best", "--port", str(port), "--num-cpus", "2",
             "--max-images", "10", "--max-request-mb", "1", "--batch-wait-timeout-s", "0.2",
             "--api-key-env", "EXIFRAY_TEST_KEY"], env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                log.flush()
                assert process.poll() is None and time.monotonic() < deadline, \
                    (root / "serve.log").read_text()[-3000:]
                time.sleep(1)
            yield {"url": url, "photos": photos, "bundle": bundle, "log": root / "serve.log", "process": process}
        finally:
            process.terminate()
            process.wait(timeout=120)
            log.close()


def _post(url: str, body: bytes, content_type: str = "application/json", key: str | None = KEY
          ) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Content-Type": content_type, **({"X-API-Key": key} if key is not None else {})}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_a_batch_of_eight_is_answered_in_order(server: dict[str, Any]) -> None:
    files = sorted(server["photos"].rglob("*.jpg"))[:8]
    payload = json.dumps({"images": [_b64(p) for p in files]}).encode()
    status, body, headers = _post(f"{server['url']}/classify", payload)
    assert status == 200, body
    loaded = load_model(server["bundle"])
    params = loaded.decode_params()
    photos = [read_photo(p.read_bytes(), params) for p in files]
    inputs = loaded.photo_inputs(np.stack([p.images[24] for p in photos]).astype(np.float32),
                                 [p.exif.as_floats() for p in photos])
    expected = make_policy(False).tags(np.asarray(loaded.model(inputs, training=False)), loaded.classes)
    assert body["tags"] == expected
    assert len(headers["x-batch-sizes"].split(",")) == 8


def _tiff_float() -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.ones((8, 8), dtype=np.float32)).save(buffer, format="TIFF")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(("body", "status", "error"), [
    (b"{not json", 400, "malformed_body"),
    (b'{"pictures": []}', 400, "malformed_body"),
    (b'{"images": "abc"}', 400, "malformed_body"),
    (b'{"images": ["%%%"]}', 400, "not_base64"),
    (json.dumps({"images": [base64.b64encode(b"<html>hi</html>").decode()]}).encode(), 400, "not_an_image"),
    (json.dumps({"images": [_tiff_float()]}).encode(), 400, "unsupported_mode"),
    (json.dumps({"images": ["aGk="] * 11}).encode(), 413, "too_many_images"),
    (json.dumps({"images": ["A" * (2 * 2**20)]}).encode(), 413, "request_too_large"),
])
def test_bad_input_gets_its_status_and_a_body_naming_it(server: dict[str, Any], body: bytes, status: int,
                                                        error: str) -> None:
    got, answer, _ = _post(f"{server['url']}/classify", body)
    assert (got, answer["error"]) == (status, error), answer
    assert answer["detail"]
    if error in ("not_base64", "not_an_image", "unsupported_mode"):
        assert answer["index"] == 0
    good = _post(f"{server['url']}/classify", json.dumps({"images": [_b64(sorted(server["photos"].rglob("*.jpg"))[0])]
                                                          }).encode())
    assert good[0] == 200  # the server still answers after it


def test_v1_predict_keeps_good_images_and_refuses_other_formats(server: dict[str, Any]) -> None:
    photo = sorted(server["photos"].rglob("*.jpg"))[0]
    body = json.dumps({"images": [_b64(photo), base64.b64encode(b"nope").decode()]}).encode()
    status, answer, _ = _post(f"{server['url']}/v1/predict", body)
    assert status == 200
    good, bad = answer["results"]
    assert set(good["probabilities"]) == {"indoor", "outdoor"} and good["exif_found"] is True
    assert bad["error"]["error"] == "not_an_image"
    boundary = "exifray-boundary"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.jpg\"\r\n"
                 f"Content-Type: image/jpeg\r\n\r\n").encode() + photo.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    status, answer, _ = _post(f"{server['url']}/v1/predict", multipart, f"multipart/form-data; boundary={boundary}")
    assert status == 200 and answer["results"][0]["name"] == "a.jpg" and "tags" in answer["results"][0]
    assert _post(f"{server['url']}/v1/predict", b"hello", "text/plain")[:2] == (
        415, {"error": "unsupported_media_type", "detail": "send application/json or multipart/form-data, not "
                                                           "text/plain"})


def test_the_api_key_is_required_and_never_logged(server: dict[str, Any]) -> None:
    body = json.dumps({"images": []}).encode()
    assert _post(f"{server['url']}/classify", body, key=None)[0] == 401
    assert _post(f"{server['url']}/classify", body, key="wrong")[0] == 401
    assert _post(f"{server['url']}/classify", body)[0] == 200
    with urllib.request.urlopen(f"{server['url']}/healthz", timeout=10) as response:
        assert json.loads(response.read())["status"] == "ok"  # no key needed
    assert KEY not in server["log"].read_text(errors="replace")


def test_concurrent_clients_share_model_batches(server: dict[str, Any]) -> None:
    photos = sorted(server["photos"].rglob("*.jpg"))[:8]

    def one(path: Path) -> list[int]:
        status, _, headers = _post(f"{server['url']}/classify", json.dumps({"images": [_b64(path)]}).encode())
        assert status == 200
        return [int(size) for size in headers["x-batch-sizes"].split(",")]

    with ThreadPoolExecutor(8) as pool:
        sizes = [size for batch in pool.map(one, photos) for size in batch]
    assert max(sizes) >= 2, sizes  # with batch_wait_timeout_s 0.2, concurrent single-image requests share calls


def test_schemathesis_finds_no_server_error(server: dict[str, Any], tmp_path: Path) -> None:
    run = subprocess.run([str(BIN / "schemathesis"), "run", f"{server['url']}/openapi.json", "--checks",
                          "not_a_server_error", "-H", f"X-API-Key: {KEY}", "--max-examples", "25", "--seed", "1",
                          "--request-timeout", "60", "--no-color"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_the_albums_page_sorts_uploads_and_the_slider_resorts(server: dict[str, Any], tmp_path: Path) -> None:
    files = [str(p) for p in sorted(server["photos"].rglob("*.jpg"))[:6]]
    with chromium() as browser:
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda message: problems.append(message.text)
                if message.type == "error" and "401" not in message.text else None)  # 401: before the key
        page.on("dialog", lambda dialog: dialog.accept(KEY))  # the page asks for the key once
        page.goto(server["url"] + "/")
        page.wait_for_function("document.body.dataset.ready === 'true' || null", timeout=60_000)
        assert problems == []
        page.set_input_files("#files", files)
        page.wait_for_selector("section[data-album]", timeout=60_000)

        def counts() -> dict[str, int]:
            albums = page.eval_on_selector_all(
                "section[data-album]", "els => els.map(e => [e.dataset.album, e.querySelectorAll('figure').length])")
            return {name: count for name, count in albums}

        assert sum(counts().values()) == len(files)
        page.fill("#threshold", "1")
        page.dispatch_event("#threshold", "input")
        assert counts() == {"Unknown": len(files)}  # nothing reaches p >= 1: every photo re-sorted, no request
        page.fill("#threshold", "0")
        page.dispatch_event("#threshold", "input")
        assert "Unknown" not in counts() and sum(counts().values()) == len(files)


def test_the_serve_config_in_jobs_builds_the_application(server: dict[str, Any]) -> None:
    """`serve deploy jobs/serve.yaml` imports `exifray.serve:build_app` with the file's args."""
    import importlib

    import yaml
    from ray.serve import Application

    config = yaml.safe_load((Path(__file__).parents[2] / "jobs" / "serve.yaml").read_text())
    (app,) = config["applications"]
    module, name = app["import_path"].split(":")
    builder = getattr(importlib.import_module(module), name)
    assert isinstance(builder({**app["args"], "bundle": str(server["bundle"])}), Application)
