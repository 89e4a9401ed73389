"""device_baselines follow late data through their automation condition (issue 3).

A late reading on day D changes the baselines of D..D+6. raw_landing_sensor rebuilds
silver and the rollups of D only; the automation condition on device_baselines must then
request every baseline day whose window holds D, old days included, and nothing more
once those ran.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import polars as pl
from polars.testing import assert_frame_equal

from assets.baselines import device_baselines
from assets.partitions import event_date_partitions
from assets.rollups import rollup_1d, rollup_1h, rollup_1m
from assets.telemetry import telemetry
from iot_lake.definitions import defs
from iot_lake.gold.baselines import device_baselines as compute_baselines
from iot_lake.gold.rebuild import DEFAULT_WINDOW_DAYS
from iot_lake.lake.catalog import DEVICE_BASELINES, RAW_TELEMETRY, ROLLUP_1H
from sensors.raw_landing import raw_landing_sensor
from tests.dagster.conftest import (
    DAY_1,
    DAY_3,
    definitions_for,
    land,
    late_readings,
    run_sensor_request,
)
from tests.dagster.test_gold_assets import materialize, rows
from tests.iot_lake.gold.test_rollups import assert_within_rounding

BASELINES = dg.AssetKey(DEVICE_BASELINES.name)
LATE_DEVICE = pl.col("device_id") == "env-late-1"


def days_whose_window_holds(day: date) -> set[str]:
    """The baseline days that read rollup_1h of `day`, among the partitions that exist now."""
    window = {(day + timedelta(days=k)).isoformat() for k in range(DEFAULT_WINDOW_DAYS)}
    return window & set(event_date_partitions.get_partition_keys())


def assert_same_baselines(actual: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Keys, counts and trust exactly; means and stddev up to the order of summation.

    The asset and a direct read of rollup_1h see its rows in different orders, and float
    sums depend on the order of addition in the last bits.
    """
    floats = ["mean", "stddev", "hour_of_day_mean"]
    assert_frame_equal(actual.drop(floats), expected.drop(floats), check_exact=True)
    assert_frame_equal(
        actual.select("mean", "hour_of_day_mean"),
        expected.select("mean", "hour_of_day_mean"),
        rel_tol=1e-12,
        abs_tol=0.0,
    )
    assert_within_rounding(
        actual["stddev"], expected["stddev"], expected["stddev"], expected["mean"]
    )


def materialize_range(lake_resource, instance, keys: list[str]) -> None:
    """device_baselines over consecutive days in one run, as the backfill it asks for does."""
    result = dg.materialize(
        [device_baselines],
        resources={"lake": lake_resource},
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )
    assert result.success


def test_a_late_day_requests_the_baselines_of_every_window_holding_it_issue_3(
    lake_resource, instance
):
    lake = lake_resource.lake()
    definitions = definitions_for(lake_resource)
    materialize(
        lake_resource, instance, [telemetry, rollup_1m, rollup_1h, rollup_1d, device_baselines]
    )
    # The first tick only starts the record: what was materialized before it is history.
    first = dg.evaluate_automation_conditions(defs=definitions, instance=instance)
    assert first.total_requested == 0
    day_2 = DAY_1.date() + timedelta(days=1)
    day_2_before = rows(lake, DEVICE_BASELINES, day_2)

    # Two days later a device flushes readings it took on day one; the sensor's run
    # rebuilds telemetry and the rollups of day one, not the baselines.
    cursor = lake.open(RAW_TELEMETRY).version()
    land(lake, late_readings("env-late-1", 3, DAY_1 + timedelta(hours=10)), 3, DAY_3)
    context = dg.build_sensor_context(
        instance=instance, cursor=str(cursor), resources={"lake": lake_resource}
    )
    (request,) = raw_landing_sensor(context).run_requests
    assert request.partition_key == DAY_1.date().isoformat()
    assert BASELINES not in request.asset_selection
    run_sensor_request(lake_resource, instance, request)

    second = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, cursor=first.cursor
    )
    requested = second.get_requested_partitions(BASELINES)
    assert requested == days_whose_window_holds(DAY_1.date())
    assert {"2026-11-01", "2026-11-02"} <= requested
    materialize_range(lake_resource, instance, sorted(requested))

    hourly = lake.read(ROLLUP_1H)
    for key in sorted(requested):
        day = date.fromisoformat(key)
        assert_same_baselines(
            rows(lake, DEVICE_BASELINES, day),
            compute_baselines(hourly, day).sort(*DEVICE_BASELINES.key_columns),
        )
    day_2_after = rows(lake, DEVICE_BASELINES, day_2)
    assert day_2_before.filter(LATE_DEVICE).is_empty()
    assert day_2_after.filter(LATE_DEVICE)["count"].to_list() == [3, 3]  # two metrics
    assert_frame_equal(day_2_after.filter(~LATE_DEVICE), day_2_before)

    # What was requested and ran is handled: the next tick requests nothing (no loop).
    third = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, cursor=second.cursor
    )
    assert third.total_requested == 0


def test_the_automation_condition_sensor_runs_by_default_and_covers_every_asset():
    sensor = defs.resolve_sensor_def("automation_condition_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    # Dagster adds its own (stopped) default sensor only for conditions no sensor targets.
    names = {sensor.name for sensor in defs.get_repository_def().sensor_defs}
    assert "default_automation_condition_sensor" not in names
