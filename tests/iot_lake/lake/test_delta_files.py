"""Partition overwrites written by polars and committed as one Delta transaction."""

from __future__ import annotations

import json
from contextlib import nullcontext
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pyarrow.compute as pc
import pytest
from deltalake.exceptions import CommitFailedError
from polars.testing import assert_frame_equal

from iot_lake.lake.catalog import DEVICE_EVENTS, TableSpec, empty_frame
from iot_lake.lake.delta_files import file_stats, parquet_bytes
from iot_lake.lake.overwrites import overwrite_in_shards
from iot_lake.lake.partitions import EventWindow
from iot_lake.lake.tables import Lake

DAY = date(2026, 11, 1)
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


# Statistics computed from the rows alone, read from the footer of a file of them, and
# merged over a footer of one row group per row: the same log entry every way.
@pytest.mark.parametrize(
    "row_group_size", [None, 1_000, 1], ids=["rows only", "one row group", "a group per row"]
)
def test_stats_bound_every_value_and_leave_out_what_cannot_be_exact(row_group_size):
    rows = pl.DataFrame(
        {
            "at": [
                T0 + timedelta(microseconds=500),
                T0 + timedelta(milliseconds=200, microseconds=1),
            ],
            "exact_at": [T0, T0 + timedelta(milliseconds=3)],
            "value": [1.5, -2.0],
            "with_nan": [1.0, float("nan")],
            "name": ["a", None],
            "long": ["x" * 65, "y"],
            # 40 characters, 80 bytes: a footer holds it cut to 64 bytes, the log whole.
            "accented": ["é" * 40, "x"],
            "when": [DAY, DAY + timedelta(days=1)],
        }
    )

    parquet = None if row_group_size is None else parquet_bytes(rows, row_group_size)
    stats = json.loads(file_stats(rows, parquet))

    assert stats["numRecords"] == 2
    assert stats["minValues"] == {
        "at": "2026-11-01T12:00:00.000Z",
        "exact_at": "2026-11-01T12:00:00.000Z",
        "value": -2.0,
        "name": "a",
        "accented": "x",
        "when": "2026-11-01",
    }
    assert stats["maxValues"] == {
        "at": "2026-11-01T12:00:00.201Z",  # rounded up: .200001 is above .200
        "exact_at": "2026-11-01T12:00:00.003Z",
        "value": 1.5,
        "name": "a",
        "accented": "é" * 40,
        "when": "2026-11-02",
    }
    assert stats["nullCount"] == dict.fromkeys(rows.columns, 0) | {"name": 1}


def events(hour: int, count: int, device: str = "env-1") -> pl.DataFrame:
    """device_events rows of one hour of DAY."""
    start = T0.replace(hour=hour)
    times = [start + timedelta(seconds=10 * i) for i in range(count)]
    frame = pl.DataFrame(
        {
            "tenant_id": "acme",
            "device_id": device,
            "message_id": [f"{device}-{hour}-{i}" for i in range(count)],
            "event_type": "heartbeat",
            "event_time": times,
            "event_date": DAY,
            "event_hour": hour,
            "device_time": times,
            "ingest_time": times,
            "time_source": "device",
        }
    )
    schema = empty_frame(DEVICE_EVENTS).schema
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in schema.items()
    )


def overwrite(lake: Lake, spec: TableSpec, rows: pl.DataFrame, window: EventWindow, at: int) -> int:
    filters = window.partition_filters("event_date", spec.hour_column)
    return lake.overwrite_partitions(spec, [rows], filters, read_version=at)


def test_an_overwrite_replaces_exactly_its_partitions_and_files_prune_by_stats(lake):
    spec = DEVICE_EVENTS
    version = lake.ensure_table(spec).version()
    version = overwrite(
        lake, spec, pl.concat([events(1, 3), events(2, 4)]), EventWindow.day(DAY), version
    )
    hour_2 = EventWindow.hours_of(DAY, [2])

    overwrite(lake, spec, events(2, 2, device="env-2"), hour_2, version)

    stored = lake.read(spec).sort("event_time", "device_id")
    expected = pl.concat([events(1, 3), events(2, 2, device="env-2")]).sort(
        "event_time", "device_id"
    )
    assert_frame_equal(stored, expected)
    table = lake.open(spec)
    late = [("event_time", ">=", T0.replace(hour=2))]
    assert len(table.file_uris(file_pruning_predicate=late)) == 1
    # A filter on a non-partition column finds its rows (delta-io/delta-rs#3173: a column
    # without statistics in the log matched no file).
    env_2 = table.to_pyarrow_dataset().to_table(filter=pc.field("device_id") == "env-2")
    assert env_2.num_rows == 2


def test_a_first_build_computed_before_another_commit_of_its_hour_is_refused(lake):
    spec = DEVICE_EVENTS
    empty_version = lake.ensure_table(spec).version()
    hour_3 = EventWindow.hours_of(DAY, [3])
    newer = overwrite(lake, spec, events(3, 2, device="env-2"), hour_3, empty_version)
    # A commit of another hour after it does not fence the hour: only its own partitions do.
    overwrite(lake, spec, events(4, 1), EventWindow.hours_of(DAY, [4]), newer)

    with pytest.raises(CommitFailedError):
        overwrite(lake, spec, events(3, 5), hour_3, empty_version)
    overwrite(lake, spec, events(3, 5), hour_3, newer)

    assert lake.read(spec).filter(pl.col("event_hour") == 3).height == 5


def test_rows_outside_the_window_are_refused_before_anything_is_committed(lake):
    spec = DEVICE_EVENTS
    lake.ensure_table(spec)
    with pytest.raises(ValueError, match="outside"):
        overwrite_in_shards(
            lake,
            spec,
            EventWindow.hours_of(DAY, [5]),
            "event_date",
            lambda: nullcontext(iter([events(6, 1)])),
        )
    assert lake.read(spec).is_empty()
