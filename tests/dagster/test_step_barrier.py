"""The step barrier (assets/step_barrier.py) holds a silver step while its file exists (issue 29).

What the retry test (tests/ui/test_run_retries.py) relies on to stop `iot-lake run` mid-step:
the step says it is held in the run's event log, does no work while held, and rebuilds its
day as usual once the file is removed.
"""

from __future__ import annotations

import threading
from datetime import date

import dagster as dg
from polars.testing import assert_frame_equal

from assets.step_barrier import HELD_MESSAGE, STEP_BARRIER_ENV
from assets.telemetry import telemetry
from iot_lake.lake.catalog import TELEMETRY
from tests.dagster.test_silver_assets import decoded, materialize, table_rows
from tests.support import wait_until

DAY = "2026-11-01"


def held_messages(instance: dg.DagsterInstance) -> list[str]:
    return [
        entry.user_message
        for run in instance.get_runs()
        for entry in instance.all_logs(run.run_id)
        if HELD_MESSAGE in entry.user_message
    ]


def test_a_silver_step_waits_while_the_barrier_file_exists_issue_29(
    lake_resource, instance, tmp_path, monkeypatch
):
    barrier = tmp_path / "hold"
    barrier.touch()
    monkeypatch.setenv(STEP_BARRIER_ENV, str(barrier))
    results: list[dg.ExecuteInProcessResult] = []
    run = threading.Thread(
        target=lambda: results.append(materialize(lake_resource, instance, DAY, [telemetry]))
    )
    run.start()
    try:
        wait_until(lambda: held_messages(instance), 60, "the step to say it is held")
        assert run.is_alive()
        assert lake_resource.lake().open(TELEMETRY) is None  # held before any work
    finally:
        barrier.unlink()
        run.join(60)
    assert not run.is_alive(), "the step did not go on once the barrier file was removed"
    assert [result.success for result in results] == [True]
    lake = lake_resource.lake()
    day = date.fromisoformat(DAY)
    assert_frame_equal(table_rows(lake, TELEMETRY, day), decoded(lake, TELEMETRY, day))


def test_a_barrier_variable_naming_no_file_holds_nothing(
    lake_resource, instance, tmp_path, monkeypatch
):
    monkeypatch.setenv(STEP_BARRIER_ENV, str(tmp_path / "no-such-file"))
    materialize(lake_resource, instance, DAY, [telemetry])
    assert held_messages(instance) == []
    assert table_rows(lake_resource.lake(), TELEMETRY).height > 0
