"""The rollup and baseline assets, materialized on a real instance over real silver tables."""

from __future__ import annotations

import shutil
import statistics
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from assets.baselines import device_baselines
from assets.jobs import GOLD_AFTER
from assets.late_data import late_data_ledger
from assets.partitions import EVENT_HOURS_TAG
from assets.rollups import rollup_1d, rollup_1h, rollup_1m
from assets.telemetry import telemetry
from iot_lake.gold.rollups import mean_and_stddev
from iot_lake.lake.catalog import (
    DEVICE_BASELINES,
    LATE_DATA_LEDGER,
    RAW_TELEMETRY,
    ROLLUP_1D,
    ROLLUP_1H,
    ROLLUP_1M,
    TELEMETRY,
    TableSpec,
)
from iot_lake.lake.tables import Lake
from resources.lake import LakeResource
from sensors.raw_landing import raw_landing_sensor
from tests.dagster.conftest import (
    DAY_1,
    DAY_3,
    EPOCH,
    LandedRaw,
    land,
    late_readings,
    run_sensor_request,
    simulated_days,
)
from tests.iot_lake.gold.test_rollups import assert_within_rounding

GOLD = [rollup_1m, rollup_1h, rollup_1d, device_baselines]
ROLLUPS = [ROLLUP_1M, ROLLUP_1H, ROLLUP_1D]
DAYS = ["2026-11-01", "2026-11-02"]
BOTH_DAYS = {
    "dagster/asset_partition_range_start": DAYS[0],
    "dagster/asset_partition_range_end": DAYS[1],
}


