"""A rebuild in chunks or device shards writes exactly what a one-shard rebuild writes.

The shards are computed one ahead of the writer (`prefetched`), so these rebuilds run
that overlap too.
"""

from __future__ import annotations

import threading
from datetime import date, timedelta

import polars as pl
import pyarrow as pa
import pytest
from deltalake.exceptions import CommitFailedError
from polars.testing import assert_frame_equal

from iot_lake.gold.rebuild import rebuild_rollup
from iot_lake.gold.rollups import rollup_1m
from iot_lake.lake.catalog import (
    DEVICE_EVENTS,
    RAW_TELEMETRY,
    ROLLUP_1D,
    ROLLUP_1H,
    ROLLUP_1M,
    TELEMETRY,
    TableSpec,
)
from iot_lake.lake.partitions import EventWindow
from iot_lake.lake.shards import device_shards, prefetched, shard_count
from iot_lake.lake.tables import Lake
from iot_lake.silver.decode import DECODER_COLUMNS
from iot_lake.silver.raw_chunks import plan_chunks
from iot_lake.silver.rebuild import rebuild_silver
from iot_lake.silver.rules import SilverRules
from streaming.simulator.fleet import Fleet, FleetSpec, SimMessage
from tests.conftest import NOISY
from tests.support import land_messages, run_in_threads

RULES = SilverRules(skew_tolerance=timedelta(minutes=5), max_lateness=timedelta(days=7))
DAY = EventWindow.day(date(2026, 11, 1))
SMALL_SHARDS = 400  # raw rows per shard: the fleet below is split into about 8


@pytest.fixture
def messages() -> list[SimMessage]:
    """A noisy fleet: duplicates, malformed and spoofed messages among good ones."""
    spec = FleetSpec(devices=20, seed=11, interval_s=600.0, faults=NOISY)
    return list(Fleet(spec).messages(3000))


def landed(lake: Lake, messages: list[SimMessage]) -> Lake:
    """The messages in raw (six commits), and a tenth of them again in a later commit.

    Chunks are groups of whole raw files: several files, so that chunks split the
    redelivered copies from their originals.
    """
    for start in range(0, len(messages), 500):
        land_messages(lake, messages[start : start + 500], first=start)
    land_messages(lake, messages[::10], delay_us=2_000_000, prefix="again-")
    return lake


def table_rows(lake: Lake, spec: TableSpec) -> pl.DataFrame:
    return lake.read(spec).sort(*spec.key_columns)


# Raw rows per chunk, and how all raw rows of the fleet below would be decoded: their held
# rows (quarantined, or sharing a key hash with another row) are ~800, so 400-row chunks
# cannot hold them and the window is split by device; 1,000-row chunks can. The redelivered
# copies are in a later commit than their originals, so with 1,000-row chunks they are
# decoded in other chunks unless they are held back (a test without the hold fails).
CHUNKINGS = [
    pytest.param(SMALL_SHARDS, "device_shards", id="device-shards"),
    pytest.param(1000, "chunks", id="chunks"),
]


@pytest.mark.parametrize(("per_chunk", "mode"), CHUNKINGS)
@pytest.mark.parametrize("spec", [TELEMETRY, DEVICE_EVENTS], ids=lambda spec: spec.name)
def test_a_rebuild_in_chunks_writes_the_same_table_as_one_chunk(
    tmp_path, messages, spec, per_chunk, mode
):
    whole = landed(Lake(str(tmp_path / "whole")), messages)
    sharded = landed(Lake(str(tmp_path / "sharded")), messages)
    raw = whole.read(RAW_TELEMETRY)
    assert shard_count(raw.height, per_chunk) > 2
    plan = plan_chunks(whole.file_groups(RAW_TELEMETRY, [], per_chunk), per_chunk)
    assert (plan.rows, plan.mode) == (raw.height, mode)

    one = rebuild_silver(whole, spec, DAY, RULES)
    many = rebuild_silver(sharded, spec, DAY, RULES, shard_messages=per_chunk)

    assert many.rows == one.rows == table_rows(whole, spec).height > 0
    assert_frame_equal(table_rows(sharded, spec), table_rows(whole, spec))
    keys = table_rows(sharded, spec).select(spec.key_columns)
    assert keys.is_unique().all()
    # Redelivered copies were in raw, decoded with their original, and were dropped.
    valid = raw.filter(pl.col("error_code").is_null())
    assert valid.select("device_id", "message_id").is_duplicated().sum() > 0


