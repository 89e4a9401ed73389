"""The reported half of the device shadow: monotone merges for device_registry and device_state.

Pure polars, no lake I/O and no Dagster. A device's new row is its current row merged with
reports taken from silver rows, and every rule is order-free and idempotent: first_seen is
a minimum, last_seen a maximum, a reported attribute (type, fleet, firmware, status, a
metric's value) is the one of its latest report. So re-reading a whole rebuilt silver day
changes nothing, and a device flushing hours of old readings cannot roll its state back.

"Since when" (firmware, status) is the first report of the current value after the last
report of any other value (`*_previous_at`), kept as those three instants rather than as a
history. It is exact whatever the order reports arrive in, except for one case no real
device produces: a late report of another value landing inside the current run (between
`since` and `reported_at`) moves `since` to the next report of the current value this
merge still knows of, which may be later than the true one.

Times: firmware, type and fleet reports are ordered by event time (when the device ran
it); status messages by ingest time, because the MQTT Last Will is published by the
broker when the connection drops, with a payload (and clock) fixed when the device connected.
"""

from __future__ import annotations

import polars as pl

from iot_lake.lake.catalog import DEVICE_REGISTRY, DEVICE_STATE, conform

DEVICE_KEYS = ("tenant_id", "device_id")
METRIC_KEYS = (*DEVICE_KEYS, "metric")
# Which reading is the latest: event time, then arrival, then message id (a total order).
READING_ORDER = ("event_time", "ingest_time", "message_id")


def update_device_state(current: pl.DataFrame, telemetry: pl.DataFrame) -> pl.DataFrame:
    """device_state rows for every device x metric in either frame: the latest reading wins.

    `current` holds device_state rows, `telemetry` rows in TELEMETRY's schema (any subset).
    """
    columns = list(DEVICE_STATE.column_names)
    candidates = pl.concat([current.select(columns), conform(telemetry, DEVICE_STATE)])
    latest = candidates.group_by(METRIC_KEYS).agg(
        pl.exclude(METRIC_KEYS).sort_by(READING_ORDER).last()
    )
    return conform(latest, DEVICE_STATE)


def update_device_registry(
    current: pl.DataFrame, telemetry: pl.DataFrame, events: pl.DataFrame
) -> pl.DataFrame:
    """device_registry rows for every device in any frame, merged with what silver reports.

    `current` holds device_registry rows; `telemetry` and `events` rows in TELEMETRY's and
    DEVICE_EVENTS's schemas (the columns used are enough).
    """
    reports = [current, *_registry_reports(telemetry, events)]
    return conform(merge_registry_rows(pl.concat(reports, how="diagonal_relaxed")), DEVICE_REGISTRY)


def merge_registry_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """One registry row per device from several partial ones (nulls: "not reported here")."""
    frame = rows.lazy()
    for name, followers in (("firmware", ()), ("status", ("status_reason",))):
        frame = _with_run_context(frame, name, followers)
    merged = frame.group_by(DEVICE_KEYS).agg(
        pl.col("first_seen").min(),
        pl.col("last_seen").max(),
        pl.col("last_ingest_time").max(),
        *_latest("device_type"),
        *_latest("fleet"),
        *_run("firmware", ()),
        *_run("status", ("status_reason",)),
        pl.col("last_heartbeat_at", "last_boot_at", "last_crash_at").max(),
    )
    return merged.collect()


def _registry_reports(telemetry: pl.DataFrame, events: pl.DataFrame) -> list[pl.DataFrame]:
    """Partial registry rows from silver: per device, or per report where order matters."""
    keys = list(DEVICE_KEYS)
    messages = pl.concat(
        [frame.select(*keys, "event_time", "ingest_time") for frame in (telemetry, events)]
    )
    seen = messages.group_by(keys).agg(
        first_seen=pl.col("event_time").min(),
        last_seen=pl.col("event_time").max(),
        last_ingest_time=pl.col("ingest_time").max(),
    )
    boots = events.filter(pl.col("event_type") == "boot")
    fleets = boots.with_columns(fleet=pl.col("details").str.json_path_match("$.fleet"))
    firmware = pl.concat(
        [frame.select(*keys, "firmware", "event_time") for frame in (telemetry, events)]
    )
    status = events.filter(pl.col("event_type") == "status").select(
        *keys,
        "status",
        status_reason=pl.col("details").str.json_path_match("$.reason"),
        status_since=pl.col("ingest_time"),
        status_reported_at=pl.col("ingest_time"),
    )
    is_event = {name: pl.col("event_type") == name for name in ("heartbeat", "boot", "crash")}
    markers = events.group_by(keys).agg(
        **{
            f"last_{name}_at": pl.col("event_time").filter(cond).max()
            for name, cond in is_event.items()
        }
    )
    return [
        seen,
        _latest_report(telemetry, "device_type"),
        _latest_report(fleets, "fleet"),
        firmware.drop_nulls("firmware")
        .unique()
        .select(
            *keys,
            "firmware",
            firmware_since=pl.col("event_time"),
            firmware_reported_at=pl.col("event_time"),
        ),
        status,
        markers,
    ]


def _latest_report(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """The last event time each device reported each value of `name` (nulls are no report)."""
    return (
        frame.drop_nulls(name)
        .group_by(*DEVICE_KEYS, name)
        .agg(pl.col("event_time").max().alias(f"{name}_reported_at"))
    )


def _latest(name: str) -> list[pl.Expr]:
    """The value of the latest report and its time (ties: the greater value, to be order-free)."""
    at = f"{name}_reported_at"
    return [pl.col(name).sort_by(at, name).last(), pl.col(at).max()]


def _with_run_context(frame: pl.LazyFrame, name: str, followers: tuple[str, ...]) -> pl.LazyFrame:
    """Per device, the current value of `name` and the last report of any other value."""
    at, previous = f"{name}_reported_at", f"{name}_previous_at"
    current = pl.col(name).sort_by(at, name, *followers).last().over(DEVICE_KEYS)
    other_report = pl.when(pl.col(name) != pl.col(f"_{name}_current")).then(pl.col(at))
    return frame.with_columns(current.alias(f"_{name}_current")).with_columns(
        other_report.otherwise(pl.col(previous)).max().over(DEVICE_KEYS).alias(f"_{name}_previous")
    )


def _run(name: str, followers: tuple[str, ...]) -> list[pl.Expr]:
    """The latest value of `name`, when it was last reported, and since when it holds."""
    at, since, previous = f"{name}_reported_at", f"{name}_since", f"{name}_previous_at"
    order = (at, name, *followers)
    boundary = pl.col(f"_{name}_previous")
    current = pl.col(name) == pl.col(f"_{name}_current")

    def first_after_boundary(column: str) -> pl.Expr:
        later = boundary.is_null() | (pl.col(column) > boundary)
        return pl.col(column).filter(current & later).min()

    return [
        pl.col(name).sort_by(order).last(),
        *(pl.col(follower).sort_by(order).last() for follower in followers),
        pl.min_horizontal(first_after_boundary(since), first_after_boundary(at)).alias(since),
        pl.col(at).max(),
        boundary.first().alias(previous),
    ]
