"""Monotone merges of the device shadow, and connectivity read relative to now (issue 3)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from iot_lake.lake.catalog import (
    DEVICE_EVENTS,
    DEVICE_REGISTRY,
    DEVICE_STATE,
    TELEMETRY,
    TableSpec,
    empty_frame,
)
from iot_lake.state.connectivity import device_connectivity
from iot_lake.state.shadow import update_device_registry, update_device_state

T0 = datetime(2026, 11, 1, 8, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
TIMEOUT = timedelta(minutes=5)


def frame(spec: TableSpec, rows: list[dict]) -> pl.DataFrame:
    """Rows in a table's schema; columns a row does not name are null."""
    columns = spec.column_names
    data = {name: [row.get(name) for row in rows] for name in columns}
    return pl.DataFrame(data, schema=empty_frame(spec).schema)


def reading(minute: float, value: float, *, metric="temperature", ingest_delay=0.0, fw="1.4.2"):
    at = T0 + minute * MINUTE
    return {
        "tenant_id": "acme",
        "device_id": "env-1",
        "device_type": "env_sensor",
        "metric": metric,
        "value": value,
        "unit": "degC",
        "reported_value": value,
        "event_time": at,
        "event_date": at.date(),
        "event_hour": at.hour,
        "device_time": at,
        "ingest_time": at + ingest_delay * MINUTE,
        "time_source": "device",
        "message_id": f"env-1-{minute}-{ingest_delay}",
        "firmware": fw,
        "ingest_date": at.date(),
    }


def event(minute: float, event_type: str, *, ingest_minute=None, details=None, **fields):
    at = T0 + minute * MINUTE
    ingest = at if ingest_minute is None else T0 + ingest_minute * MINUTE
    return {
        "tenant_id": "acme",
        "device_id": "env-1",
        "event_type": event_type,
        "details": None if details is None else orjson.dumps(details).decode(),
        "event_time": at,
        "event_date": at.date(),
        "event_hour": at.hour,
        "device_time": at,
        "ingest_time": ingest,
        "time_source": "device",
        "message_id": f"env-1-{event_type}-{minute}",
        "ingest_date": ingest.date(),
        **fields,
    }


def telemetry(*rows) -> pl.DataFrame:
    return frame(TELEMETRY, list(rows))


def events(*rows) -> pl.DataFrame:
    return frame(DEVICE_EVENTS, list(rows))


NO_STATE = empty_frame(DEVICE_STATE)
NO_REGISTRY = empty_frame(DEVICE_REGISTRY)
NO_EVENTS = empty_frame(DEVICE_EVENTS)
NO_TELEMETRY = empty_frame(TELEMETRY)


def apply_registry(*batches: tuple[pl.DataFrame, pl.DataFrame]) -> pl.DataFrame:
    registry = NO_REGISTRY
    for batch_telemetry, batch_events in batches:
        registry = update_device_registry(registry, batch_telemetry, batch_events)
    return registry


def test_state_keeps_the_latest_reading_when_older_ones_arrive_late():
    state = update_device_state(NO_STATE, telemetry(reading(10, 21.0), reading(11, 22.0)))
    # The device flushes a buffer of readings taken before minute 11, hours later.
    late = telemetry(reading(5, 30.0, ingest_delay=240), reading(10.5, 31.0, ingest_delay=240))
    after = update_device_state(state, late)

    assert after.height == 1
    assert after.row(0, named=True)["value"] == 22.0
    assert after.row(0, named=True)["event_time"] == T0 + 11 * MINUTE
    assert_frame_equal(after, state)


def test_state_takes_a_newer_reading_and_keeps_one_row_per_metric():
    state = update_device_state(NO_STATE, telemetry(reading(10, 21.0)))
    newer = telemetry(reading(12, 23.5), reading(12, 40.0, metric="humidity"))
    after = update_device_state(state, newer).sort("metric")

    assert after["metric"].to_list() == ["humidity", "temperature"]
    assert after["value"].to_list() == [40.0, 23.5]


def test_same_event_time_is_settled_by_the_later_arrival():
    first = update_device_state(NO_STATE, telemetry(reading(10, 21.0)))
    redelivered = update_device_state(first, telemetry(reading(10, 25.0, ingest_delay=3)))

    assert redelivered["value"].to_list() == [25.0]


def test_reapplying_the_same_rows_changes_nothing():
    batch_telemetry = telemetry(reading(1, 20.0), reading(2, 21.0, fw="1.5.0"))
    batch_events = events(
        event(0, "status", status="online"),
        event(0, "boot", details={"reason": "power_on", "fleet": "acme-eu-west"}),
        event(0, "firmware", firmware="1.4.2"),
        event(3, "heartbeat", details={"uptime_s": 180}),
    )
    state = update_device_state(NO_STATE, batch_telemetry)
    registry = update_device_registry(NO_REGISTRY, batch_telemetry, batch_events)

    assert_frame_equal(update_device_state(state, batch_telemetry), state)
    assert_frame_equal(update_device_registry(registry, batch_telemetry, batch_events), registry)


def test_registry_summarises_what_the_device_reported():
    registry = apply_registry(
        (
            telemetry(reading(1, 20.0), reading(2, 21.0)),
            events(
                event(0, "status", status="online"),
                event(0, "boot", details={"reason": "power_on", "fleet": "acme-eu-west"}),
                event(0, "firmware", firmware="1.4.2"),
                event(3, "heartbeat", details={"uptime_s": 180}),
                event(4, "crash", details={"code": "watchdog_reset"}),
                event(4, "boot", details={"reason": "crash", "fleet": "acme-eu-west"}),
            ),
        )
    )
    row = registry.row(0, named=True)

    assert registry.height == 1
    assert row["device_type"] == "env_sensor"
    assert row["fleet"] == "acme-eu-west"
    assert (row["first_seen"], row["last_seen"]) == (T0, T0 + 4 * MINUTE)
    assert row["firmware"] == "1.4.2"
    assert row["firmware_since"] == T0
    assert row["firmware_previous_at"] is None
    assert (row["status"], row["status_since"]) == ("online", T0)
    assert row["last_heartbeat_at"] == T0 + 3 * MINUTE
    assert row["last_crash_at"] == row["last_boot_at"] == T0 + 4 * MINUTE


