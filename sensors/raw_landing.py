"""raw_landing_sensor: new raw_telemetry commits request the partitions they touch.

The cursor is the last raw Delta version seen. Each tick reads the rows of the commits
since then (the files their add actions list, see iot_lake.lake.changes), works out which
event days and hours of telemetry and device_events those rows belong to, and requests a
run per day of those silver tables and of the gold tables built from them (the rollups of
the same day, `GOLD_AFTER`), in one run so each level reads the one below it freshly
written. The run's tag names the hours touched, and tables with an hour column rebuild
only those: an hour of new data costs an hour, not the day (contract 5). Late data (a
device flushing a buffer from days ago) thus recomputes exactly the old hours it touches.
Run keys carry the version range, so a tick that is evaluated again after a failure to
store its cursor requests nothing twice.

Baselines are not requested here: the baseline as of D also reads the `window_days - 1`
days before D, so a late reading on D changes the baselines of D .. D+6, and requesting
them from this tick would race the run that rewrites rollup_1h of D (runs are not ordered).
device_baselines follows its automation condition instead (assets/automation.py,
evaluated by automation_condition_sensor): once that run has rebuilt rollup_1h of D, it
requests the baselines of D .. D+6 through the asset's partition mapping.
"""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations when the definition is built, and string annotations fail its checks.

from collections import defaultdict
from datetime import date

import dagster as dg
import polars as pl

from assets.jobs import GOLD_AFTER, event_day_job
from assets.partitions import EVENT_HOURS_TAG, event_date_partitions, hours_tag, parse_hours
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.changes import TableMissing, files_added_since, scan_added
from iot_lake.silver.decode import event_partitions_touched
from resources.lake import LakeResource

# What event_partitions_touched needs from raw: identity, kind, ingest time and the payload's
# ts, and for quarantined rows what checking them again takes (topic, payload as stored).
RAW_COLUMNS = [
    "ingest_time",
    "ingest_date",
    "device_id",
    "message_kind",
    "message_id",
    "topic",
    "payload",
    "payload_encoding",
    "error_code",
]


@dg.sensor(
    job=event_day_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def raw_landing_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource
) -> dg.SensorResult | dg.SkipReason:
    """Requests the event days new raw commits touched, for silver and the gold built from it."""
    the_lake = lake.lake()
    cursor = int(context.cursor) if context.cursor else None
    try:
        added = files_added_since(the_lake, RAW_TELEMETRY, cursor)
    except TableMissing:
        return dg.SkipReason("raw_telemetry does not exist yet: no consumer has landed data")
    if added.after_version == added.to_version:
        return dg.SkipReason(f"no new commits since version {cursor}")
    if added.rescan_reason:
        context.log.info(f"reading all of raw_telemetry: {added.rescan_reason}")
    versions = added.versions
    rows = scan_added(the_lake, RAW_TELEMETRY, added).select(RAW_COLUMNS)
    rules = lake.silver_rules()
    touched = event_partitions_touched(
        rows,
        rules.skew_tolerance,
        max_lateness=rules.max_lateness,
        max_payload_bytes=rules.max_payload_bytes,
        identity=rules.identity,
    )
    requests = event_day_run_requests(context, touched, versions)
    if not requests:
        reason = f"raw versions {versions} added no valid message in a silver partition"
        return dg.SensorResult(skip_reason=reason, cursor=str(added.to_version))
    return dg.SensorResult(run_requests=requests, cursor=str(added.to_version))


def event_day_run_requests(
    context: dg.SensorEvaluationContext, touched: pl.DataFrame, versions: str
) -> list[dg.RunRequest]:
    """One run per touched event day: the silver tables with new rows, then their gold tables.

    The run's EVENT_HOURS_TAG names the hours of the day the new rows touched, so it rebuilds
    those hours only (rollup_1d and baselines: their whole day, from the hours below).
    """
    tables_by_day: dict[date, set[str]] = defaultdict(set)
    hours_by_day: dict[date, set[int]] = defaultdict(set)
    for table, day, hour in touched.select("table", "event_date", "event_hour").iter_rows():
        tables_by_day[day].add(table)
        hours_by_day[day].add(hour)
    requests = []
    for day, tables in sorted(tables_by_day.items()):
        key = day.isoformat()
        if not event_date_partitions.has_partition_key(key):
            context.log.warning(f"raw versions {versions} touch {key}, outside the partitions")
            continue
        selection = day_selection(tables)
        hours = hours_by_day[day]
        if queued_runs_cover(context.instance, key, set(selection), hours):
            context.log.info(f"{key}: a queued run already covers raw versions {versions}")
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"{RAW_TELEMETRY.name}@{versions}:{key}",
                partition_key=key,
                asset_selection=selection,
                tags={"iot_lake/raw_versions": versions, EVENT_HOURS_TAG: hours_tag(hours)},
            )
        )
    return requests


def queued_runs_cover(
    instance: dg.DagsterInstance, partition_key: str, selection: set[dg.AssetKey], hours: set[int]
) -> bool:
    """Whether one run of the day, queued and not started yet, rebuilds these assets and hours.

    Such a run reads raw as it is when it starts, so new raw rows of that day need no run
    of their own. Without this a busy day queued a run per sensor tick (30 s) while each
    run took minutes on 2 cores, and the queue never drained. A run that has started may
    have read raw already, so it does not count; nor does one of other hours.
    """
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=event_day_job.name,
            statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED],
            tags={"dagster/partition": partition_key},
        )
    )
    for run in runs:
        tag = run.tags.get(EVENT_HOURS_TAG)
        run_hours = set(range(24)) if tag is None else set(parse_hours(tag))
        if selection <= set(run.asset_selection or ()) and hours <= run_hours:
            return True
    return False


def day_selection(silver_tables: set[str]) -> list[dg.AssetKey]:
    """The touched silver tables (sorted), then the gold tables that follow them, in order."""
    gold = [name for table in sorted(silver_tables) for name in GOLD_AFTER.get(table, ())]
    return [dg.AssetKey(name) for name in [*sorted(silver_tables), *dict.fromkeys(gold)]]
