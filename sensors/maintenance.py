"""lake_maintenance_job and its nightly schedule: compaction, vacuum, log cleanup, raw retention.

Maintenance produces no table, so it is a job of one op rather than an asset: it reports
what it did to each table as an AssetObservation of the table's asset (files before and
after, bytes vacuumed, Delta versions) and one log line per table. Retention comes from the
settings (IOT_LAKE_VACUUM_RETENTION_HOURS, IOT_LAKE_RAW_RETENTION_DAYS) where the op runs;
the logic and its safety argument are in iot_lake.lake.maintenance.
"""

# No `from __future__ import annotations` here: Dagster reads the context, config and
# resource annotations when the definition is built, and string annotations fail its checks.

import dagster as dg
from pydantic import Field

from iot_lake.lake.catalog import table_spec
from iot_lake.lake.maintenance import MaintenanceReport, maintain_lake
from iot_lake.lake.retention import RetentionPolicy
from iot_lake.settings import load_settings
from resources.lake import LakeResource

# 03:00 UTC: after the day has turned everywhere the consumer writes, before business hours.
MAINTENANCE_CRON = "0 3 * * *"


class MaintenanceConfig(dg.Config):
    """Which tables to maintain (all catalog tables by default) and whether to only report."""

    tables: list[str] = Field(
        default_factory=list, description="Catalog table names; empty: every table."
    )
    dry_run: bool = Field(default=False, description="Report what would be done, change nothing.")


@dg.op
def maintain_lake_tables(
    context: dg.OpExecutionContext, config: MaintenanceConfig, lake: LakeResource
) -> None:
    """Compacts, vacuums and trims the log of every lake table, and expires old raw days."""
    settings = load_settings()
    policy = RetentionPolicy.from_settings(settings)
    specs = [table_spec(name) for name in config.tables] or None
    done = 0
    for report in maintain_lake(lake.lake(), policy, specs, dry_run=config.dry_run):
        context.log.info(report.summary())
        context.log_event(
            dg.AssetObservation(asset_key=report.table, metadata=_observation(report))
        )
        done += 1
    context.log.info(f"maintained {done} table(s); raw retention: {_raw_retention(policy)}")


def _observation(report: MaintenanceReport) -> dict[str, dg.MetadataValue]:
    return {
        "dry_run": dg.MetadataValue.bool(report.dry_run),
        "files_before": dg.MetadataValue.int(report.files_before),
        "files_after": dg.MetadataValue.int(report.files_after),
        "files_vacuumed": dg.MetadataValue.int(report.files_vacuumed),
        "bytes_vacuumed": dg.MetadataValue.int(report.bytes_vacuumed),
        "vacuum_retention_hours": dg.MetadataValue.int(report.vacuum_retention_hours),
        "delta_version_before": dg.MetadataValue.int(report.version_before),
        "delta_version_after": dg.MetadataValue.int(report.version_after),
        "compacted_partitions": dg.MetadataValue.text(", ".join(report.compacted_partitions)),
        "expired_partitions": dg.MetadataValue.text(", ".join(report.expired_partitions)),
    }


def _raw_retention(policy: RetentionPolicy) -> str:
    days = policy.raw_retention_days
    return "kept forever" if days is None else f"{days} days"


@dg.job(description="Compact closed partitions, vacuum old tombstones, trim logs, expire raw.")
def lake_maintenance_job() -> None:
    """One op: tables are maintained one after another, so the consumer keeps its cores."""
    maintain_lake_tables()


lake_maintenance_schedule = dg.ScheduleDefinition(
    name="lake_maintenance_schedule",
    job=lake_maintenance_job,
    cron_schedule=MAINTENANCE_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly lake maintenance (iot_lake.lake.maintenance) at 03:00 UTC.",
)
