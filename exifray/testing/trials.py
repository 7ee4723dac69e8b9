"""A report callback for tests of resumable trials: it saves the training state after every epoch into its own
folder (as Tune keeps a checkpoint per epoch) and can crash the trial after a given epoch, as a lost node would."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from exifray import schema

if TYPE_CHECKING:
    from exifray.train import TrainingState


class Saver:
    """`run_trial(..., report=Saver(folder, crash_after=2))`; `saver.folder(epoch)` is that epoch's saved state."""

    def __init__(self, root: Path, crash_after: int | None = None):
        self.root, self.crash_after = root, crash_after
        self.epochs: list[int] = []

    def __call__(self, row: dict[str, float | int | str], state: TrainingState) -> None:
        epoch = row[schema.EPOCH]
        assert isinstance(epoch, int)
        folder = self.folder(epoch)
        folder.mkdir(parents=True)
        state.save(folder)
        self.epochs.append(epoch)
        if self.crash_after is not None and epoch >= self.crash_after:
            raise KeyboardInterrupt("the node went away")  # nothing in run_trial catches it

    def folder(self, epoch: int) -> Path:
        return self.root / f"epoch{epoch}"
