"""Starting Ray in this process, with a retry for one known failure of a busy machine.

Ray's raylet waits a fixed 15 s for the dashboard agent to write its port file and exits when the agent (a Python
process importing much of Ray) is slower than that, as on 2 busy cores; `ray.init` then fails after 30 s with
"The current node timed out during startup" (ray-project/ray#65983: the timeout is hard-coded, no setting lengthens
it). `start_ray` stops what that attempt left running and starts Ray again, at most `STARTS` times in all, saying
so in a warning. Joining a cluster (`address`) is not retried: its node is someone else's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TypeVar

if TYPE_CHECKING:
    from ray._private.worker import BaseContext

logger = logging.getLogger(__name__)

STARTS: Final = 3
STARTUP_TIMEOUT: Final = "timed out during startup"  # the text of Ray's exception
Started = TypeVar("Started")


def start_ray(**init_kwargs: object) -> BaseContext:
    """`ray.init(**init_kwargs)` on a new local node, started again when the node timed out during startup."""
    import ray

    return retry_startup(lambda: ray.init(**init_kwargs), _stop_new_children)


def retry_startup(start: Callable[[], Started], clean_up: Callable[[set[int]], None]) -> Started:
    """`start()`, again after a startup timeout (at most STARTS times in all); `clean_up(pids)` is given the child
    processes that were there before the failed attempt, and stops the ones it left."""
    import psutil

    for attempt in range(1, STARTS + 1):
        before = {child.pid for child in psutil.Process().children(recursive=True)}
        try:
            return start()
        except Exception as exc:
            if STARTUP_TIMEOUT not in str(exc) or attempt == STARTS:
                raise
            logger.warning("Ray's node timed out during startup (attempt %d of %d; on a busy machine its raylet can "
                           "give up on a slow dashboard agent, ray-project/ray#65983): starting it again",
                           attempt, STARTS)
            clean_up(before)
    raise AssertionError("unreachable")


def _stop_new_children(before: set[int]) -> None:
    """Stop the processes the failed attempt started (Ray's GCS, agents, log monitor), and Ray's driver state."""
    import psutil
    import ray

    ray.shutdown()
    left = [child for child in psutil.Process().children(recursive=True) if child.pid not in before]
    for child in left:
        with contextlib.suppress(psutil.NoSuchProcess):  # (it ended on its own meanwhile)
            child.kill()
    psutil.wait_procs(left, timeout=10)
