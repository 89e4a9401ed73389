"""Rebuild an event-day window of a gold table (rollups, baselines) from the level below.

What the rollup and baseline assets do, kept here so a backfill, a replay and a test run it
without Dagster. Each level reads only the partitions it needs through `Lake.read_where`:
rollup_1m of day D from telemetry of D, rollup_1h of D from rollup_1m of D, rollup_1d of D
from rollup_1h of D (UTC buckets never straddle a day), and the baselines as of D from
rollup_1h over the `window_days` days ending on D. A rebuild overwrites exactly its days in
one Delta commit, so reruns and backfills change nothing (contract 5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import timedelta

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from iot_lake.baselines import DEFAULT_MIN_SAMPLES, device_baselines
from iot_lake.catalog import (
    DEVICE_BASELINES,
    DEVICE_EVENTS,
    LATE_DATA_LEDGER,
    ROLLUP_1D,
    ROLLUP_1H,
    ROLLUP_1M,
    TELEMETRY,
    TableSpec,
)
from iot_lake.lake import Lake
from iot_lake.late_data import late_data_ledger
from iot_lake.partitions import EventWindow
from iot_lake.rebuild import Rebuilt, overwrite_in_shards
from iot_lake.rollups import ROLLUP_INPUT_COLUMNS, ROLLUP_SCHEMA, rollup_1m, rollup_up
from iot_lake.shards import in_device_shards

# The partition column of each table a gold level reads or writes (all are event days).
DATE_COLUMN = {
    TELEMETRY.name: "event_date",
    ROLLUP_1M.name: "bucket_date",
    ROLLUP_1H.name: "bucket_date",
    ROLLUP_1D.name: "bucket_date",
    DEVICE_BASELINES.name: "as_of_date",
    DEVICE_EVENTS.name: "event_date",
    LATE_DATA_LEDGER.name: "event_date",
}


DEFAULT_WINDOW_DAYS = 7


def read_window(lake: Lake, spec: TableSpec, window: EventWindow) -> pl.LazyFrame:
    """The rows of a table's partitions in the window (days, and hours); no other file is read."""
    column = DATE_COLUMN[spec.name]
    rows = window.contains(column, spec.hour_column)
    return lake.read_where(spec, _window_partitions(spec, window)).filter(rows)


def _window_partitions(
    spec: TableSpec, window: EventWindow
) -> list[tuple[str, str, str | list[str]]]:
    """Delta partition filters covering the window: days, and hours where partitioned by hour."""
    by_hour = spec.hour_column if spec.hour_column in spec.partition_by else None
    return window.partition_filters(DATE_COLUMN[spec.name], by_hour)


