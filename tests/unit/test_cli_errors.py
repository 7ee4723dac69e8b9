"""Errors a user can cause: one line on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CASES = [
    (["ingest", "/no/such/dir", "--out", "{tmp}/d"], "input directory does not exist: /no/such/dir"),
    (["ingest", "{tmp}", "--out", "{tmp}/d", "--sizes", "3a"], "argument --sizes"),
    (["ingest", "{tmp}", "--out", "{tmp}/d", "--split", "0.5,0.5"], "argument --split"),
    (["ingest", "{tmp}", "--out", "{tmp}/d", "--labels", "leaf"], "argument --labels: invalid choice"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/o", "--backbone", "EffNetB0"], "unknown backbone 'EffNetB0'"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/o", "--exif-tags", "ISO,Fnumbr"], "did you mean FNumber"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/o", "--fusion-width", "0"], "fusion_width must be > 0, got 0"),
    (["train", "--data", "{tmp}/none", "--out", "{tmp}/o"], "dataset directory does not exist"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/o"], "not a dataset dir"),
    (["synth", "{tmp}/s", "--scenario", "underwater"], "unknown scenario 'underwater'"),
    (["synth", "{tmp}/s", "--photos", "0"], "photos must be >= 1, got 0"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/o", "--learning-rate", "fast"], "argument --learning-rate"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["ingest", "{tmp}", "--out", "{tmp}/d", "--format", "zip"], "argument --format: invalid choice"),
    (["crawl", "search", "boat", "--out", "{tmp}/c", "--per-page", "501"], "per_page must be 1..500, got 501"),
    (["crawl", "group", "1@N01", "--out", "{tmp}/c", "--size", "x"], "size must be one of Flickr's size keys"),
    (["crawl", "group", "1@N01", "--out", "{tmp}/c", "--require-tags", "ISO"], "--require-tags needs --exif"),
    (["crawl", "group", "1@N01", "--out", "{tmp}/c", "--exif", "--require-tags", "Fnumbr"], "did you mean FNumber"),
    (["crawl", "group", "1@N01", "--out", "{tmp}/c", "--metadata-only"], "--metadata-only needs --metadata-out"),
    (["crawl", "photos", "{tmp}/none.json", "--out", "{tmp}/c"], "metadata file does not exist"),
    (["crawl", "photos", "{tmp}", "--out", "{tmp}/c", "--rate-limit", "0"], "rate_limit must be > 0"),
    (["crawl", "group", "1@N01", "--out", "{tmp}/c", "--api-url", "ftp://x"], "api_url must be an http(s) URL"),
    (["crawl", "group", "1@N01", "--out", "{tmp}/c", "--api-url", "http://127.0.0.1:9/services/rest/"],
     "FLICKR_API_KEY is not set"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(c[0][:2]) + f"-{i}" for i, c in enumerate(CASES)])
def test_user_errors_end_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    env = {k: v for k, v in os.environ.items() if k != "FLICKR_API_KEY"}
    result = subprocess.run([sys.executable, "-m", "exifray", *argv], capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr
