"""The quality suites and their verdicts, on small frames and a real Delta table, no Dagster."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from iot_lake.lake.catalog import ROLLUP_1D, ROLLUP_1M, TELEMETRY
from iot_lake.lake.partitions import EventWindow
from iot_lake.lake.tables import Lake
from iot_lake.quality.checks import (
    KEYS_NOT_NULL,
    KEYS_UNIQUE,
    VALUES_IN_RANGE,
    checks_for,
    columns_for,
    freshness,
    summarize,
    validate_in_shards,
)
from iot_lake.quality.expectations import suite_for, validate_frame
from iot_lake.silver.metrics import METRICS

DAY = date(2026, 11, 1)


def readings(devices: int = 20, messages: int = 10) -> pl.DataFrame:
    """Valid telemetry rows: each message of each device has a temperature and a humidity."""
    rows = [
        (f"env-{d:03d}", f"env-{d:03d}-{m}", metric, unit, value)
        for d in range(devices)
        for m in range(messages)
        for metric, unit, value in (("temperature", "degC", 20.0 + m), ("humidity", "pct", 45.0))
    ]
    return pl.DataFrame(
        rows, schema=["device_id", "message_id", "metric", "unit", "value"], orient="row"
    )


def set_values(frame: pl.DataFrame, rows: pl.Expr, **values: object) -> pl.DataFrame:
    """The frame with some columns replaced on the rows matching `rows`."""
    return frame.with_columns(
        pl.when(rows).then(pl.lit(value)).otherwise(pl.col(name)).alias(name)
        for name, value in values.items()
    )


def outcome(validation, name):
    (found,) = [o for o in validation.outcomes if o.name == name]
    return found


TEMPERATURE = "value of temperature in [-60, 100] degC"


def test_suite_comes_from_the_table_and_metric_catalogs():
    suite = suite_for(TELEMETRY)
    by_check = {}
    for expectation in suite.expectations:
        by_check.setdefault(expectation.meta["check"], []).append(expectation)

    assert [e.column for e in by_check[KEYS_NOT_NULL]] == list(TELEMETRY.key_columns)
    (unique,) = by_check[KEYS_UNIQUE]
    assert unique.column_list == list(TELEMETRY.key_columns)
    ranges = {e.meta["name"]: (e.min_value, e.max_value) for e in by_check[VALUES_IN_RANGE]}
    assert len(ranges) == len(METRICS)
    assert ranges[TEMPERATURE] == (-60.0, 100.0)
    # rollup_1m checks each bucket's min and max; the coarser levels only their keys.
    assert len(suite_for(ROLLUP_1M).expectations) == 3 + 1 + 2 * len(METRICS)
    assert checks_for(ROLLUP_1D) == (KEYS_NOT_NULL, KEYS_UNIQUE)
    assert set(columns_for(ROLLUP_1M)) == {
        "device_id",
        "metric",
        "unit",
        "bucket_start",
        "min",
        "max",
        "count",
    }


def test_clean_readings_pass_and_unknown_metrics_have_no_range():
    frame = pl.concat(
        [
            readings(),
            # Not in the metric catalog: flows through, whatever its value.
            pl.DataFrame(
                [("env-000", "env-000-0", "soil_ph", None, 1e9)],
                schema=readings().schema,
                orient="row",
            ),
            # A known metric in a unit the catalog cannot convert: kept as reported, not judged.
            pl.DataFrame(
                [("env-000", "env-000-0", "pressure", "inHg", 29.9)],
                schema=readings().schema,
                orient="row",
            ),
        ]
    )

    validation = validate_frame(TELEMETRY, frame, DAY)

    assert validation.passed, [o for o in validation.outcomes if not o.passed]
    assert validation.rows == 402
    assert outcome(validation, TEMPERATURE).element_count == 200
    assert all(o.unexpected_count == 0 for o in validation.outcomes)


def test_a_few_broken_sensors_pass_the_range_and_many_fail_it():
    frame = readings(devices=50, messages=4)  # 200 temperature readings
    one_broken = set_values(frame, pl.col("message_id") == "env-000-0", value=500.0)
    many_broken = set_values(frame, pl.col("device_id") < "env-010", value=-300.0)

    lenient = validate_frame(TELEMETRY, one_broken, DAY, range_mostly=0.99)
    strict = validate_frame(TELEMETRY, one_broken, DAY, range_mostly=1.0)
    failing = validate_frame(TELEMETRY, many_broken, DAY)

    # 1 of 200 temperature readings: 0.5% out of range, inside the default 1% tolerance.
    assert outcome(lenient, TEMPERATURE).passed
    assert outcome(lenient, TEMPERATURE).unexpected_count == 1
    assert not outcome(strict, TEMPERATURE).passed
    hot = outcome(failing, TEMPERATURE)
    assert not hot.passed
    assert (hot.element_count, hot.unexpected_count) == (200, 40)
    assert hot.unexpected_percent == pytest.approx(20.0)
    assert len(hot.examples) == 5
    assert hot.examples[0]["value"] == -300.0
    assert hot.examples[0]["device_id"] < "env-010"
    # Humidity of the same devices was fine and says so.
    assert outcome(failing, "value of humidity in [0, 100] pct").unexpected_count == 40


def minute_buckets(devices: int, minutes: int, readings_each: int) -> pl.DataFrame:
    """rollup_1m rows of temperature: each bucket holds `readings_each` readings, all fine."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        (f"env-{d:03d}", "temperature", "degC", start + timedelta(minutes=m), 18.0, 22.0)
        for d in range(devices)
        for m in range(minutes)
    ]
    schema = ["device_id", "metric", "unit", "bucket_start", "min", "max"]
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    return frame.with_columns(count=pl.lit(readings_each, pl.Int64))


