"""Every shipped search space runs one tiny trial end to end with `exifray sweep --smoke-test`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from exifray.cli import main
from exifray.experiment import LEADERBOARD_FILE

SPACES = sorted((Path(__file__).parents[2] / "search_spaces").glob("*.yaml"))


@pytest.fixture(scope="module")
def smoke_dataset(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    """Every image size the shipped files use (32 for the demo, the thesis' 50 and 150)."""
    from exifray.testing.datasets import make_dataset

    return make_dataset(tmp_path_factory.mktemp("smoke"), photos=90, seed=5, image_size=160, sizes=(32, 50, 150))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_search_space_smoke_test_runs_one_trial(path: Path, smoke_dataset: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", "--space", str(path), "--data", str(smoke_dataset), "--storage-path", str(tmp_path),
                 "--smoke-test"])
    assert code == 0, capsys.readouterr().err[-2000:]
    board = pd.read_csv(tmp_path / path.stem / LEADERBOARD_FILE)
    assert len(board) == 1 and board.loc[0, "status"] == "complete", board.to_dict("records")
    assert 0 <= board.loc[0, "test_f1_macro"] <= 1 and board.loc[0, "emissions_kg"] > 0
    if board.loc[0, "modality"] != "exif":
        assert board.loc[0, "backbone"] == "TestTinyCNN"
    out = capsys.readouterr().out
    assert out.startswith("--smoke-test changed: ") and "sweep finished" in out
    assert " -> 1" in out.splitlines()[0]  # every shipped file trains longer: the first line says it was cut to 1
    # Tune's own banner and its TensorBoard hint (naming the driver's staging folder) no longer compete with ours
    assert "To visualize your results with TensorBoard" not in out and "View detailed results here" not in out
    assert f"TensorBoard:  tensorboard --logdir {tmp_path / path.stem}" in out
