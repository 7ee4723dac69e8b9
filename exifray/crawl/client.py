"""One aiohttp session to the Flickr REST API and its static image host: timeouts, a request-rate limit
shared by every concurrent request (aiolimiter), retries with exponential backoff and jitter (tenacity).

    async with FlickrClient(ClientConfig(), api_key) as client:
        body = await client.call("flickr.photos.getExif", photo_id="123", secret="abc")
        jpeg = await client.download("https://live.staticflickr.com/65535/123_abc.jpg")

The API key travels in the POST body, never in a URL, so it cannot leak through an exception or a log
line that names the request; no message this module writes contains it.

Retried (transient): HTTP 429 (honouring Retry-After) and 5xx, timeouts, connection resets, truncated
bodies, a 200 whose body is not what was asked for (HTML instead of JSON, bytes that are not a JPEG), and
Flickr's `stat: fail` codes 105/106 ("Service currently unavailable", "Write operation failed"). Other
`stat: fail` codes are permanent answers (`FlickrError`); code 100 (invalid key) is `InvalidKeyError`.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from exifray.config import ClientConfig
from exifray.errors import ExifrayError

logger = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_CODES = frozenset({105, 106})
INVALID_KEY_CODE = 100


class CrawlError(ExifrayError):
    """A crawl cannot go on (bad key, unknown group, empty search, page out of range)."""


class InvalidKeyError(CrawlError, ValueError):
    pass


class FlickrError(ExifrayError):
    """A permanent `stat: fail` answer for one request (e.g. code 1 "Photo not found")."""

    def __init__(self, method: str, code: int, message: str):
        super().__init__(f"{method}: Flickr error {code}: {message}")
        self.method, self.code, self.message = method, code, message


class TransientError(ExifrayError):
    """Worth another try; `retry_after` is the server's wish in seconds, when it said one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class GaveUp(ExifrayError):
    """Every attempt failed transiently; the message is the last reason."""


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    bytes: int = 0


