"""Crawl photos (and their getExif bodies) from a group pool, a search or a thesis metadata file into a
CRAWL DIR that `exifray ingest` reads.

    FLICKR_API_KEY=... exifray crawl search "indoor" --out data/crawl --exif --page-limit 2

Resumable and crash-safe: every file is written under a temporary name and renamed; a photo is appended
to `photos.jsonl` only after its image (and EXIF) are in place; a re-run skips photos already listed, drops
a torn last line and removes temporary files a killed run left behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from exifray import schema
from exifray.config import CrawlConfig
from exifray.crawl.client import CrawlError, FlickrClient, FlickrError, GaveUp, NotFound, PermanentTooLarge
from exifray.crawl.records import CrawlDir, PhotoRecord, image_filename, labels_from_concept_key, validate_photo_ref
from exifray.errors import ConfigError, DataError, ExifParseError
from exifray.exif.parse import read_flickr_exif
from exifray.fsutil import TMP_PREFIX, atomic_write_json

logger = logging.getLogger(__name__)

PLACEHOLDER_SERVER = "1234"  # the thesis' metadata files carry it where the real server was not known
REPORT_FILE = "crawl_report.json"


@dataclass
class CrawlReport:
    pages: int = 0
    listed: int = 0
    downloaded: int = 0
    already_complete: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # video, missing_tags, unsafe_id, not_found, ...
    failed: dict[str, str] = field(default_factory=dict)  # photo id -> last reason
    retried: int = 0
    requests: int = 0
    bytes: int = 0
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"] = dict(self.skipped)
        data["requests_per_s"] = self.requests / self.duration_s if self.duration_s else 0.0
        return data

    def line(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"
        return (f"crawl: {self.downloaded} downloaded, {self.already_complete} already complete, {self.listed} listed "
                f"on {self.pages} pages; skipped: {skipped}; {len(self.failed)} failed; {self.retried} retries, "
                f"{self.requests} requests ({self.to_json()['requests_per_s']:.1f}/s), {self.bytes / 1e6:.1f} MB "
                f"in {self.duration_s:.1f} s")


@dataclass
class _Candidate:
    id: str
    secret: str
    server: str
    labels: list[str]
    media: str = "photo"


def read_metadata_file(path: str | Path, labels: tuple[str, ...] = ()) -> list[_Candidate]:
    """A thesis metadata file: a list of {id, secret, server} or {"concept,sub": [...]} (labels merged by id).

    A dict's keys are the labels. A list's photos get `labels` (`--label`) when given, otherwise the file
    name's concept key, as the thesis named its per-label lists (`indoor,kitchen.json` → indoor, kitchen).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"metadata file does not exist: {path}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"metadata file {path} is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        if labels:
            raise ConfigError(f"--label {','.join(labels)!r}: metadata file {path} is a dict whose keys are the "
                              "labels; --label applies to group/search crawls and list files")
        groups = list(data.items())
    elif isinstance(data, list):
        groups = [(",".join(labels) if labels else Path(path).stem, data)]
        if not labels:
            logger.info("labels from the file name %s: %s (--label sets others)", Path(path).name,
                        ", ".join(labels_from_concept_key(Path(path).stem)))
    else:
        raise ConfigError(f"metadata file {path} must be a list of photos or a dict of label -> photos")
    merged: dict[str, _Candidate] = {}
    for key, entries in groups:
        if not isinstance(entries, list):
            raise ConfigError(f"metadata file {path}: {key!r} must map to a list, got {type(entries).__name__}")
        for entry in entries:
            if not isinstance(entry, dict) or "id" not in entry:
                raise ConfigError(f"metadata file {path}: entries need an id, got {entry!r}"[:300])
            candidate = merged.setdefault(str(entry["id"]), _Candidate(str(entry["id"]), str(entry.get("secret", "")),
                                                                      str(entry.get("server", "")), []))
            for label in labels_from_concept_key(key):
                if label not in candidate.labels:
                    candidate.labels.append(label)
    return list(merged.values())


