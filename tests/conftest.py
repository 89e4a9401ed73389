"""Fixtures shared by every test: a fresh local lake and small simulated fleets."""

from __future__ import annotations

from pathlib import Path

import pytest

from iot_lake.lake import Lake
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
