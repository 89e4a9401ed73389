"""lake_maintenance_job run in process on a real lake, and its nightly schedule."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pyarrow as pa

from iot_lake.definitions import defs
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.tables import Lake
from sensors.maintenance import lake_maintenance_job, lake_maintenance_schedule
from tests.dagster.conftest import DAY_2, land, late_readings

DAY_1_KEY, DAY_2_KEY = "2026-11-01", "2026-11-02"


def raw_files_per_day(lake: Lake) -> Counter[str]:
    table = lake.open(RAW_TELEMETRY)
    actions = pa.table(table.get_add_actions(flatten=True))
    return Counter(str(day) for day in actions.column("partition.ingest_date").to_pylist())


def test_the_job_compacts_expires_raw_and_reports_each_table(
    lake_root, lake_resource, instance, monkeypatch
):
    lake = Lake(str(lake_root))
    for version in range(1, 4):  # three more small commits to ingest day two
        readings = late_readings("dev-00001", 2, DAY_2 + timedelta(hours=version))
        land(
            lake,
            readings,
            version,
            ingest_at=DAY_2 + timedelta(hours=12, minutes=version),
            app_id="extra",
        )
    assert raw_files_per_day(lake) == {DAY_1_KEY: 1, DAY_2_KEY: 4}
    # Keep exactly the days since day two: day one is older than the retention.
    keep_days = (datetime.now(UTC).date() - date.fromisoformat(DAY_2_KEY)).days
    monkeypatch.setenv("IOT_LAKE_RAW_RETENTION_DAYS", str(keep_days))

    result = lake_maintenance_job.execute_in_process(
        instance=instance, resources={"lake": lake_resource}
    )

    assert result.success
    assert raw_files_per_day(lake) == {DAY_2_KEY: 1}
    observations = {
        observation.asset_key.to_user_string(): observation.metadata
        for observation in result.asset_observations_for_node("maintain_lake_tables")
    }
    assert list(observations) == [RAW_TELEMETRY.name]  # the only table of this lake yet
    raw = observations[RAW_TELEMETRY.name]
    assert raw["files_before"].value == 5
    assert raw["files_after"].value == 1
    assert raw["expired_partitions"].value == DAY_1_KEY
    assert raw["compacted_partitions"].value == DAY_2_KEY
    assert raw["delta_version_after"].value > raw["delta_version_before"].value
    assert raw["vacuum_retention_hours"].value == 48


def test_a_dry_run_changes_nothing(lake_root, lake_resource, instance):
    lake = Lake(str(lake_root))
    version = lake.open(RAW_TELEMETRY).version()

    result = lake_maintenance_job.execute_in_process(
        instance=instance,
        resources={"lake": lake_resource},
        run_config={"ops": {"maintain_lake_tables": {"config": {"dry_run": True}}}},
    )

    assert result.success
    assert lake.open(RAW_TELEMETRY).version() == version
    (observation,) = result.asset_observations_for_node("maintain_lake_tables")
    assert observation.metadata["dry_run"].value is True


def test_the_schedule_runs_the_job_nightly_and_is_on_by_default():
    schedule = defs.resolve_schedule_def("lake_maintenance_schedule")

    assert schedule.job_name == lake_maintenance_job.name
    assert schedule.cron_schedule == "0 3 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 24, 3, tzinfo=UTC)
    )
    tick = lake_maintenance_schedule.evaluate_tick(context)
    assert tick.run_requests is not None
    assert len(tick.run_requests) == 1
    assert tick.skip_message is None
