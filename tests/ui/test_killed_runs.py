"""A run whose worker died without a word is failed and run again at the next start.

Power lost, or SIGKILL to every process: nothing records the run's end. Left STARTED, it
would hold the instance's only run slot for good, so no run would follow it
(iot_lake/interrupted_runs.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from iot_lake.dagster_ui import GROUP_NAME, live_group_members
from tests.support import wait_until
from tests.ui.commands import STOP_BOUND_S
from tests.ui.restarts import retried_after_restart, runs_of, stopped_mid_run


@pytest.mark.slow
@pytest.mark.integration
def test_a_run_whose_worker_was_killed_outright_is_run_again_after_the_restart(
    tmp_path, process_groups
):
    # Power lost: every process of `iot-lake run` and of its dagster dev killed at once.
    dev_group = tmp_path / ".run" / "dagster" / GROUP_NAME

    def kill_everything(process: subprocess.Popen[bytes]) -> None:
        groups = (process.pid, int(dev_group.read_text()))
        for pgid in groups:
            os.killpg(pgid, signal.SIGKILL)
        process.wait(STOP_BOUND_S)
        wait_until(lambda: not any(map(live_group_members, groups)), 30, "the groups to end")

    def still_started(home: Path) -> list[dg.DagsterRun]:
        return runs_of(home, dg.DagsterRunStatus.STARTED)

    first = stopped_mid_run(tmp_path, process_groups, kill_everything, still_started)
    output = retried_after_restart(tmp_path, process_groups, first)
    assert f"failed to retry: {first.run_id}" in output
