"""lake.compaction on real Delta tables: fenced merges of small files, raced and checked."""

from __future__ import annotations

import math
import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
from polars.testing import assert_frame_equal

from iot_lake.lake import compaction
from iot_lake.lake.catalog import RAW_TELEMETRY, TELEMETRY
from streaming.batch import RawBatch
from streaming.housekeeping import compact_closed_partitions
from streaming.landing import LandingWriter, Position
from tests.support import compact_raw_from_two_threads, raw_rows

TARGET = 16 * 1024 * 1024


def positions(lake) -> Counter[str]:
    return Counter(lake.read(RAW_TELEMETRY).get_column("source_position").to_list())


def data_files(lake, spec) -> set[str]:
    root = Path(lake.table_uri(spec))
    return {str(path.relative_to(root)) for path in root.rglob("*.parquet")}


def test_two_writers_compacting_one_partition_at_once_keep_each_row_once(lake):
    """delta-rs' OPTIMIZE doubled every row here: both commits went through."""
    for first in range(0, 1000, 100):
        lake.append(RAW_TELEMETRY, raw_rows(first, 100))
    outcomes = compact_raw_from_two_threads(lake)

    assert sorted(outcomes) == [False, True]
    assert positions(lake) == Counter(str(i) for i in range(1000))
    table = lake.open(RAW_TELEMETRY)
    live = set(pa.table(table.get_add_actions(flatten=False)).column("path").to_pylist())
    assert len(live) == 1
    # The loser deleted the file it wrote: the ten merged files and the winner's are left.
    assert live <= data_files(lake, RAW_TELEMETRY)
    assert len(data_files(lake, RAW_TELEMETRY)) == 11


