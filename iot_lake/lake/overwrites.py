"""Overwrite exactly an event window of a table in one fenced commit, streamed a shard at a time.

Silver and gold rebuild a window the same way: the table version is taken before the
inputs are read, the window's rows are streamed into one commit against that version, and a
concurrent rewrite of the window fails the commit so the window is recomputed from newer
inputs. Both stages use this; it knows tables and windows, not what is in them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
from deltalake.exceptions import CommitFailedError

from iot_lake.lake.catalog import TableSpec, empty_frame
from iot_lake.lake.partitions import EventWindow
from iot_lake.lake.shards import prefetched
from iot_lake.lake.tables import Lake


@dataclass(frozen=True)
class Rebuilt:
    """What one rebuild wrote: rows in the window, the Delta version, a few sample rows.

    `day_rows` counts the rows of the window's whole days after the commit: `rows` when the
    rebuild covered whole days, more when it rewrote some hours of a day.
    """

    table: str
    window: EventWindow
    rows: int
    delta_version: int
    sample: pl.DataFrame
    day_rows: int


ShardStream = Callable[[], AbstractContextManager[Iterator[pl.DataFrame]]]


def overwrite_in_shards(
    lake: Lake,
    spec: TableSpec,
    window: EventWindow,
    date_column: str,
    open_shards: ShardStream,
    *,
    max_attempts: int = 5,
    sample_rows: int = 5,
) -> Rebuilt:
    """Overwrite exactly the window of a table with shards of rows, in one fenced commit.

    A window of some hours overwrites those hours of the table's hour column only: whole
    partitions where the table is partitioned by hour, else the rows of those hours.

    `open_shards` opens a fresh stream of the window's rows, one shard at a time (a window
    small enough is one shard): the shards are streamed into the commit, so memory holds
    two of them (the next is computed while one is written: `prefetched`). The table
    version is taken before the inputs are read and the overwrite is committed against it:
    when another run rewrote the window meanwhile, the commit fails and the window is
    recomputed from the newer inputs, never written from stale ones.
    """
    attempt = 0
    while True:
        attempt += 1
        read_version = lake.ensure_table(spec).version()
        with open_shards() as shards:
            written = _Written(sample_rows, empty_frame(spec))
            try:
                if _whole_partitions(spec, window, date_column):
                    by_hour = spec.hour_column if window.hours is not None else None
                    version = lake.overwrite_partitions(
                        spec,
                        _inside(prefetched(shards), written, window, date_column, spec),
                        window.partition_filters(date_column, by_hour),
                        read_version=read_version,
                    )
                else:
                    rows = pa.RecordBatchReader.from_batches(
                        empty_frame(spec).to_arrow().schema, _batches(prefetched(shards), written)
                    )
                    version = lake.replace_partition(
                        spec,
                        rows,
                        window.predicate(date_column, spec.hour_column),
                        read_version=read_version,
                    )
            except CommitFailedError:
                if attempt >= max_attempts:
                    raise
                continue
        day_rows = written.rows
        if window.hours is not None:  # the other hours' rows, from the Parquet footers
            days = window.whole_days().partition_filters(date_column)
            day_rows = lake.dataset(spec, days).count_rows()
        return Rebuilt(spec.name, window, written.rows, version, written.sample, day_rows)


@dataclass
class _Written:
    """What a stream of decoded shards has produced so far: rows, and the first few."""

    sample_rows: int
    sample: pl.DataFrame
    rows: int = 0

    def add(self, shard: pl.DataFrame) -> None:
        self.rows += shard.height
        missing = self.sample_rows - self.sample.height
        if missing > 0:
            self.sample = pl.concat([self.sample, shard.head(missing)])


def _whole_partitions(spec: TableSpec, window: EventWindow, date_column: str) -> bool:
    """Whether the window is a set of whole partitions of the table (its days, and hours)."""
    if date_column not in spec.partition_by:
        return False
    return window.hours is None or spec.hour_column in spec.partition_by


def _inside(
    shards: Iterator[pl.DataFrame],
    written: _Written,
    window: EventWindow,
    date_column: str,
    spec: TableSpec,
) -> Iterator[pl.DataFrame]:
    """Each shard, counted, once checked to hold rows of the window only.

    A partition overwrite replaces the window's partitions; a row outside them would land
    in a partition the commit does not replace, beside its rows (delta-rs refuses such a
    row in a predicate overwrite, and so does this).
    """
    keep = window.contains(date_column, spec.hour_column)
    for shard in shards:
        outside = shard.select((~keep).sum()).item()
        if outside:
            raise ValueError(
                f"{spec.name}: {outside} rows to write fall outside {window.label}; nothing "
                "was committed"
            )
        written.add(shard)
        yield shard


def _batches(shards: Iterator[pl.DataFrame], written: _Written) -> Iterator[pa.RecordBatch]:
    """Each shard's rows as Arrow batches, counted; a shard is dropped before the next."""
    for shard in shards:
        written.add(shard)
        yield from shard.to_arrow().to_batches()
