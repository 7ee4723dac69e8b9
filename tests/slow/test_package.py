"""A non-editable install carries what the package reads at run time (the albums page `exifray serve` answers
GET / with)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_wheel_ships_the_albums_page(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: building writes build/ and egg-info beside the sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "demo-out",
                                                                "__pycache__", ".mypy_cache", ".ruff_cache"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = tmp_path.glob("exifray-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        page = archive.read("exifray/static/albums.html").decode()
    assert page == (ROOT / "exifray" / "static" / "albums.html").read_text()
