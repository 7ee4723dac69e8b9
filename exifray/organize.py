"""`exifray organize BUNDLE SRC... --out ALBUMS`: sort photos into album folders named after the model's classes.

    exifray organize models/best ~/Pictures/2024 --out albums                 # copies (the default)
    exifray organize models/best ~/Pictures/2024 --out albums --mode symlink --dry-run
    exifray organize --undo albums                                           # remove what organize made

Each photo goes into the album of every tag the policy gives it (`exifray.tagging`), `Unknown` when it gets
none. Sources are only read, never moved or changed. A name already taken in an album by a different photo
becomes `name-<first 8 hex of its sha256>.ext`, the same on every run. `ALBUMS/organize.jsonl` has one row
per source photo (where it was placed, the sha256 of what was placed, tags, probabilities, or its error); a
re-run skips photos already placed with the same bundle and content and changes nothing. `--undo` removes
exactly the files organize placed (a placed file the user has since changed is kept and reported), the
thumbnails, the page and the manifest, then album folders left empty. `ALBUMS/index.html` shows the albums
from disk, no server: a grid of small thumbnails (`ALBUMS/.thumbs/`) per album with tags and probabilities.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exifray.errors import ConfigError, InputNotFoundError
from exifray.fsutil import atomic_write_bytes, atomic_write_jsonl, atomic_write_text, is_uri
from exifray.tagging import UNKNOWN, PolicyFlags

if TYPE_CHECKING:
    from exifray.bundle import LoadedModel
    from exifray.tagging import TagPolicy

logger = logging.getLogger(__name__)

MANIFEST = "organize.jsonl"
INDEX = "index.html"
THUMBS = ".thumbs"
THUMBNAIL_PX = 160
MODES = ("copy", "symlink", "hardlink")


@dataclass
class Placement:
    source: str
    album: str
    name: str
    sha256: str

    @property
    def relative(self) -> str:
        return f"{self.album}/{self.name}"


@dataclass
class OrganizeSummary:
    photos: int = 0
    placed: list[Placement] = field(default_factory=list)  # files created this run (or, dry run, that would be)
    unchanged: int = 0  # photos already placed by an earlier run
    errors: list[dict[str, Any]] = field(default_factory=list)
    albums: dict[str, int] = field(default_factory=dict)  # album → photos in it (all runs)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(albums: Path) -> list[dict[str, Any]]:
    path = albums / MANIFEST
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _unique_name(taken: dict[str, str], source: str, sha: str) -> str:
    """The source's file name, or `stem-<sha8>.ext` when a different photo already holds that name."""
    name = Path(source).name
    if taken.get(name, sha) == sha:
        return name
    path = Path(name)
    return f"{path.stem}-{sha[:8]}{path.suffix}"


