"""constraints.txt (the tested versions make test installs) agrees with pyproject.toml's ranges."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(text) for text in [*project["dependencies"], *extras]]


def test_every_declared_dependency_is_pinned_inside_its_range() -> None:
    pins = _pins()
    outside = [f"{r.name}: {pins.get(canonicalize_name(r.name))} not in {r.specifier or 'any'}"
               for r in _requirements()
               if canonicalize_name(r.name) not in pins or not r.specifier.contains(pins[canonicalize_name(r.name)])]
    assert outside == []


def test_every_declared_range_has_a_floor_and_the_lock_pins_exactly() -> None:
    assert all(any(spec.operator in (">=", "==") for spec in r.specifier) for r in _requirements()), \
        [str(r) for r in _requirements() if not any(spec.operator in (">=", "==") for spec in r.specifier)]
    lines = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert lines and all("==" in line for line in lines) and len(lines) == len(_pins())
