"""Lake maintenance: compact closed partitions, vacuum old tombstones, trim the log, expire raw.

Every derived table is rewritten per partition (an overwrite with a predicate), and every
rewrite leaves the replaced files behind as tombstones: still on storage, no longer in the
table. Nothing else removes them, so this module does, once a day, table by table:

1. raw retention (raw_telemetry only, off by default): a Delta DELETE of whole ingest_date
   partitions older than the configured number of days;
2. compaction of closed partitions with several small files (today's partition is left to
   its writer: the consumer compacts raw's, and a derived day is rewritten whole anyway);
3. vacuum of files tombstoned longer ago than the retention (`vacuum_retention_hours`);
4. a log checkpoint, then removal of log entries older than the table's log retention.

Why the vacuum retention is safe for readers: a file is needed by the snapshots taken
before the commit that tombstoned it. A Dagster run or a DuckDB query that opened a
snapshot minutes (or hours) ago needs only files tombstoned since, far inside the retention.
The retention is never below the table's own log retention (`delta.logRetentionDuration`),
so every version still in the log can be read in full; older versions are unreachable
anyway once their log entries go. Cursors (raw_landing_sensor, device_state's source
versions, iot_lake.lake.changes) read old versions' log entries, never their data files; when
those entries are gone, `files_added_since` falls back to a rescan of the current files.

Concurrency: the consumer may commit to raw while this runs. delta-rs resolves conflicts
optimistically; a DELETE makes a concurrent append fail its conflict check once, and the
LandingWriter retries the whole batch idempotently (tests/iot_lake/lake/test_maintenance.py
races both). Maintenance retries its own conflicting commits the same way. Compaction
keeps its own fence (iot_lake.lake.compaction): appends go on beside it, and a consumer
compacting the same partition at the same moment wins or loses it whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TypeVar

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from iot_lake.lake import compaction
from iot_lake.lake.catalog import CATALOG, RAW_TELEMETRY, TableSpec
from iot_lake.lake.retention import (
    RetentionPolicy,
    effective_vacuum_retention_hours,
    first_retained_raw_day,
)
from iot_lake.lake.tables import Lake

log = logging.getLogger(__name__)
T = TypeVar("T")

# Measured on a raw partition of 40 commits of 5,000 simulator messages (12.5 MB): one
# compacted file is 4.9 MB (larger files compress better) and a DuckDB group-by over it
# takes 0.11-0.19 s instead of 0.81 s; 8, 32 and 128 MiB targets all compacted it in 1-2 s.
# 128 MiB (delta-rs' default is 100 MB) keeps a day of the embedded demo in one file and
# a day of the reference load (~700 GB of raw) in ~5,600 files, each big enough for
# parallel scans by DuckDB, Spark or Trino.
TARGET_FILE_BYTES = 128 * 1024 * 1024
# A file below a quarter of the target counts as small; a partition is compacted when it
# holds at least two (iot_lake.lake.compaction.plan). A compacted partition keeps at most one small
# remainder, so it is not rewritten again until new small files arrive (late data): each
# closed day is compacted once.
# Conflicting maintenance commits are retried this many times, after re-reading the table.
MAX_ATTEMPTS = 5
_WHOLE_TABLE = "(whole table)"


@dataclass(frozen=True)
class MaintenanceReport:
    """What maintenance did to one table (or would do, in a dry run)."""

    table: str
    dry_run: bool
    version_before: int
    version_after: int
    files_before: int
    files_after: int
    compacted_partitions: tuple[str, ...] = ()
    expired_partitions: tuple[str, ...] = ()
    vacuum_retention_hours: int = 0
    files_vacuumed: int = 0
    bytes_vacuumed: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        verb = "would " if self.dry_run else ""
        parts = [
            f"{self.table}: v{self.version_before}->v{self.version_after}",
            f"files {self.files_before}->{self.files_after}",
            f"{verb}compact {len(self.compacted_partitions)} partition(s)",
            f"{verb}vacuum {self.files_vacuumed} file(s) / {self.bytes_vacuumed:,} bytes "
            f"(retention {self.vacuum_retention_hours} h)",
        ]
        if self.expired_partitions:
            parts.append(f"{verb}delete raw partitions {', '.join(self.expired_partitions)}")
        return "; ".join(parts + list(self.notes))


def maintain_lake(
    lake: Lake,
    policy: RetentionPolicy,
    tables: Iterable[TableSpec] | None = None,
    *,
    dry_run: bool = False,
    today: date | None = None,
) -> Iterator[MaintenanceReport]:
    """Maintain the given catalog tables (all by default) that exist; a report per table.

    Reports are yielded as each table is done, so a long run shows progress as it goes.
    """
    today = today or datetime.now(UTC).date()
    for spec in CATALOG.values() if tables is None else tables:
        table = lake.open(spec)
        if table is not None:
            yield maintain_table(
                table,
                spec,
                policy,
                dry_run=dry_run,
                today=today,
                storage_options=lake.storage_options,
            )


def maintain_table(
    table: DeltaTable,
    spec: TableSpec,
    policy: RetentionPolicy,
    *,
    dry_run: bool,
    today: date,
    storage_options: Mapping[str, str],
) -> MaintenanceReport:
    """Expire raw, compact closed partitions, vacuum and trim the log of one table.

    `storage_options` are the lake's (`Lake.storage_options`): compaction writes files.
    """
    version_before, files_before = table.version(), _file_count(table)
    expired: list[str] = []
    if spec.name == RAW_TELEMETRY.name and policy.raw_retention_days is not None:
        expired = expire_raw_partitions(table, today, policy.raw_retention_days, dry_run=dry_run)
    # In a dry run the expired days are still there: they are not worth compacting either.
    compacted = compact_closed_partitions(
        table, spec, storage_options, today, dry_run=dry_run, skip=frozenset(expired)
    )
    retention = effective_vacuum_retention_hours(table, policy.vacuum_retention_hours)
    vacuumed, vacuumed_bytes = vacuum(table, retention, dry_run=dry_run)
    notes: tuple[str, ...] = ()
    if not dry_run:
        _clean_log(table)
        notes = ("log checkpointed and trimmed",)
    return MaintenanceReport(
        table=spec.name,
        dry_run=dry_run,
        version_before=version_before,
        version_after=table.version(),
        files_before=files_before,
        files_after=_file_count(table),
        compacted_partitions=tuple(compacted),
        expired_partitions=tuple(expired),
        vacuum_retention_hours=retention,
        files_vacuumed=vacuumed,
        bytes_vacuumed=vacuumed_bytes,
        notes=notes,
    )


def compact_closed_partitions(
    table: DeltaTable,
    spec: TableSpec,
    storage_options: Mapping[str, str],
    today: date,
    *,
    dry_run: bool,
    skip: frozenset[str] = frozenset(),
) -> list[str]:
    """Compact each closed partition holding several small files; the partitions chosen.

    Partitions are named by the first partition column (a day of an hour-partitioned table
    is one name). One is closed when that column is a date before `today`; a table
    partitioned by something else than a date has every partition closed, an
    unpartitioned table is one partition. Each partition (all columns) is its own commit,
    fenced against concurrent compactions and rewrites (iot_lake.lake.compaction); one that
    lost its files to another writer is left to it.
    """
    column = spec.partition_by[0] if spec.partition_by else None
    by_date = column is not None and pa.types.is_date(spec.schema.field(column).type)
    chosen: list[str] = []
    planned = compaction.plan(table, spec, TARGET_FILE_BYTES)
    for partition, bins in sorted(planned.items(), key=lambda item: str(item[0])):
        name = _WHOLE_TABLE if column is None else str(partition[0])
        if name in skip or (by_date and name >= today.isoformat()):
            continue
        if name not in chosen:
            chosen.append(name)
        if not dry_run:
            compaction.compact_partition(table, spec, storage_options, partition, bins)
    return chosen


def expire_raw_partitions(
    table: DeltaTable, today: date, keep_days: int, *, dry_run: bool
) -> list[str]:
    """Delete raw ingest_date partitions older than `keep_days` before today; those deleted.

    One DELETE whose predicate names only the partition column: delta-rs drops the files
    whole, reading none. What is lost is the replay source of those days: silver and gold
    already built stay, but they can no longer be rebuilt from raw (a decoder fix, a
    re-check of quarantined rows), and a backfill of those event days would rebuild them
    from what is left. The files stay on storage until vacuum removes them after the
    vacuum retention, so a mistaken run can be undone by restoring the previous version.
    """
    if keep_days < 0:
        raise ValueError(f"raw retention must be zero or more days, got {keep_days}")
    cutoff = first_retained_raw_day(today, keep_days).isoformat()
    days = sorted(
        {day for day in _partition_values(table, RAW_TELEMETRY.partition_by[0]) if day < cutoff}
    )
    if days and not dry_run:
        _with_retries(
            table, "raw retention", lambda: table.delete(f"ingest_date < DATE '{cutoff}'")
        )
    return days


def vacuum(table: DeltaTable, retention_hours: int, *, dry_run: bool) -> tuple[int, int]:
    """Delete files tombstoned more than `retention_hours` ago; (files, bytes) removed.

    Delta's own check (`enforce_retention_duration`) refuses anything below 7 days unless
    the table sets `delta.deletedFileRetentionDuration`; it is turned off here because
    `retention_hours` comes from `effective_vacuum_retention_hours`, never below the
    table's log retention. Only tombstoned files are considered (no `full` vacuum): a file
    a concurrent writer has written but not yet committed is never touched.
    """
    candidates = table.vacuum(retention_hours, dry_run=True, enforce_retention_duration=False)
    if not candidates:
        return 0, 0
    filesystem = table.to_pyarrow_dataset().filesystem
    sizes = {info.path: info.size or 0 for info in filesystem.get_file_info(candidates)}
    if dry_run:
        return len(candidates), sum(sizes.values())
    removed = _with_retries(
        table,
        "vacuum",
        lambda: table.vacuum(retention_hours, dry_run=False, enforce_retention_duration=False),
    )
    return len(removed), sum(sizes.get(path, 0) for path in removed)


def _clean_log(table: DeltaTable) -> None:
    """Checkpoint the current version, then drop log entries older than the log retention.

    Derived tables commit a few times a day and would take weeks to reach the checkpoint
    interval on their own; log entries before the newest checkpoint are the only ones that
    can go, so the checkpoint comes first. A checkpoint is not a commit: no conflict.
    """
    table.update_incremental()
    table.create_checkpoint()
    table.cleanup_metadata()


def _with_retries(table: DeltaTable, what: str, action: Callable[[], T]) -> T:
    """Run a committing action, re-reading the table and retrying when a commit conflicts."""
    attempt = 1
    while True:
        try:
            return action()
        except CommitFailedError as exc:
            if attempt >= MAX_ATTEMPTS:
                raise
            log.info("%s conflicted with a concurrent commit (attempt %d): %s", what, attempt, exc)
            time.sleep(min(0.1 * 2**attempt, 2.0))
            table.update_incremental()
            attempt += 1


def _partition_values(table: DeltaTable, column: str, actions: pa.Table | None = None) -> list[str]:
    """The value of a partition column for each live file, as text (ISO for dates)."""
    actions = pa.table(table.get_add_actions(flatten=True)) if actions is None else actions
    return [str(value) for value in actions.column(f"partition.{column}").to_pylist()]


def _file_count(table: DeltaTable) -> int:
    return pa.table(table.get_add_actions(flatten=False)).num_rows