def test_two_consumers_crossing_midnight_compact_yesterday_once(lake):
    """Each consumer compacts the closed day on its first commit after midnight."""
    writers = [LandingWriter(lake, name) for name in ("left", "right")]
    yesterday = int(datetime(2026, 11, 1, 23, tzinfo=UTC).timestamp() * 1_000_000)
    for version in range(1, 11):
        writer = writers[version % 2]
        batch = RawBatch("test", writer.consumer_id, 64 * 1024)
        batch.extend(
            ["tenant/t/devices/d1/status"] * 10,
            [b'{"online": true}'] * 10,
            yesterday + version,
            [f"{version}:{i}" for i in range(10)],
        )
        writer.commit(batch, [Position(f"test:{writer.consumer_id}", version)])
    barrier = threading.Barrier(2)
    done: dict[str, list[str]] = {}

    def tidy(writer: LandingWriter) -> None:
        barrier.wait(timeout=30)
        done[writer.consumer_id] = writer.with_table(
            lambda table: compact_closed_partitions(table, {}, date(2026, 11, 2))
        )

    threads = [threading.Thread(target=tidy, args=(writer,)) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(done.values()) == [[], ["2026-11-01"]]
    assert positions(lake) == Counter(f"{v}:{i}" for v in range(1, 11) for i in range(10))


def test_files_appended_while_compacting_stay(lake):
    for first in range(0, 40, 10):
        lake.append(RAW_TELEMETRY, raw_rows(first, 10))
    table = lake.open(RAW_TELEMETRY)
    planned = compaction.plan(table, RAW_TELEMETRY, TARGET)
    lake.append(RAW_TELEMETRY, raw_rows(40, 10))  # lands after the plan, before the commit

    assert compaction.compact_partition(
        table, RAW_TELEMETRY, {}, ("2026-11-01",), planned[("2026-11-01",)]
    )

    assert positions(lake) == Counter(str(i) for i in range(50))
    assert len(compaction.live_files(lake.open(RAW_TELEMETRY), RAW_TELEMETRY)) == 2


def test_a_compaction_whose_files_were_rewritten_commits_nothing(lake):
    for first in range(0, 40, 10):
        lake.append(RAW_TELEMETRY, raw_rows(first, 10))
    stale = lake.open(RAW_TELEMETRY)
    planned = compaction.plan(stale, RAW_TELEMETRY, TARGET)
    # An overwrite of the partition commits first.
    lake.replace_partition(RAW_TELEMETRY, raw_rows(100, 5), "ingest_date = '2026-11-01'")
    files_before = data_files(lake, RAW_TELEMETRY)
    version_before = lake.open(RAW_TELEMETRY).version()

    assert not compaction.compact_partition(
        stale, RAW_TELEMETRY, {}, ("2026-11-01",), planned[("2026-11-01",)]
    )

    assert lake.open(RAW_TELEMETRY).version() == version_before
    assert positions(lake) == Counter(str(i) for i in range(100, 105))
    assert data_files(lake, RAW_TELEMETRY) == files_before


def readings(hour: int, first: int, values: list[float]) -> pa.Table:
    moment = datetime(2026, 11, 1, hour, tzinfo=UTC)
    return pa.Table.from_pylist(
        [
            {
                "tenant_id": "acme",
                "device_id": f"d{first + i}",
                "device_type": None if i % 2 else "env_sensor",
                "metric": "temperature",
                "value": value,
                "unit": "C",
                "reported_value": value,
                "reported_unit": "C",
                "event_time": moment + timedelta(seconds=first + i, microseconds=1),
                "event_date": moment.date(),
                "event_hour": hour,
                "device_time": moment,
                "ingest_time": moment,
                "time_source": "device",
                "message_id": f"m{first + i}",
                "firmware": "1.0.0",
                "ingest_date": moment.date(),
            }
            for i, value in enumerate(values)
        ],
        schema=TELEMETRY.schema,
    )


def test_each_hour_is_merged_apart_and_its_statistics_bound_its_rows(lake):
    for hour in (5, 6):
        lake.append(TELEMETRY, readings(hour, 0, [1.5, -2.0]))
        lake.append(TELEMETRY, readings(hour, 2, [7.25, math.nan if hour == 6 else 3.0]))
    before = lake.read(TELEMETRY).sort("event_hour", "device_id")
    table = lake.open(TELEMETRY)
    planned = compaction.plan(table, TELEMETRY, TARGET)
    assert sorted(planned) == [("2026-11-01", "5"), ("2026-11-01", "6")]

    for partition, bins in planned.items():
        assert compaction.compact_partition(table, TELEMETRY, {}, partition, bins)

    table = lake.open(TELEMETRY)
    assert_frame_equal(lake.read(TELEMETRY).sort("event_hour", "device_id"), before)
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    stats = {action["partition.event_hour"]: action for action in actions}
    assert sorted(stats) == [5, 6]
    five, six = stats[5], stats[6]
    assert (five["num_records"], five["min.value"], five["max.value"]) == (4, -2.0, 7.25)
    assert (six["min.value"], six["max.value"]) == (None, None)  # NaN: no bounds at all
    assert five["null_count.device_type"] == 2
    first = datetime(2026, 11, 1, 5, tzinfo=UTC)
    assert five["min.event_time"] <= first + timedelta(microseconds=1)
    assert five["max.event_time"] >= first + timedelta(seconds=3, microseconds=1)
    # A reader pruning by the statistics still finds every row.
    late = first + timedelta(seconds=3, microseconds=1)
    kept = lake.read_where(TELEMETRY, [("event_time", ">=", late.isoformat())]).collect()
    assert kept.filter(pl.col("event_hour") == 5, pl.col("event_time") >= late).height == 1


def test_small_files_are_packed_in_log_order_into_bins_of_at_most_the_target(lake):
    for first in range(0, 100, 10):
        lake.append(RAW_TELEMETRY, raw_rows(first, 10))
    table = lake.open(RAW_TELEMETRY)
    files = compaction.live_files(table, RAW_TELEMETRY)
    target = 5 * max(file.size for file in files)  # five files to a bin

    bins = compaction.plan(table, RAW_TELEMETRY, target)[("2026-11-01",)]

    assert [[file.path for file in group] for group in bins] == [
        [file.path for file in files[:5]],
        [file.path for file in files[5:]],
    ]
    smallest = min(file.size for file in files)
    assert compaction.plan(table, RAW_TELEMETRY, 4 * smallest) == {}  # none under a quarter
