from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from iot_lake.errors import CheckpointError
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.settings import Settings
from streaming.batch import RawBatch, now_micros
from streaming.housekeeping import compact_partition
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


def test_the_landing_writer_checkpoints_the_log_at_the_default_interval(lake):
    """A log checkpoint every `Settings.checkpoint_interval` versions keeps each read of the
    log short (the writer reads it around every commit), and none comes sooner."""
    interval = Settings().checkpoint_interval
    log = Path(lake.table_uri(RAW_TELEMETRY)) / "_delta_log"
    writer = LandingWriter(lake, "writer-1")
    for number in range(1, interval):  # the table's creation is version 0
        assert not list(log.glob("*.checkpoint.parquet")), number
        writer.commit(batch_of(1, number), [Position("test:a", number)])
    assert writer.table.version() == interval - 1
    assert [path.name for path in log.glob("*.checkpoint.parquet")] == [
        f"{interval - 1:020d}.checkpoint.parquet"
    ]


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


def test_a_batch_received_across_midnight_lands_in_both_days_partitions(lake):
    from datetime import UTC, datetime

    before = int(datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC).timestamp() * 1_000_000)
    batch = RawBatch("test", "writer-1", 64 * 1024)
    for i, ingest_micros in enumerate([before, before + 500_000, before + 1_500_000]):
        batch.add("tenant/t/devices/d1/status", STATUS % i, ingest_micros, str(i))
    writer = LandingWriter(lake, "writer-1")
    writer.commit(batch, [Position("test:a", 3)])

    raw = lake.read(RAW_TELEMETRY).sort("source_position")
    days = [str(day) for day in raw["ingest_date"].to_list()]
    assert days == ["2026-11-01", "2026-11-01", "2026-11-02"]
    assert raw["message_id"].to_list() == ["m0", "m1", "m2"]
    actions = pa.table(writer.table.get_add_actions(flatten=True)).to_pylist()
    rows_by_day = {str(a["partition.ingest_date"]): a["num_records"] for a in actions}
    assert rows_by_day == {"2026-11-01": 2, "2026-11-02": 1}


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


def test_every_column_of_landed_and_compacted_rows_can_be_filtered_on(lake):
    """The log keeps statistics of the layout's columns only, and every filter still matches.

    deltalake's dataset (what DuckDB and the assets read through) prunes files by the
    statistics their log entries carry: statistics that did not hold every value of a
    file would make an analyst's WHERE silently return nothing. Each landed value must
    find its row, in a file the consumer wrote and in one its compaction merged.
    """
    writer = LandingWriter(lake, "writer-1")
    writer.commit(batch_of(2), [Position("test:a", 2)])
    writer.commit(batch_of(2, start=2), [Position("test:a", 4)])
    landed = lake.read(RAW_TELEMETRY)
    kept = set(RAW_TELEMETRY.layout.statistics_columns)
    assert _columns_with_statistics(writer.table) == kept - {"error_code"}  # null throughout

    day = str(landed["ingest_date"][0])
    assert writer.with_table(lambda table: compact_partition(table, {}, day))
    assert len(writer.table.file_uris()) == 1
    assert _columns_with_statistics(writer.table) == kept - {"error_code"}
    dataset = writer.table.to_pyarrow_dataset()
    for column in RAW_TELEMETRY.column_names:
        value = landed[column][0]
        if value is None:
            continue
        matched = dataset.to_table(filter=ds.field(column) == value).num_rows
        assert matched >= 1, f"filtering raw_telemetry on {column} found no row"


def test_landed_files_use_the_fast_codec_until_compaction_rewrites_them(lake):
    """The consumer appends in the layout's fast codec; the files that stay are compact."""
    writer = LandingWriter(lake, "writer-1")
    writer.commit(batch_of(2), [Position("test:a", 2)])
    writer.commit(batch_of(2, start=2), [Position("test:a", 4)])
    layout = RAW_TELEMETRY.layout
    assert layout is not None
    assert layout.codec(appended=True) == ("SNAPPY", None)
    assert _codecs(writer.table) == {"SNAPPY"}

    day = str(lake.read(RAW_TELEMETRY)["ingest_date"][0])
    assert writer.with_table(lambda table: compact_partition(table, {}, day))
    assert layout.codec() == ("ZSTD", 1)
    assert _codecs(writer.table) == {"ZSTD"}
    assert lake.read(RAW_TELEMETRY).height == 4


def _codecs(table: DeltaTable) -> set[str]:
    """The Parquet codecs of the live files' column chunks, as pyarrow names them."""
    codecs = set()
    for uri in table.file_uris():
        metadata = pq.ParquetFile(uri).metadata
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for column in range(row_group.num_columns):
                codecs.add(row_group.column(column).compression)
    return codecs


def _columns_with_statistics(table: DeltaTable) -> set[str]:
    """Columns some live file's log entry gives a min and max for."""
    actions = pa.table(table.get_add_actions(flatten=True))
    return {
        name.removeprefix("min.")
        for name in actions.column_names
        if name.startswith("min.") and actions[name].null_count < actions.num_rows
    }
