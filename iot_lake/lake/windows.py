"""An event window of a table read back: the partitions it covers, and no other file.

Every derived table is partitioned by an event day (and some by hour); this is where the
column that holds it is named per table, so a stage reading another's window (gold from
silver, quality from both) asks the lake, not the stage that wrote it.
"""

from __future__ import annotations

import polars as pl

from iot_lake.lake.catalog import (
    DEVICE_BASELINES,
    DEVICE_EVENTS,
    LATE_DATA_LEDGER,
    ROLLUP_1D,
    ROLLUP_1H,
    ROLLUP_1M,
    TELEMETRY,
    TableSpec,
)
from iot_lake.lake.partitions import EventWindow
from iot_lake.lake.tables import Lake

# The partition column of each event-time table (all are event days).
DATE_COLUMN = {
    TELEMETRY.name: "event_date",
    ROLLUP_1M.name: "bucket_date",
    ROLLUP_1H.name: "bucket_date",
    ROLLUP_1D.name: "bucket_date",
    DEVICE_BASELINES.name: "as_of_date",
    DEVICE_EVENTS.name: "event_date",
    LATE_DATA_LEDGER.name: "event_date",
}


def read_window(lake: Lake, spec: TableSpec, window: EventWindow) -> pl.LazyFrame:
    """The rows of a table's partitions in the window (days, and hours); no other file is read."""
    column = DATE_COLUMN[spec.name]
    rows = window.contains(column, spec.hour_column)
    return lake.read_where(spec, window_partitions(spec, window)).filter(rows)


def window_partitions(
    spec: TableSpec, window: EventWindow
) -> list[tuple[str, str, str | list[str]]]:
    """Delta partition filters covering the window: days, and hours where partitioned by hour.

    Partition filters let delta-rs skip every other file from the log alone, before a row
    is read.
    """
    by_hour = spec.hour_column if spec.hour_column in spec.partition_by else None
    return window.partition_filters(DATE_COLUMN[spec.name], by_hour)
