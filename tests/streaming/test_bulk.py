"""BulkFleet builds what the per-message Fleet yields for a healthy fleet, but column-wise."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from streaming.batch import RawBatch
from streaming.simulator.bulk import BulkFleet
from streaming.simulator.devices import DEVICE_TYPES
from streaming.simulator.fleet import Fleet, FleetSpec

HEALTHY = replace(
    FleetSpec(devices=7, seed=3).without_faults(), crash_rate=0.0, bad_firmware_crash_rate=0.0
)
MODELS = {kind.name: kind.metrics for kind in DEVICE_TYPES}


def fleet_messages_after_boot(spec: FleetSpec, ticks: int):
    """What Fleet yields for ticks 1..ticks: its boot tick (3 messages a device) skipped."""
    boot = 3 * spec.devices
    heartbeats = spec.devices * (ticks // spec.heartbeat_every)
    messages = list(Fleet(spec).messages(boot + spec.devices * ticks + heartbeats))
    return messages[boot:]


def without_values(payload: bytes) -> dict:
    body = orjson.loads(payload)
    if "metrics" in body:
        body["metrics"] = list(body["metrics"])  # names in order, values aside
    return body


def test_matches_the_fleet_except_metric_values():
    expected = fleet_messages_after_boot(HEALTHY, ticks=13)
    bulk = BulkFleet(HEALTHY).ticks(1, 13)
    assert len(bulk) == len(expected)
    assert bulk.topics == [m.topic for m in expected]
    assert bulk.kinds == [m.kind for m in expected]
    assert bulk.sim_ms.tolist() == [m.sim_ms for m in expected]
    assert [without_values(p) for p in bulk.payloads] == [
        without_values(m.payload) for m in expected
    ]


def test_a_later_range_continues_the_sequence():
    whole = BulkFleet(HEALTHY).ticks(1, 12)
    tail = BulkFleet(HEALTHY).ticks(7, 12)
    assert [without_values(p) for p in tail.payloads] == [
        without_values(p) for p in whole.payloads[-len(tail) :]
    ]


def test_values_follow_the_metric_models():
    bulk = BulkFleet(replace(HEALTHY, devices=30)).ticks(1, 360)
    for payload in bulk.payloads:
        body = orjson.loads(payload)
        for name, value in body.get("metrics", {}).items():
            model = MODELS[body["type"]][name]
            bound = model.daily_amplitude + 6 * model.noise + 10**-model.decimals
            assert abs(value - model.base) <= bound, (name, value)
            assert round(value, model.decimals) == value


def test_every_message_passes_the_consumer_checks():
    bulk = BulkFleet(HEALTHY).ticks(1, 24)
    batch = RawBatch("simulator", "test", max_payload_bytes=64 * 1024)
    batch.extend(bulk.topics, bulk.payloads, 0, [None] * len(bulk))
    assert batch.invalid == 0
    assert batch.to_arrow().column("error_code").null_count == len(bulk)


@pytest.mark.parametrize(
    "spec",
    [FleetSpec(devices=3), replace(HEALTHY, crash_rate=0.001)],
    ids=["faults", "crashes"],
)
def test_refuses_a_fleet_that_is_not_healthy(spec):
    with pytest.raises(ValueError, match="healthy fleet only"):
        BulkFleet(spec)
