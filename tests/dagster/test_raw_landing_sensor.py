"""raw_landing_sensor evaluated against a real instance and a real raw_telemetry table."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import polars as pl
import pytest

from assets.jobs import GOLD_AFTER
from assets.partitions import EVENT_HOURS_TAG, parse_hours
from iot_lake.lake.catalog import DEVICE_EVENTS, RAW_TELEMETRY, TELEMETRY
from iot_lake.lake.tables import Lake
from iot_lake.settings import Settings
from iot_lake.silver.decode import decode_device_events, decode_telemetry
from resources.lake import LakeResource
from sensors.raw_landing import raw_landing_sensor
from tests.dagster.conftest import definitions_for, land, simulated_days

SKEW = timedelta(seconds=Settings.skew_tolerance_s)
LATENESS = timedelta(seconds=Settings.max_lateness_s)


def evaluate(instance, lake_resource, cursor):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"lake": lake_resource}
    )
    return raw_landing_sensor(context)


def requested(result) -> dict[str, list[str]]:
    """partition key -> selected asset names, per run request."""
    return {
        request.partition_key: sorted(key.to_user_string() for key in request.asset_selection)
        for request in result.run_requests
    }


def expected_requests(raw: pl.DataFrame) -> dict[str, list[str]]:
    """The event days each silver table gets rows for (decoding the raw rows in full), plus
    the gold tables built from that silver table."""
    days: dict[str, set[str]] = {}
    for spec, decode in ((TELEMETRY, decode_telemetry), (DEVICE_EVENTS, decode_device_events)):
        for day in decode(raw, SKEW, max_lateness=LATENESS)["event_date"].unique():
            days.setdefault(day.isoformat(), set()).update(
                [spec.name, *GOLD_AFTER.get(spec.name, ())]
            )
    return {day: sorted(tables) for day, tables in sorted(days.items())}


def test_first_tick_requests_every_partition_in_raw(instance, lake_resource, landed_raw):
    result = evaluate(instance, lake_resource, cursor=None)

    every_table = [
        "device_events",
        "late_data_ledger",
        "rollup_1d",
        "rollup_1h",
        "rollup_1m",
        "telemetry",
    ]
    assert requested(result) == {"2026-11-01": every_table, "2026-11-02": every_table}
    assert requested(result) == expected_requests(lake_resource.lake().read(RAW_TELEMETRY))
    assert result.cursor == str(landed_raw.day_2_version)
    assert [request.run_key for request in result.run_requests] == [
        f"raw_telemetry@0..{landed_raw.day_2_version}:2026-11-01",
        f"raw_telemetry@0..{landed_raw.day_2_version}:2026-11-02",
    ]


def test_nothing_new_skips(instance, lake_resource, landed_raw):
    result = evaluate(instance, lake_resource, cursor=str(landed_raw.day_2_version))

    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == f"no new commits since version {landed_raw.day_2_version}"


def test_new_commit_requests_touched_partitions(instance, landed_raw, tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    day_1, day_2 = simulated_days()
    cursor = land(lake, day_1, version=1)
    new_version = land(lake, day_2, version=2)
    resource = LakeResource(root=lake.root)

    result = evaluate(instance, resource, cursor=str(cursor))

    new_rows = lake.read(RAW_TELEMETRY).filter(pl.col("source_position").str.starts_with("2:"))
    assert requested(result) == expected_requests(new_rows)
    assert "2026-11-02" in requested(result)
    assert result.cursor == str(new_version)
    assert all(
        request.run_key.startswith(f"raw_telemetry@{new_version}..{new_version}:")
        for request in result.run_requests
    )


def test_missing_raw_table_skips(instance, tmp_path):
    result = evaluate(instance, LakeResource(root=str(tmp_path / "empty")), cursor=None)

    assert isinstance(result, dg.SkipReason)
    assert "raw_telemetry does not exist yet" in result.skip_message


def test_commit_with_only_invalid_messages_advances_the_cursor(instance, lake_resource, landed_raw):
    lake = lake_resource.lake()
    day_1, _ = simulated_days()
    malformed = [m for m in day_1 if m.expected_error is not None]
    assert malformed
    version = land(lake, malformed, version=3)

    result = evaluate(instance, lake_resource, cursor=str(landed_raw.day_2_version))

    assert result.run_requests == []
    assert result.cursor == str(version)
    assert "added no valid message" in result.skip_reason.skip_message


def test_a_day_with_a_queued_run_is_not_requested_again(instance, lake_resource, landed_raw):
    """A run of the day that has not started reads raw when it starts: new raw of that day
    is covered, so the sensor does not pile up a run per tick (the queue would never drain)."""
    job = definitions_for(lake_resource).resolve_job_def("event_day_job")
    first = evaluate(instance, lake_resource, cursor=None)
    queued_day = first.run_requests[0]
    instance.create_run_for_job(
        job_def=job,
        status=dg.DagsterRunStatus.NOT_STARTED,  # QUEUED needs a code-server origin
        tags={"dagster/partition": queued_day.partition_key},
        asset_selection=frozenset(queued_day.asset_selection),
    )

    again = evaluate(instance, lake_resource, cursor=None)

    assert queued_day.partition_key not in requested(again)
    assert requested(again) == {
        day: tables for day, tables in requested(first).items() if day != queued_day.partition_key
    }
    assert again.cursor == first.cursor


def decoded_hours(raw: pl.DataFrame) -> dict[str, str]:
    """The event hours each day gets rows in (decoding the raw rows in full), as run tags."""
    rows = pl.concat(
        decode(raw, SKEW, max_lateness=LATENESS).select("event_date", "event_hour")
        for decode in (decode_telemetry, decode_device_events)
    )
    per_day = rows.group_by("event_date").agg(pl.col("event_hour").unique().sort())
    return {day.isoformat(): ",".join(map(str, hours)) for day, hours in per_day.iter_rows()}


def test_runs_name_the_touched_hours_and_a_queued_run_covers_only_its_own(
    instance, lake_resource, landed_raw
):
    job = definitions_for(lake_resource).resolve_job_def("event_day_job")
    first = evaluate(instance, lake_resource, cursor=None)
    tags = {request.partition_key: request.tags[EVENT_HOURS_TAG] for request in first.run_requests}
    assert tags == decoded_hours(lake_resource.lake().read(RAW_TELEMETRY))
    day = first.run_requests[0]
    hours = parse_hours(day.tags[EVENT_HOURS_TAG])
    assert len(hours) > 1
    # A run of the day queued for its first hour only does not cover the other hours.
    instance.create_run_for_job(
        job_def=job,
        status=dg.DagsterRunStatus.NOT_STARTED,
        tags={"dagster/partition": day.partition_key, EVENT_HOURS_TAG: str(hours[0])},
        asset_selection=frozenset(day.asset_selection),
    )

    again = evaluate(instance, lake_resource, cursor=None)

    assert requested(again) == requested(first)


def test_a_malformed_hours_tag_is_refused_with_the_expected_form():
    with pytest.raises(ValueError, match="expected UTC hours 0-23 separated by commas"):
        parse_hours("22;23")
    with pytest.raises(ValueError, match="iot_lake/event_hours='24'"):
        parse_hours("24")
