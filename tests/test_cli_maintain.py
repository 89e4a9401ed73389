"""`iot-lake maintain`: what the nightly job does, for operators, and its refusals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from iot_lake.app.cli import main
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.tables import Lake


def land_small_commits(lake: Lake, day: date, commits: int) -> None:
    moment = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    for index in range(commits):
        row = {
            "ingest_time": moment,
            "ingest_date": day,
            "source": "test",
            "source_position": str(index),
            "consumer_id": "test",
            "payload": "{}",
            "payload_encoding": "utf-8",
            "payload_bytes": 2,
        }
        lake.append(RAW_TELEMETRY, pa.Table.from_pylist([row], schema=RAW_TELEMETRY.schema))


@pytest.fixture
def lake_with_small_files(tmp_path) -> Lake:
    lake = Lake(str(tmp_path / "lake"))
    land_small_commits(lake, datetime.now(UTC).date() - timedelta(days=1), commits=4)
    return lake


def test_dry_run_reports_and_changes_nothing(lake_with_small_files, capsys):
    version = lake_with_small_files.open(RAW_TELEMETRY).version()

    code = main(["maintain", "--dry-run", "--lake-root", lake_with_small_files.root])

    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("raw_telemetry:")
    assert "would compact 1 partition(s)" in out
    assert lake_with_small_files.open(RAW_TELEMETRY).version() == version


def test_maintain_one_table_compacts_it(lake_with_small_files, capsys):
    code = main(["maintain", "--table", "raw_telemetry", "--lake-root", lake_with_small_files.root])

    assert code == 0
    assert "files 4->1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param(
            ["--table", "raw"], {}, "--table: expected one of raw_telemetry", id="unknown-table"
        ),
        pytest.param(
            [],
            {"IOT_LAKE_RAW_RETENTION_DAYS": "2"},
            "IOT_LAKE_RAW_RETENTION_DAYS: expected a whole number of days, at least 9",
            id="raw-retention-too-short",
        ),
    ],
)
def test_bad_input_exits_2_naming_the_field(
    lake_with_small_files, capsys, monkeypatch, args, env, message
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    version = lake_with_small_files.open(RAW_TELEMETRY).version()

    code = main(["maintain", *args, "--lake-root", lake_with_small_files.root])

    assert code == 2
    assert message in capsys.readouterr().err
    assert lake_with_small_files.open(RAW_TELEMETRY).version() == version
