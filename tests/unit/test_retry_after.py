"""Retry-After as servers send it: seconds, fractions, HTTP dates; waits beyond 300 s give the request up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exifray.crawl.client import GaveUp, TransientError, _raise_for_status, retry_after_seconds

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("header", "seconds"), [
    ("5", 5.0), (" 120 ", 120.0), ("0.5", 0.5), ("0", 0.0), ("-3", 0.0),
    ("Sun, 29 Nov 2026 12:00:30 GMT", 30.0), ("Sun, 29 Nov 2026 11:59:00 GMT", 0.0),
    (None, None), ("", None), ("soon", None), ("nan", None),
])
def test_retry_after_values(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, now=NOW) == seconds


def test_a_429_within_the_cap_is_retried_after_the_servers_wish() -> None:
    with pytest.raises(TransientError) as caught:
        _raise_for_status("image", 429, {"Retry-After": "2.5"})
    assert caught.value.retry_after == 2.5


def test_a_429_asking_for_more_than_300_s_gives_the_request_up_with_the_reason() -> None:
    with pytest.raises(GaveUp, match=r"asks to wait 3600 s \(Retry-After\), more than 300 s"):
        _raise_for_status("image", 429, {"Retry-After": "3600"})
