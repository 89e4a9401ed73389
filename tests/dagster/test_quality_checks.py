"""Quality checks on a real instance: clean days pass, bad data fails its check and blocks gold."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import orjson
import polars as pl

from assets.checks import FRESHNESS, rollup_1m_quality, telemetry_freshness, telemetry_quality
from assets.rollups import rollup_1m
from assets.telemetry import telemetry
from iot_lake.definitions import defs, resources_with_lake
from iot_lake.ingest.wire import topic_for
from iot_lake.lake.catalog import ROLLUP_1M, TELEMETRY
from iot_lake.quality.checks import KEYS_UNIQUE, VALUES_IN_RANGE
from iot_lake.silver.metrics import metric_ranges
from streaming.simulator.fleet import SimMessage
from tests.dagster.conftest import DAY_1, land, micros

DAY = "2026-11-01"
HOT = 500.0  # degC: far outside temperature's catalog range of [-60, 100]


def hot_readings(devices: int, per_device: int, start: datetime) -> list[SimMessage]:
    """Environment sensors whose temperature probe broke: 500 degC, humidity still fine."""
    messages = []
    for device_index in range(devices):
        device = f"env-hot-{device_index:02d}"
        for index in range(per_device):
            ts = micros(start + timedelta(minutes=10 * index)) // 1000
            body = {
                "device_id": device,
                "message_id": f"{device}-{index}",
                "ts": ts,
                "type": "env_sensor",
                "fw": "1.4.2",
                "metrics": {"temperature": HOT, "humidity": 40.0},
                "units": {"temperature": "degC", "humidity": "pct"},
            }
            topic = topic_for("acme", device, "telemetry")
            messages.append(SimMessage(topic, orjson.dumps(body), ts, "telemetry"))
    return messages


def out_of_range(frame: pl.DataFrame) -> pl.DataFrame:
    """The oracle: canonical-unit readings outside their metric's range, by plain polars."""
    ranges = metric_ranges()
    return frame.join(ranges, on=["metric", "unit"]).filter(
        (pl.col("value") < pl.col("minimum")) | (pl.col("value") > pl.col("maximum"))
    )


def evaluations(
    result: dg.ExecuteInProcessResult, asset: str
) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key.path == [asset]
    }


def steps(result: dg.ExecuteInProcessResult, event_type: str) -> list[str | None]:
    return [e.step_key for e in result.all_events if e.event_type_value == event_type]


def test_clean_days_pass_every_blocking_check_in_the_sensors_job(lake_resource, instance):
    # The code location's own checks and job, as raw_landing_sensor's runs execute them.
    definitions = dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        resources=resources_with_lake(lake_resource),
    )
    selection = [dg.AssetKey(name) for name in ("telemetry", "rollup_1m", "rollup_1h", "rollup_1d")]

    run = definitions.resolve_job_def("event_day_job").execute_in_process(
        instance=instance, partition_key=DAY, asset_selection=selection
    )

    assert run.success
    checks = run.get_asset_check_evaluations()
    blocking = [e for e in checks if e.blocking]
    assert {(e.asset_key.path[0], e.check_name) for e in blocking} == {
        ("telemetry", "keys_not_null"),
        ("telemetry", "keys_unique"),
        ("telemetry", "values_in_range"),
        ("rollup_1m", "keys_not_null"),
        ("rollup_1m", "keys_unique"),
        ("rollup_1m", "values_in_range"),
        ("rollup_1h", "keys_not_null"),
        ("rollup_1h", "keys_unique"),
        ("rollup_1d", "keys_not_null"),
        ("rollup_1d", "keys_unique"),
    }
    assert all(e.passed for e in blocking)
    assert {e.partition for e in checks} == {DAY}
    assert {e.severity for e in blocking} == {dg.AssetCheckSeverity.ERROR}
    lake = lake_resource.lake()
    day_rows = lake.read(TELEMETRY).filter(pl.col("event_date") == DAY_1.date())
    in_range = evaluations(run, "telemetry")[VALUES_IN_RANGE].metadata
    assert in_range["rows_validated"].value == day_rows.height
    # The simulator's rare spikes: out of range, yet few enough to pass; and reported.
    assert in_range["unexpected_count"].value == out_of_range(day_rows).height
    fresh = evaluations(run, "telemetry")[FRESHNESS]
    assert not fresh.blocking
    assert fresh.severity == dg.AssetCheckSeverity.WARN
    assert fresh.passed
    assert fresh.metadata["lag_minutes"].value <= 10  # the fleet reports every 10 minutes


