"""Rebuild an event-time window of a silver table from raw_telemetry, idempotently.

This is the whole of what the telemetry and device_events assets do, kept here so a
backfill, a replay after a decoder fix and a test all run it without Dagster: read every
raw row that can belong to the window (`EventWindow.raw_ingest_filter`), decode them
together (so duplicates across raw commits are removed), keep the rows whose event date is
in the window, and overwrite exactly that window in one Delta commit. A window of some hours
of a day (what the sensor requests for new data) reads raw from just before its first hour
and overwrites those hour partitions only.

"Together" means that every copy of a message is decoded in the same chunk: a large window
is decoded a chunk of raw rows at a time, rows whose message may have copies held back to
the last chunk (`iot_lake.silver.raw_chunks`), and streamed into that one commit, so memory is
bounded by a chunk, not by the window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pyarrow as pa
from deltalake.exceptions import CommitFailedError

from iot_lake.lake.catalog import DEVICE_EVENTS, RAW_TELEMETRY, TELEMETRY, TableSpec, empty_frame
from iot_lake.lake.maintenance import first_retained_raw_day
from iot_lake.lake.partitions import EventWindow
from iot_lake.lake.shards import SHARD_MESSAGES, prefetched
from iot_lake.lake.tables import Lake
from iot_lake.silver.decode import (
    DECODER_COLUMNS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    MESSAGE_KINDS_OF,
    RawFrame,
    decode_device_events,
    decode_telemetry,
)
from iot_lake.silver.raw_chunks import in_raw_chunks

Decoder = Callable[..., pl.DataFrame]

# The silver tables and the decoder that builds each from raw rows.
SILVER_DECODERS: dict[str, Decoder] = {
    TELEMETRY.name: decode_telemetry,
    DEVICE_EVENTS.name: decode_device_events,
}


@dataclass(frozen=True)
class SilverRules:
    """How raw rows become silver rows.

    Contract 4's knobs (how far a device clock is trusted ahead of and behind ingest), and
    the payload size limit that quarantined raw rows are checked against again, so a
    rebuild after a fix of the checks (or of the limit) takes in what now passes.
    """

    skew_tolerance: timedelta
    max_lateness: timedelta
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    # Days of raw the lake keeps (None: forever); a window needing older raw is refused.
    raw_retention_days: int | None = None


class RawExpired(ValueError):
    """A rebuild needs raw days that raw retention has deleted; silver is left as it is."""


def check_raw_retained(window: EventWindow, rules: SilverRules, today: date) -> None:
    """Refuse to rebuild a window part of whose raw is gone: it would overwrite silver with less.

    The event days of a window read raw ingested from a little before them (the skew
    tolerance) on; when raw retention has deleted some of those days, a rebuild would keep
    only the rows whose raw is left. Such days keep the silver (and gold) they have.
    """
    if rules.raw_retention_days is None:
        return
    kept_from = first_retained_raw_day(today, rules.raw_retention_days)
    first_ingest, _ = window.raw_ingest_span(rules.skew_tolerance, rules.max_lateness)
    if first_ingest.date() < kept_from:
        raise RawExpired(
            f"event days {window.label}: rebuilding needs raw ingested from "
            f"{first_ingest.date()}, but raw before {kept_from} is deleted "
            f"(IOT_LAKE_RAW_RETENTION_DAYS={rules.raw_retention_days}); their silver and "
            "gold are kept as they are"
        )


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


def decode_window(
    spec: TableSpec,
    raw: RawFrame,
    window: EventWindow,
    rules: SilverRules,
    *,
    keys_unique: bool = False,
) -> pl.DataFrame:
    """The silver rows of a table whose event date is in the window, decoded from raw rows.

    `keys_unique`: every (device_id, message_id) of `raw` is known to occur once.
    """
    decoded = SILVER_DECODERS[spec.name](
        raw,
        rules.skew_tolerance,
        max_lateness=rules.max_lateness,
        max_payload_bytes=rules.max_payload_bytes,
        keys_unique=keys_unique,
    )
    inside = decoded.select(window.contains("event_date", spec.hour_column)).to_series()
    # Most chunks lie wholly in the window: `filter` would copy every row of them all the same.
    # (A null, which `filter` drops, makes `all` null here, so such a chunk is filtered.)
    return decoded if inside.all(ignore_nulls=False) else decoded.filter(inside)


def rebuild_silver(
    lake: Lake,
    spec: TableSpec,
    window: EventWindow,
    rules: SilverRules,
    *,
    max_attempts: int = 5,
    sample_rows: int = 5,
    shard_messages: int = SHARD_MESSAGES,
) -> Rebuilt:
    """Recompute the window of a silver table from raw and overwrite exactly that window.

    Two runs may rebuild the same day at once (the sensor requests today again while the
    last run is still going). The table version is taken before raw is read and the
    overwrite is committed against it, so a run whose window another run rewrote in the
    meantime fails to commit and recomputes from the newer raw: the last commit always
    comes from the newest read of raw, never from a stale one.
    """
    check_raw_retained(window, rules, datetime.now(UTC).date())
    return overwrite_in_shards(
        lake,
        spec,
        window,
        "event_date",
        lambda: decoded_shards(lake, spec, window, rules, shard_messages),
        max_attempts=max_attempts,
        sample_rows=sample_rows,
    )


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


@contextmanager
def decoded_shards(
    lake: Lake,
    spec: TableSpec,
    window: EventWindow,
    rules: SilverRules,
    shard_messages: int = SHARD_MESSAGES,
) -> Iterator[Iterator[pl.DataFrame]]:
    """The window's silver rows, a chunk of raw rows at a time (lazily, in the context).

    A window of at most `shard_messages` raw rows is decoded whole; a larger one in chunks
    of about that many, every copy of a message in one chunk (`iot_lake.silver.raw_chunks`), so
    memory holds one chunk's raw rows and readings, whatever the number of devices.
    """
    partitions = window.raw_ingest_filter(rules.skew_tolerance, rules.max_lateness)
    # The rows this table can take: its message kinds, and quarantined rows (re-checked).
    needed = window.raw_ingest_rows(rules.skew_tolerance, rules.max_lateness) & (
        pl.col("message_kind").is_in(MESSAGE_KINDS_OF[spec.name])
        | pl.col("error_code").is_not_null()
    )
    groups = lake.file_groups(RAW_TELEMETRY, partitions, shard_messages)
    with in_raw_chunks(
        [group.filter(needed) for group in groups],
        DECODER_COLUMNS,
        shard_messages,
        part=lambda shard, unique: decode_window(spec, shard, window, rules, keys_unique=unique),
    ) as shards:
        yield shards


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


def markdown_preview(frame: pl.DataFrame) -> str:
    """A frame as a GitHub-flavoured markdown table (for Dagster's metadata panel)."""
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_cols=-1,
        tbl_rows=-1,
        fmt_str_lengths=40,
    ):
        return str(frame)
