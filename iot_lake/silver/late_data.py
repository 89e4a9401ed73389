"""The late-data ledger: which messages of an event day arrived late, from whom, how late.

Late means the device clock was trusted as event time (contract 4: within the skew
tolerance ahead, within max_lateness behind) and yet the message arrived more than the skew
tolerance after that time: a device that buffered while offline and flushed on reconnect.
Those are the messages that reopen old event days, so the ledger is what explains a
recomputation in the UI ("day D was rebuilt on D+3: 1,440 late messages from 2 devices, up
to 71 h late") and lets an engineer find the devices with unreliable connectivity.

Built per event hour from the hour's silver rows, like every derived table, so it is exact,
rebuilt with the hours (or the day) and idempotent. Telemetry has a row per reading; the
ledger counts messages, one per (device_id, message_id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from iot_lake.lake.catalog import DEVICE_EVENTS, LATE_DATA_LEDGER, TELEMETRY, conform

_MESSAGE_KEY = ("device_id", "message_id")


def late_messages(silver: pl.DataFrame | pl.LazyFrame, skew_tolerance: timedelta) -> pl.LazyFrame:
    """One row per late message of a silver table's rows, with its lateness in seconds."""
    lateness = pl.col("ingest_time") - pl.col("event_time")
    return (
        silver.lazy()
        .filter((pl.col("time_source") == "device") & (lateness > skew_tolerance))
        .select("tenant_id", *_MESSAGE_KEY, "event_date", "event_hour", "event_time", "ingest_time")
        .unique(_MESSAGE_KEY, keep="first")
        .with_columns(
            ingest_date=pl.col("ingest_time").dt.date(),
            lateness_s=lateness.dt.total_microseconds() / 1e6,
        )
    )


def late_data_ledger(
    telemetry: pl.DataFrame | pl.LazyFrame,
    device_events: pl.DataFrame | pl.LazyFrame,
    skew_tolerance: timedelta,
) -> pl.DataFrame:
    """The ledger rows of the given silver rows: per device, table, event hour, arrival day."""
    per_table = [
        late_messages(rows, skew_tolerance).with_columns(table=pl.lit(name))
        for name, rows in ((TELEMETRY.name, telemetry), (DEVICE_EVENTS.name, device_events))
    ]
    ledger = (
        pl.concat(per_table)
        .group_by("tenant_id", "device_id", "table", "event_date", "event_hour", "ingest_date")
        .agg(
            late_messages=pl.len().cast(pl.Int64),
            first_event_time=pl.col("event_time").min(),
            last_event_time=pl.col("event_time").max(),
            first_ingest_time=pl.col("ingest_time").min(),
            last_ingest_time=pl.col("ingest_time").max(),
            max_lateness_s=pl.col("lateness_s").max(),
            mean_lateness_s=pl.col("lateness_s").mean(),
        )
        .sort(*LATE_DATA_LEDGER.key_columns)
        .collect()
    )
    return conform(ledger, LATE_DATA_LEDGER)


@dataclass(frozen=True)
class LedgerSummary:
    """Totals of some ledger rows: what the UI shows for a rebuilt day."""

    late_messages: int
    devices: int
    max_lateness_s: float


def ledger_summary(ledger: pl.DataFrame) -> LedgerSummary:
    """Late messages, devices with late messages and the worst lateness of ledger rows."""
    if ledger.is_empty():
        return LedgerSummary(0, 0, 0.0)
    return LedgerSummary(
        late_messages=int(ledger.get_column("late_messages").sum()),
        devices=ledger.get_column("device_id").n_unique(),
        max_lateness_s=float(ledger.get_column("max_lateness_s").max()),  # type: ignore[arg-type]
    )