MINUTE_TEMPERATURE = "max of temperature in [-60, 100] degC"


def test_rollup_buckets_are_tolerated_by_the_readings_behind_them():
    # 50 devices x 40 minutes = 2,000 buckets of 6 readings (a reading every 10 s): 12,000
    # readings, so 1% of them (120) may sit in buckets out of range, whatever the buckets'
    # own share: 100 spiked buckets (5% of buckets, at most 0.8% of readings) pass.
    frame = minute_buckets(devices=50, minutes=40, readings_each=6)
    minute = pl.col("bucket_start").dt.minute()
    spiked = set_values(frame, (minute == 7) & (pl.col("device_id") < "env-100"), max=700.0)
    spiked = set_values(spiked, (minute == 9) & (pl.col("device_id") < "env-050"), max=700.0)
    broken = set_values(frame, minute < 3, max=700.0)  # 150 buckets, up to 900 readings

    tolerated = validate_frame(ROLLUP_1M, spiked, DAY)
    failing = validate_frame(ROLLUP_1M, broken, DAY)
    single = validate_frame(ROLLUP_1M, spiked.with_columns(count=pl.lit(1, pl.Int64)), DAY)

    assert outcome(tolerated, MINUTE_TEMPERATURE).unexpected_count == 100
    assert outcome(tolerated, MINUTE_TEMPERATURE).tolerated == pytest.approx(120.0)
    assert outcome(tolerated, MINUTE_TEMPERATURE).passed
    hot = outcome(failing, MINUTE_TEMPERATURE)
    assert (hot.unexpected_count, hot.passed) == (150, False)
    # Buckets of one reading each are judged as readings are: 5% out fails.
    assert not outcome(single, MINUTE_TEMPERATURE).passed
    summary = summarize([failing], VALUES_IN_RANGE)
    assert summary.failed == [
        "2026-11-01: max of temperature in [-60, 100] degC: 150 of 2000 rows (7.50%), 120 tolerated"
    ]
    # Device shards add up the readings each tolerated: the same verdict (a failing verdict
    # in shards is test_device_shards_give_the_verdict_of_one_validation's).
    sharded = outcome(validate_in_shards(ROLLUP_1M, spiked, DAY, max_rows=1000), MINUTE_TEMPERATURE)
    one = outcome(tolerated, MINUTE_TEMPERATURE)
    assert (sharded.passed, sharded.unexpected_count) == (one.passed, one.unexpected_count)
    assert sharded.tolerated == pytest.approx(one.tolerated)