def baselines_window(
    lake: Lake,
    window: EventWindow,
    window_days: int = DEFAULT_WINDOW_DAYS,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> pl.DataFrame:
    """Baselines as of each day of the window, from rollup_1h over the `window_days` to it."""
    history = EventWindow(window.start - timedelta(days=window_days - 1), window.end)
    hourly = read_window(lake, ROLLUP_1H, history).collect()
    per_day = [device_baselines(hourly, day, window_days, min_samples) for day in window.days()]
    return pl.concat(per_day)


def late_data_window(lake: Lake, window: EventWindow, skew_tolerance: timedelta) -> pl.DataFrame:
    """The late-data ledger of the window's days, from their telemetry and device_events."""
    return late_data_ledger(
        read_window(lake, TELEMETRY, window),
        read_window(lake, DEVICE_EVENTS, window),
        skew_tolerance,
    )


def rebuild_gold(
    lake: Lake,
    spec: TableSpec,
    window: EventWindow,
    compute: Callable[[], pl.DataFrame],
    *,
    max_attempts: int = 5,
    sample_rows: int = 5,
) -> Rebuilt:
    """Compute the window of a gold table and overwrite exactly that window.

    As in `rebuild_silver`, the overwrite is committed against the table version taken
    before the inputs are read (`overwrite_in_shards`, here with the whole window as one
    shard), so when a concurrent run rewrote the window in the meantime this run recomputes
    from the newer inputs instead of overwriting them with stale ones.
    """
    return overwrite_in_shards(
        lake,
        spec,
        window,
        DATE_COLUMN[spec.name],
        lambda: nullcontext(iter([compute()])),
        max_attempts=max_attempts,
        sample_rows=sample_rows,
    )


def rebuild_rollup(
    lake: Lake, spec: TableSpec, window: EventWindow, *, shard_rows: int | None = None
) -> Rebuilt:
    """rebuild_gold for a rollup level, rolled up in device shards when the window is large.

    A window of some hours rebuilds those hours of rollup_1m and rollup_1h (their buckets
    are within an hour) from those hours of the level below; rollup_1d always its whole days.

    A bucket belongs to one device, so the rollup of a window is the union of the rollups of
    its device shards: a day of 1,000 devices (31.7M readings) held 7.7 GB when rolled up
    to 1 minute whole, and its 5.3M 1-minute rows 4.0 GB when merged to 1 hour whole. The
    shards are streamed into the window's one commit. `shard_rows`: input rows per shard
    (default: the level's ROLLUP_SHARD_ROWS).
    """
    per_shard = shard_rows or ROLLUP_SHARD_ROWS[spec.name]
    if spec.hour_column is None:  # rollup_1d: a day's bucket needs all of its hours
        window = window.whole_days()
    return overwrite_in_shards(
        lake,
        spec,
        window,
        DATE_COLUMN[spec.name],
        lambda: rollup_shards(lake, spec, window, per_shard),
    )


@contextmanager
def rollup_shards(
    lake: Lake, spec: TableSpec, window: EventWindow, shard_rows: int
) -> Iterator[Iterator[pl.DataFrame]]:
    """A rollup level of the window, one device shard at a time (lazily, in the context).

    The level below is read once and, when larger than `shard_rows`, spilled by device
    (`iot_lake.shards.in_device_shards`).
    """
    source, roll, columns = _ROLLUP_STEPS[spec.name]
    column = DATE_COLUMN[source.name]
    in_window = (pc.field(column) >= pa.scalar(window.start)) & (
        pc.field(column) < pa.scalar(window.end)
    )
    if window.hours is not None and source.hour_column is not None:
        hours = pa.array(window.hours, pa.int8())
        in_window = in_window & pc.field(source.hour_column).isin(hours)
    with in_device_shards(
        lake.dataset(source, _window_partitions(source, window)),
        in_window,
        columns,
        shard_rows,
        whole=lambda: roll(read_window(lake, source, window)),
        part=roll,
    ) as shards:
        yield shards


# Each rollup level: the table it is built from, how, and the columns that takes.
_ROLLUP_STEPS: dict[
    str, tuple[TableSpec, Callable[[pl.LazyFrame], pl.DataFrame], Sequence[str]]
] = {
    ROLLUP_1M.name: (TELEMETRY, rollup_1m, ROLLUP_INPUT_COLUMNS),
    ROLLUP_1H.name: (ROLLUP_1M, lambda rows: rollup_up(rows, "1h"), ROLLUP_SCHEMA.names()),
    ROLLUP_1D.name: (ROLLUP_1H, lambda rows: rollup_up(rows, "1d"), ROLLUP_SCHEMA.names()),
}

# Input rows per device shard of each level: ~0.25 KB of peak memory per reading into
# rollup_1m (7.7 GB for 31.7M), ~0.75 KB per 1-minute row into rollup_1h (4.0 GB for 5.3M),
# so about 1 GB a shard; a day of rollup_1h is small (88k rows for 1,000 devices).
ROLLUP_SHARD_ROWS = {
    ROLLUP_1M.name: 4_000_000,
    ROLLUP_1H.name: 1_500_000,
    ROLLUP_1D.name: 4_000_000,
}
