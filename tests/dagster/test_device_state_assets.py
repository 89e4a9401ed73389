"""device_registry and device_state over two simulated days, on real tables and a real instance."""

from __future__ import annotations

import json
from datetime import timedelta

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from assets.device_events import device_events
from assets.device_state import device_registry, device_state
from assets.telemetry import telemetry
from iot_lake.lake.catalog import DEVICE_EVENTS, DEVICE_REGISTRY, DEVICE_STATE, TELEMETRY, TableSpec
from iot_lake.lake.tables import Lake
from iot_lake.state.shadow_update import SOURCE_VERSIONS_KEY
from tests.dagster.conftest import DAY_1, DAY_3, definitions_for, land, late_readings

SILVER = [telemetry, device_events]
SHADOW = [device_registry, device_state]
SHADOW_KEYS = {dg.AssetKey(DEVICE_REGISTRY.name), dg.AssetKey(DEVICE_STATE.name)}
BOTH_DAYS = {
    "dagster/asset_partition_range_start": "2026-11-01",
    "dagster/asset_partition_range_end": "2026-11-02",
}


def materialize(lake_resource, instance, assets, **kwargs):
    result = dg.materialize(assets, resources={"lake": lake_resource}, instance=instance, **kwargs)
    assert result.success
    return result


def rows(lake: Lake, spec: TableSpec) -> pl.DataFrame:
    return lake.read(spec).sort(*spec.key_columns)


def latest_readings(lake: Lake) -> pl.DataFrame:
    """The oracle: per device x metric, the telemetry row with the greatest ordering key."""
    readings = lake.read(TELEMETRY).sort("event_time", "ingest_time", "message_id")
    latest = readings.group_by("tenant_id", "device_id", "metric").last()
    return latest.select(DEVICE_STATE.column_names).sort(*DEVICE_STATE.key_columns)


@pytest.fixture
def shadowed(lake_resource, instance):
    """Silver for both days (one range run), then the shadow tables built from it."""
    materialize(lake_resource, instance, SILVER, tags=BOTH_DAYS)
    materialize(lake_resource, instance, SHADOW)
    return lake_resource.lake()


def test_registry_has_every_device_seen_with_its_first_and_last_seen(shadowed):
    messages = pl.concat(
        [
            shadowed.read(spec).select("tenant_id", "device_id", "event_time", "ingest_time")
            for spec in (TELEMETRY, DEVICE_EVENTS)
        ]
    )
    expected = (
        messages.group_by("tenant_id", "device_id")
        .agg(
            first_seen=pl.col("event_time").min(),
            last_seen=pl.col("event_time").max(),
            last_ingest_time=pl.col("ingest_time").max(),
        )
        .sort("tenant_id", "device_id")
    )
    registry = rows(shadowed, DEVICE_REGISTRY)

    assert registry.height == 20
    assert_frame_equal(registry.select(expected.columns), expected)
    # What the simulated devices announced: type from telemetry, fleet from boot events,
    # firmware from both, status from status messages.
    assert registry.filter(pl.col("device_id").str.starts_with("env-"))[
        "device_type"
    ].unique().to_list() == ["env_sensor"]
    assert registry["fleet"].null_count() == 0
    assert (registry["fleet"].str.split("-").list.first() == registry["tenant_id"]).all()
    assert registry["firmware"].null_count() == 0
    assert set(registry["status"].unique().to_list()) <= {"online", "offline"}
    assert registry["last_heartbeat_at"].null_count() == 0


def test_state_holds_the_latest_reading_of_every_device_and_metric(shadowed):
    assert_frame_equal(rows(shadowed, DEVICE_STATE), latest_readings(shadowed))


def test_running_again_with_nothing_new_changes_nothing(shadowed, lake_resource, instance):
    before = {spec.name: rows(shadowed, spec) for spec in (DEVICE_REGISTRY, DEVICE_STATE)}
    versions = {
        spec.name: shadowed.open(spec).version() for spec in (DEVICE_REGISTRY, DEVICE_STATE)
    }

    result = materialize(lake_resource, instance, SHADOW)

    for spec in (DEVICE_REGISTRY, DEVICE_STATE):
        assert_frame_equal(rows(shadowed, spec), before[spec.name])
        assert shadowed.open(spec).version() == versions[spec.name]  # not even a commit
        (materialization,) = result.asset_materializations_for_node(spec.name)
        assert materialization.metadata["silver_rows_read"].value == 0
        assert materialization.metadata["rows_changed"].value == 0


def test_the_consumed_silver_versions_are_in_the_commit(shadowed):
    (commit,) = shadowed.open(DEVICE_REGISTRY).history(1)
    assert json.loads(commit[SOURCE_VERSIONS_KEY]) == {
        TELEMETRY.name: shadowed.open(TELEMETRY).version(),
        DEVICE_EVENTS.name: shadowed.open(DEVICE_EVENTS).version(),
    }


def test_a_late_flush_into_day_one_does_not_roll_state_back(shadowed, lake_resource, instance):
    state_before = rows(shadowed, DEVICE_STATE)
    registry_before = rows(shadowed, DEVICE_REGISTRY)
    # A known device flushes readings it took on day one, two days later: older than the
    # state it already has. A rebuild of day one re-reads every row of that day.
    device = state_before["device_id"].filter(state_before["device_id"].str.starts_with("env-"))[0]
    late = late_readings(device, 3, event_time=DAY_1 + timedelta(hours=10))
    land(shadowed, late, version=3, ingest_at=DAY_3 + timedelta(hours=12))
    materialize(lake_resource, instance, [telemetry], partition_key="2026-11-01")

    result = materialize(lake_resource, instance, SHADOW)

    (state_run,) = result.asset_materializations_for_node(DEVICE_STATE.name)
    day_1_rows = shadowed.read(TELEMETRY).filter(pl.col("event_date") == DAY_1.date()).height
    assert state_run.metadata["silver_rows_read"].value == day_1_rows  # that day, not history
    assert state_run.metadata["rows_changed"].value == 0
    assert_frame_equal(rows(shadowed, DEVICE_STATE), state_before)
    assert_frame_equal(rows(shadowed, DEVICE_STATE), latest_readings(shadowed))
    # The registry only learns that it heard from the device again; nothing regresses.
    registry_after = rows(shadowed, DEVICE_REGISTRY)
    heard = registry_after.filter(pl.col("device_id") == device)["last_ingest_time"].to_list()
    assert heard == [DAY_3 + timedelta(hours=12)]
    assert_frame_equal(
        registry_after.drop("last_ingest_time"), registry_before.drop("last_ingest_time")
    )


def test_automation_requests_the_shadow_after_silver_changes_old_days_included(
    lake_resource, instance
):
    definitions = definitions_for(lake_resource)

    def requested(cursor):
        """The shadow assets one evaluation tick requests, and the cursor for the next tick."""
        result = dg.evaluate_automation_conditions(
            defs=definitions, instance=instance, cursor=cursor
        )
        keys = {key for key in SHADOW_KEYS if result.get_num_requested(key)}
        return keys, result.cursor

    keys, cursor = requested(None)
    assert keys == set()  # no silver yet: nothing to merge

    materialize(lake_resource, instance, SILVER, tags=BOTH_DAYS)
    keys, cursor = requested(cursor)
    assert keys == SHADOW_KEYS

    materialize(lake_resource, instance, SHADOW)
    keys, cursor = requested(cursor)
    assert keys == set()

    # An old day is rebuilt (late data): the shadow is requested again.
    materialize(lake_resource, instance, [telemetry], partition_key="2026-11-01")
    keys, cursor = requested(cursor)
    assert keys == SHADOW_KEYS
