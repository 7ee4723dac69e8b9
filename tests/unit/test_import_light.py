from __future__ import annotations

import subprocess
import sys


def test_import_exifray_pulls_in_no_heavy_dependency() -> None:
    code = ("import sys, exifray, exifray.cli, exifray.config, exifray.schema, exifray.exif.parse, "
            "exifray.exif.encode, exifray.crawl.records, exifray.data.sources, exifray.models.registry, "
            "exifray.metrics; exifray.models.registry.list_backbones(); "
            "print(' '.join(m for m in ('tensorflow', 'keras', 'ray', 'aiohttp') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == ""
