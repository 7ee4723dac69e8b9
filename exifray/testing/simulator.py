"""A fake Flickr on 127.0.0.1 for tests, benchmarks and offline demos (aiohttp.web).

    simulator = FlickrSimulator.from_crawl_dir("data/crawl", groups={"1234@N01": None})
    api_url, static_url = await simulator.start()

It answers like the real REST API (`format=json&nojsoncallback=1`), shaped on the saved responses in
`tests/fixtures/flickr/`: the `photos` page envelope with `perpage` sent as a string and `total` sometimes
as one, getExif bodies whose `raw._content` is a string or a number, `{"stat": "fail", "code": N,
"message": ...}` envelopes with each method's own codes (1 "Photo not found", 1 "Group not found", 100
"Invalid API Key", 105 "Service currently unavailable", 112 "Method not found"). Static JPEGs are served at
`/{server}/{id}_{secret}[_{size}].jpg`.

Faults are injected on demand, per request target (`"exif:ID"`, `"info:ID"`, `"image:ID"`, `"page:N"`):
`http500`, `http429` (Retry-After: 1), `http429_date` (Retry-After as an HTTP date), `http429_long`
(Retry-After: 3600), `slow` (answers after `slow_seconds`), `truncated` (a body cut
short of its Content-Length), `html` (a 200 with an HTML error page), `fail105` (Flickr's transient
"Service currently unavailable"), `notjpeg` (a 200 image that is not a JPEG). Transient faults are
consumed one per request; `permanent` ones answer every time. Photo properties stand for permanent
real-world cases: videos, photos deleted after listing (404 / code 1) and listings with unsafe ids.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from exifray.crawl.records import CrawlDir

FAULTS = ("http500", "http429", "http429_date", "http429_long", "slow", "truncated", "html", "fail105", "notjpeg")
METHOD_ERRORS = {
    "flickr.photos.getExif": {1: "Photo not found", 2: "Permission denied"},
    "flickr.photos.getInfo": {1: "Photo not found."},
    "flickr.groups.pools.getPhotos": {1: "Group not found", 2: "You don't have permission to view this pool"},
    "flickr.photos.search": {3: "Parameterless searches have been disabled"},
}
_HTML_ERROR = b"<!DOCTYPE html><html><head><title>Flickr: Something went wrong</title></head><body>Oops</body></html>"


@dataclass
class SimPhoto:
    id: str
    secret: str
    server: str
    jpeg: bytes
    exif: dict[str, Any] | None  # a getExif body; None: the photo has no EXIF (getExif answers an empty list)
    text: str = ""  # what `photos.search` matches (title and tags)
    media: str = "photo"  # "video" for videos
    deleted: bool = False  # listed, but getExif/getInfo answer code 1 and the image 404s
    license: str = "4"


@dataclass
class Faults:
    transient: dict[str, deque[str]] = field(default_factory=dict)
    permanent: dict[str, str] = field(default_factory=dict)

    def add(self, target: str, *faults: str) -> None:
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        self.transient.setdefault(target, deque()).extend(faults)

    def next(self, target: str) -> str | None:
        if target in self.permanent:
            return self.permanent[target]
        queue = self.transient.get(target)
        return queue.popleft() if queue else None


class FlickrSimulator:
    """The fake server. `requests` counts every request by kind, `arrivals` times them, `served_bytes` sums
    the image bytes sent."""

    def __init__(self, photos: Iterable[SimPhoto], groups: Mapping[str, list[str] | None] | None = None,
                 api_keys: Iterable[str] = ("test-key",), latency_s: float = 0.0, slow_seconds: float = 30.0,
                 faults: Faults | None = None, seed: int = 0):
        self.photos = {photo.id: photo for photo in photos}
        self.order = list(self.photos)
        # None as a group's list: every photo is in that group's pool
        self.groups = {gid: (list(ids) if ids is not None else list(self.order)) for gid, ids in (groups or {}).items()}
        self.api_keys = set(api_keys)
        self.latency_s, self.slow_seconds = latency_s, slow_seconds
        self.faults = faults or Faults()
        self.requests: Counter[str] = Counter()
        self.arrivals: list[float] = []  # time.monotonic() of every request, in arrival order
        self.image_paths: list[str] = []  # every image URL path asked for
        self.served_bytes = 0
        self.seen_keys: set[str] = set()
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # --- building -------------------------------------------------------------------------------
    @classmethod
    def from_crawl_dir(cls, root: str | Path, **kwargs: Any) -> FlickrSimulator:
        """Serve the photos of a CRAWL DIR (e.g. one made by `exifray synth`) as if they were on Flickr."""
        return cls(photos_of_crawl_dir(root), **kwargs)

    @classmethod
    def for_metadata_file(cls, path: str | Path, source: str | Path, **kwargs: Any) -> FlickrSimulator:
        """Serve the photos a thesis metadata file names, with JPEGs and EXIF borrowed from a CRAWL DIR in turn.

        Entries with the placeholder server `1234` live on server `65535` here (as on real Flickr, where
        `flickr.photos.getInfo` tells the real one); labels become the photos' searchable text.
        """
        import copy

        from exifray.crawl.crawler import PLACEHOLDER_SERVER, read_metadata_file

        borrowed = photos_of_crawl_dir(source)
        if not borrowed:
            raise ValueError(f"{source} has no photos to serve")
        photos = []
        for index, entry in enumerate(read_metadata_file(path)):
            model = borrowed[index % len(borrowed)]
            server = "65535" if entry.server == PLACEHOLDER_SERVER else entry.server
            exif = copy.deepcopy(model.exif)
            if exif is not None:
                exif["photo"].update(id=entry.id, secret=entry.secret, server=server)
            photos.append(SimPhoto(entry.id, entry.secret, server, model.jpeg, exif, text=" ".join(entry.labels)))
        return cls(photos, **kwargs)

    # --- serving --------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/services/rest/", self._rest)
        app.router.add_get("/{server}/{name}", self._image)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, str]:
        """Start on a free port; returns (api_url, static_url)."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return f"http://{host}:{self.port}/services/rest/", f"http://{host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _delay(self, fault: str | None) -> None:
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        elif self.latency_s:
            await asyncio.sleep(self.latency_s)

    async def _faulty(self, request: web.Request, fault: str | None, body: bytes,
                      content_type: str) -> web.StreamResponse | None:
        """The response a fault replaces the real answer with (None: answer normally)."""
        if fault == "http500":
            return web.Response(status=500, text="Internal Server Error")
        if fault == "http429":
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "1"})
        if fault == "http429_date":  # an HTTP date one second ahead
            when = email.utils.formatdate(time.time() + 1, usegmt=True)
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": when})
        if fault == "http429_long":  # an hour: beyond what a crawl waits for
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "3600"})
        if fault == "html":
            return web.Response(status=200, body=_HTML_ERROR, content_type="text/html")
        if fault == "fail105":
            return _json({"stat": "fail", "code": 105, "message": "Service currently unavailable"})
        if fault == "notjpeg":
            return web.Response(status=200, body=b"GIF89a" + bytes(200), content_type="image/jpeg")
        if fault == "truncated":
            response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[: max(1, len(body) // 2)])
            if request.transport is not None:
                request.transport.close()  # the connection drops mid-body
            return response
        return None

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        method = params.get("method", "")
        self.requests[method] += 1
        self.arrivals.append(time.monotonic())
        key = params.get("api_key", "")
        self.seen_keys.add(key)
        if key not in self.api_keys:
            return _json(_fail(100, "Invalid API Key (Key has invalid format)"))
        handler = {"flickr.photos.licenses.getInfo": self._licenses, "flickr.photos.getExif": self._get_exif,
                   "flickr.photos.getInfo": self._get_info, "flickr.photos.search": self._search,
                   "flickr.groups.pools.getPhotos": self._pool}.get(method)
        if handler is None:
            return _json(_fail(112, f'Method "{method}" not found'))
        target = handler_target(method, params)
        fault = self.faults.next(target) if target else None
        await self._delay(fault)
        body = handler(params)
        encoded = json.dumps(body).encode("utf-8")
        replaced = await self._faulty(request, fault, encoded, "application/json")
        return replaced if replaced is not None else web.Response(body=encoded, content_type="application/json")

    async def _image(self, request: web.Request) -> web.StreamResponse:
        self.requests["image"] += 1
        self.arrivals.append(time.monotonic())
        self.image_paths.append(request.path)
        name = request.match_info["name"]
        photo_id = name.split("_", 1)[0]
        photo = self.photos.get(photo_id)
        expected = photo is not None and name.startswith(f"{photo.id}_{photo.secret}") \
            and request.match_info["server"] == photo.server and name.endswith(".jpg")
        if not expected or photo is None or photo.deleted:
            return web.Response(status=404, text="Not Found")
        fault = self.faults.next(f"image:{photo_id}")
        await self._delay(fault)
        replaced = await self._faulty(request, fault, photo.jpeg, "image/jpeg")
        if replaced is not None:
            return replaced
        self.served_bytes += len(photo.jpeg)
        return web.Response(body=photo.jpeg, content_type="image/jpeg")

    # --- methods --------------------------------------------------------------------------------
    def _licenses(self, params: dict[str, str]) -> dict[str, object]:
        return {"licenses": {"license": [{"id": 0, "name": "All Rights Reserved", "url": ""},
                                         {"id": "4", "name": "Attribution License",
                                          "url": "https://creativecommons.org/licenses/by/2.0/"}]}, "stat": "ok"}

    def _photo_or_fail(self, params: dict[str, str], method: str) -> SimPhoto | dict[str, object]:
        photo = self.photos.get(params.get("photo_id", ""))
        if photo is None or photo.deleted:
            return _fail(1, METHOD_ERRORS[method][1])
        return photo

    def _get_exif(self, params: dict[str, str]) -> dict[str, object]:
        photo = self._photo_or_fail(params, "flickr.photos.getExif")
        if not isinstance(photo, SimPhoto):
            return photo
        if photo.exif is not None:
            return photo.exif
        return {"photo": {"id": photo.id, "secret": photo.secret, "server": photo.server, "farm": 66,
                          "camera": "", "exif": []}, "stat": "ok"}

    def _get_info(self, params: dict[str, str]) -> dict[str, object]:
        photo = self._photo_or_fail(params, "flickr.photos.getInfo")
        if not isinstance(photo, SimPhoto):
            return photo
        return {"photo": {"id": photo.id, "secret": photo.secret, "server": photo.server, "farm": 66,
                          "license": photo.license, "media": photo.media, "title": {"_content": photo.text},
                          "visibility": {"ispublic": 1, "isfriend": 0, "isfamily": 0}}, "stat": "ok"}

    def _page(self, ids: list[str], params: dict[str, str]) -> dict[str, object]:
        per_page = min(max(_int(params.get("per_page"), 100), 1), 500)
        page = max(_int(params.get("page"), 1), 1)
        pages = max(1, math.ceil(len(ids) / per_page))
        chosen = ids[(page - 1) * per_page: page * per_page] if page <= pages else []
        extras = set(params.get("extras", "").split(","))
        photos = []
        for photo_id in chosen:
            photo = self.photos[photo_id]
            item: dict[str, object] = {"id": photo.id, "owner": "12037949754@N01", "secret": photo.secret,
                                    "server": photo.server, "farm": 66, "title": photo.text, "ispublic": 1,
                                    "isfriend": 0, "isfamily": 0}
            if "media" in extras:
                item["media"] = photo.media
            if "license" in extras:
                item["license"] = photo.license
            photos.append(item)
        # Real quirks: perpage is a string; total is an int in some answers and a string in others.
        return {"photos": {"page": page, "pages": pages, "perpage": str(per_page),
                           "total": str(len(ids)) if page % 2 == 0 else len(ids), "photo": photos}, "stat": "ok"}

    def _search(self, params: dict[str, str]) -> dict[str, object]:
        text = params.get("text", "").strip().lower()
        if not text and not params.get("tags"):
            return _fail(3, METHOD_ERRORS["flickr.photos.search"][3])
        words = text.split()
        ids = [pid for pid in self.order if all(w in self.photos[pid].text.lower() for w in words)]
        if params.get("media") == "photos":
            ids = [pid for pid in ids if self.photos[pid].media == "photo"]
        return self._page(ids, params)

    def _pool(self, params: dict[str, str]) -> dict[str, object]:
        group = params.get("group_id", "")
        if group not in self.groups:
            return _fail(1, METHOD_ERRORS["flickr.groups.pools.getPhotos"][1])
        ids = self.groups[group]
        tag = params.get("tags", "").strip().lower()
        if tag:
            ids = [pid for pid in ids if tag in self.photos[pid].text.lower().split()]
        return self._page(ids, params)


def photos_of_crawl_dir(root: str | Path) -> list[SimPhoto]:
    """The photos of a CRAWL DIR (JPEG bytes, getExif body, labels as searchable text)."""
    crawl = CrawlDir(root)
    photos = []
    for _, record, _ in crawl.iter_records():
        if record is None:
            continue
        exif = json.loads((crawl.root / record.exif).read_text()) if record.exif else None
        photos.append(SimPhoto(record.id, record.secret, record.server, (crawl.root / record.image).read_bytes(),
                               exif, text=" ".join(record.labels)))
    return photos


def handler_target(method: str, params: Mapping[str, str]) -> str | None:
    if method == "flickr.photos.getExif":
        return f"exif:{params.get('photo_id', '')}"
    if method == "flickr.photos.getInfo":
        return f"info:{params.get('photo_id', '')}"
    if method in ("flickr.photos.search", "flickr.groups.pools.getPhotos"):
        return f"page:{params.get('page', '1')}"
    return None


def _fail(code: int, message: str) -> dict[str, object]:
    return {"stat": "fail", "code": code, "message": message}


def _json(body: dict[str, object]) -> web.Response:
    return web.Response(body=json.dumps(body).encode("utf-8"), content_type="application/json")


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
