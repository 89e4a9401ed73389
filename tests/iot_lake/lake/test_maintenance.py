"""lake.maintenance on real Delta tables: compaction, vacuum, log cleanup, raw retention."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from iot_lake.lake.catalog import DEVICE_STATE, RAW_TELEMETRY
from iot_lake.lake.changes import files_added_since, read_added
from iot_lake.lake.compaction import is_compaction
from iot_lake.lake.maintenance import maintain_table
from iot_lake.lake.retention import RetentionPolicy, effective_vacuum_retention_hours
from iot_lake.lake.tables import Lake
from streaming.batch import RawBatch
from streaming.landing import LandingWriter, Position
from tests.support import raw_rows, wait_until

TODAY = date(2026, 11, 23)
HOUR_MS = 3600 * 1000


def land_days(lake: Lake, days: list[date], commits_per_day: int, rows: int = 3) -> None:
    """Append `commits_per_day` small commits to each raw ingest day (a file each)."""
    position = 0
    for day in days:
        for _ in range(commits_per_day):
            lake.append(RAW_TELEMETRY, raw_rows(position, rows, day))
            position += rows


def state_rows(value: float, devices: int = 3) -> pa.Table:
    moment = datetime(2026, 11, 20, tzinfo=UTC)
    return pa.Table.from_pylist(
        [
            {
                "tenant_id": "acme",
                "device_id": f"d{i}",
                "metric": "temperature",
                "value": value,
                "event_time": moment,
                "ingest_time": moment,
                "message_id": f"m{i}",
            }
            for i in range(devices)
        ],
        schema=DEVICE_STATE.schema,
    )


def files_per_day(table: DeltaTable) -> dict[str, int]:
    actions = pa.table(table.get_add_actions(flatten=True))
    return dict(Counter(str(v) for v in actions.column("partition.ingest_date").to_pylist()))


def sorted_rows(table: DeltaTable) -> pl.DataFrame:
    return pl.read_delta(table).sort("source_position")


def age_tombstones(table_uri: str, version: int, hours: int) -> None:
    """Pretend commit `version` happened `hours` ago: move its removes' timestamps back.

    Vacuum decides by a remove action's deletionTimestamp, so this is how a test reaches a
    tombstone older than the retention without waiting for it.
    """
    path = Path(table_uri) / "_delta_log" / f"{version:020d}.json"
    actions = [json.loads(line) for line in path.read_text().splitlines() if line]
    for action in actions:
        if "remove" in action:
            action["remove"]["deletionTimestamp"] -= hours * HOUR_MS
        if "commitInfo" in action:
            action["commitInfo"]["timestamp"] -= hours * HOUR_MS
    path.write_text("".join(json.dumps(action) + "\n" for action in actions))


def age_log_files(table_uri: str, hours: int) -> None:
    """Pretend every log entry was written `hours` ago (log cleanup goes by file time)."""
    moment = (datetime.now(UTC) - timedelta(hours=hours)).timestamp()
    for path in (Path(table_uri) / "_delta_log").glob("*.json"):
        os.utime(path, (moment, moment))


def test_compaction_merges_closed_partitions_once_and_leaves_today_to_the_writer(lake):
    closed = [TODAY - timedelta(days=2), TODAY - timedelta(days=1)]
    land_days(lake, [*closed, TODAY], commits_per_day=5)
    table = lake.open(RAW_TELEMETRY)
    before = sorted_rows(table)

    report = maintain_table(
        table, RAW_TELEMETRY, RetentionPolicy(), dry_run=False, today=TODAY, storage_options={}
    )

    assert report.compacted_partitions == tuple(day.isoformat() for day in closed)
    assert files_per_day(lake.open(RAW_TELEMETRY)) == {
        closed[0].isoformat(): 1,
        closed[1].isoformat(): 1,
        TODAY.isoformat(): 5,
    }
    assert (report.files_before, report.files_after) == (15, 7)
    assert_frame_equal(sorted_rows(lake.open(RAW_TELEMETRY)), before)
    again = maintain_table(
        lake.open(RAW_TELEMETRY),
        RAW_TELEMETRY,
        RetentionPolicy(),
        dry_run=False,
        today=TODAY,
        storage_options={},
    )
    assert again.compacted_partitions == ()


def test_an_unpartitioned_table_is_compacted_whole(lake):
    for value in (1.0, 2.0, 3.0):
        lake.append(DEVICE_STATE, state_rows(value))
    before = pl.read_delta(lake.open(DEVICE_STATE)).sort("value", "device_id")

    report = maintain_table(
        lake.open(DEVICE_STATE),
        DEVICE_STATE,
        RetentionPolicy(),
        dry_run=False,
        today=TODAY,
        storage_options={},
    )

    assert (report.files_before, report.files_after) == (3, 1)
    after = pl.read_delta(lake.open(DEVICE_STATE)).sort("value", "device_id")
    assert_frame_equal(after, before)


def test_vacuum_removes_only_tombstones_older_than_the_retention(lake):
    uri = lake.table_uri(DEVICE_STATE)
    lake.append(DEVICE_STATE, state_rows(1.0))
    lake.replace_partition(DEVICE_STATE, state_rows(2.0), "true")  # tombstones the 1.0 file
    rewritten_long_ago = lake.open(DEVICE_STATE).version()
    age_tombstones(uri, rewritten_long_ago, hours=72)
    reader = DeltaTable(uri, version=rewritten_long_ago)  # a query that opened 2.0 just now
    lake.replace_partition(DEVICE_STATE, state_rows(3.0), "true")  # tombstones it, now

    report = maintain_table(
        lake.open(DEVICE_STATE),
        DEVICE_STATE,
        RetentionPolicy(vacuum_retention_hours=48),
        dry_run=False,
        today=TODAY,
        storage_options={},
    )

    assert report.vacuum_retention_hours == 48
    assert report.files_vacuumed == 1
    assert report.bytes_vacuumed > 0
    assert pl.read_delta(reader).get_column("value").to_list() == [2.0, 2.0, 2.0]
    with pytest.raises(FileNotFoundError):  # the version before the old rewrite is gone
        DeltaTable(uri, version=rewritten_long_ago - 1).to_pyarrow_table()


def test_vacuum_retention_is_raised_to_the_table_log_retention(tmp_path):
    lake = Lake(str(tmp_path / "lake"), log_retention_hours=96)
    uri = lake.table_uri(DEVICE_STATE)
    lake.append(DEVICE_STATE, state_rows(1.0))
    lake.replace_partition(DEVICE_STATE, state_rows(2.0), "true")
    age_tombstones(uri, lake.open(DEVICE_STATE).version(), hours=72)
    table = lake.open(DEVICE_STATE)

    assert effective_vacuum_retention_hours(table, 48) == 96
    report = maintain_table(
        table,
        DEVICE_STATE,
        RetentionPolicy(vacuum_retention_hours=48),
        dry_run=False,
        today=TODAY,
        storage_options={},
    )

    assert (report.vacuum_retention_hours, report.files_vacuumed) == (96, 0)
    assert DeltaTable(uri, version=1).to_pyarrow_table().num_rows == 3


@pytest.mark.parametrize(
    ("keep_days", "deleted"),
    [
        pytest.param(None, [], id="keep-forever-by-default"),
        pytest.param(10, [12, 11], id="older-than-10-days"),
        pytest.param(0, [12, 11, 10, 9, 1], id="everything-before-today"),
    ],
)
def test_raw_retention_deletes_exactly_the_old_partitions(lake, keep_days, deleted):
    ages = [12, 11, 10, 9, 1, 0]
    land_days(lake, [TODAY - timedelta(days=age) for age in ages], commits_per_day=2)
    before = sorted_rows(lake.open(RAW_TELEMETRY))
    policy = RetentionPolicy(raw_retention_days=keep_days)

    report = maintain_table(
        lake.open(RAW_TELEMETRY),
        RAW_TELEMETRY,
        policy,
        dry_run=False,
        today=TODAY,
        storage_options={},
    )

    expired = sorted((TODAY - timedelta(days=age)).isoformat() for age in deleted)
    assert list(report.expired_partitions) == expired
    kept = before.filter(~pl.col("ingest_date").cast(pl.String).is_in(expired))
    assert_frame_equal(sorted_rows(lake.open(RAW_TELEMETRY)), kept)


def test_a_dry_run_reports_and_changes_nothing(lake):
    land_days(lake, [TODAY - timedelta(days=20), TODAY - timedelta(days=1)], commits_per_day=3)
    table = lake.open(RAW_TELEMETRY)
    version = table.version()

    report = maintain_table(
        table,
        RAW_TELEMETRY,
        RetentionPolicy(raw_retention_days=10),
        dry_run=True,
        today=TODAY,
        storage_options={},
    )

    assert report.expired_partitions == ((TODAY - timedelta(days=20)).isoformat(),)
    assert report.compacted_partitions == ((TODAY - timedelta(days=1)).isoformat(),)
    assert lake.open(RAW_TELEMETRY).version() == version
    assert report.files_after == report.files_before == 6


def test_a_landing_writer_racing_maintenance_loses_no_commit(lake):
    """The consumer keeps committing to a closed day being compacted and to today, while
    maintenance compacts, deletes expired raw and vacuums: every batch lands exactly once."""
    yesterday = TODAY - timedelta(days=1)
    land_days(lake, [TODAY - timedelta(days=30), yesterday], commits_per_day=6)
    writer = LandingWriter(lake, "racer")
    landed: list[int] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def consume() -> None:
        version = 0
        while not stop.is_set():
            version += 1
            day = yesterday if version % 2 else TODAY
            batch = RawBatch("race", "racer", 64 * 1024)
            start = datetime(day.year, day.month, day.day, 23, tzinfo=UTC)
            ingest = int(start.timestamp() * 1_000_000) + version
            batch.extend(["t/race"] * 5, [b"{}"] * 5, ingest, [f"{version}:{i}" for i in range(5)])
            try:
                writer.commit(batch, [Position("race", version)])
            except BaseException as exc:
                failures.append(exc)
                return
            landed.append(version)

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        wait_until(lambda: len(landed) >= 3, 30, "the writer's first commits")
        policy = RetentionPolicy(raw_retention_days=10)
        for _ in range(3):
            table = lake.open(RAW_TELEMETRY)
            maintain_table(
                table, RAW_TELEMETRY, policy, dry_run=False, today=TODAY, storage_options={}
            )
        after_maintenance = len(landed)
        wait_until(lambda: len(landed) >= after_maintenance + 3, 30, "commits after maintenance")
    finally:
        stop.set()
        thread.join(timeout=60)

    assert failures == []
    table = lake.open(RAW_TELEMETRY)
    assert table.transaction_version("race") == landed[-1] == len(landed)
    race = pl.read_delta(table).filter(pl.col("source") == "race")
    positions = race.get_column("source_position").to_list()
    assert sorted(positions) == sorted(f"{v}:{i}" for v in landed for i in range(5))
    operations = [
        "COMPACTION" if is_compaction(commit) else commit["operation"]
        for commit in reversed(table.history())
    ]
    assert {"DELETE", "COMPACTION"} <= set(operations)
    first_maintenance = min(operations.index("DELETE"), operations.index("COMPACTION"))
    assert "WRITE" in operations[first_maintenance:]  # the writer kept committing in between


@pytest.mark.parametrize("behind", [1, 4], ids=["cursor-just-before-checkpoint", "older"])
def test_a_cursor_whose_log_was_cleaned_falls_back_to_a_rescan(lake, behind):
    land_days(lake, [TODAY - timedelta(days=1), TODAY], commits_per_day=3)
    age_log_files(lake.table_uri(RAW_TELEMETRY), hours=72)  # older than the 48 h retention

    report = maintain_table(
        lake.open(RAW_TELEMETRY),
        RAW_TELEMETRY,
        RetentionPolicy(),
        dry_run=False,
        today=TODAY,
        storage_options={},
    )
    # The log now starts at the checkpoint of the compaction's commit: a cursor one before
    # it has every later commit in the log, yet its own snapshot cannot be loaded.
    added = files_added_since(lake, RAW_TELEMETRY, report.version_after - behind)

    assert report.compacted_partitions == ((TODAY - timedelta(days=1)).isoformat(),)
    assert added.after_version is None
    assert added.rescan_reason is not None
    rows = read_added(lake, RAW_TELEMETRY, added, ["source_position"])
    assert rows.height == 18  # every row of the table, read from the compacted files
