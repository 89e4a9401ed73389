"""Rebuild an event-time window of a silver table from raw_telemetry, idempotently.

This is the whole of what the telemetry and device_events assets do, kept here so a
backfill, a replay after a decoder fix and a test all run it without Dagster: read every
raw row that can belong to the window (`EventWindow.raw_ingest_filter`), decode them
together (so duplicates across raw commits are removed), keep the rows whose event date is
in the window, and overwrite exactly that window in one Delta commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl
from deltalake.exceptions import CommitFailedError

from iot_lake.catalog import DEVICE_EVENTS, RAW_TELEMETRY, TELEMETRY, TableSpec
from iot_lake.lake import Lake
from iot_lake.maintenance import first_retained_raw_day
from iot_lake.partitions import EventWindow
from iot_lake.silver import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    RawFrame,
    decode_device_events,
    decode_telemetry,
)

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
    """What one rebuild wrote: rows in the window, the Delta version, a few sample rows."""

    table: str
    window: EventWindow
    rows: int
    delta_version: int
    sample: pl.DataFrame


def raw_rows_for(lake: Lake, window: EventWindow, rules: SilverRules) -> pl.LazyFrame:
    """Every raw row whose message can have its event time in the window (lazily)."""
    partitions = window.raw_ingest_filter(rules.skew_tolerance, rules.max_lateness)
    rows = window.raw_ingest_rows(rules.skew_tolerance, rules.max_lateness)
    return lake.read_where(RAW_TELEMETRY, partitions).filter(rows)


def decode_window(
    spec: TableSpec, raw: RawFrame, window: EventWindow, rules: SilverRules
) -> pl.DataFrame:
    """The silver rows of a table whose event date is in the window, decoded from raw rows."""
    decoded = SILVER_DECODERS[spec.name](
        raw,
        rules.skew_tolerance,
        max_lateness=rules.max_lateness,
        max_payload_bytes=rules.max_payload_bytes,
    )
    return decoded.filter(window.contains("event_date"))


def rebuild_silver(
    lake: Lake,
    spec: TableSpec,
    window: EventWindow,
    rules: SilverRules,
    *,
    max_attempts: int = 5,
    sample_rows: int = 5,
) -> Rebuilt:
    """Recompute the window of a silver table from raw and overwrite exactly that window.

    Two runs may rebuild the same day at once (the sensor requests today again while the
    last run is still going). The table version is taken before raw is read and the
    overwrite is committed against it, so a run whose window another run rewrote in the
    meantime fails to commit and recomputes from the newer raw: the last commit always
    comes from the newest read of raw, never from a stale one.
    """
    check_raw_retained(window, rules, datetime.now(UTC).date())
    attempt = 0
    while True:
        attempt += 1
        read_version = lake.ensure_table(spec).version()
        # Lazy: the decoder selects the few columns it needs, so only those are read.
        rows = decode_window(spec, raw_rows_for(lake, window, rules), window, rules)
        try:
            version = lake.replace_partition(
                spec, rows.to_arrow(), window.predicate("event_date"), read_version=read_version
            )
        except CommitFailedError:
            if attempt >= max_attempts:
                raise
            continue
        return Rebuilt(spec.name, window, rows.height, version, rows.head(sample_rows))


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