def test_late_data_widens_first_seen_but_never_moves_last_seen_back():
    registry = apply_registry(
        (telemetry(reading(60, 20.0)), NO_EVENTS),
        (telemetry(reading(10, 19.0, ingest_delay=300)), NO_EVENTS),
    )
    row = registry.row(0, named=True)

    assert row["first_seen"] == T0 + 10 * MINUTE
    assert row["last_seen"] == T0 + 60 * MINUTE
    assert row["last_ingest_time"] == T0 + 310 * MINUTE


def test_firmware_since_is_the_first_report_of_the_running_version():
    # 1.4.2 until minute 2, an OTA update, then 1.5.0 from minute 5 on.
    before = telemetry(reading(1, 20.0), reading(2, 20.0))
    ota = events(event(5, "firmware", firmware="1.5.0"))
    after = telemetry(reading(6, 20.0, fw="1.5.0"), reading(7, 20.0, fw="1.5.0"))
    registry = apply_registry((before, NO_EVENTS), (NO_TELEMETRY, ota), (after, NO_EVENTS))
    row = registry.row(0, named=True)

    assert row["firmware"] == "1.5.0"
    assert row["firmware_since"] == T0 + 5 * MINUTE
    assert row["firmware_reported_at"] == T0 + 7 * MINUTE
    assert row["firmware_previous_at"] == T0 + 2 * MINUTE

    # A late flush of readings taken under the old firmware changes none of that; only
    # when the device was last heard from moves.
    late = telemetry(reading(1.5, 20.0, ingest_delay=60))
    flushed = update_device_registry(registry, late, NO_EVENTS)
    assert flushed["last_ingest_time"].to_list() == [T0 + 61.5 * MINUTE]
    assert_frame_equal(flushed.drop("last_ingest_time"), registry.drop("last_ingest_time"))


def test_batches_applied_in_any_order_give_the_same_registry():
    batches = [
        (telemetry(reading(1, 20.0)), events(event(0, "status", status="online"))),
        (telemetry(reading(4, 20.0, fw="1.5.0")), events(event(3, "firmware", firmware="1.5.0"))),
        (NO_TELEMETRY, events(event(6, "status", status="offline"))),
        (telemetry(reading(8, 21.0, fw="1.5.0")), events(event(7, "status", status="online"))),
    ]
    results = [
        apply_registry(*order).sort("device_id") for order in itertools.permutations(batches)
    ]
    for result in results[1:]:
        assert_frame_equal(result, results[0])
    row = results[0].row(0, named=True)
    assert (row["firmware"], row["firmware_since"]) == ("1.5.0", T0 + 3 * MINUTE)
    assert (row["status"], row["status_since"]) == ("online", T0 + 7 * MINUTE)
    assert row["status_previous_at"] == T0 + 6 * MINUTE


def test_the_last_will_marks_the_device_offline_whatever_clock_its_payload_carries():
    # The Last Will's payload was built when the device connected (minute 0), the broker
    # publishes it when the connection drops (minute 30): arrival order decides.
    registry = apply_registry(
        (
            telemetry(reading(20, 20.0)),
            events(
                event(0, "status", status="online"),
                event(
                    0,
                    "status",
                    ingest_minute=30,
                    status="offline",
                    details={"reason": "connection_lost"},
                ),
            ),
        )
    )
    row = registry.row(0, named=True)
    assert (row["status"], row["status_reason"]) == ("offline", "connection_lost")
    assert row["status_since"] == T0 + 30 * MINUTE

    now = T0 + 31 * MINUTE
    connectivity = device_connectivity(registry, now, TIMEOUT).row(0, named=True)
    assert connectivity["connectivity"] == "offline"
    assert connectivity["connectivity_reason"] == "reported_offline"
    assert connectivity["connectivity_since"] == T0 + 30 * MINUTE


@pytest.mark.parametrize(
    ("silent_for", "expected"),
    [
        (TIMEOUT - timedelta(seconds=1), ("online", "reported_online", T0)),
        (TIMEOUT + timedelta(seconds=1), ("offline", "heartbeat_timeout", T0 + 40 * MINUTE)),
    ],
    ids=["within_timeout", "past_timeout"],
)
def test_a_silent_device_goes_offline_after_the_heartbeat_timeout(silent_for, expected):
    registry = apply_registry(
        (
            telemetry(reading(20, 20.0)),
            events(event(0, "status", status="online"), event(40, "heartbeat")),
        )
    )
    now = T0 + 40 * MINUTE + silent_for
    row = device_connectivity(registry, now, TIMEOUT).row(0, named=True)

    assert (row["connectivity"], row["connectivity_reason"], row["connectivity_since"]) == expected


def test_a_device_that_never_sent_a_status_is_online_while_it_reports():
    registry = apply_registry((telemetry(reading(1, 20.0), reading(2, 20.5)), NO_EVENTS))
    row = device_connectivity(registry, T0 + 3 * MINUTE, TIMEOUT).row(0, named=True)

    assert (row["connectivity"], row["connectivity_reason"]) == ("online", "recent_message")
    assert row["connectivity_since"] == T0 + MINUTE
