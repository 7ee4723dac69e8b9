"""`exifray serve BUNDLE`: a REST API for tagging photos, on Ray Serve.

    exifray serve models/best --port 8000 --replicas 1 --max-batch-size 16
    serve run exifray.serve:build_app bundle=models/best          # the same app, started by Ray Serve's CLI
    serve deploy jobs/serve.yaml                                  # on a cluster: a config naming build_app and args

Two deployments: `Api`, the FastAPI ingress (a fraction of a CPU), validates requests and decodes photos with the
dataset's own decoder (`exifray.data.photo`); `Tagger` holds the model and batches images across requests with
`@serve.batch`. Routes: `POST /classify` (the scene-tagging API's shape: `{"images": [base64...]}` →
`{"tags": [[...]]}`, one bad image fails the request with 400 naming its index), `POST /v1/predict` (JSON with
base64 images or multipart uploads; per image tags, probabilities, EXIF found, or an error entry), `GET /healthz`,
`GET /v1/info`, `GET /` (the albums page) and `GET /docs`. Bad input never gets a 500: 400 malformed body or
image, 413 too many images or bytes, 415 a format `/v1/predict` does not read, 401 a missing or wrong key when an
API key is set. Each response says in `X-Batch-Sizes` how many images shared the model call of each image.
"""


import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from ray import serve
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response
from starlette.types import ASGIApp

from exifray.data.photo import Rejected, read_photo
from exifray.errors import ConfigError
from exifray.tagging import PolicyFlags, TagPolicy

logger = logging.getLogger(__name__)

KEY_HEADER = "X-API-Key"
BATCH_HEADER = "X-Batch-Sizes"
INGRESS_CPUS = 0.1
IMAGE_CONTENT_TYPES = ("image/", "application/octet-stream")
OPEN_PATHS = ("/healthz", "/")  # no key needed: the health check, and the albums page (it asks for the key)


@dataclass(frozen=True)
class ServeConfig:
    bundle: str
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.05
    max_images: int = 64
    max_request_mb: float = 32.0
    replicas: int = 1
    tagger_cpus: float = 1.0
    api_key_sha256: str | None = None  # the key itself never reaches Ray (nor its logs)
    policy: PolicyFlags | None = None  # tag policy flags (`exifray.tagging.make_policy`)

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_images", "replicas"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.max_request_mb <= 0 or self.batch_wait_timeout_s < 0:
            raise ConfigError("--max-request-mb must be > 0 and --batch-wait-timeout-s >= 0")


class ClassifyRequest(BaseModel):
    images: list[str]


class BadRequest(Exception):
    def __init__(self, status: int, error: str, detail: str, index: int | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.index = status, error, detail, index

    def response(self) -> JSONResponse:
        body: dict[str, object] = {"error": self.error, "detail": self.detail}
        if self.index is not None:
            body["index"] = self.index
        return JSONResponse(body, status_code=self.status)


app = FastAPI(title="exifray", description="Tag photos with an exported exifray model (image, EXIF or fusion).",
              version="1")


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()) or str(exc)
    return JSONResponse({"error": "malformed_body", "detail": problems}, status_code=400)


@app.exception_handler(BadRequest)
async def _bad_request(request: Request, exc: BadRequest) -> JSONResponse:
    return exc.response()


class _Limits(BaseHTTPMiddleware):
    """API key (every route but /healthz and the page itself, which holds no data and asks for the key) and the
    request size, before the body is read."""

    def __init__(self, app: ASGIApp, key_sha256: str | None, max_bytes: int):
        super().__init__(app)
        self.key_sha256, self.max_bytes = key_sha256, max_bytes

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.key_sha256 and request.url.path not in OPEN_PATHS:
            given = hashlib.sha256(request.headers.get(KEY_HEADER, "").encode()).hexdigest()
            if not hmac.compare_digest(given, self.key_sha256):
                return JSONResponse({"error": "unauthorized", "detail": f"missing or wrong {KEY_HEADER} header"},
                                    status_code=401)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return JSONResponse({"error": "request_too_large",
                                 "detail": f"{length} bytes > --max-request-mb {self.max_bytes / 2**20:g} MiB"},
                                status_code=413)
        return await call_next(request)


def _base64(text: str, index: int) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(400, "not_base64", "the image is not valid base64", index) from None