class Crawler:
    def __init__(self, config: CrawlConfig, client: FlickrClient, listed: list[_Candidate] | None = None):
        """`listed`: the photos mode's metadata file, already read (None: read it when listing)."""
        self.config, self.client, self._listed = config, client, listed
        self.crawl = CrawlDir(config.out)
        self.report = CrawlReport()
        self._done: set[str] = set()

    # --- listing --------------------------------------------------------------------------------
    async def _page(self, page: int) -> dict[str, Any]:
        config = self.config
        common: dict[str, str | int | None] = {"per_page": config.per_page, "page": page, "extras": "media,license"}
        try:
            if config.mode == "group":
                body = await self.client.call("flickr.groups.pools.getPhotos", group_id=config.target,
                                              tags=config.filter_tag, **common)
            else:
                body = await self.client.call("flickr.photos.search", text=config.target, media="photos",
                                              sort="relevance", **common)
        except FlickrError as exc:
            what = f"group {config.target!r}" if config.mode == "group" else f"search {config.target!r}"
            raise CrawlError(f"{what}: {exc.message} (Flickr code {exc.code})") from None
        self.report.pages += 1
        return body["photos"]

    async def list_photos(self) -> list[_Candidate]:
        if self.config.mode == "photos":
            return self._listed if self._listed is not None else read_metadata_file(self.config.target,
                                                                                      self.config.labels)
        first = await self._page(self.config.start_page)
        pages, total = int(first["pages"]), int(first["total"])  # Flickr sends these as ints or strings
        what = f"group {self.config.target!r}" if self.config.mode == "group" else f"search {self.config.target!r}"
        if total == 0:
            raise CrawlError(f"{what} has no photos" + (f" tagged {self.config.filter_tag!r}"
                                                        if self.config.filter_tag else ""))
        if self.config.start_page > pages:
            raise CrawlError(f"--start-page {self.config.start_page} is past the last page ({pages} pages of "
                             f"{self.config.per_page} for {what})")
        last = pages if self.config.page_limit is None else min(pages, self.config.start_page +
                                                                self.config.page_limit - 1)
        bodies = [first] + [await self._page(page) for page in range(self.config.start_page + 1, last + 1)]
        labels = list(self.config.labels)
        return [_Candidate(str(p.get("id", "")), str(p.get("secret", "")), str(p.get("server", "")), list(labels),
                           str(p.get("media", "photo"))) for body in bodies for p in body.get("photo", [])]

    # --- one photo ------------------------------------------------------------------------------
    async def _resolve_server(self, candidate: _Candidate) -> None:
        info = (await self.client.call("flickr.photos.getInfo", photo_id=candidate.id))["photo"]
        candidate.secret, candidate.server = str(info.get("secret", "")), str(info.get("server", ""))
        candidate.media = str(info.get("media", candidate.media))

    async def fetch(self, candidate: _Candidate) -> None:
        config = self.config
        try:
            validate_photo_ref(candidate.id, candidate.secret or "0", candidate.server or "0")
        except DataError:
            self.report.skipped["unsafe_id"] += 1
            return
        if candidate.id in self._done:
            self.report.already_complete += 1
            return
        try:
            if candidate.server == PLACEHOLDER_SERVER or not candidate.secret or not candidate.server:
                await self._resolve_server(candidate)
                validate_photo_ref(candidate.id, candidate.secret, candidate.server)
            if candidate.media == "video":
                self.report.skipped["video"] += 1
                return
            exif_body = None
            if config.exif:
                exif_body = await self.client.call("flickr.photos.getExif", photo_id=candidate.id,
                                                   secret=candidate.secret)
                if config.require_tags:
                    found = read_flickr_exif(exif_body).tags
                    if not all(tag in found for tag in config.require_tags):
                        self.report.skipped["missing_tags"] += 1
                        return
            name = image_filename(candidate.id, candidate.secret, candidate.server, config.size)
            suffix = f"_{config.size}" if config.size else ""
            host = config.client.static_url.rstrip("/")
            url = f"{host}/{candidate.server}/{candidate.id}_{candidate.secret}{suffix}.jpg"
            jpeg = await self.client.download(url)
        except (FlickrError, NotFound) as exc:
            if isinstance(exc, NotFound) or exc.code == 1:
                self.report.skipped["not_found"] += 1
            else:
                self.report.failed[candidate.id] = str(exc)
            return
        except DataError:
            self.report.skipped["unsafe_id"] += 1
            return
        except (GaveUp, PermanentTooLarge, ExifParseError) as exc:
            self.report.failed[candidate.id] = str(exc)
            return
        image = self.crawl.write_image(name, jpeg)
        exif = self.crawl.write_exif(candidate.id, exif_body) if exif_body is not None else None
        self.crawl.append_record(PhotoRecord(candidate.id, candidate.secret, candidate.server, candidate.labels,
                                             config.mode, image, exif))
        self._done.add(candidate.id)
        self.report.downloaded += 1

    # --- the whole crawl ------------------------------------------------------------------------
    def prepare_out_dir(self) -> None:
        """Resume: keep complete photos, drop a torn line, remove temporary files of a killed run."""
        root = self.crawl.root
        for folder in (root, root / schema.IMAGES_DIR, root / schema.EXIF_DIR):
            folder.mkdir(parents=True, exist_ok=True)
            for stray in folder.glob(f"{TMP_PREFIX}*"):
                stray.unlink()
        if not self.crawl.photos_path.exists():
            return
        records = [record for _, record, problem in self.crawl.iter_records() if record is not None]
        complete = [r for r in records if (root / r.image).is_file() and (r.exif is None or (root / r.exif).is_file())]
        unique = list({r.id: r for r in complete}.values())
        if len(unique) != len(records):
            logger.info("photos.jsonl: kept %d complete photos of %d lines", len(unique), len(records))
        self.crawl.write_records(unique)
        self._done = {r.id for r in unique}

    async def run(self) -> CrawlReport:
        started = time.perf_counter()
        await self.client.call("flickr.photos.licenses.getInfo")  # validates the key cheaply
        candidates = await self.list_photos()
        self.report.listed = len(candidates)
        if self.config.metadata_only:
            assert self.config.metadata_out is not None
            write_metadata_file(self.config.metadata_out, candidates)
        else:
            self.prepare_out_dir()
            await self._fetch_all(candidates)
        self.report.retried, self.report.requests = self.client.stats.retries, self.client.stats.requests
        self.report.bytes = self.client.stats.bytes
        self.report.duration_s = time.perf_counter() - started
        if not self.config.metadata_only:
            atomic_write_json(self.crawl.root / REPORT_FILE, self.report.to_json())
        return self.report

    async def _fetch_all(self, candidates: list[_Candidate]) -> None:
        import sys

        from tqdm import tqdm

        queue: asyncio.Queue[_Candidate] = asyncio.Queue()
        for candidate in candidates:
            queue.put_nowait(candidate)
        bar = tqdm(total=len(candidates), unit="photo", desc="crawl", disable=not sys.stderr.isatty())
        started = last_log = time.monotonic()
        handled = 0  # a disabled tqdm bar does not count

        async def worker() -> None:
            nonlocal last_log, handled
            while not queue.empty():
                candidate = queue.get_nowait()
                await self.fetch(candidate)
                handled += 1
                bar.update(1)
                if not bar.disable or time.monotonic() - last_log < self.config.progress_every_s:
                    continue
                last_log = time.monotonic()
                logger.info("crawl: %d/%d photos handled, %d downloaded, %d skipped, %d failed, %.1f photos/s",
                            handled, len(candidates), self.report.downloaded, sum(self.report.skipped.values()),
                            len(self.report.failed), handled / max(last_log - started, 1e-9))

        await asyncio.gather(*(worker() for _ in range(self.config.client.concurrency)))
        bar.close()


def write_metadata_file(path: str | Path, candidates: list[_Candidate]) -> None:
    """The thesis format: a list of {id, secret, server}, or a dict by label key when photos have labels."""
    rows = [{"id": c.id, "secret": c.secret, "server": c.server} for c in candidates]
    keys = {",".join(c.labels) for c in candidates}
    if keys == {""}:
        atomic_write_json(path, rows)
        return
    grouped: dict[str, list[dict[str, str]]] = {}
    for candidate, row in zip(candidates, rows, strict=False):
        grouped.setdefault(",".join(candidate.labels), []).append(row)
    atomic_write_json(path, grouped)


async def crawl(config: CrawlConfig, api_key: str) -> CrawlReport:
    # A bad metadata file is an error before the key is needed or any request is made.
    listed = read_metadata_file(config.target, config.labels) if config.mode == "photos" else None
    async with FlickrClient(config.client, api_key) as client:
        return await Crawler(config, client, listed).run()
