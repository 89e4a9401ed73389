"""How long the lake keeps things: tombstoned files, log entries and raw partitions.

Maintenance applies the policy (it deletes raw and vacuums); a silver rebuild reads it to
refuse a window whose raw is already gone. Both ask this module, so the two can never
disagree on which raw days are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from deltalake import DeltaTable

from iot_lake.settings import Settings

# Delta's default log retention when a table does not set delta.logRetentionDuration.
DELTA_DEFAULT_LOG_RETENTION_HOURS = 30 * 24
_INTERVAL = re.compile(r"^\s*interval\s+(\d+)\s+(second|minute|hour|day|week)s?\s*$", re.I)
_UNIT_HOURS = {"second": 1 / 3600, "minute": 1 / 60, "hour": 1, "day": 24, "week": 168}


@dataclass(frozen=True)
class RetentionPolicy:
    """How long tombstoned files and raw partitions are kept.

    `raw_retention_days` None keeps raw forever; N deletes ingest_date partitions older
    than N days before today (today and the N days before it stay).
    """

    vacuum_retention_hours: int = 48
    raw_retention_days: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        """The policy of IOT_LAKE_VACUUM_RETENTION_HOURS and IOT_LAKE_RAW_RETENTION_DAYS."""
        return cls(settings.vacuum_retention_hours, settings.raw_retention_days)


def first_retained_raw_day(today: date, keep_days: int) -> date:
    """The oldest ingest_date partition of raw that a retention of `keep_days` keeps."""
    return today - timedelta(days=keep_days)


def effective_vacuum_retention_hours(table: DeltaTable, configured_hours: int) -> int:
    """The configured retention, raised to the table's log retention when that is longer.

    Tombstones younger than the log retention may belong to versions a reader can still
    load from the log; keeping them keeps every such version readable. A table that sets
    `delta.deletedFileRetentionDuration` longer than both is respected too.
    """
    configuration = table.metadata().configuration
    floors = [
        configured_hours,
        _interval_hours(
            configuration.get("delta.logRetentionDuration"), DELTA_DEFAULT_LOG_RETENTION_HOURS
        ),
        _interval_hours(configuration.get("delta.deletedFileRetentionDuration"), 0),
    ]
    return max(floors)


def _interval_hours(interval: str | None, default: int) -> int:
    """Hours of a Delta interval property (`interval 48 hours`), rounded up."""
    if interval is None:
        return default
    match = _INTERVAL.match(interval)
    if match is None:
        raise ValueError(f"cannot read the Delta interval {interval!r}")
    hours = int(match.group(1)) * _UNIT_HOURS[match.group(2).lower()]
    return int(-(-hours // 1))
