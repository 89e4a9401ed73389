"""Simulator -> Mosquitto -> consumer -> raw_telemetry, in one process, with real parts."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest

from iot_lake.ingest.wire import ErrorCode
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.settings import MQTT_PROTOCOLS, MqttSettings
from streaming.landing import LandingWriter
from streaming.simulator.fleet import FaultRates, Fleet, FleetSpec, SimMessage
from streaming.simulator.mqtt_publisher import publish, publish_last_will, publish_paced
from streaming.sources.mqtt import MqttSource, MqttUnavailable
from tests.integration.mqtt.conftest import (
    RunningConsumer,
    landed_multiset,
    missing_from_raw,
    published_multiset,
)
from tests.support import free_port, wait_until

pytestmark = pytest.mark.integration

# Every fault often enough that each kind occurs in a few thousand messages.
FAULTY = FaultRates(offline=0.002, duplicate=0.02, malformed=0.02, spoof=0.01)


@pytest.mark.parametrize("mqtt_settings", MQTT_PROTOCOLS, indirect=True)
def test_every_published_message_lands_in_raw_with_its_error(mosquitto, mqtt_settings, lake):
    messages = list(Fleet(FleetSpec(devices=50, seed=11, faults=FAULTY)).messages(3000))
    faults = Counter(m.fault for m in messages)
    assert all(faults[kind] for kind in ("malformed", "spoof", "duplicate", "offline")), faults
    expected = published_multiset(messages)

    with RunningConsumer(mqtt_settings, lake):
        started = time.monotonic()
        assert publish(messages, mosquitto.host, mosquitto.port, processes=2) == len(messages)
        published_s = time.monotonic() - started
        wait_until(lambda: missing_from_raw(lake, expected) == 0, 60, "every message in raw")
    print(f"\n{len(messages)} messages published in {published_s:.1f} s, faults {dict(faults)}")

    assert landed_multiset(lake) == expected  # no loss, and no duplicate beyond the published
    raw = lake.read(RAW_TELEMETRY)
    assert set(raw["source"]) == {"mqtt"}
    rows = raw.select("topic", "payload", "error_code").iter_rows()
    errors = {(topic, payload): code for topic, payload, code in rows}
    for message in messages:
        assert errors[(message.topic, message.payload.decode())] == message.expected_error, message
    assert lake.quarantine().height == sum(1 for m in messages if m.expected_error)
    spoofed = [m for m in messages if m.fault == "spoof"]
    assert all(m.expected_error == ErrorCode.IDENTITY_MISMATCH for m in spoofed)


def test_last_will_lands_as_offline_status(mosquitto, mqtt_settings, lake):
    fleet = Fleet(FleetSpec(devices=3, seed=5).without_faults())
    will: SimMessage = fleet.last_will(fleet.devices[1])

    with RunningConsumer(mqtt_settings, lake):
        publish_last_will(will, mosquitto.host, mosquitto.port)  # the broker publishes it
        rows = wait_until(
            lambda: lake.read(RAW_TELEMETRY, f"topic = '{will.topic}'").height, 15, "the will"
        )
    raw = lake.read(RAW_TELEMETRY)
    assert rows == 1
    assert raw.height == 1
    row = raw.row(0, named=True)
    assert row["message_kind"] == "status"
    assert row["device_id"] == fleet.devices[1].device_id
    assert row["error_code"] is None
    assert row["payload"] == will.payload.decode()
    assert orjson.loads(row["payload"])["status"] == "offline"


def test_paced_publisher_keeps_simulated_time_at_speed(mosquitto, mqtt_settings, lake):
    spec = FleetSpec(devices=20, seed=9, interval_s=10.0)  # a tick every 10 simulated s...
    with RunningConsumer(mqtt_settings, lake):
        started = time.monotonic()
        count = publish_paced(Fleet(spec), mosquitto.host, mosquitto.port, 50, duration_s=1.0)
        elapsed = time.monotonic() - started
        ticks, expected = 0, []
        for tick in Fleet(spec).ticks():  # the same seed replays the same ticks
            if len(expected) >= count:
                break
            expected += tick
            ticks += 1
        wait_until(
            lambda: missing_from_raw(lake, published_multiset(expected)) == 0, 30, "paced msgs"
        )
    assert len(expected) == count
    assert ticks == 5  # ...at speed 50 is a tick every 0.2 s: 5 ticks in 1 s
    # Never ahead of the pace: the fifth tick is not released before 4 x 0.2 s. Only this
    # bound holds whatever the machine's load; a slow machine may well publish later.
    assert elapsed >= 0.8
    assert landed_multiset(lake) == published_multiset(expected)


def test_unreachable_broker_fails_fast_naming_it(lake):
    port = free_port()
    source = MqttSource(MqttSettings(port=port, client_id="nobody-home"))
    # Refused at the connection, not after waiting for a broker reply that cannot come.
    with pytest.raises(MqttUnavailable, match=rf"127\.0\.0\.1:{port} is unreachable"):
        source.resume(LandingWriter(lake, "nobody-home"))