async def _request_images(request: Request) -> tuple[list[str | None], list[str | bytes]]:
    """The images of a `/v1/predict` request: a JSON body `{"images": [base64, ...]}` or multipart uploads."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest(400, "malformed_body", "the body is not JSON") from None
        if not isinstance(body, dict) or "images" not in body:
            raise BadRequest(400, "malformed_body", "the JSON body needs an 'images' list")
        images = body["images"]
        if not isinstance(images, list) or not all(isinstance(item, str) for item in images):
            raise BadRequest(400, "malformed_body", "'images' must be a list of base64 strings")
        return [None] * len(images), list(images)
    if content_type == "multipart/form-data":
        try:
            form = await request.form()
        except Exception as exc:  # noqa: BLE001 - starlette raises several parser errors; all mean a bad body
            raise BadRequest(400, "malformed_body", f"unreadable multipart body: {exc}") from None
        names: list[str | None] = []
        blobs: list[str | bytes] = []
        for _, value in form.multi_items():
            if isinstance(value, str):
                continue
            kind = (value.content_type or "application/octet-stream").lower()
            if not kind.startswith(IMAGE_CONTENT_TYPES):
                raise BadRequest(415, "unsupported_media_type", f"part {value.filename!r} is {kind}, not an image")
            names.append(value.filename)
            blobs.append(await value.read())
        if not blobs:
            raise BadRequest(400, "malformed_body", "the multipart body has no file parts")
        return names, blobs
    raise BadRequest(415, "unsupported_media_type",
                     f"send application/json or multipart/form-data, not {content_type or 'no content type'}")


@serve.deployment(max_ongoing_requests=64)
class Tagger:
    """The model, batching images across requests."""

    def __init__(self, config: ServeConfig):
        from exifray.bundle import load_model
        from exifray.models.runtime import configure_tensorflow

        configure_tensorflow(None)
        self.loaded = load_model(config.bundle)
        self.predict.set_max_batch_size(config.max_batch_size)
        self.predict.set_batch_wait_timeout_s(config.batch_wait_timeout_s)
        warm: list[tuple[np.ndarray, dict[str, float | None]]] = [(np.zeros((self.size,) * 2 + (3,), np.uint8), {})]
        self._run(warm)  # trace the model before the first request

    @property
    def size(self) -> int:
        return self.loaded.image_size or 1

    def info(self) -> dict[str, object]:
        return {"bundle_id": self.loaded.bundle_id, "classes": self.loaded.classes,
                "multi_label": self.loaded.multi_label, "modality": self.loaded.modality,
                "image_size": self.loaded.image_size, "decode": self.loaded.decode_params().to_dict(),
                "thresholds": self.loaded.thresholds}

    def _run(self, items: list[tuple[np.ndarray, dict[str, float | None]]]) -> np.ndarray:
        images = np.stack([image for image, _ in items]).astype(np.float32)
        inputs = self.loaded.photo_inputs(images, [exif for _, exif in items])
        return np.asarray(self.loaded.model(inputs, training=False), dtype=np.float64)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.05)
    async def predict(self, items: list[tuple[np.ndarray, dict[str, float | None]]]) -> list[tuple[list[float], int]]:
        probabilities = await asyncio.to_thread(self._run, items)
        return [(row.tolist(), len(items)) for row in probabilities]


@serve.deployment(ray_actor_options={"num_cpus": INGRESS_CPUS}, max_ongoing_requests=64)
@serve.ingress(app)
class Api:
    def __init__(self, tagger: Any, config: ServeConfig):
        from exifray.tagging import make_policy

        self.tagger, self.config = tagger, config
        self.info: dict[str, Any] = {}
        self.policy: TagPolicy | None = None
        self._make_policy = make_policy
        app.add_middleware(_Limits, key_sha256=config.api_key_sha256, max_bytes=int(config.max_request_mb * 2**20))

    async def _ready(self) -> tuple[dict[str, Any], TagPolicy]:
        if self.policy is None:
            self.info = await self.tagger.info.remote()
            self.policy = self._make_policy(self.info["multi_label"], calibrated=self.info["thresholds"],
                                            **(self.config.policy or {}))
        return self.info, self.policy

    def _decode(self, data: bytes, index: int) -> tuple[np.ndarray, dict[str, float | None], bool]:
        from exifray.data.photo import DecodeParams

        size = self.info["image_size"] or 32
        params = DecodeParams.recorded((size,), self.info["decode"])
        photo = read_photo(data, params)
        return photo.images[size], photo.exif.as_floats(), photo.exif_found

    async def _tag(self, decoded: list[tuple[np.ndarray, dict[str, float | None], bool]]
                   ) -> tuple[list[list[float]], list[int]]:
        results = await asyncio.gather(*(self.tagger.predict.remote((image, exif)) for image, exif, _ in decoded))
        return [r[0] for r in results], [r[1] for r in results]

    def _check_count(self, count: int) -> None:
        if count > self.config.max_images:
            raise BadRequest(413, "too_many_images", f"{count} images > --max-images {self.config.max_images}")

    @app.get("/healthz")
    async def healthz(self) -> dict[str, object]:
        info, _ = await self._ready()
        return {"status": "ok", "bundle_id": info["bundle_id"]}

    @app.get("/v1/info")
    async def v1_info(self) -> dict[str, object]:
        info, policy = await self._ready()
        return {**info, "policy": policy.describe(), "max_images": self.config.max_images,
                "max_request_mb": self.config.max_request_mb}

    @app.get("/", response_class=HTMLResponse)
    async def page(self) -> str:
        return resources.files("exifray").joinpath("static/albums.html").read_text(encoding="utf-8")

    @app.post("/classify")
    async def classify(self, body: ClassifyRequest) -> JSONResponse:
        """The scene-tagging API: one list of tags per image, in order; one bad image fails the request."""
        info, policy = await self._ready()
        self._check_count(len(body.images))
        decoded = []
        for index, text in enumerate(body.images):
            data = _base64(text, index)
            try:
                decoded.append(self._decode(data, index))
            except Rejected as exc:
                raise BadRequest(400, exc.reason, exc.detail, index) from None
        probabilities, batches = await self._tag(decoded)
        tags = policy.tags(np.array(probabilities), info["classes"]) if probabilities else []
        return JSONResponse({"tags": tags}, headers={BATCH_HEADER: ",".join(map(str, batches))})

    @app.post("/v1/predict")
    async def v1_predict(self, request: Request) -> JSONResponse:
        """Per image: tags, probabilities, EXIF found; an image that cannot be used is an error entry."""
        info, policy = await self._ready()
        names, blobs = await _request_images(request)
        self._check_count(len(blobs))
        entries: list[dict[str, object]] = []
        usable: list[tuple[int, tuple[np.ndarray, dict[str, float | None], bool]]] = []
        for index, (name, blob) in enumerate(zip(names, blobs, strict=True)):
            entries.append({"index": index, "name": name})
            try:
                data = blob if isinstance(blob, bytes) else _base64(blob, index)
                usable.append((index, self._decode(data, index)))
            except Rejected as exc:
                entries[index]["error"] = {"error": exc.reason, "detail": exc.detail}
            except BadRequest as exc:
                entries[index]["error"] = {"error": exc.error, "detail": exc.detail}
        probabilities, batches = await self._tag([d for _, d in usable])
        tags = policy.tags(np.array(probabilities), info["classes"]) if probabilities else []
        for (index, (_, _, exif_found)), row, chosen in zip(usable, probabilities, tags, strict=True):
            entries[index].update({"tags": chosen, "probabilities": dict(zip(info["classes"], row, strict=True)),
                                   "exif_found": exif_found})
        return JSONResponse({"bundle_id": info["bundle_id"], "results": entries},
                            headers={BATCH_HEADER: ",".join(map(str, batches))})


def build_app(args: dict[str, Any]) -> serve.Application:
    """The application: `exifray serve`, and Ray Serve's own `serve run/build exifray.serve:build_app bundle=...`
    (arguments as strings: bundle, max_batch_size, batch_wait_timeout_s, max_images, max_request_mb, replicas)."""
    import os

    known = {field: args[field] for field in ServeConfig.__dataclass_fields__ if field in args}
    for name in ("max_batch_size", "max_images", "replicas"):
        if name in known:
            known[name] = int(known[name])
    for name in ("batch_wait_timeout_s", "max_request_mb", "tagger_cpus"):
        if name in known:
            known[name] = float(known[name])
    if "api_key_env" in args:
        key = os.environ.get(str(args["api_key_env"]))
        if not key:
            raise ConfigError(f"--api-key-env {args['api_key_env']}: that environment variable is not set")
        known["api_key_sha256"] = hashlib.sha256(key.encode()).hexdigest()
    config = ServeConfig(**known)
    options = {"num_replicas": config.replicas, "ray_actor_options": {"num_cpus": config.tagger_cpus},
               "max_ongoing_requests": max(64, config.max_batch_size * 2)}
    tagger = Tagger.options(**options)  # type: ignore[attr-defined]
    return Api.bind(tagger.bind(config), config)  # type: ignore[attr-defined]


def check_resources(config: ServeConfig) -> None:
    """Refuse to deploy what the cluster cannot place (Serve would wait for it forever)."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    needed = config.replicas * config.tagger_cpus + INGRESS_CPUS
    if cpus < needed:
        raise ConfigError(f"{config.replicas} replica(s) of {config.tagger_cpus} CPU plus {INGRESS_CPUS} for the "
                          f"ingress need {needed:g} CPUs; the cluster has {cpus:g}")


def describe(config: ServeConfig) -> dict[str, object]:
    """The config as printed at start (never the key)."""
    shown = asdict(config)
    shown["api_key_sha256"] = "set" if config.api_key_sha256 else None
    return shown