class FlickrClient:
    def __init__(self, config: ClientConfig, api_key: str):
        if not api_key:
            raise InvalidKeyError("FLICKR_API_KEY is not set (get a key at https://www.flickr.com/services/api/)")
        self.config, self._api_key = config, api_key
        self.stats = ClientStats()
        # The limiter lets `rate_limit` requests through per hour, spread evenly (no burst of a whole hour).
        per_second = config.rate_limit / 3600.0
        self._limiter = AsyncLimiter(max_rate=1, time_period=1 / per_second)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never show the key
        return f"FlickrClient(api_url={self.config.api_url!r})"

    async def __aenter__(self) -> FlickrClient:
        timeout = aiohttp.ClientTimeout(total=None, connect=self.config.connect_timeout_s,
                                        sock_read=self.config.read_timeout_s)
        connector = aiohttp.TCPConnector(limit=self.config.concurrency, limit_per_host=self.config.concurrency)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector,
                                              headers={"User-Agent": "exifray-crawler"})
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    # --- public calls ---------------------------------------------------------------------------
    async def call(self, method: str, **params: str | int | None) -> dict[str, Any]:
        """One REST method; returns the `stat: ok` body or raises FlickrError / InvalidKeyError / GaveUp."""
        data = {"method": method, "api_key": self._api_key, "format": "json", "nojsoncallback": "1",
                **{key: str(value) for key, value in params.items() if value is not None}}
        return await self._retrying(method, lambda: self._call_once(method, data))

    async def download(self, url: str) -> bytes:
        """A JPEG from the static host; size-bounded, checked to be a whole JPEG."""
        return await self._retrying("image", lambda: self._download_once(url))

    # --- internals ------------------------------------------------------------------------------
    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(stop=stop_after_attempt(self.config.max_attempts),
                                 wait=self._wait, retry=retry_if_exception_type(TransientError), reraise=True)
        try:
            async for state in retrying:
                with state:
                    if state.retry_state.attempt_number > 1:
                        self.stats.retries += 1
                    return await attempt()
        except TransientError as exc:
            raise GaveUp(f"{what}: gave up after {self.config.max_attempts} attempts: {exc}") from None
        raise AssertionError("unreachable")

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(initial=self.config.backoff_initial_s, max=self.config.backoff_max_s)(state)
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        delay = max(backoff, retry_after) if retry_after is not None else backoff
        logger.info("retry %d in %.1f s: %s", state.attempt_number, delay, error)
        return delay

    async def _request(self, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None, "use FlickrClient as an async context manager"
        await self._limiter.acquire()
        self.stats.requests += 1
        limit = self.config.max_image_bytes if method == "GET" else self.config.max_json_bytes
        try:
            async with self._session.request(method, url, allow_redirects=True, **kwargs) as response:
                # Announced or not, an answer over the bound is refused without reading it all, and not retried.
                announced = response.content_length
                body = b"" if announced is not None and announced > limit else await response.content.read(limit + 1)
                if len(body) > limit or (announced is not None and announced > limit):
                    raise PermanentTooLarge(f"answer exceeds the {limit}-byte bound")
                self.stats.bytes += len(body)
                return response.status, dict(response.headers), body
        except TimeoutError:
            raise TransientError("timed out") from None
        except aiohttp.ClientPayloadError:
            raise TransientError("truncated body (connection closed before the end)") from None
        except aiohttp.ClientConnectionError as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}") from None

    async def _call_once(self, method: str, data: dict[str, str]) -> dict[str, Any]:
        status, headers, body = await self._request("POST", self.config.api_url, data=data)
        _raise_for_status(method, status, headers)
        try:
            answer = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            kind = "HTML" if body.lstrip()[:1] == b"<" else "non-JSON"
            raise TransientError(f"{method}: a {kind} body instead of JSON") from None
        if not isinstance(answer, dict) or answer.get("stat") not in ("ok", "fail"):
            raise TransientError(f"{method}: JSON without stat ok/fail")
        if answer["stat"] == "fail":
            code = int(answer.get("code", -1))
            message = str(answer.get("message", ""))
            if code == INVALID_KEY_CODE:
                raise InvalidKeyError(f"FLICKR_API_KEY was rejected by Flickr (code 100: {message})")
            if code in TRANSIENT_CODES:
                raise TransientError(f"{method}: Flickr error {code}: {message}")
            raise FlickrError(method, code, message)
        return answer

    async def _download_once(self, url: str) -> bytes:
        status, headers, body = await self._request("GET", url)
        if status == 404 or status == 410:
            raise NotFound(f"image not found (HTTP {status})")
        _raise_for_status("image", status, headers)
        if body[:3] != b"\xff\xd8\xff":
            kind = "HTML" if body.lstrip()[:1] == b"<" else "not a JPEG"
            raise TransientError(f"image: a {kind} body instead of a JPEG")
        if b"\xff\xd9" not in body[-1024:]:
            raise TransientError("image: JPEG without its end marker (truncated)")
        return body


class NotFound(ExifrayError):
    """The photo is gone (HTTP 404/410 or Flickr code 1)."""


class PermanentTooLarge(ExifrayError):
    """A download larger than the size bound: not retried."""


MAX_RETRY_AFTER_S = 300.0  # a server asking for a longer wait: the request is given up (the photo listed as failed)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A `Retry-After` header as seconds: delta-seconds (whole or fractional) or an HTTP date; None when absent or
    unreadable; never negative."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _raise_for_status(what: str, status: int, headers: dict[str, str]) -> None:
    if status == 429:
        seconds = retry_after_seconds(headers.get("Retry-After"))
        if seconds is not None and seconds > MAX_RETRY_AFTER_S:
            raise GaveUp(f"{what}: HTTP 429, the server asks to wait {seconds:.0f} s (Retry-After), more than "
                         f"{MAX_RETRY_AFTER_S:.0f} s")
        raise TransientError(f"{what}: HTTP 429 Too Many Requests", retry_after=seconds)
    if status >= 500:
        raise TransientError(f"{what}: HTTP {status}")
    if status != 200:
        raise FlickrError(what, status, f"HTTP {status}")
