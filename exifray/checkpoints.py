"""What a restored trial continues from, when Tune's experiment state and the trial's folder disagree.

Tune restores a trial from the checkpoint its saved experiment state names. A driver that died at the wrong
moment leaves that state behind the trial's folder: the trial may already have saved its final checkpoint
(`finished_checkpoint`), or Tune may already have deleted the named checkpoint (`surviving_checkpoint`).
Paths are on the checkpoint's own pyarrow filesystem (local or S3).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from exifray import schema
from exifray.experiment import RESUME_FILE

if TYPE_CHECKING:
    from ray import tune

logger = logging.getLogger(__name__)


def _later_checkpoints(checkpoint: tune.Checkpoint) -> list[str]:
    """The checkpoint folders the trial saved after `checkpoint`, oldest first (Tune numbers them in order)."""
    import pyarrow.fs as pafs

    parent, name = checkpoint.path.rstrip("/").rsplit("/", 1)
    listing = checkpoint.filesystem.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    return sorted(info.path for info in listing if info.type == pafs.FileType.Directory
                  and info.base_name.startswith("checkpoint_") and info.base_name > name)


def finished_checkpoint(checkpoint: tune.Checkpoint) -> tune.Checkpoint | None:
    """The final checkpoint a trial saved, `checkpoint` (the one Tune restores it from) or a later one, if any.

    When the driver dies after a trial's final report was saved but before Tune's experiment state recorded
    the trial as finished, the restored sweep runs that trial again from its last recorded checkpoint. The
    final checkpoint is that one or still in the trial's folder, and re-reporting it keeps the finished result
    instead of evaluating (or training) again."""
    import pyarrow.fs as pafs
    from ray import tune

    for path in reversed([checkpoint.path, *_later_checkpoints(checkpoint)]):
        if checkpoint.filesystem.get_file_info(f"{path}/{schema.METRICS_FILE}").type == pafs.FileType.File:
            return tune.Checkpoint(path, filesystem=checkpoint.filesystem)
    return None


def surviving_checkpoint(checkpoint: tune.Checkpoint, metrics: Mapping[str, object]
                         ) -> tuple[tune.Checkpoint, dict[str, object]] | None:
    """The checkpoint to restore a trial from when the one Tune's experiment state names is gone, with the
    metrics Tune restores its counters from; None when it is there (or nothing later is).

    Tune deletes a trial's oldest checkpoint (`CheckpointConfig(num_to_keep=2)`) as it registers a newer one,
    and saves its experiment state only afterwards: a driver killed in between leaves a state that names a
    deleted checkpoint, and Tune would fail the trial ("Could not recover from checkpoint"). The deletion
    happened because at least two later checkpoints had been registered, so the oldest of the later ones was
    written in full (the newest may be half-written if the trial died with the driver). Its training iteration
    is its history's length: a trial reports once per epoch, and every report counts one iteration."""
    import pyarrow.fs as pafs
    from ray import tune
    from ray.tune.result import TRAINING_ITERATION

    filesystem = checkpoint.filesystem
    if filesystem.get_file_info(checkpoint.path).type != pafs.FileType.NotFound:
        return None
    later = _later_checkpoints(checkpoint)
    if not later:
        return None
    chosen = tune.Checkpoint(later[0], filesystem=filesystem)
    restored = dict(metrics)
    resume = f"{later[0]}/{RESUME_FILE}"
    if filesystem.get_file_info(resume).type == pafs.FileType.File:  # a final checkpoint holds metrics.json
        with filesystem.open_input_stream(resume) as stream:
            restored[TRAINING_ITERATION] = len(json.loads(stream.read())["history"])
    logger.warning("checkpoint %s is gone (Tune removed it after its last saved state); restoring from %s",
                   checkpoint.path, chosen.path)
    return chosen, restored
