"""iot_lake.lake.changes: which files hold the rows commits added after a version."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from iot_lake.lake import compaction
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.changes import files_added_since, read_added
from tests.support import raw_rows


def positions(lake, added) -> list[int]:
    frame = read_added(lake, RAW_TELEMETRY, added, ["source_position"])
    return sorted(frame.get_column("source_position").cast(pl.Int64).to_list())


def compact(lake) -> None:
    """What the consumer and the maintenance job do to raw (iot_lake.lake.compaction)."""
    table = lake.open(RAW_TELEMETRY)
    for partition, bins in compaction.plan(table, RAW_TELEMETRY, 16 * 1024 * 1024).items():
        assert compaction.compact_partition(table, RAW_TELEMETRY, {}, partition, bins)


def test_only_rows_of_later_commits_are_listed(lake):
    lake.append(RAW_TELEMETRY, raw_rows(0, 3))
    cursor = lake.open(RAW_TELEMETRY).version()
    lake.append(RAW_TELEMETRY, raw_rows(3, 2))
    lake.append(RAW_TELEMETRY, raw_rows(5, 2, day=date(2026, 11, 2)))

    added = files_added_since(lake, RAW_TELEMETRY, cursor)

    assert (added.after_version, added.to_version) == (cursor, cursor + 2)
    assert added.versions == f"{cursor + 1}..{cursor + 2}"
    assert positions(lake, added) == [3, 4, 5, 6]


def test_nothing_after_the_latest_version(lake):
    lake.append(RAW_TELEMETRY, raw_rows(0, 3))
    latest = lake.open(RAW_TELEMETRY).version()

    added = files_added_since(lake, RAW_TELEMETRY, latest)

    assert added.paths == frozenset()
    assert positions(lake, added) == []


def test_compaction_of_old_files_adds_nothing(lake):
    lake.append(RAW_TELEMETRY, raw_rows(0, 2))
    lake.append(RAW_TELEMETRY, raw_rows(2, 2))
    cursor = lake.open(RAW_TELEMETRY).version()
    compact(lake)

    added = files_added_since(lake, RAW_TELEMETRY, cursor)

    assert added.to_version == cursor + 1
    assert positions(lake, added) == []


def test_compaction_that_swallowed_new_rows_lists_the_compacted_file(lake):
    lake.append(RAW_TELEMETRY, raw_rows(0, 2))
    cursor = lake.open(RAW_TELEMETRY).version()
    lake.append(RAW_TELEMETRY, raw_rows(2, 2))
    compact(lake)
    lake.append(RAW_TELEMETRY, raw_rows(4, 1, day=date(2026, 11, 2)))

    added = files_added_since(lake, RAW_TELEMETRY, cursor)

    # The compacted file holds rows 0-1 too: read again, never missed.
    assert positions(lake, added) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("cursor", "reason"),
    [(None, "no cursor"), (99, "past the table's latest")],
    ids=["no-cursor", "cursor-past-latest"],
)
def test_without_a_usable_cursor_every_file_is_listed(lake, cursor, reason):
    lake.append(RAW_TELEMETRY, raw_rows(0, 2))
    lake.append(RAW_TELEMETRY, raw_rows(2, 1))

    added = files_added_since(lake, RAW_TELEMETRY, cursor)

    assert added.after_version is None
    assert reason in added.rescan_reason
    assert positions(lake, added) == [0, 1, 2]
