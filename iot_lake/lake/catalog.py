"""The table catalog: the one place a table's name, schema, partitioning and owner are spelled.

Readers, writers, DuckDB views and (later) dbt sources all come from here; no other module
spells a table path. Timestamps are UTC with microsecond precision everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl
import pyarrow as pa

UTC_MICROS = pa.timestamp("us", tz="UTC")
Codec = Literal["SNAPPY", "LZ4_RAW", "ZSTD"]


@dataclass(frozen=True)
class ParquetLayout:
    """Parquet choices for a table written at high rate (the consumer's raw_telemetry).

    Encoding Parquet is the landing writer's largest single cost, and most of it is
    compressing the payloads. A file the consumer appends lives only until the next
    compaction (every 250 commits, closed days once a day), so it is written with the fast
    `appended_compression`, and compaction rewrites the rows with `compression` for the
    files that stay. A 30,000-message batch of bench/ingest.py's file: snappy 416-485 ns
    and 57-67 bytes a row, zstd level 1 574-638 ns and 26-31 bytes; alternating landings
    of the whole file took 2.11-2.38 against 2.30-2.55 CPU-s per million messages.
    `plain_columns` hold text that is nearly all distinct (payloads, ids, positions):
    Parquet would build a dictionary per page only to discard it. Topics and device names
    are as good as distinct within a batch of a large fleet (10,000 devices: 30,000
    topics, each about once in a 30,000-message batch); plain, those two columns cost
    about 90 instead of 113 ns a row to write and take 2.8 instead of 4.9 bytes a row.

    `statistics_columns` are the only columns whose statistics the files' footers and the
    Delta log keep (the table property `delta.dataSkippingStatsColumns`). delta-rs parses
    every live file's logged statistics whenever it loads or advances a table: with
    `write_deltalake`, a 1,000-message raw commit at 800 live files took 138 ms with all
    14 columns, 98 ms with these four and 66 ms with none, and every reader opening raw
    pays the same parse. Min and max of a payload, an id or a device name span nearly
    every value in a file and prune nothing; the ingest time, the source and the writer
    do, and error_code's null count tells the files without a refused message. A filter
    on a column without statistics reads every file, as it must
    (tests/streaming/test_landing.py checks each column still finds its row).
    """

    compression: Codec
    compression_level: int | None
    appended_compression: Codec
    plain_columns: tuple[str, ...]
    statistics_columns: tuple[str, ...]

    def codec(self, appended: bool = False) -> tuple[Codec, int | None]:
        """The codec and level of a file: compacted (or written whole), or `appended`."""
        if appended and self.appended_compression != self.compression:
            return self.appended_compression, None
        return self.compression, self.compression_level


@dataclass(frozen=True)
class TableSpec:
    """A Delta table of the lake: its contract, not its location (the lake resolves that)."""

    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    key_columns: tuple[str, ...]
    owner: str
    description: str
    # The column holding the UTC hour (0-23) of a row's event time, for a table whose days
    # can be rebuilt hour by hour (only the hours new data touched: contract 5, cost in
    # proportion to new data); None where a day is only ever rebuilt whole.
    hour_column: str | None = None
    # How its Parquet files are written, for a table where that cost matters; None: the
    # writer's defaults (snappy, dictionaries and statistics on every column).
    layout: ParquetLayout | None = None

    @property
    def column_names(self) -> list[str]:
        """The table's columns in schema order."""
        return list(self.schema.names)


RAW_TELEMETRY = TableSpec(
    name="raw_telemetry",
    schema=pa.schema(
        [
            pa.field("ingest_time", UTC_MICROS, nullable=False),
            pa.field("ingest_date", pa.date32(), nullable=False),
            pa.field("tenant_id", pa.string()),
            pa.field("device_id", pa.string()),
            pa.field("message_kind", pa.string()),
            pa.field("message_id", pa.string()),
            pa.field("topic", pa.string()),
            pa.field("source", pa.string(), nullable=False),
            pa.field("source_position", pa.string()),
            pa.field("consumer_id", pa.string(), nullable=False),
            pa.field("payload", pa.string(), nullable=False),
            pa.field("payload_encoding", pa.string(), nullable=False),
            pa.field("payload_bytes", pa.int32(), nullable=False),
            pa.field("error_code", pa.string()),
            pa.field("error_detail", pa.string()),
        ]
    ),
    partition_by=("ingest_date",),
    key_columns=("source", "source_position"),
    layout=ParquetLayout(
        compression="ZSTD",
        compression_level=1,
        appended_compression="SNAPPY",
        plain_columns=(
            "payload",
            "message_id",
            "topic",
            "device_id",
            "source_position",
            "error_detail",
        ),
        statistics_columns=("ingest_time", "source", "consumer_id", "error_code"),
    ),
    owner="streaming consumer",
    description=(
        "Bronze: every message the consumer received, exactly as received (payload text), "
        "with server ingest time, source and position; invalid messages carry an error code."
    ),
)


def _rollup_spec(
    name: str, bucket: str, built_from: str, partition_by: tuple[str, ...], by_hour: bool
) -> TableSpec:
    return TableSpec(
        name=name,
        schema=pa.schema(
            [
                pa.field("tenant_id", pa.string(), nullable=False),
                pa.field("device_id", pa.string(), nullable=False),
                pa.field("metric", pa.string(), nullable=False),
                pa.field("unit", pa.string()),
                pa.field("bucket_start", UTC_MICROS, nullable=False),
                pa.field("bucket_date", pa.date32(), nullable=False),
                # The UTC hour of bucket_start (0 for a day's bucket): what the hours of a day
                # rebuilt on their own are picked by.
                pa.field("bucket_hour", pa.int8(), nullable=False),
                pa.field("count", pa.int64(), nullable=False),
                pa.field("sum", pa.float64(), nullable=False),
                pa.field("sum_sq", pa.float64(), nullable=False),
                # Sum of squared deviations from the bucket mean: what the standard deviation
                # is computed from, because sum_sq - sum^2/count cancels when mean >> spread.
                pa.field("m2", pa.float64(), nullable=False),
                pa.field("min", pa.float64(), nullable=False),
                pa.field("max", pa.float64(), nullable=False),
                pa.field("first_value", pa.float64(), nullable=False),
                pa.field("first_time", UTC_MICROS, nullable=False),
                pa.field("last_value", pa.float64(), nullable=False),
                pa.field("last_time", UTC_MICROS, nullable=False),
            ]
        ),
        partition_by=partition_by,
        key_columns=("device_id", "metric", "bucket_start"),
        owner="dagster: rollups",
        description=(
            f"Gold: {bucket} mergeable aggregates per device x metric (count, sum, sum of "
            "squares, sum of squared deviations from the mean (m2), min, max, first, last), "
            f"built from {built_from}; mean and standard deviation are exact at every level."
        ),
        hour_column="bucket_hour" if by_hour else None,
    )


# Contract 4, the same in every silver table: when it happened (event_time: the device
# clock within tolerance, else ingest), which clock that was, and which message it came from.
_EVENT_TIME_FIELDS = (
    pa.field("event_time", UTC_MICROS, nullable=False),
    pa.field("event_date", pa.date32(), nullable=False),
    pa.field("event_hour", pa.int8(), nullable=False),  # UTC hour of event_time
    pa.field("device_time", UTC_MICROS, nullable=False),
    pa.field("ingest_time", UTC_MICROS, nullable=False),
    pa.field("time_source", pa.string(), nullable=False),
    pa.field("message_id", pa.string(), nullable=False),
)

# Silver is partitioned by event day and hour: a run rebuilds the hours new raw rows touched
# (whole partitions, no file rewritten), a backfill or replay whole days.
_BY_EVENT_HOUR = ("event_date", "event_hour")

TELEMETRY = TableSpec(
    name="telemetry",
    schema=pa.schema(
        [
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("device_id", pa.string(), nullable=False),
            pa.field("device_type", pa.string()),
            pa.field("metric", pa.string(), nullable=False),
            pa.field("value", pa.float64(), nullable=False),
            pa.field("unit", pa.string()),
            pa.field("reported_value", pa.float64(), nullable=False),
            pa.field("reported_unit", pa.string()),
            *_EVENT_TIME_FIELDS,
            pa.field("firmware", pa.string()),
            pa.field("ingest_date", pa.date32(), nullable=False),
        ]
    ),
    partition_by=_BY_EVENT_HOUR,
    key_columns=("device_id", "message_id", "metric"),
    owner="dagster: telemetry",
    description=(
        "Silver: one row per reading (long layout: device x metric x event time), decoded "
        "from valid raw telemetry, deduplicated by (device_id, message_id), units "
        "normalized; event_time is the device clock within the skew tolerance, else ingest."
    ),
    hour_column="event_hour",
)

DEVICE_EVENTS = TableSpec(
    name="device_events",
    schema=pa.schema(
        [
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("device_id", pa.string(), nullable=False),
            pa.field("event_type", pa.string(), nullable=False),
            pa.field("status", pa.string()),
            pa.field("firmware", pa.string()),
            pa.field("command_id", pa.string()),
            pa.field("details", pa.string()),
            *_EVENT_TIME_FIELDS,
            pa.field("ingest_date", pa.date32(), nullable=False),
        ]
    ),
    partition_by=_BY_EVENT_HOUR,
    key_columns=("device_id", "message_id"),
    owner="dagster: device_events",
    description=(
        "Silver: device events and status changes (boot, crash, heartbeat, firmware, ack, "
        "online/offline), typed and deduplicated by (device_id, message_id)."
    ),
    hour_column="event_hour",
)

# rollup_1m is partitioned by hour like silver, so the hours a run rebuilds are whole
# partitions; rollup_1h is 60x smaller, a day of it one partition whose touched hours are
# rewritten; rollup_1d is always rebuilt from the whole day of rollup_1h.
ROLLUP_1M = _rollup_spec(
    "rollup_1m", "1-minute", "telemetry", ("bucket_date", "bucket_hour"), by_hour=True
)
ROLLUP_1H = _rollup_spec("rollup_1h", "1-hour", "rollup_1m", ("bucket_date",), by_hour=True)
ROLLUP_1D = _rollup_spec("rollup_1d", "1-day", "rollup_1h", ("bucket_date",), by_hour=False)

DEVICE_BASELINES = TableSpec(
    name="device_baselines",
    schema=pa.schema(
        [
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("device_id", pa.string(), nullable=False),
            pa.field("metric", pa.string(), nullable=False),
            pa.field("as_of_date", pa.date32(), nullable=False),
            pa.field("window_days", pa.int32(), nullable=False),
            pa.field("count", pa.int64(), nullable=False),
            pa.field("mean", pa.float64(), nullable=False),
            pa.field("stddev", pa.float64()),
            pa.field("hour_of_day_mean", pa.list_(pa.float64()), nullable=False),
            pa.field("hour_of_day_count", pa.list_(pa.int64()), nullable=False),
            pa.field("trusted", pa.bool_(), nullable=False),
        ]
    ),
    partition_by=("as_of_date",),
    key_columns=("device_id", "metric", "as_of_date"),
    owner="dagster: device_baselines",
    description=(
        "Per device x metric over a trailing window ending on as_of_date, from the hourly "
        "rollups: mean, standard deviation, sample count and an hour-of-day profile; "
        "trusted only above a minimum sample count."
    ),
)

DEVICE_REGISTRY = TableSpec(
    name="device_registry",
    schema=pa.schema(
        [
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("device_id", pa.string(), nullable=False),
            pa.field("device_type", pa.string()),
            pa.field("device_type_reported_at", UTC_MICROS),
            pa.field("fleet", pa.string()),
            pa.field("fleet_reported_at", UTC_MICROS),
            # Event times of any message of the device.
            pa.field("first_seen", UTC_MICROS, nullable=False),
            pa.field("last_seen", UTC_MICROS, nullable=False),
            # Server time the last message of any kind arrived: the heartbeat timeout's clock.
            pa.field("last_ingest_time", UTC_MICROS, nullable=False),
            # Firmware reported (telemetry `fw`, firmware events), event times: since = the
            # first report of this version after the last report of another one (previous_at).
            pa.field("firmware", pa.string()),
            pa.field("firmware_since", UTC_MICROS),
            pa.field("firmware_reported_at", UTC_MICROS),
            pa.field("firmware_previous_at", UTC_MICROS),
            # Status messages (online/offline, the MQTT Last Will included), ordered by
            # ingest time: the Last Will is published by the broker, not timed by the device.
            pa.field("status", pa.string()),
            pa.field("status_reason", pa.string()),
            pa.field("status_since", UTC_MICROS),
            pa.field("status_reported_at", UTC_MICROS),
            pa.field("status_previous_at", UTC_MICROS),
            pa.field("last_heartbeat_at", UTC_MICROS),
            pa.field("last_boot_at", UTC_MICROS),
            pa.field("last_crash_at", UTC_MICROS),
        ]
    ),
    partition_by=(),
    key_columns=("tenant_id", "device_id"),
    owner="dagster: device_registry",
    description=(
        "The reported half of the device shadow, one row per tenant x device: type, fleet, "
        "first and last seen, reported firmware and since when, last status (online/offline, "
        "Last Will included) and since when, last heartbeat, boot and crash; merged "
        "monotonically from silver, so late data never rolls it back. Connectivity with the "
        "heartbeat timeout applied is the device_connectivity view (relative to now)."
    ),
)

DEVICE_STATE = TableSpec(
    name="device_state",
    schema=pa.schema(
        [
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("device_id", pa.string(), nullable=False),
            pa.field("metric", pa.string(), nullable=False),
            pa.field("value", pa.float64(), nullable=False),
            pa.field("unit", pa.string()),
            pa.field("event_time", UTC_MICROS, nullable=False),
            pa.field("ingest_time", UTC_MICROS, nullable=False),
            pa.field("message_id", pa.string(), nullable=False),
        ]
    ),
    partition_by=(),
    key_columns=("tenant_id", "device_id", "metric"),
    owner="dagster: device_state",
    description=(
        "The latest reported value of every tenant x device x metric (normalized unit), "
        "with its event and ingest time: the reading with the greatest (event_time, "
        "ingest_time, message_id) wins, so a late flush of older readings never replaces it."
    ),
)

LATE_DATA_LEDGER = TableSpec(
    name="late_data_ledger",
    schema=pa.schema(
        [
            pa.field("tenant_id", pa.string(), nullable=False),
            pa.field("device_id", pa.string(), nullable=False),
            pa.field("table", pa.string(), nullable=False),
            pa.field("event_date", pa.date32(), nullable=False),
            pa.field("event_hour", pa.int8(), nullable=False),
            pa.field("ingest_date", pa.date32(), nullable=False),
            pa.field("late_messages", pa.int64(), nullable=False),
            pa.field("first_event_time", UTC_MICROS, nullable=False),
            pa.field("last_event_time", UTC_MICROS, nullable=False),
            pa.field("first_ingest_time", UTC_MICROS, nullable=False),
            pa.field("last_ingest_time", UTC_MICROS, nullable=False),
            pa.field("max_lateness_s", pa.float64(), nullable=False),
            pa.field("mean_lateness_s", pa.float64(), nullable=False),
        ]
    ),
    partition_by=("event_date",),
    key_columns=("device_id", "table", "event_date", "event_hour", "ingest_date"),
    owner="dagster: late_data_ledger",
    description=(
        "Late data per device x silver table x event hour x arrival day: messages whose device "
        "clock is trusted (contract 4) but which arrived more than the skew tolerance after "
        "it (a buffer flushed on reconnect), how many and how late. What made old event "
        "days be recomputed."
    ),
    hour_column="event_hour",
)

CATALOG: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        RAW_TELEMETRY,
        TELEMETRY,
        DEVICE_EVENTS,
        ROLLUP_1M,
        ROLLUP_1H,
        ROLLUP_1D,
        DEVICE_BASELINES,
        DEVICE_REGISTRY,
        DEVICE_STATE,
        LATE_DATA_LEDGER,
    )
}

