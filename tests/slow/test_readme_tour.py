"""The README's ten-minute tour, run as written: every command of its code block, in order, in one folder; then
its Python example in the same folder."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from exifray.cli import main

ROOT = Path(__file__).resolve().parents[2]


def tour_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## A ten-minute tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "the tour has no bash block"
    return [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_tour_runs_as_written(tmp_path: Path, ray_local: None, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    commands = tour_commands()
    assert [shlex.split(c)[1] for c in commands] == ["synth", "ingest", "sweep", "leaderboard", "export-best",
                                                     "predict", "organize"]
    (tmp_path / "search_spaces").symlink_to(ROOT / "search_spaces")
    monkeypatch.chdir(tmp_path)
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "exifray"
        code = main(words[1:])
        assert code == 0, f"{command}: {capsys.readouterr().err[-2000:]}"
    tour = tmp_path / "tour"
    board = pd.read_csv(tour / "experiments" / "demo" / "analysis" / "leaderboard.csv")
    assert len(board) == 1 and board.loc[0, "status"] == "complete"
    assert (tour / "experiments" / "demo" / "analysis" / "report.html").stat().st_size > 0
    assert (tour / "best" / "settings.json").is_file()
    photos = sorted(p for p in (tour / "crawl" / "images").rglob("*") if p.is_file())
    rows = [json.loads(line) for line in (tour / "tags.jsonl").read_text().splitlines()]
    classes = json.loads((tour / "best" / "settings.json").read_text())["classes"]
    assert len(rows) == len(photos) == 300 and all(set(row["probabilities"]) == set(classes) for row in rows)
    assert not (tour / "albums").exists() or not any(p.is_file() for p in (tour / "albums").rglob("*"))  # dry run
    assert os.getcwd() == str(tmp_path)

    names: dict[str, object] = {}
    exec(compile(python_example(), "README.md", "exec"), names)  # as written, after the tour's commands
    board = names["board"]
    assert isinstance(board, pd.DataFrame) and len(board) == 2
    written = pd.read_csv(tour / "notebook" / "demo" / "leaderboard.csv")
    pd.testing.assert_frame_equal(board.reset_index(drop=True), written, check_dtype=False)
    best = names["best"]
    complete = written[written["status"] == "complete"]
    assert isinstance(best, pd.Series) and best["trial_id"] == complete.iloc[0]["trial_id"]  # ranked first
    tags = names["tags"]
    assert isinstance(tags, pd.DataFrame) and len(tags) == 300
    assert {Path(p).name for p in tags["path"]} == {p.name for p in photos}
    assert {f"p_{c}" for c in classes} <= set(tags.columns) and tags["error"].eq("").all()


def python_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## In Python.*?```python\n(.*?)```", text, re.DOTALL)
    assert block, "the README has no Python example"
    return block.group(1)
