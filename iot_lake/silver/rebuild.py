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
from contextlib import contextmanager
from datetime import UTC, date, datetime

import polars as pl

from iot_lake.lake.catalog import DEVICE_EVENTS, RAW_TELEMETRY, TELEMETRY, TableSpec
from iot_lake.lake.overwrites import Rebuilt, overwrite_in_shards
from iot_lake.lake.partitions import EventWindow
from iot_lake.lake.retention import first_retained_raw_day
from iot_lake.lake.shards import SHARD_MESSAGES
from iot_lake.lake.tables import Lake
from iot_lake.silver.decode import (
    DECODER_COLUMNS,
    MESSAGE_KINDS_OF,
    RawFrame,
    decode_device_events,
    decode_telemetry,
)
from iot_lake.silver.raw_chunks import in_raw_chunks
from iot_lake.silver.rules import SilverRules

Decoder = Callable[..., pl.DataFrame]

# The silver tables and the decoder that builds each from raw rows.
SILVER_DECODERS: dict[str, Decoder] = {
    TELEMETRY.name: decode_telemetry,
    DEVICE_EVENTS.name: decode_device_events,
}


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
        identity=rules.identity,
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
