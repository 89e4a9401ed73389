import polars as pl
import pyarrow.dataset as ds
import pytest

from iot_lake.catalog import RAW_TELEMETRY
from iot_lake.errors import CheckpointError
from streaming.batch import RawBatch, now_micros
from streaming.landing import LandingWriter, Position

STATUS = b'{"device_id":"d1","message_id":"m%d","ts":1,"status":"online"}'


def batch_of(n: int, start: int = 0) -> RawBatch:
    batch = RawBatch("test", "writer-1", 64 * 1024)
    for i in range(start, start + n):
        batch.add("tenant/t/devices/d1/status", STATUS % i, now_micros(), str(i))
    return batch


def test_batch_and_checkpoint_land_in_one_commit(lake):
    writer = LandingWriter(lake, "writer-1")
    outcome = writer.commit(batch_of(3), [Position("test:a", 3, "after-3")])
    assert outcome.rows == 3
    history = writer.table.history(1)[0]
    assert history["version"] == outcome.delta_version
    assert writer.committed_version("test:a") == 3
    assert writer.committed_detail("test:a") == "after-3"
    assert lake.read(RAW_TELEMETRY).height == 3


def test_replayed_batch_is_skipped_not_appended_twice(lake):
    writer = LandingWriter(lake, "writer-1")
    writer.commit(batch_of(3), [Position("test:a", 3)])
    again = LandingWriter(lake, "writer-1").commit(batch_of(3), [Position("test:a", 3)])
    assert again.already_landed
    assert lake.read(RAW_TELEMETRY).height == 3


def test_partly_landed_batch_is_refused_with_the_reason(lake):
    writer = LandingWriter(lake, "writer-1")
    writer.commit(batch_of(1), [Position("test:a", 5)])
    with pytest.raises(CheckpointError, match="two consumers are reading the same source"):
        writer.commit(batch_of(1), [Position("test:b", 1), Position("test:a", 5)])
    assert lake.read(RAW_TELEMETRY).height == 1


def test_detail_is_found_behind_commits_of_other_sources(lake):
    writer = LandingWriter(lake, "writer-1")
    writer.commit(batch_of(1), [Position("test:a", 1, "a-1")])
    for i in range(5):
        writer.commit(batch_of(1, i), [Position("test:b", i + 1, f"b-{i}")])
    assert writer.committed_detail("test:a") == "a-1"
    assert writer.committed_detail("test:b") == "b-4"
    assert writer.committed_detail("test:never") is None


def test_rows_keep_ingest_date_partition_and_positions(lake):
    writer = LandingWriter(lake, "writer-1")
    writer.commit(batch_of(2), [Position("test:a", 2)])
    raw = lake.read(RAW_TELEMETRY).sort("source_position")
    assert raw["source_position"].to_list() == ["0", "1"]
    assert raw["ingest_date"].to_list() == raw["ingest_time"].dt.date().to_list()
    assert raw.select(pl.col("consumer_id").unique()).to_series().to_list() == ["writer-1"]


def test_closed_partition_is_compacted_into_one_file_without_changing_rows(lake):
    from datetime import UTC, date, datetime

    from streaming.housekeeping import compact_closed_partitions, files_per_partition

    writer = LandingWriter(lake, "writer-1")
    yesterday = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1_000_000)
    for i in range(10):
        batch = RawBatch("test", "writer-1", 64 * 1024)
        batch.add("tenant/t/devices/d1/status", STATUS % i, yesterday + i, str(i))
        writer.commit(batch, [Position("test:a", i + 1)])
    writer.commit(batch_of(2), [Position("test:a", 11)])
    before = lake.read(RAW_TELEMETRY).sort("source_position", "ingest_time")
    assert files_per_partition(writer.table)["2026-11-01"] == 10

    assert compact_closed_partitions(writer.table, {}, today=date(2026, 11, 2)) == ["2026-11-01"]

    assert files_per_partition(writer.table)["2026-11-01"] == 1
    assert lake.read(RAW_TELEMETRY).sort("source_position", "ingest_time").equals(before)
    assert writer.committed_version("test:a") == 11


def test_every_column_of_landed_rows_can_be_filtered_on(lake):
    """Raw's Parquet layout keeps statistics: deltalake's dataset skips files without them.

    A filter on a column whose log entry lacks min/max matches no file at all (found when
    statistics were turned off for speed), so an analyst's WHERE would silently return
    nothing. Each landed value must find its row through the dataset readers use.
    """
    writer = LandingWriter(lake, "writer-1")
    writer.commit(batch_of(2), [Position("test:a", 2)])
    landed = lake.read(RAW_TELEMETRY)
    dataset = writer.table.to_pyarrow_dataset()
    for column in RAW_TELEMETRY.column_names:
        value = landed[column][0]
        if value is None:
            continue
        matched = dataset.to_table(filter=ds.field(column) == value).num_rows
        assert matched >= 1, f"filtering raw_telemetry on {column} found no row"
