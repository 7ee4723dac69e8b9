from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from exifray.crawl.records import CrawlDir
from exifray.data.synth import PRESENCE, SCENARIOS, SynthConfig, generate
from exifray.errors import ConfigError, UnknownNameError
from exifray.exif.parse import read_flickr_exif, read_jpeg_exif


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "crawl"
    generate(root, SynthConfig(photos=400, seed=7, image_size=32))
    return root


def test_synth_writes_a_crawl_dir_with_thesis_concepts(crawl: Path) -> None:
    records = [r for _, r, _ in CrawlDir(crawl).iter_records()]
    assert len(records) == 400 and len({r.id for r in records}) == 400
    assert all((crawl / r.image).is_file() and (crawl / r.exif).is_file() for r in records)
    concepts = Counter(tuple(r.extra["true_labels"]) for r in records)
    assert set(concepts) == {(s, sub) for s, subs in SCENARIOS["indoor_outdoor"].items() for sub in subs}
    assert max(concepts.values()) - min(concepts.values()) <= 1  # balanced
    noisy = sum(r.labels != r.extra["true_labels"] for r in records)
    assert 5 <= noisy <= 40  # ~5 % label noise


def test_synth_json_and_embedded_exif_agree(crawl: Path) -> None:
    for _, record, _ in list(CrawlDir(crawl).iter_records())[:80]:
        from_json = read_flickr_exif((crawl / record.exif).read_bytes()).tags
        from_jpeg = read_jpeg_exif(crawl / record.image).tags
        assert from_json.keys() == from_jpeg.keys()
        for tag, value in from_json.items():
            assert float(from_jpeg[tag]) == pytest.approx(float(value), rel=1e-3, abs=1e-3), tag


def test_synth_missing_rates_follow_real_world_rates(crawl: Path) -> None:
    present: Counter[str] = Counter()
    for _, record, _ in CrawlDir(crawl).iter_records():
        present.update(read_flickr_exif((crawl / record.exif).read_bytes()).tags.keys())
    for tag, share in PRESENCE.items():
        assert present[tag] / 400 == pytest.approx(share, abs=0.08), tag


def test_synth_reproduces_flickr_number_quirks(crawl: Path) -> None:
    kinds: Counter[tuple[str, str]] = Counter()
    for path in sorted((crawl / "exif").glob("*.json"))[:100]:
        for entry in json.loads(path.read_text())["photo"]["exif"]:
            kinds[(entry["tag"], type(entry["raw"]["_content"]).__name__)] += 1
    assert kinds[("FNumber", "float")] > 0 and kinds[("FNumber", "str")] > 0
    assert kinds[("ISO", "str")] > kinds[("ISO", "int")] > 0


def test_synth_exif_differs_by_super_concept(crawl: Path) -> None:
    iso: dict[str, list[float]] = {"indoor": [], "outdoor": []}
    for _, record, _ in CrawlDir(crawl).iter_records():
        tags = read_flickr_exif((crawl / record.exif).read_bytes()).tags
        if "ISO" in tags:
            iso[record.extra["true_labels"][0]].append(float(tags["ISO"]))
    median = {k: sorted(v)[len(v) // 2] for k, v in iso.items()}
    assert median["indoor"] > 1.5 * median["outdoor"]
    assert min(iso["indoor"]) < max(iso["outdoor"])  # overlapping, not separable by one threshold


def test_synth_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate(tmp_path / name, SynthConfig(scenario="moving_static", photos=12, seed=3, image_size=24))
    assert (tmp_path / "a" / "photos.jsonl").read_bytes() == (tmp_path / "b" / "photos.jsonl").read_bytes()
    images_a = sorted((tmp_path / "a" / "images").iterdir())
    assert [p.read_bytes() for p in images_a] == [(tmp_path / "b" / "images" / p.name).read_bytes() for p in images_a]


@pytest.mark.parametrize(("settings", "error"), [({"scenario": "underwater"}, UnknownNameError),
                                                 ({"photos": 0}, ConfigError), ({"image_signal": 1.5}, ConfigError)])
def test_synth_config_validation(settings: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        SynthConfig(**settings)
