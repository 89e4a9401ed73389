"""silver.rebuild and Lake.replace_partition: idempotent, fenced overwrites of event days."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import polars as pl
import pytest
from deltalake.exceptions import CommitFailedError, DeltaError
from polars.testing import assert_frame_equal

from iot_lake.ingest.wire import ErrorCode
from iot_lake.lake.catalog import RAW_TELEMETRY, TELEMETRY
from iot_lake.lake.partitions import EventWindow
from iot_lake.lake.tables import Lake
from iot_lake.settings import IdentityRules
from iot_lake.silver.decode import DEFAULT_MAX_PAYLOAD_BYTES, decode_telemetry
from iot_lake.silver.rebuild import RawExpired, check_raw_retained, rebuild_silver
from iot_lake.silver.rules import SilverRules
from streaming.batch import RawBatch
from streaming.simulator.fleet import Fleet, FleetSpec
from tests.support import land_messages, run_in_threads

RULES = SilverRules(skew_tolerance=timedelta(minutes=5), max_lateness=timedelta(days=7))
DAY = EventWindow.day(date(2026, 11, 1))


@pytest.fixture
def raw_lake(lake):
    """A lake with a few hours of a small fleet in raw, ingested 150 ms after publishing."""
    messages = list(Fleet(FleetSpec(devices=10, interval_s=600.0)).messages(1500))
    land_messages(lake, messages, max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES)
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
    errors = run_in_threads(lambda: rebuild_silver(raw_lake, TELEMETRY, DAY, RULES), 2, 60)

    assert errors == []
    assert_frame_equal(day_rows(raw_lake), expected_rows(raw_lake))
    assert day_rows(raw_lake).select(TELEMETRY.key_columns).is_unique().all()
    assert day_rows(raw_lake)["event_date"].unique().to_list() == [DAY.start]


def test_replay_after_a_fixed_check_takes_in_quarantined_rows_once(lake, tmp_path):
    """A consumer with too small a payload limit quarantined good messages; a rebuild with
    the right limit (the replay) brings them into silver exactly as if they had never been
    quarantined, a second replay changes nothing, and raw keeps its verdicts."""
    messages = list(Fleet(FleetSpec(devices=10, interval_s=600.0)).messages(1500))
    too_small = 200  # simulator telemetry payloads are ~300 bytes
    land_messages(lake, messages, max_payload_bytes=too_small)
    raw_before = lake.read(RAW_TELEMETRY).sort("source_position")
    oversized = raw_before.filter(pl.col("error_code") == ErrorCode.OVERSIZED)
    assert oversized.filter(pl.col("message_kind") == "telemetry").height > 100

    strict = rebuild_silver(lake, TELEMETRY, DAY, replace(RULES, max_payload_bytes=too_small))
    replayed = rebuild_silver(lake, TELEMETRY, DAY, RULES)
    after_first_replay = day_rows(lake)
    again = rebuild_silver(lake, TELEMETRY, DAY, RULES)

    never_quarantined = Lake(str(tmp_path / "oracle"))
    land_messages(never_quarantined, messages, max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES)
    rebuild_silver(never_quarantined, TELEMETRY, DAY, RULES)
    assert strict.rows == 0  # every telemetry payload was over the limit
    assert replayed.rows == again.rows == after_first_replay.height > 0
    assert_frame_equal(day_rows(lake), after_first_replay)
    assert_frame_equal(after_first_replay, day_rows(never_quarantined))
    assert_frame_equal(lake.read(RAW_TELEMETRY).sort("source_position"), raw_before)


def test_a_day_whose_raw_retention_has_deleted_is_not_rebuilt_with_less(raw_lake):
    rebuild_silver(raw_lake, TELEMETRY, DAY, RULES)
    rows = day_rows(raw_lake)
    today = DAY.start + timedelta(days=30)
    short = replace(RULES, raw_retention_days=10)

    with pytest.raises(RawExpired, match=r"raw before 2026-11-21 is deleted"):
        check_raw_retained(DAY, short, today)
    check_raw_retained(DAY, replace(RULES, raw_retention_days=31), today)  # still kept
    check_raw_retained(DAY, RULES, today)  # raw kept forever
    with pytest.raises(RawExpired):
        rebuild_silver(raw_lake, TELEMETRY, DAY, replace(RULES, raw_retention_days=0))
    assert_frame_equal(day_rows(raw_lake), rows)


def test_a_day_with_no_raw_is_rebuilt_empty(raw_lake):
    """No raw file can hold the day: the rebuild still commits, and leaves the day empty."""
    rebuild_silver(raw_lake, TELEMETRY, DAY, RULES)
    earlier = EventWindow.day(date(2026, 10, 1))
    stray = day_rows(raw_lake).head(3).with_columns(event_date=pl.lit(earlier.start))
    raw_lake.replace_partition(TELEMETRY, stray.to_arrow(), earlier.predicate())
    assert raw_lake.read(TELEMETRY, "event_date = '2026-10-01'").height == 3

    rebuilt = rebuild_silver(raw_lake, TELEMETRY, earlier, RULES)

    assert rebuilt.rows == 0
    assert raw_lake.read(TELEMETRY, "event_date = '2026-10-01'").height == 0
    assert day_rows(raw_lake).height > 0  # the other day is untouched


def test_replay_with_a_wider_id_rule_takes_in_devices_the_consumer_refused_issue_29(lake):
    """Ids outside the rule are quarantined at intake; a rebuild under a wider rule (the
    operator allowed dots) takes them in, and one under the default rule does not."""
    start_ms = 1_793_527_200_000  # 2026-11-01T10:00Z
    topic = "tenant/t1/devices/sensor.1/telemetry"
    payloads = [
        f'{{"device_id":"sensor.1","message_id":"m{i}","ts":{start_ms + i * 1000},'
        f'"metrics":{{"temp":{20 + i}}}}}'.encode()
        for i in range(5)
    ]
    batch = RawBatch("test", "test", DEFAULT_MAX_PAYLOAD_BYTES)
    batch.extend(
        [topic] * 5, payloads, [(start_ms + i * 1000) * 1000 for i in range(5)], list("abcde")
    )
    lake.append(RAW_TELEMETRY, batch.to_arrow())
    assert lake.read(RAW_TELEMETRY)["error_code"].to_list() == [ErrorCode.INVALID_TOPIC] * 5

    assert rebuild_silver(lake, TELEMETRY, DAY, RULES).rows == 0
    wider = replace(RULES, identity=IdentityRules(id_characters="A-Za-z0-9:_.-"))
    assert rebuild_silver(lake, TELEMETRY, DAY, wider).rows == 5
    assert day_rows(lake)["device_id"].unique().to_list() == ["sensor.1"]
    assert sorted(day_rows(lake)["value"].to_list()) == [20.0, 21.0, 22.0, 23.0, 24.0]
