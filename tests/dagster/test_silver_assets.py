"""The telemetry and device_events assets, materialized on a real instance and real tables."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from assets.device_events import device_events
from assets.jobs import GOLD_AFTER
from assets.telemetry import telemetry
from iot_lake.lake.catalog import (
    DEVICE_EVENTS,
    LATE_DATA_LEDGER,
    RAW_TELEMETRY,
    TELEMETRY,
    TableSpec,
)
from iot_lake.lake.tables import Lake
from iot_lake.settings import Settings
from iot_lake.silver.decode import decode_device_events, decode_telemetry
from sensors.raw_landing import raw_landing_sensor
from tests.dagster.conftest import DAY_1, DAY_3, land, late_readings, run_sensor_request

SKEW = timedelta(seconds=Settings.skew_tolerance_s)
LATENESS = timedelta(seconds=Settings.max_lateness_s)
SILVER = [telemetry, device_events]
DECODERS = {TELEMETRY.name: decode_telemetry, DEVICE_EVENTS.name: decode_device_events}


def materialize(lake_resource, instance, partition_key, assets=SILVER, **kwargs):
    result = dg.materialize(
        assets,
        partition_key=partition_key,
        resources={"lake": lake_resource},
        instance=instance,
        **kwargs,
    )
    assert result.success
    return result


def table_rows(lake: Lake, spec: TableSpec, day: date | None = None) -> pl.DataFrame:
    """A silver table's rows (of one event day) in a stable order, for whole-frame equality."""
    rows = lake.read(spec)
    if day is not None:
        rows = rows.filter(pl.col("event_date") == day)
    return rows.sort(*spec.key_columns)


def decoded(lake: Lake, spec: TableSpec, day: date) -> pl.DataFrame:
    """What iot_lake.silver.decode makes of every raw row, restricted to one event day."""
    rows = DECODERS[spec.name](lake.read(RAW_TELEMETRY), SKEW, max_lateness=LATENESS)
    return rows.filter(pl.col("event_date") == day).sort(*spec.key_columns)


@pytest.mark.parametrize("spec", [TELEMETRY, DEVICE_EVENTS], ids=lambda spec: spec.name)
def test_each_day_holds_what_the_decoder_gives_for_it(lake_resource, instance, spec):
    lake = lake_resource.lake()
    for key in ("2026-11-01", "2026-11-02"):
        result = materialize(lake_resource, instance, key, assets=[SILVER[spec == DEVICE_EVENTS]])
        day = date.fromisoformat(key)
        expected = decoded(lake, spec, day)
        assert expected.height > 0
        assert_frame_equal(table_rows(lake, spec, day), expected)
        (materialization,) = result.asset_materializations_for_node(spec.name)
        metadata = materialization.metadata
        assert metadata["dagster/row_count"].value == expected.height
        assert metadata["event_date_window"].value == key
        assert metadata["delta_version"].value == lake.open(spec).version()
        assert "|" in metadata["preview"].value
    # Nothing outside the two materialized days.
    assert table_rows(lake, spec)["event_date"].unique().sort().to_list() == [
        date(2026, 11, 1),
        date(2026, 11, 2),
    ]


def test_rematerializing_a_day_changes_nothing(lake_resource, instance):
    lake = lake_resource.lake()
    materialize(lake_resource, instance, "2026-11-01")
    materialize(lake_resource, instance, "2026-11-02")
    before = {spec.name: table_rows(lake, spec) for spec in (TELEMETRY, DEVICE_EVENTS)}
    versions = {spec.name: lake.open(spec).version() for spec in (TELEMETRY, DEVICE_EVENTS)}

    materialize(lake_resource, instance, "2026-11-01")

    for spec in (TELEMETRY, DEVICE_EVENTS):
        assert_frame_equal(table_rows(lake, spec), before[spec.name])
        # One overwrite commit, not an append.
        assert lake.open(spec).version() == versions[spec.name] + 1


def test_a_range_run_writes_the_same_days_as_daily_runs(lake_resource, instance):
    lake = lake_resource.lake()
    materialize(lake_resource, instance, "2026-11-01")
    materialize(lake_resource, instance, "2026-11-02")
    daily = {spec.name: table_rows(lake, spec) for spec in (TELEMETRY, DEVICE_EVENTS)}

    versions = {spec.name: lake.open(spec).version() for spec in (TELEMETRY, DEVICE_EVENTS)}

    result = dg.materialize(
        SILVER,
        resources={"lake": lake_resource},
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2026-11-01",
            "dagster/asset_partition_range_end": "2026-11-02",
        },
    )

    for spec in (TELEMETRY, DEVICE_EVENTS):
        materializations = result.asset_materializations_for_node(spec.name)
        assert sorted(m.partition for m in materializations) == ["2026-11-01", "2026-11-02"]
        # One overwrite of both days in one commit.
        assert {m.metadata["event_date_window"].value for m in materializations} == {
            "2026-11-01..2026-11-03"
        }
        assert lake.open(spec).version() == versions[spec.name] + 1
        assert_frame_equal(table_rows(lake, spec), daily[spec.name])


def test_late_data_lands_in_its_old_day_and_the_sensor_requests_only_that_day(
    lake_resource, instance
):
    lake = lake_resource.lake()
    materialize(lake_resource, instance, "2026-11-01")
    day_1_before = table_rows(lake, TELEMETRY, DAY_1.date())
    cursor = lake.open(RAW_TELEMETRY).version()
    # Two days later a device flushes readings it took on day one.
    first_late, ingest_at = DAY_1 + timedelta(hours=10), DAY_3 + timedelta(hours=12)
    late = late_readings("env-late-1", 3, event_time=first_late)
    land(lake, late, version=3, ingest_at=ingest_at)

    context = dg.build_sensor_context(
        instance=instance, cursor=str(cursor), resources={"lake": lake_resource}
    )
    result = raw_landing_sensor(context)

    # Telemetry of day one and the gold tables built from it; device_events got no new row.
    selection = [dg.AssetKey(name) for name in (TELEMETRY.name, *GOLD_AFTER[TELEMETRY.name])]
    assert [(r.partition_key, r.asset_selection) for r in result.run_requests] == [
        ("2026-11-01", selection)
    ]
    (request,) = result.run_requests
    run = run_sensor_request(lake_resource, instance, request)
    materialized = {m.asset_key for m in run.get_asset_materialization_events()}
    assert materialized == set(request.asset_selection)
    day_1_after = table_rows(lake, TELEMETRY, DAY_1.date())
    late_rows = day_1_after.filter(pl.col("device_id") == "env-late-1")
    assert late_rows.height == 6  # three messages, two metrics each
    assert late_rows["event_time"].min() == datetime(2026, 11, 1, 10, tzinfo=DAY_1.tzinfo)
    assert late_rows["ingest_date"].unique().to_list() == [DAY_3.date()]
    assert_frame_equal(day_1_after.filter(pl.col("device_id") != "env-late-1"), day_1_before)
    # The ledger of day one, rebuilt in the same run, says who was late and by how much.
    ledger = lake.read(LATE_DATA_LEDGER).filter(pl.col("device_id") == "env-late-1")
    assert ledger.select(
        "table", "event_date", "ingest_date", "late_messages", "max_lateness_s"
    ).rows() == [
        (TELEMETRY.name, DAY_1.date(), DAY_3.date(), 3, (ingest_at - first_late).total_seconds())
    ]
