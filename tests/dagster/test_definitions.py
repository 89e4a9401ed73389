"""The code location loads: in process, and through the `dagster` CLI as a deployment does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from iot_lake.definitions import defs

REPO = Path(__file__).resolve().parents[2]


def test_definitions_hold_the_silver_and_gold_assets_sensor_and_lake():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == {
        "raw_telemetry",
        "telemetry",
        "device_events",
        "late_data_ledger",
        "rollup_1m",
        "rollup_1h",
        "rollup_1d",
        "device_baselines",
        "device_registry",
        "device_state",
        "fleet_metric_daily",
        "device_daily_health",
    }
    assert defs.resolve_sensor_def("raw_landing_sensor").job_name == "event_day_job"


@pytest.mark.slow
def test_dagster_cli_validates_the_workspace(tmp_path):
    dagster = Path(sys.executable).with_name("dagster")
    completed = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env={"PATH": str(dagster.parent), "DAGSTER_HOME": str(tmp_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
