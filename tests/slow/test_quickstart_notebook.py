"""`examples/quickstart.ipynb` runs top to bottom in a Jupyter kernel (nbclient), at small sizes."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs_and_shows_the_leaderboard_and_the_tagged_photos(
        tmp_path: Path, monkeypatch) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("QUICKSTART_PHOTOS", "120")
    monkeypatch.setenv("QUICKSTART_TRIALS", "2")
    monkeypatch.setenv("QUICKSTART_EPOCHS", "1")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=dict(os.environ))  # raises CellExecutionError on the first failing cell
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    texts = "\n".join(o.get("text", "") for o in outputs) + "\n".join(
        str(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert "2 trials in" in texts and "best: " in texts and "test_f1_macro" in texts
    assert texts.count("<img src=\"data:image/jpeg;base64,") == 12  # twelve photos beside their tags
    board = (tmp_path / "quickstart-out" / "experiments" / "quickstart" / "leaderboard.csv")
    assert board.is_file() and (tmp_path / "quickstart-out" / "best" / "settings.json").is_file()
