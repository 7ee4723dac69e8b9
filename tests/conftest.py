"""Test tiers by folder: unit (no Ray/TF), integration (local Ray, tiny TF models), slow, cluster (`ray start`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
FIXTURES = Path(__file__).parent / "fixtures"


TIER_ORDER = ("cluster", "slow", "integration", "unit")  # the longest files first: two xdist workers end together


def _tier(item: pytest.Item) -> str:
    return Path(str(item.fspath)).parent.name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _tier(item) in TIER_ORDER:
            item.add_marker(getattr(pytest.mark, _tier(item)))
    # `make test` hands the files to its workers in this order (--no-loadscope-reorder): a few-test file of several
    # minutes (a cluster, the benchmarks) must not be the last one started.
    order = {tier: index for index, tier in enumerate(TIER_ORDER)}
    items.sort(key=lambda item: order.get(_tier(item), len(TIER_ORDER)))


@pytest.fixture(autouse=True)
def _working_directory_kept() -> Iterator[None]:
    """A test that leaves the process in another folder fails (and the folder is put back): the next test in that
    process would resolve relative paths elsewhere. Trials chdir into their folder, in their own workers."""
    before = os.getcwd()
    yield
    after = os.getcwd()
    os.chdir(before)
    assert after == before, f"the test left the working directory at {after} (it was {before}): use monkeypatch.chdir"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One in-process Ray with 2 CPUs for the whole session (ingest joins it instead of starting one), started as
    exifray starts it (again if its node timed out during startup on the busy machine)."""
    import ray

    from exifray.ray_start import start_ray

    start_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