def _place(source: Path, target: Path, mode: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode == "symlink":
        os.symlink(source.resolve(), target)
    elif mode == "hardlink":
        try:
            os.link(source, target)
        except OSError as exc:
            raise ConfigError(f"cannot hard-link {source} into {target.parent} ({exc.strerror}); the album folder "
                              f"must be on the same file system as the photos — use --mode copy or symlink") from exc
    else:
        staged = target.with_name(f".{target.name}.tmp")
        shutil.copy2(source, staged)
        staged.replace(target)


def _is_ours(target: Path, placement: dict[str, Any]) -> bool:
    """The placed file is still what organize put there (a symlink to its source, or the same content)."""
    if placement["mode"] == "symlink":
        return target.is_symlink() and os.readlink(target) == str(Path(placement["source"]).resolve())
    return target.is_file() and not target.is_symlink() and _sha256_file(target) == placement["sha256"]


def organize(bundle: str, sources: Sequence[str], albums: str | Path, *, mode: str = "copy", dry_run: bool = False,
             policy_flags: PolicyFlags | None = None, concurrency: int = 1) -> OrganizeSummary:
    """Predict and place every photo of `sources` into `albums` (Ray must be running unless nothing is new)."""
    from exifray.bundle import load_model
    from exifray.predict import list_photos
    from exifray.tagging import make_policy

    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {MODES}, got {mode!r}")
    if any(is_uri(s) for s in sources) or is_uri(str(albums)):
        raise ConfigError("organize places files on a local disk: SRC and --out must be local folders")
    root = Path(albums)
    photos = [p for p in list_photos(sources) if not Path(p).resolve().is_relative_to(root.resolve())]
    loaded = load_model(bundle)
    policy = make_policy(loaded.multi_label, calibrated=loaded.thresholds, **(policy_flags or {}))
    previous = {row["source"]: row for row in read_manifest(root)}
    rows, thumbnails = _predicted_rows(loaded, bundle, photos, policy, previous, concurrency)
    summary = OrganizeSummary(photos=len(photos))
    _place_rows(rows, previous, root, mode, dry_run, loaded.bundle_id, summary)
    if dry_run:
        return summary
    root.mkdir(parents=True, exist_ok=True)
    for sha, data in thumbnails.items():
        atomic_write_bytes(root / THUMBS / f"{sha[:16]}.jpg", data)
    everything = {**previous, **rows}
    atomic_write_jsonl(root / MANIFEST, (everything[key] for key in sorted(everything)))
    atomic_write_text(root / INDEX, album_page(list(everything.values()), loaded.classes))
    return summary


def _predicted_rows(loaded: LoadedModel, bundle: str, photos: Sequence[str], policy: TagPolicy,
                    previous: dict[str, dict[str, Any]], concurrency: int
                    ) -> tuple[dict[str, dict[str, Any]], dict[str, bytes]]:
    """(manifest row per source, thumbnail per sha256); photos already placed with this bundle are not predicted
    again."""
    from exifray.predict import prediction_row, run_pipeline

    known = {row["sha256"]: row for row in previous.values()
             if row.get("bundle_id") == loaded.bundle_id and not row.get("error") and row.get("placed")}
    rows: dict[str, dict[str, Any]] = {}
    thumbnails: dict[str, bytes] = {}
    for record in run_pipeline(loaded, bundle, photos, policy, skip=frozenset(known), concurrency=concurrency,
                               thumbnail=THUMBNAIL_PX):
        source = str(Path(str(record["path"])).resolve())
        if bool(record["skipped"]):
            rows[source] = {**known[str(record["sha256"])], "source": source}
            continue
        row = prediction_row(record, loaded.classes)
        rows[source] = {"source": source, **{k: v for k, v in row.items() if k != "path"}, "placed": []}
        thumbnail = record["thumbnail"]
        if isinstance(thumbnail, bytes) and thumbnail:
            thumbnails[str(record["sha256"])] = thumbnail
    return rows, thumbnails


def _place_rows(rows: dict[str, dict[str, Any]], previous: dict[str, dict[str, Any]], root: Path, mode: str,
                dry_run: bool, bundle_id: str, summary: OrganizeSummary) -> None:
    """Give every readable photo its album files (names resolved against earlier runs first, then in source
    order); a photo placed by an earlier run with the same content and bundle keeps its placements."""
    taken: dict[str, dict[str, str]] = defaultdict(dict)  # album → name → sha256, earlier runs first
    for row in previous.values():
        for placement in row.get("placed", []):
            album, name = placement["path"].split("/", 1)
            taken[album][name] = placement["sha256"]
    for source in sorted(rows):
        row = rows[source]
        if row.get("error"):
            summary.errors.append(row)
            continue
        earlier = previous.get(source)
        if earlier and earlier.get("sha256") == row["sha256"] and earlier.get("placed") and \
                earlier.get("bundle_id") == bundle_id:
            row["placed"] = earlier["placed"]
            summary.unchanged += 1
            continue
        placed = []
        for album in row["tags"] or [UNKNOWN]:
            name = _unique_name(taken[album], source, row["sha256"])
            taken[album][name] = row["sha256"]
            placement = Placement(source, album, name, row["sha256"])
            target = root / placement.relative
            if not dry_run and not (target.exists() or target.is_symlink()):
                _place(Path(source), target, mode)
            placed.append({"path": placement.relative, "sha256": row["sha256"], "mode": mode, "source": source})
            summary.placed.append(placement)
        row["placed"] = placed
    for row in rows.values():
        for placement in row.get("placed", []):
            album = placement["path"].split("/", 1)[0]
            summary.albums[album] = summary.albums.get(album, 0) + 1


@dataclass
class UndoSummary:
    removed: list[str] = field(default_factory=list)
    kept_changed: list[str] = field(default_factory=list)  # placed files the user changed since: left in place
    missing: list[str] = field(default_factory=list)


def undo(albums: str | Path) -> UndoSummary:
    """Remove what organize created in `albums`; keep (and report) any placed file the user has changed."""
    root = Path(albums)
    if not (root / MANIFEST).is_file():
        raise InputNotFoundError(f"{albums} has no {MANIFEST}: nothing organize made to undo")
    summary = UndoSummary()
    album_names = set()
    for row in read_manifest(root):
        for placement in row.get("placed", []):
            target = root / placement["path"]
            album_names.add(placement["path"].split("/", 1)[0])
            if not (target.exists() or target.is_symlink()):
                summary.missing.append(placement["path"])
            elif _is_ours(target, placement):
                target.unlink()
                summary.removed.append(placement["path"])
            else:
                summary.kept_changed.append(placement["path"])
    shutil.rmtree(root / THUMBS, ignore_errors=True)
    (root / INDEX).unlink(missing_ok=True)
    (root / MANIFEST).unlink()
    for album in sorted(album_names):
        folder = root / album
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    return summary


# --- the album page (opens from disk) --------------------------------------------------------------------------

_PAGE_CSS = """
body{font-family:system-ui,sans-serif;margin:1rem 2rem;color:#222}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin:1.4rem 0 .4rem}
section{content-visibility:auto;contain-intrinsic-size:auto 600px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:.6rem}
figure{margin:0;padding:.3rem;border:1px solid #ddd;border-radius:4px;font-size:.75rem}
figure img{width:160px;height:160px;object-fit:contain;display:block;margin:auto;background:#f4f4f4}
.bar{height:5px;background:#3b7ddd;margin:1px 0 3px}
.name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.error{color:#a00}
"""


def album_page(rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> str:
    """Static HTML: one section per album (classes in order, `Unknown` last), thumbnails loaded lazily."""
    albums: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    errors = []
    for row in sorted(rows, key=lambda r: r["source"]):
        if row.get("error"):
            errors.append(row)
        for placement in row.get("placed", []):
            album, name = placement["path"].split("/", 1)
            albums[album].append((name, row))
    order = [c for c in classes if c in albums] + sorted(a for a in albums if a not in classes and a != UNKNOWN)
    order += [UNKNOWN] if UNKNOWN in albums else []
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Albums</title>"
             f"<style>{_PAGE_CSS}</style></head><body><h1>Albums</h1><p>"
             + ", ".join(f"<a href='#album-{html.escape(a)}'>{html.escape(a)}</a> ({len(albums[a])})" for a in order)
             + "</p>"]
    for album in order:
        parts.append(f"<section id='album-{html.escape(album)}' data-album='{html.escape(album)}'>"
                     f"<h2>{html.escape(album)} <small>({len(albums[album])})</small></h2><div class='grid'>")
        for name, row in albums[album]:
            bars = "".join(f"<div>{html.escape(c)} {p:.2f}</div><div class='bar' style='width:{100 * p:.0f}%'></div>"
                           for c, p in sorted((row.get("probabilities") or {}).items(), key=lambda kv: -kv[1])[:3])
            thumb = f"{THUMBS}/{row['sha256'][:16]}.jpg"
            parts.append(f"<figure><a href='{html.escape(album)}/{html.escape(name)}'><img loading='lazy' "
                         f"src='{html.escape(thumb)}' alt='{html.escape(name)}'></a><figcaption>"
                         f"<div class='name' title='{html.escape(row['source'])}'>{html.escape(name)}</div>"
                         f"<div>tags: {html.escape(', '.join(row['tags']) or UNKNOWN)}</div>{bars}</figcaption>"
                         f"</figure>")
        parts.append("</div></section>")
    if errors:
        parts.append("<section><h2>Not readable</h2><ul>" + "".join(
            f"<li class='error'>{html.escape(r['source'])}: {html.escape(str(r['error']))}</li>" for r in errors)
                     + "</ul></section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
