"""dbt_project/ built by dbt itself over a real lake: the marts agree with the silver tables.

Two simulated days of 20 devices (the Dagster tests' fleet) are landed, decoded and rolled
up with the same functions the assets run; `dbt build` then runs in its own process,
reading the lake through the catalog plugin (iot_lake/lake/dbt_plugin.py), and every mart row is
compared with the same figure computed straight from silver with polars.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import polars as pl
import pytest
import yaml
from dagster_dbt import DbtProject
from dbt.adapters.duckdb.utils import SourceConfig
from polars.testing import assert_frame_equal

from assets.marts import (
    DBT_EXECUTABLE,
    DBT_PROJECT_DIR,
    dbt_marts,
    ensure_manifest,
)
from iot_lake.definitions import resources_with_lake
from iot_lake.gold.rebuild import rebuild_rollup
from iot_lake.ingest.wire import topic_for
from iot_lake.lake.catalog import (
    CATALOG,
    DEVICE_EVENTS,
    DEVICE_REGISTRY,
    ROLLUP_1D,
    ROLLUP_1H,
    ROLLUP_1M,
    TELEMETRY,
)
from iot_lake.lake.dbt_plugin import Plugin
from iot_lake.lake.partitions import EventWindow
from iot_lake.lake.tables import Lake
from iot_lake.silver.rebuild import rebuild_silver
from iot_lake.silver.rules import SilverRules
from iot_lake.state.shadow_update import update_shadow_table
from resources.lake import LakeResource
from streaming.simulator.fleet import SimMessage
from tests.dagster.conftest import land, micros, simulated_days

DAYS = EventWindow(date(2026, 11, 1), date(2026, 11, 3))
RULES = SilverRules(skew_tolerance=timedelta(seconds=300), max_lateness=timedelta(days=7))

pytestmark = pytest.mark.slow


def crash_reports(device: str, count: int, first: datetime) -> list[SimMessage]:
    """Crash events a minute apart (the fleet's healthy firmware crashes rarely)."""
    messages = []
    for index in range(count):
        ms = micros(first + timedelta(minutes=index)) // 1000
        body = {"device_id": device, "message_id": f"{device}-crash-{index}", "ts": ms}
        body |= {"event": "crash", "code": "watchdog_reset"}
        topic = topic_for("acme", device, "events")
        messages.append(SimMessage(topic, orjson.dumps(body), ms, "events"))
    return messages


@pytest.fixture(scope="module")
def built_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """Two landed days through silver, the three rollups and the registry."""
    lake = Lake(str(tmp_path_factory.mktemp("dbt") / "lake"))
    day_1, day_2 = simulated_days()
    land(lake, day_1, 1)
    land(lake, day_2, 2)
    land(lake, crash_reports("env-000000", 3, datetime(2026, 11, 2, 9, tzinfo=UTC)), 3)
    for silver in (TELEMETRY, DEVICE_EVENTS):
        rebuild_silver(lake, silver, DAYS, RULES)
    for level in (ROLLUP_1M, ROLLUP_1H, ROLLUP_1D):
        rebuild_rollup(lake, level, DAYS)
    update_shadow_table(lake, DEVICE_REGISTRY)
    return lake


def dbt_build(lake_root: str, work: Path) -> subprocess.CompletedProcess[str]:
    """`dbt build` of dbt_project/ as the README runs it, its outputs under `work`."""
    env = {
        **os.environ,
        "IOT_LAKE_ROOT": lake_root,
        "IOT_LAKE_DBT_DATABASE": str(work / "marts.duckdb"),
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
    }
    command = [
        DBT_EXECUTABLE,
        "build",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def marts(built_lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    work = tmp_path_factory.mktemp("dbt-run")
    run = dbt_build(built_lake.root, work)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "WARN=0 ERROR=0 SKIP=0" in run.stdout, run.stdout
    return duckdb.connect(str(work / "marts.duckdb"), read_only=True)


def test_sources_are_the_catalog() -> None:
    sources = yaml.safe_load((DBT_PROJECT_DIR / "models" / "sources.yml").read_text())["sources"]
    assert [source["meta"]["plugin"] for source in sources] == ["lake"]
    assert [table["name"] for table in sources[0]["tables"]] == list(CATALOG)


def test_fleet_metric_daily_equals_the_readings(
    built_lake: Lake, marts: duckdb.DuckDBPyConnection
) -> None:
    mart = marts.sql("SELECT * FROM fleet_metric_daily").pl()
    readings = built_lake.read(TELEMETRY)
    expected = readings.group_by("tenant_id", "metric", "unit", "event_date").agg(
        devices=pl.col("device_id").n_unique().cast(pl.Int64),
        readings=pl.len().cast(pl.Int64),
        mean=pl.col("value").mean(),
        stddev=pl.col("value").std(),
        min=pl.col("value").min(),
        max=pl.col("value").max(),
    )
    key = ["tenant_id", "metric", "unit", "day"]
    expected = expected.rename({"event_date": "day"}).sort(key, nulls_last=True)
    mart = mart.select(expected.columns).sort(key, nulls_last=True)
    assert mart.height == expected.height > 0
    assert mart.get_column("metric").n_unique() > 5  # several device types' metrics
    # Counts, minima and maxima are exact; mean and spread up to float rounding.
    assert_frame_equal(mart, expected, check_dtypes=False, rel_tol=1e-9, abs_tol=1e-9)


def test_device_daily_health_counts_the_events(
    built_lake: Lake, marts: duckdb.DuckDBPyConnection
) -> None:
    mart = marts.sql("SELECT * FROM device_daily_health").pl()
    events = built_lake.read(DEVICE_EVENTS)
    kind = pl.col("event_type")
    expected = events.group_by("tenant_id", "device_id", "event_date").agg(
        boots=(kind == "boot").sum(),
        crashes=(kind == "crash").sum(),
        heartbeats=(kind == "heartbeat").sum(),
        offline_reports=((kind == "status") & (pl.col("status") == "offline")).sum(),
    )
    key = ["tenant_id", "device_id", "day"]
    expected = expected.rename({"event_date": "day"}).sort(key)
    assert_frame_equal(mart.select(expected.columns).sort(key), expected, check_dtypes=False)
    assert mart.get_column("boots").sum() > 0
    assert mart.get_column("crashes").sum() == 3
    key = ["tenant_id", "device_id"]
    registry = built_lake.read(DEVICE_REGISTRY).select(*key, "device_type", "fleet")
    described = mart.select(*key, "device_type", "fleet").unique().sort(key)
    assert_frame_equal(
        described, registry.join(described.select(key), on=key).sort(key), check_dtypes=False
    )
    assert described.get_column("fleet").null_count() == 0


def source(name: str) -> SourceConfig:
    """What dbt-duckdb hands the plugin for `source('lake', name)`."""
    return SourceConfig("lake", name, "lake", None, meta={}, tags=[])


def test_a_table_not_created_yet_reads_empty_and_an_unknown_one_is_refused(
    built_lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOT_LAKE_ROOT", str(tmp_path / "empty-lake"))
    empty = Plugin(name="lake", plugin_config={}).load(source("rollup_1d"))
    assert empty.schema == ROLLUP_1D.schema
    assert empty.count_rows() == 0
    monkeypatch.setenv("IOT_LAKE_ROOT", built_lake.root)
    plugin = Plugin(name="lake", plugin_config={})
    assert plugin.load(source("rollup_1d")).count_rows() == built_lake.read(ROLLUP_1D).height
    with pytest.raises(KeyError, match="unknown table 'rollups_1d'; the catalog has: "):
        plugin.load(source("rollups_1d"))


def test_dbt_build_fails_when_a_mart_check_fails(built_lake: Lake, tmp_path: Path) -> None:
    """A dbt test that finds contradictory rows fails the build (a minimum above the maximum)."""
    copy = tmp_path / "lake"
    shutil.copytree(built_lake.root, copy)
    lake = Lake(str(copy))
    rows = lake.read(ROLLUP_1D).with_columns(min=pl.col("max") + 1)
    version = lake.ensure_table(ROLLUP_1D).version()
    lake.overwrite_partitions(
        ROLLUP_1D, [rows], DAYS.partition_filters("bucket_date"), read_version=version
    )
    run = dbt_build(str(copy), tmp_path / "dbt")
    assert run.returncode != 0
    assert re.search(r"FAIL \d+ fleet_metric_daily_bounds", run.stdout), run.stdout


def test_dagster_builds_the_marts_with_their_dbt_tests_as_checks(
    built_lake: Lake,
    marts: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The marts as the code location runs them: downstream of the tables dbt reads, built
    from the lake resource's lake even where the environment names another one."""
    resources = resources_with_lake(LakeResource(root=built_lake.root))
    graph = dg.Definitions(assets=[dbt_marts], resources=resources).resolve_asset_graph()
    parents = {
        key.to_user_string(): {parent.to_user_string() for parent in graph.get(key).parent_keys}
        for key in dbt_marts.keys
    }
    assert parents == {
        "fleet_metric_daily": {ROLLUP_1D.name},
        "device_daily_health": {DEVICE_EVENTS.name, DEVICE_REGISTRY.name},
    }
    monkeypatch.setenv("IOT_LAKE_ROOT", str(tmp_path / "another-lake"))
    database = tmp_path / "marts.duckdb"
    monkeypatch.setenv("IOT_LAKE_DBT_DATABASE", str(database))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))  # the run's artifacts
    result = dg.materialize(
        [dbt_marts], resources=resources, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    assert materialized == set(dbt_marts.keys)
    checks = result.get_asset_check_evaluations()
    assert {check.asset_check_key for check in checks} == set(dbt_marts.check_keys)
    assert len(checks) >= 10
    assert all(check.passed for check in checks)
    built = duckdb.connect(str(database), read_only=True)
    for mart in ("fleet_metric_daily", "device_daily_health"):
        order = "ORDER BY ALL"
        assert_frame_equal(
            built.sql(f"SELECT * FROM {mart} {order}").pl(),
            marts.sql(f"SELECT * FROM {mart} {order}").pl(),
        )


def test_the_manifest_is_parsed_when_missing_or_older_than_a_model(tmp_path: Path) -> None:
    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    project = DbtProject(project_dir=copy, profiles_dir=copy)

    manifest = ensure_manifest(project)  # a fresh checkout: none yet
    assert "model.iot_lake.fleet_metric_daily" in orjson.loads(manifest.read_bytes())["nodes"]
    parsed = manifest.stat().st_mtime_ns
    assert ensure_manifest(project).stat().st_mtime_ns == parsed  # up to date: kept

    model = copy / "models" / "marts" / "fleet_metric_daily.sql"
    later = manifest.stat().st_mtime + 5
    os.utime(model, (later, later))  # the model edited after the parse
    assert ensure_manifest(project).stat().st_mtime_ns > parsed
