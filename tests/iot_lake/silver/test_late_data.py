"""iot_lake.silver.late_data: which silver messages count as late, and the ledger's totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from iot_lake.lake.catalog import DEVICE_EVENTS, LATE_DATA_LEDGER, TELEMETRY, conform
from iot_lake.silver.late_data import late_data_ledger, ledger_summary

SKEW = timedelta(minutes=5)
DAY = datetime(2026, 11, 1, tzinfo=UTC)


def silver_rows(spec, rows):
    """Silver rows with the columns the ledger reads; the rest null."""
    frame = pl.DataFrame(
        rows,
        schema={
            "device_id": pl.String,
            "message_id": pl.String,
            "event_time": pl.Datetime("us", "UTC"),
            "ingest_time": pl.Datetime("us", "UTC"),
            "time_source": pl.String,
        },
        orient="row",
    ).with_columns(
        tenant_id=pl.lit("acme"),
        event_date=pl.col("event_time").dt.date(),
        event_hour=pl.col("event_time").dt.hour(),
    )
    missing = [name for name in spec.column_names if name not in frame.columns]
    return conform(frame.with_columns(pl.lit(None).alias(name) for name in missing), spec)


def test_only_trusted_device_times_that_arrived_after_the_tolerance_are_late():
    at_10 = DAY + timedelta(hours=10)
    telemetry = silver_rows(
        TELEMETRY,
        [
            # on time, and within the tolerance
            ("env-1", "m1", at_10, at_10 + timedelta(seconds=1), "device"),
            ("env-1", "m2", at_10, at_10 + SKEW, "device"),
            # a late message of two readings: one message in the ledger
            ("env-2", "m3", at_10, at_10 + timedelta(hours=30), "device"),
            ("env-2", "m3", at_10, at_10 + timedelta(hours=30), "device"),
            ("env-2", "m4", at_10 + timedelta(minutes=1), at_10 + timedelta(hours=30), "device"),
            # an untrusted clock took ingest time: not late by definition
            ("env-3", "m5", at_10, at_10, "ingest"),
        ],
    )
    events = silver_rows(
        DEVICE_EVENTS, [("env-2", "e1", at_10, at_10 + timedelta(hours=2), "device")]
    )

    ledger = late_data_ledger(telemetry, events, SKEW)

    assert ledger.schema == pl.DataFrame(LATE_DATA_LEDGER.schema.empty_table()).schema
    assert ledger.select(
        "device_id", "table", "ingest_date", "late_messages", "max_lateness_s", "mean_lateness_s"
    ).rows() == [
        ("env-2", DEVICE_EVENTS.name, DAY.date(), 1, 7200.0, 7200.0),
        ("env-2", TELEMETRY.name, (DAY + timedelta(days=1)).date(), 2, 108000.0, 107970.0),
    ]
    summary = ledger_summary(ledger)
    assert (summary.late_messages, summary.devices, summary.max_lateness_s) == (3, 1, 108000.0)


def test_a_day_without_late_data_has_an_empty_ledger():
    on_time = silver_rows(TELEMETRY, [("env-1", "m1", DAY, DAY, "device")])
    ledger = late_data_ledger(on_time, silver_rows(DEVICE_EVENTS, []), SKEW)
    assert ledger.is_empty()
    assert ledger_summary(ledger).late_messages == 0
