"""iot_lake.rebuild and Lake.replace_partition: idempotent, fenced overwrites of event days."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from deltalake.exceptions import CommitFailedError, DeltaError
from polars.testing import assert_frame_equal

from iot_lake.catalog import RAW_TELEMETRY, TELEMETRY
from iot_lake.partitions import EventWindow
from iot_lake.rebuild import EventTimeRules, rebuild_silver
from iot_lake.silver import decode_telemetry
from streaming.batch import RawBatch
from streaming.simulator.fleet import Fleet, FleetSpec

RULES = EventTimeRules(skew_tolerance=timedelta(minutes=5), max_lateness=timedelta(days=7))
DAY = EventWindow.day(date(2026, 11, 1))


@pytest.fixture
def raw_lake(lake):
    """A lake with a few hours of a small fleet in raw, ingested 150 ms after publishing."""
    batch = RawBatch("test", "test", 64 * 1024)
    messages = list(Fleet(FleetSpec(devices=10, interval_s=600.0)).messages(1500))
    batch.extend(
        [m.topic for m in messages],
        [m.payload for m in messages],
        [m.sim_ms * 1000 + 150_000 for m in messages],
        [str(i) for i in range(len(messages))],
    )
    lake.append(RAW_TELEMETRY, batch.to_arrow())
    return lake


def day_rows(lake):
    return lake.read(TELEMETRY).sort(*TELEMETRY.key_columns)


def expected_rows(lake):
    decoded = decode_telemetry(
        lake.read(RAW_TELEMETRY), RULES.skew_tolerance, max_lateness=RULES.max_lateness
    )
    return decoded.filter(DAY.contains()).sort(*TELEMETRY.key_columns)


def test_rebuilding_a_day_twice_leaves_the_same_rows(raw_lake):
    first = rebuild_silver(raw_lake, TELEMETRY, DAY, RULES)
    rows = day_rows(raw_lake)
    second = rebuild_silver(raw_lake, TELEMETRY, DAY, RULES)

    assert first.rows == second.rows == rows.height > 0
    assert second.delta_version == first.delta_version + 1
    assert_frame_equal(day_rows(raw_lake), rows)


def test_overwrite_computed_against_an_old_version_is_refused(raw_lake):
    rebuild_silver(raw_lake, TELEMETRY, DAY, RULES)
    stale_version = raw_lake.open(TELEMETRY).version()
    rows = day_rows(raw_lake)
    raw_lake.replace_partition(TELEMETRY, rows.to_arrow(), DAY.predicate())

    with pytest.raises(CommitFailedError):
        raw_lake.replace_partition(
            TELEMETRY, rows.head(1).to_arrow(), DAY.predicate(), read_version=stale_version
        )
    assert_frame_equal(day_rows(raw_lake), rows)


def test_rows_outside_the_window_are_refused(raw_lake):
    rebuild_silver(raw_lake, TELEMETRY, DAY, RULES)
    rows = day_rows(raw_lake)
    next_day = EventWindow.day(date(2026, 11, 2))

    with pytest.raises(DeltaError, match="failed validation"):
        raw_lake.replace_partition(TELEMETRY, rows.to_arrow(), next_day.predicate())
    assert_frame_equal(day_rows(raw_lake), rows)


def test_concurrent_rebuilds_of_one_day_leave_one_copy(raw_lake):
    errors: list[BaseException] = []

    def rebuild():
        try:
            rebuild_silver(raw_lake, TELEMETRY, DAY, RULES)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=rebuild) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert_frame_equal(day_rows(raw_lake), expected_rows(raw_lake))
    assert day_rows(raw_lake).select(TELEMETRY.key_columns).is_unique().all()
    assert day_rows(raw_lake)["event_date"].unique().to_list() == [DAY.start]