def test_null_and_duplicated_keys_fail_on_a_single_row():
    frame = readings()
    with_null = set_values(frame, pl.col("message_id") == "env-003-1", device_id=None)
    doubled = pl.concat([frame, frame.filter(pl.col("message_id") == "env-004-2")])

    nulls = validate_frame(TELEMETRY, with_null, DAY)
    duplicates = validate_frame(TELEMETRY, doubled, DAY)

    null_device = outcome(nulls, "device_id is not null")
    assert not null_device.passed
    assert null_device.unexpected_count == 2  # the message's temperature and humidity rows
    assert {e["message_id"] for e in null_device.examples} == {"env-003-1"}
    assert {o.check for o in nulls.outcomes if not o.passed} == {KEYS_NOT_NULL}
    unique = outcome(duplicates, "(device_id, message_id, metric) is unique")
    assert not unique.passed
    assert unique.unexpected_count == 4  # both copies of both readings
    assert {e["message_id"] for e in unique.examples} == {"env-004-2"}
    assert {o.check for o in duplicates.outcomes if not o.passed} == {KEYS_UNIQUE}


def test_device_shards_give_the_verdict_of_one_validation():
    frame = set_values(
        readings(devices=40, messages=5), pl.col("device_id") < "env-004", value=900.0
    )
    frame = pl.concat([frame, frame.filter(pl.col("message_id") == "env-030-1")])

    whole = validate_in_shards(TELEMETRY, frame, DAY, max_rows=10_000)
    sharded = validate_in_shards(TELEMETRY, frame, DAY, max_rows=150)  # 3 shards

    for one, many in zip(whole.outcomes, sharded.outcomes, strict=True):
        assert (many.name, many.passed, many.element_count, many.unexpected_count) == (
            one.name,
            one.passed,
            one.element_count,
            one.unexpected_count,
        )
    assert outcome(sharded, TEMPERATURE).unexpected_count == 20
    assert not outcome(sharded, TEMPERATURE).passed
    assert outcome(sharded, "(device_id, message_id, metric) is unique").unexpected_count == 4


def test_summary_fails_when_any_day_fails():
    good = validate_frame(TELEMETRY, readings(), DAY)
    bad_day = DAY + timedelta(days=1)
    bad = validate_frame(
        TELEMETRY, set_values(readings(), pl.col("metric") == "temperature", value=1e4), bad_day
    )

    summary = summarize([good, bad], VALUES_IN_RANGE)

    assert not summary.passed
    assert summary.rows == good.rows + bad.rows
    assert summary.unexpected_count == 200
    assert summary.failed == [f"2026-11-02: {TEMPERATURE}: 200 of 200 rows (100.00%), 2 tolerated"]
    assert {e["day"] for e in summary.examples} == {"2026-11-02"}
    assert summarize([good, bad], KEYS_UNIQUE).passed


def test_freshness_measures_a_closed_day_against_its_end_and_today_against_now(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    window = EventWindow.day(DAY)
    assert not freshness(lake, TELEMETRY, window, datetime(2026, 11, 5, tzinfo=UTC)).passed
    newest = datetime(2026, 11, 1, 23, 20, tzinfo=UTC)
    row = {name: None for name in TELEMETRY.column_names} | {
        "tenant_id": "acme",
        "device_id": "env-000",
        "metric": "temperature",
        "value": 21.0,
        "reported_value": 21.0,
        "event_time": newest,
        "event_date": DAY,
        "event_hour": newest.hour,
        "device_time": newest,
        "ingest_time": newest,
        "time_source": "device",
        "message_id": "env-000-1",
        "ingest_date": DAY,
    }
    lake.append(TELEMETRY, pl.DataFrame([row], schema=pl.Schema(TELEMETRY.schema)).to_arrow())

    closed = freshness(lake, TELEMETRY, window, datetime(2026, 11, 5, tzinfo=UTC))
    open_day = freshness(lake, TELEMETRY, window, datetime(2026, 11, 1, 23, 30, tzinfo=UTC))
    stale = freshness(
        lake, TELEMETRY, window, datetime(2026, 11, 5, tzinfo=UTC), max_lag=timedelta(minutes=30)
    )

    assert closed.newest_event_time == newest
    assert closed.lag == timedelta(minutes=40)  # behind midnight, not behind four days later
    assert closed.passed
    assert open_day.lag == timedelta(minutes=10)
    assert not stale.passed
