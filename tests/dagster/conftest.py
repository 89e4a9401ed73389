"""Fixtures for the Dagster layer: raw_telemetry with two simulated days, a real instance.

The fleet is landed once per session into a template lake (the slow part), and each test
gets its own copy under tmp_path, so materializations in one test never leak into another.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import orjson
import pytest

from iot_lake.definitions import defs, resources_with_lake
from iot_lake.ingest.wire import topic_for
from iot_lake.lake.tables import Lake
from resources.lake import LakeResource
from streaming.batch import RawBatch
from streaming.landing import LandingWriter, Position
from streaming.simulator.fleet import Fleet, FleetSpec, SimMessage

# 20 devices reporting every 10 minutes from 04:00 on day one, with the simulator's default
# faults (skewed clocks, offline buffers flushed late, duplicates, malformed messages).
FLEET = FleetSpec(devices=20, interval_s=600.0, start=datetime(2026, 11, 1, 4, tzinfo=UTC))
DAY_1 = datetime(2026, 11, 1, tzinfo=UTC)
DAY_2 = DAY_1 + timedelta(days=1)
DAY_3 = DAY_2 + timedelta(days=1)
DELIVERY_DELAY = timedelta(milliseconds=200)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LandedRaw:
    """The template lake and the raw Delta version after each simulated day."""

    root: Path
    day_1_version: int
    day_2_version: int


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def land(
    lake: Lake,
    messages: Sequence[SimMessage],
    version: int,
    ingest_at: datetime | None = None,
    app_id: str = "sim",
) -> int:
    """Commit messages to raw in one batch; ingest = publish time + delay unless given."""
    batch = RawBatch("test", "test-consumer", 64 * 1024)
    if ingest_at is None:
        ingest: list[int] | int = [
            message.sim_ms * 1000 + micros(EPOCH + DELIVERY_DELAY) for message in messages
        ]
    else:
        ingest = micros(ingest_at)
    batch.extend(
        [message.topic for message in messages],
        [message.payload for message in messages],
        ingest,
        [f"{version}:{index}" for index in range(len(messages))],
    )
    outcome = LandingWriter(lake, "test-consumer").commit(batch, [Position(app_id, version)])
    assert outcome.delta_version is not None
    return outcome.delta_version


def simulated_days() -> tuple[list[SimMessage], list[SimMessage]]:
    """The fleet's messages published on day one and on day two."""
    day_1: list[SimMessage] = []
    day_2: list[SimMessage] = []
    end_1, end_2 = micros(DAY_2) // 1000, micros(DAY_3) // 1000
    for message in Fleet(FLEET).messages():
        if message.sim_ms >= end_2:
            break
        (day_1 if message.sim_ms < end_1 else day_2).append(message)
    return day_1, day_2


def late_readings(device: str, count: int, event_time: datetime) -> list[SimMessage]:
    """Telemetry a device buffered at `event_time` and publishes only now (distinct ids)."""
    messages = []
    for index in range(count):
        ts = event_time + timedelta(minutes=index)
        body = {
            "device_id": device,
            "message_id": f"{device}-late-{index}",
            "ts": micros(ts) // 1000,
            "type": "env_sensor",
            "fw": "1.4.2",
            "metrics": {"temperature": 21.5 + index, "humidity": 40.0},
            "units": {"temperature": "degC", "humidity": "pct"},
        }
        topic = topic_for("acme", device, "telemetry")
        messages.append(SimMessage(topic, orjson.dumps(body), micros(ts) // 1000, "telemetry"))
    return messages


@pytest.fixture(scope="session")
def landed_raw(tmp_path_factory: pytest.TempPathFactory) -> LandedRaw:
    """Two simulated days in raw_telemetry, one commit per day, in a template lake."""
    root = tmp_path_factory.mktemp("template") / "lake"
    lake = Lake(str(root))
    day_1, day_2 = simulated_days()
    return LandedRaw(root, land(lake, day_1, 1), land(lake, day_2, 2))


@pytest.fixture
def lake_root(landed_raw: LandedRaw, tmp_path: Path) -> Path:
    """This test's own copy of the landed lake."""
    root = tmp_path / "lake"
    shutil.copytree(landed_raw.root, root)
    return root


@pytest.fixture
def lake_resource(lake_root: Path) -> LakeResource:
    return LakeResource(root=str(lake_root))


@pytest.fixture
def instance() -> dg.DagsterInstance:
    """A real, in-memory instance: runs, event logs and sensor cursors, no daemon."""
    return dg.DagsterInstance.ephemeral()


def definitions_for(lake_resource: LakeResource) -> dg.Definitions:
    """The code location's definitions, with the lake resource pointed at this test's lake."""
    return dg.Definitions(
        assets=defs.assets,
        jobs=defs.jobs,
        sensors=defs.sensors,
        resources=resources_with_lake(lake_resource),
    )


def run_sensor_request(
    lake_resource: LakeResource, instance: dg.DagsterInstance, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    """Run what raw_landing_sensor asked for, as the daemon would: its job, partition, selection."""
    definitions = definitions_for(lake_resource)
    job_name = definitions.resolve_sensor_def("raw_landing_sensor").job_name
    assert job_name is not None
    run = definitions.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        asset_selection=request.asset_selection,
        tags=request.tags,
    )
    assert run.success
    return run
