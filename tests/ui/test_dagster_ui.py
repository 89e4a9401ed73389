"""The Dagster UI of `iot-lake run` in headless Chromium: the graph, and a run nobody clicked.

Raw data lands in a temporary lake; `dagster dev` starts on it as `iot-lake run` starts it
(iot_lake.app.dagster_ui.DagsterDev). Its daemon's raw_landing_sensor must launch a run for the
landed day with no click and that run must succeed; then the browser must show the asset
graph and the run, and on the way out no process of the group may be left.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from iot_lake.app.dagster_ui import (
    CODE_LOCATION_MODULE,
    DagsterDev,
    lake_environment,
    live_group_members,
)
from iot_lake.lake.tables import Lake
from iot_lake.settings import Settings
from tests.dagster.conftest import land, simulated_days
from tests.support import free_port, wait_until
from tests.ui.conftest import screenshot_on_failure

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SENSOR = "raw_landing_sensor"
RUNS_QUERY = """
{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def graphql(url: str, query: str) -> dict[str, Any]:
    """One query against the webserver's GraphQL endpoint, the API the UI itself uses."""
    request = urllib.request.Request(
        f"{url}/graphql",
        json.dumps({"query": query}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def sensor_runs(url: str) -> list[dict[str, Any]]:
    """Runs the raw landing sensor launched, newest first."""
    runs = graphql(url, RUNS_QUERY)["runsOrError"]["results"]
    return [run for run in runs if {"key": "dagster/sensor_name", "value": SENSOR} in run["tags"]]


def finished_sensor_run(url: str) -> dict[str, Any] | None:
    """The sensor's first run once it has finished, else None."""
    runs = sensor_runs(url)
    return runs[-1] if runs and runs[-1]["status"] in FINISHED else None


def test_ui_shows_the_graph_and_a_run_the_sensor_launched(tmp_path: Path, page: Page, capsys):
    lake_root = tmp_path / "lake"
    day_1, _ = simulated_days()
    land(Lake(str(lake_root)), day_1, version=1)
    ui = DagsterDev(
        tmp_path / "dagster", free_port(), lake_environment(Settings(lake_root=str(lake_root)))
    ).start()
    timings: dict[str, float] = {}
    try:
        timings["UI ready"] = ui.wait_until_ready(timeout_s=120)
        started = time.monotonic()
        run = wait_until(
            lambda: finished_sensor_run(ui.url), 300, f"a {SENSOR} run to finish", interval_s=1
        )
        timings["sensor run finished"] = time.monotonic() - started
        assert run["status"] == "SUCCESS", f"{run}\n{ui.log_tail()}"
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        assert tags["dagster/partition"] == "2026-11-01"

        with screenshot_on_failure(page, tmp_path / "failure.png"):
            page.goto(f"{ui.url}/locations/{CODE_LOCATION_MODULE}/asset-groups/silver")
            for asset in ("raw_telemetry", "telemetry", "device_events", "rollup_1m"):
                expect(page.get_by_text(asset, exact=True).first).to_be_visible()

            page.goto(f"{ui.url}/runs")
            row = page.locator("[data-index]", has_text=run["runId"][:8])
            expect(row).to_contain_text(SENSOR)
            expect(row).to_contain_text("Success")

            page.goto(f"{ui.url}/runs/{run['runId']}")
            expect(page.get_by_text(f"Launched by {SENSOR}")).to_be_visible()
            page.get_by_placeholder("Filter…").fill("type:ASSET_MATERIALIZATION")
            for asset in ("telemetry", "rollup_1m"):
                expect(page.get_by_text(f"Materialized value {asset}.")).to_be_visible()
    finally:
        pgid = ui.process.pid if ui.process else None
        timings["stop"] = ui.stop()
    assert pgid is not None
    assert live_group_members(pgid) == []
    with capsys.disabled():
        print("\n" + ", ".join(f"{what} {seconds:.1f} s" for what, seconds in timings.items()))
