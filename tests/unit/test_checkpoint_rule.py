"""Which epoch reports carry a resume checkpoint (`sweep_trainable.checkpoint_due`): counts, no clocks."""

from __future__ import annotations

from exifray.sweep_trainable import CHEAP_EPOCHS_S, checkpoint_due


def _due_epochs(epoch_times: list[float], *, every: int, cheap: bool, last: bool = False) -> list[int]:
    """Replays a 10-epoch phase the way `_report_epoch` keeps its unsaved training time (`last`: the trial's last
    phase, whose end the final report's checkpoint follows)."""
    due, unsaved = [], 0.0
    for epoch, seconds in enumerate(epoch_times, 1):
        unsaved += seconds
        ending = epoch == len(epoch_times) and not last
        if checkpoint_due(epoch, every, cheap=cheap, unsaved_s=unsaved, phase_ending=ending):
            due.append(epoch)
            unsaved = 0.0
    return due


def test_an_expensive_phase_is_checkpointed_every_nth_epoch() -> None:
    assert _due_epochs([30.0] * 10, every=1, cheap=False) == list(range(1, 11))
    assert _due_epochs([30.0] * 10, every=3, cheap=False) == [3, 6, 9]
    assert _due_epochs([0.01] * 10, every=1, cheap=False) == list(range(1, 11))  # short, but not cheap


def test_cheap_epochs_are_checkpointed_once_they_add_up_to_the_limit_and_when_the_phase_ends() -> None:
    step = CHEAP_EPOCHS_S / 4  # four epochs reach the limit
    assert _due_epochs([step] * 10, every=1, cheap=True) == [4, 8, 10]
    assert _due_epochs([0.01] * 10, every=1, cheap=True) == [10]
    assert _due_epochs([CHEAP_EPOCHS_S + 1] + [0.01] * 9, every=1, cheap=True) == [1, 10]  # a slow first epoch


def test_the_last_phase_ends_without_a_checkpoint_of_its_own_when_its_epochs_are_cheap() -> None:
    step = CHEAP_EPOCHS_S / 4
    assert _due_epochs([step] * 10, every=1, cheap=True, last=True) == [4, 8]  # the final report's follows
    assert _due_epochs([0.01] * 10, every=1, cheap=True, last=True) == []
    assert _due_epochs([30.0] * 10, every=3, cheap=False, last=True) == [3, 6, 9]  # expensive: every 3rd as before


def test_cheap_epochs_still_follow_checkpoint_every() -> None:
    step = CHEAP_EPOCHS_S / 2
    assert _due_epochs([step] * 10, every=3, cheap=True) == [3, 6, 9]
    assert not checkpoint_due(10, 3, cheap=True, unsaved_s=0.0, phase_ending=True)  # not a 3rd epoch