@pytest.fixture(scope="module")
def silver_template(landed_raw: LandedRaw, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The landed lake with telemetry materialized for both days (one range run), once."""
    root = tmp_path_factory.mktemp("silver") / "lake"
    shutil.copytree(landed_raw.root, root)
    materialize(LakeResource(root=str(root)), dg.DagsterInstance.ephemeral(), [telemetry])
    return root


@pytest.fixture
def silver_lake(silver_template: Path, tmp_path: Path) -> LakeResource:
    """This test's own copy of the lake with silver telemetry for both days."""
    root = tmp_path / "lake"
    shutil.copytree(silver_template, root)
    return LakeResource(root=str(root))


def materialize(lake_resource, instance, assets, partition_key=None):
    """Materialize one day, or both days in one range run when no key is given."""
    result = dg.materialize(
        assets,
        partition_key=partition_key,
        resources={"lake": lake_resource},
        instance=instance,
        tags=None if partition_key else BOTH_DAYS,
    )
    assert result.success
    return result


def rows(lake: Lake, spec: TableSpec, day: date | None = None) -> pl.DataFrame:
    """A gold table's rows (of one partition) in key order, for whole-frame equality."""
    frame = lake.read(spec)
    if day is not None:
        frame = frame.filter(pl.col(spec.partition_by[0]) == day)
    return frame.sort(*spec.key_columns)


def direct_rollup(telemetry_rows: pl.DataFrame, every: str) -> pl.DataFrame:
    """The oracle: a bucket of each level aggregated straight from the readings.

    The standard deviation in exact arithmetic (`statistics.stdev`), not polars' `std`,
    whose own rounding grows with mean / stddev like the rollups' does.
    """
    ordered = telemetry_rows.sort("event_time", "value")
    value = pl.col("value")
    return (
        ordered.group_by(
            "tenant_id",
            "device_id",
            "metric",
            pl.col("event_time").dt.truncate(every).alias("bucket_start"),
        )
        .agg(
            pl.col("unit").min(),
            pl.len().cast(pl.Int64).alias("count"),
            value.sum().alias("sum"),
            value.min().alias("min"),
            value.max().alias("max"),
            value.first().alias("first_value"),
            pl.col("event_time").first().alias("first_time"),
            value.last().alias("last_value"),
            pl.col("event_time").last().alias("last_time"),
            value.mean().alias("mean"),
            value.alias("stddev"),
        )
        .with_columns(pl.col("stddev").map_elements(exact_stddev, return_dtype=pl.Float64))
        .sort("device_id", "metric", "bucket_start")
    )


def test_each_gold_asset_materializes_its_days(silver_lake, instance):
    lake = silver_lake.lake()
    for key in DAYS:
        result = materialize(silver_lake, instance, GOLD, partition_key=key)
        for spec in [*ROLLUPS, DEVICE_BASELINES]:
            (materialization,) = result.asset_materializations_for_node(spec.name)
            metadata = materialization.metadata
            day_rows = rows(lake, spec, date.fromisoformat(key))
            assert day_rows.height > 0
            assert metadata["dagster/row_count"].value == day_rows.height
            assert metadata["event_date_window"].value == key
            assert metadata["delta_version"].value == lake.open(spec).version()
    for spec in ROLLUPS:
        assert rows(lake, spec)["bucket_date"].unique().sort().to_list() == [
            date(2026, 11, 1),
            date(2026, 11, 2),
        ]
    # Day 2's baseline covers both days (7-day window): per key, every reading so far.
    readings = lake.read(TELEMETRY)
    per_key = readings.group_by("tenant_id", "device_id", "metric").agg(
        pl.len().cast(pl.Int64).alias("count")
    )
    baselines = rows(lake, DEVICE_BASELINES, date(2026, 11, 2))
    assert_frame_equal(
        baselines.select("tenant_id", "device_id", "metric", "count"),
        per_key.sort("device_id", "metric"),
    )
    assert baselines["window_days"].unique().to_list() == [7]
    assert metadata["window_days"].value == 7


def exact_stddev(values: pl.Series) -> float | None:
    """Sample standard deviation in rational arithmetic; None below two readings."""
    return statistics.stdev(values.to_list()) if values.len() > 1 else None


def test_coarser_levels_equal_rollups_of_the_readings(silver_lake, instance):
    lake = silver_lake.lake()
    materialize(silver_lake, instance, GOLD[:3])

    readings = lake.read(TELEMETRY)
    for spec, every in ((ROLLUP_1H, "1h"), (ROLLUP_1D, "1d")):
        expected = direct_rollup(readings, every)
        actual = mean_and_stddev(rows(lake, spec)).select(expected.columns)
        assert actual.height > 0
        # count, sum, min, max, first and last exactly; the bucket keys and unit too.
        assert_frame_equal(actual.drop("mean", "stddev"), expected.drop("mean", "stddev"))
        assert_frame_equal(
            actual.select("mean"), expected.select("mean"), check_exact=False, rel_tol=1e-13
        )
        # GPS latitude (mean 52.37, stddev ~5e-4 within an hour) is here: the old
        # sum-of-squares form was off by up to 2.4e-6 relative on it.
        assert_within_rounding(
            actual["stddev"], expected["stddev"], expected["stddev"], expected["mean"]
        )


def test_rematerializing_leaves_every_table_identical(silver_lake, instance):
    lake = silver_lake.lake()
    materialize(silver_lake, instance, GOLD)
    specs = [*ROLLUPS, DEVICE_BASELINES]
    before = {spec.name: rows(lake, spec) for spec in specs}
    versions = {spec.name: lake.open(spec).version() for spec in specs}

    materialize(silver_lake, instance, GOLD)

    for spec in specs:
        assert_frame_equal(rows(lake, spec), before[spec.name])
        # One overwrite commit, not an append.
        assert lake.open(spec).version() == versions[spec.name] + 1


def test_late_data_request_recomputes_the_old_days_gold(silver_lake, instance):
    lake = silver_lake.lake()
    materialize(silver_lake, instance, GOLD)
    before = {spec.name: rows(lake, spec, DAY_1.date()) for spec in ROLLUPS}
    cursor = lake.open(RAW_TELEMETRY).version()
    # Two days later a device flushes readings it took on day one.
    land(lake, late_readings("env-late-1", 3, DAY_1 + timedelta(hours=10)), 3, DAY_3)

    context = dg.build_sensor_context(
        instance=instance, cursor=str(cursor), resources={"lake": silver_lake}
    )
    (request,) = raw_landing_sensor(context).run_requests

    assert request.partition_key == "2026-11-01"
    assert request.asset_selection == [
        dg.AssetKey(name) for name in (TELEMETRY.name, *GOLD_AFTER[TELEMETRY.name])
    ]
    run = run_sensor_request(silver_lake, instance, request)
    materialized = {m.asset_key for m in run.get_asset_materialization_events()}
    assert materialized == set(request.asset_selection)
    late = pl.col("device_id") == "env-late-1"
    for spec in ROLLUPS:
        after = rows(lake, spec, DAY_1.date())
        # The late device's readings now count in its old day; every other row is unchanged.
        assert after.filter(late)["count"].sum() == 6  # three messages, two metrics each
        assert_frame_equal(after.filter(~late), before[spec.name])
    # The baselines follow by their automation condition: test_baseline_automation.py.


def test_baseline_window_comes_from_run_config(silver_lake, instance):
    lake = silver_lake.lake()
    materialize(silver_lake, instance, GOLD[:2])
    config = {"ops": {DEVICE_BASELINES.name: {"config": {"window_days": 1, "min_samples": 3}}}}

    result = dg.materialize(
        [device_baselines],
        partition_key=DAYS[1],
        resources={"lake": silver_lake},
        instance=instance,
        run_config=config,
    )

    assert result.success
    day_2 = date(2026, 11, 2)
    expected = (
        lake.read(TELEMETRY)
        .filter(pl.col("event_date") == day_2)
        .group_by("tenant_id", "device_id", "metric")
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .with_columns(window_days=pl.lit(1, pl.Int32), trusted=pl.col("count") >= 3)
        .sort("device_id", "metric")
    )
    assert_frame_equal(rows(lake, DEVICE_BASELINES, day_2).select(expected.columns), expected)


def hour_files(lake: Lake, spec: TableSpec, day: date) -> dict[str, int]:
    """The table's data files of a day and the hour each holds (from its partition values)."""
    actions = pl.from_arrow(pa.table(lake.open(spec).get_add_actions(flatten=True)))
    assert isinstance(actions, pl.DataFrame)
    date_column, hour_column = (f"partition.{name}" for name in spec.partition_by)
    of_day = actions.filter(pl.col(date_column).cast(pl.Date) == day)
    hours = of_day.get_column(hour_column).cast(pl.Int64)
    return dict(zip(of_day.get_column("path").to_list(), hours.to_list(), strict=True))


def test_a_sensor_run_rebuilds_only_the_touched_hours_and_equals_a_whole_day(silver_lake, instance):
    lake = silver_lake.lake()
    day_assets = [telemetry, late_data_ledger, rollup_1m, rollup_1h, rollup_1d]
    materialize(silver_lake, instance, day_assets, partition_key=DAYS[0])
    by_hour = [TELEMETRY, ROLLUP_1M]
    files_before = {spec.name: hour_files(lake, spec, DAY_1.date()) for spec in by_hour}
    cursor = lake.open(RAW_TELEMETRY).version()
    # Two days later: a flush of readings taken 10:30-11:39 on day one, and a redelivered
    # copy of day one's first reading, which must not count twice.
    day_1, _ = simulated_days()
    first = next(message for message in day_1 if message.kind == "telemetry")
    first_hour = (EPOCH + timedelta(milliseconds=first.sim_ms)).hour
    assert first_hour not in (10, 11)
    touched = {first_hour, 10, 11}
    first_hour_rows = rows(lake, TELEMETRY, DAY_1.date()).filter(pl.col("event_hour") == first_hour)
    land(lake, [*late_readings("env-late-1", 70, DAY_1 + timedelta(hours=10.5)), first], 3, DAY_3)

    context = dg.build_sensor_context(
        instance=instance, cursor=str(cursor), resources={"lake": silver_lake}
    )
    (request,) = raw_landing_sensor(context).run_requests
    assert request.tags[EVENT_HOURS_TAG] == ",".join(map(str, sorted(touched)))
    run = run_sensor_request(silver_lake, instance, request)

    for spec in by_hour:
        after = hour_files(lake, spec, DAY_1.date())
        before = files_before[spec.name]
        kept = {path: hour for path, hour in before.items() if path in after}
        # Every file of an untouched hour is still there; no file of a touched hour is.
        assert set(kept.values()) == set(before.values()) - touched, spec.name
        assert len(kept) == sum(hour not in touched for hour in before.values()), spec.name
    telemetry_day = rows(lake, TELEMETRY, DAY_1.date())
    # The run reports the day's rows, and the rows of the hours it rewrote.
    (materialization,) = run.asset_materializations_for_node(TELEMETRY.name)
    assert materialization.metadata["dagster/row_count"].value == telemetry_day.height
    in_hours = telemetry_day.filter(pl.col("event_hour").is_in(sorted(touched))).height
    assert materialization.metadata["rows_rewritten"].value == in_hours < telemetry_day.height
    assert_frame_equal(telemetry_day.filter(pl.col("event_hour") == first_hour), first_hour_rows)
    assert telemetry_day.filter(pl.col("device_id") == "env-late-1").height == 140
    specs = [TELEMETRY, LATE_DATA_LEDGER, *ROLLUPS]
    by_hours = {spec.name: rows(lake, spec, DAY_1.date()) for spec in specs}
    late_rows = by_hours[LATE_DATA_LEDGER.name].filter(pl.col("device_id") == "env-late-1")
    assert late_rows["late_messages"].sum() == 70
    assert late_rows["event_hour"].to_list() == [10, 11]

    # The same day rebuilt whole (a backfill: no hours tag) has exactly the same content.
    materialize(silver_lake, instance, day_assets, partition_key=DAYS[0])
    for spec in specs:
        assert_frame_equal(rows(lake, spec, DAY_1.date()), by_hours[spec.name])