def test_out_of_range_readings_fail_the_check_and_block_rollup_1m(lake_resource, instance):
    lake = lake_resource.lake()
    hot = hot_readings(devices=10, per_device=12, start=DAY_1 + timedelta(hours=12))
    land(lake, hot, 3, ingest_at=DAY_1 + timedelta(hours=22))

    result = dg.materialize(
        [telemetry, rollup_1m, telemetry_quality, rollup_1m_quality, telemetry_freshness],
        partition_key=DAY,
        resources={"lake": lake_resource},
        instance=instance,
        raise_on_error=False,
    )

    assert not result.success
    day_rows = lake.read(TELEMETRY).filter(pl.col("event_date") == DAY_1.date())
    injected = day_rows.filter(pl.col("device_id").str.starts_with("env-hot-"))
    assert injected.filter(pl.col("metric") == "temperature")["value"].to_list() == [HOT] * 120
    checks = evaluations(result, "telemetry")
    in_range = checks[VALUES_IN_RANGE]
    assert not in_range.passed
    assert in_range.severity == dg.AssetCheckSeverity.ERROR
    assert in_range.partition == DAY
    # The 120 broken readings plus the simulator's own rare spikes, counted independently.
    expected = out_of_range(day_rows).height
    assert expected >= 120
    assert in_range.metadata["unexpected_count"].value == expected
    assert "value of temperature in [-60, 100] degC: 120 of" in in_range.description
    example = in_range.metadata["unexpected_examples"].value[0]
    assert example["device_id"].startswith("env-hot-")
    assert example["value"] == HOT
    assert checks[KEYS_UNIQUE].passed
    assert checks["keys_not_null"].passed
    # Blocked: the check's step failed, rollup_1m never started, its table has nothing new.
    assert steps(result, "STEP_FAILURE") == ["telemetry_quality"]
    assert "rollup_1m" not in steps(result, "STEP_START")
    assert result.asset_materializations_for_node(ROLLUP_1M.name) == []
    assert [e.asset_key.path for e in result.get_asset_materialization_events()] == [["telemetry"]]
    assert evaluations(result, "rollup_1m") == {}
    assert lake.read(ROLLUP_1M).filter(pl.col("bucket_date") == DAY_1.date()).is_empty()


def test_duplicated_keys_from_a_broken_writer_block_rollup_1m(lake_resource, instance):
    lake = lake_resource.lake()
    dg.materialize(
        [telemetry], partition_key=DAY, resources={"lake": lake_resource}, instance=instance
    )
    # Silver deduplicates by (device_id, message_id), so the real path cannot double a key:
    # a writer bypassing it (an append where an overwrite belonged) is simulated directly.
    # Nulls cannot be simulated this way: Delta refuses them in the key columns (not null).
    day_rows = lake.read(TELEMETRY).filter(pl.col("event_date") == DAY_1.date())
    doubled = day_rows.filter(pl.col("device_id") == day_rows["device_id"][0]).head(6)
    lake.append(TELEMETRY, doubled.to_arrow().cast(TELEMETRY.schema))

    # Re-check telemetry without rebuilding it (which would overwrite the duplicates away),
    # then rollup_1m in the same run, as one would from the UI.
    result = dg.materialize(
        [telemetry, rollup_1m, telemetry_quality, rollup_1m_quality],
        selection=dg.AssetSelection.checks_for_assets(TELEMETRY.name)
        | dg.AssetSelection.assets(ROLLUP_1M.name),
        partition_key=DAY,
        resources={"lake": lake_resource},
        instance=instance,
        raise_on_error=False,
    )

    assert not result.success
    unique = evaluations(result, "telemetry")[KEYS_UNIQUE]
    assert not unique.passed
    assert unique.metadata["unexpected_count"].value == 12  # both copies of six readings
    examples = unique.metadata["unexpected_examples"].value
    assert {e["device_id"] for e in examples} == {doubled["device_id"][0]}
    assert evaluations(result, "telemetry")[VALUES_IN_RANGE].passed
    assert steps(result, "STEP_FAILURE") == ["telemetry_quality"]
    assert "rollup_1m" not in steps(result, "STEP_START")
    assert result.get_asset_materialization_events() == []  # telemetry was not rebuilt