def test_every_device_lands_in_exactly_one_shard(tmp_path, messages):
    lake = landed(Lake(str(tmp_path / "lake")), messages)
    raw = lake.read(RAW_TELEMETRY).select(DECODER_COLUMNS).to_arrow()

    with device_shards(raw.to_batches(max_chunksize=500), 8) as paths:
        shards = [pl.read_ipc(path).with_columns(shard=pl.lit(i)) for i, path in enumerate(paths)]
    rows = pl.concat(shards)

    assert len(paths) > 1
    assert not any(path.exists() for path in paths)  # scratch files are removed
    assert rows.height == raw.num_rows
    per_device = rows.group_by("device_id").agg(pl.col("shard").n_unique())
    assert per_device.get_column("shard").max() == 1


def test_a_sharded_overwrite_computed_against_an_old_version_is_refused(tmp_path, messages):
    lake = landed(Lake(str(tmp_path / "lake")), messages)
    rebuild_silver(lake, TELEMETRY, DAY, RULES, shard_messages=SMALL_SHARDS)
    stale_version = lake.open(TELEMETRY).version()
    rows = table_rows(lake, TELEMETRY)
    rebuild_silver(lake, TELEMETRY, DAY, RULES, shard_messages=SMALL_SHARDS)  # a newer writer
    stream = pa.RecordBatchReader.from_batches(
        rows.to_arrow().schema, iter(rows.head(10).to_arrow().to_batches())
    )

    with pytest.raises(CommitFailedError):
        lake.replace_partition(TELEMETRY, stream, DAY.predicate(), read_version=stale_version)
    assert_frame_equal(table_rows(lake, TELEMETRY), rows)


def test_concurrent_sharded_rebuilds_of_one_day_leave_one_copy(tmp_path, messages):
    lake = landed(Lake(str(tmp_path / "lake")), messages)
    expected = landed(Lake(str(tmp_path / "expected")), messages)
    rebuild_silver(expected, TELEMETRY, DAY, RULES)
    errors = run_in_threads(
        lambda: rebuild_silver(lake, TELEMETRY, DAY, RULES, shard_messages=SMALL_SHARDS), 2, 120
    )

    assert errors == []
    assert_frame_equal(table_rows(lake, TELEMETRY), table_rows(expected, TELEMETRY))


def test_rollups_in_device_shards_write_the_same_tables_as_one_shard(tmp_path, messages):
    """Buckets belong to one device, so the rollups of device shards are the whole rollup,
    bit for bit (each bucket's rows are added in the same order either way), at every level."""
    whole = landed(Lake(str(tmp_path / "whole")), messages)
    sharded = landed(Lake(str(tmp_path / "sharded")), messages)
    for lake in (whole, sharded):
        rebuild_silver(lake, TELEMETRY, DAY, RULES)
    assert shard_count(whole.read(TELEMETRY).height, SMALL_SHARDS) > 4

    for level in (ROLLUP_1M, ROLLUP_1H, ROLLUP_1D):
        one = rebuild_rollup(whole, level, DAY)
        many = rebuild_rollup(sharded, level, DAY, shard_rows=SMALL_SHARDS // 4)
        assert one.rows == many.rows > 0, level.name
        assert_frame_equal(table_rows(sharded, level), table_rows(whole, level), check_exact=True)
    direct = rollup_1m(whole.read(TELEMETRY)).sort(*ROLLUP_1M.key_columns)
    assert_frame_equal(table_rows(whole, ROLLUP_1M), direct, check_exact=True)
    assert shard_count(whole.read(ROLLUP_1M).height, SMALL_SHARDS // 4) > 4  # 1h was sharded


def test_prefetched_keeps_order_raises_errors_and_stops_with_its_consumer():
    assert list(prefetched(iter(range(5)))) == [0, 1, 2, 3, 4]

    def failing():
        yield 1
        raise RuntimeError("shard 2 failed to decode")

    items = prefetched(failing())
    assert next(items) == 1
    with pytest.raises(RuntimeError, match="shard 2 failed to decode"):
        next(items)

    produced: list[int] = []

    def counting():
        for index in range(100):
            produced.append(index)
            yield index

    items = prefetched(counting())
    assert next(items) == 0
    items.close()  # the writer failed: the producer stops after the item in hand
    assert len(produced) <= 3  # the one taken, the one queued, the one being put
    assert not any(thread.name == "shard-prefetch" for thread in threading.enumerate())
