"""The README and docs/ point at things that exist: every relative link, and every `exifray COMMAND` they name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "search_spaces" / "README.md",
         *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
COMMAND = re.compile(r"(?<!from )(?<![\w./-])exifray ([a-z][a-z-]+)")  # not `from exifray import`
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)  # fenced blocks and inline code: where commands are shown


def _named_commands(text: str) -> set[str]:
    return {name for code in CODE.findall(text) for name in COMMAND.findall(code)}


def _subcommands() -> set[str]:
    import argparse

    from exifray.cli import build_parser

    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # argparse's own registry
    return {name for action in actions for name in action.choices}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_exists(page: Path) -> None:
    missing = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"(https?:|mailto:|#)", target):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_exifray_command_named_exists(page: Path) -> None:
    commands = _subcommands()
    named = _named_commands(page.read_text(encoding="utf-8"))
    assert named - commands == set(), f"{page.name} names commands exifray does not have"


def test_the_checks_see_a_broken_link_and_an_unknown_command(tmp_path: Path) -> None:
    text = ("[gone](docs/nowhere.md): exifray crawls photos; `exifray frobnicate --now`, [web](https://ray.io), "
            "`exifray sweep`\n```bash\nexifray ingest x --out y\nexifray leaderbord z\n```\n")
    assert LINK.findall(text) == ["docs/nowhere.md", "https://ray.io"]
    assert _named_commands(text) - _subcommands() == {"frobnicate", "leaderbord"}  # prose is not a command


def test_the_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250
    assert {target for target in LINK.findall("\n".join(lines)) if target.startswith("docs/")} == {
        f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}  # every docs page is linked from it
