"""Fixtures shared by every test: a fresh local lake and small simulated fleets."""

from __future__ import annotations

from pathlib import Path

import pytest

from iot_lake.lake.tables import Lake
from streaming.simulator.fleet import FaultRates, FleetSpec, SimMessage
from streaming.simulator.publish import write_frames

# Fault rates high enough that a few thousand messages contain every kind of fault.
NOISY = FaultRates(
    offline=0.002,
    offline_min_s=60.0,
    offline_max_s=600.0,
    duplicate=0.02,
    malformed=0.02,
    spoof=0.01,
    spike=0.01,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Test files with a `slow` test first, each file's tests kept together and in order.

    `make test` hands whole files to two xdist workers in collection order; the slow files
    (a minute or more each: the UI, crash and dbt tests) came last alphabetically, and the
    suite ended on one worker running them while the other was idle. Starting with them
    lets the many short files fill in the end.
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """An empty local lake under the test's temporary directory."""
    return Lake(str(tmp_path / "lake"))


@pytest.fixture
def noisy_fleet() -> FleetSpec:
    """A small fleet whose messages include every fault the simulator knows."""
    return FleetSpec(devices=40, seed=11, faults=NOISY)


def framed_file(path: Path, messages: list[SimMessage]) -> Path:
    """Write messages as a framed JSONL file and return its path."""
    write_frames(messages, path)
    return path