# The quarantine (DLQ) is a view over raw rows that carry an error, not a second copy.
QUARANTINE_VIEW = "quarantine"
QUARANTINE_PREDICATE = "error_code IS NOT NULL"


def table_spec(name: str) -> TableSpec:
    """Look a table up by name, with an error that lists the tables there are."""
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise KeyError(f"unknown table {name!r}; the catalog has: {known}") from None


def empty_frame(spec: TableSpec) -> pl.DataFrame:
    """No rows, the table's schema, as polars: what a step returns with nothing to do."""
    frame = pl.from_arrow(spec.schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def conform(frame: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """The frame with exactly the table's columns, in order, with the catalog's dtypes.

    Columns already of their dtype are taken as they are: the lake's writer conforms
    every frame it writes, most of them conformed once already by the step that made them.
    The columns are gathered, not selected: a `select` copies every column into one chunk
    when their chunks differ, as they do in silver's readings (0.2 s per 2.2M readings,
    on the decoding thread that bounds a rebuild); the writer copies them anyway.
    """
    dtypes = empty_frame(spec).schema
    columns = [frame.get_column(name) for name in dtypes]
    return pl.DataFrame(
        [
            column if column.dtype == dtype else column.cast(dtype)
            for column, dtype in zip(columns, dtypes.values(), strict=True)
        ]
    )
