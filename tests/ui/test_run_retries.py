"""Runs that `iot-lake run` was stopped in the middle of are run again once it starts again.

raw_landing_sensor's cursor is past the raw commits such a run was to rebuild: unless it
is run again, its hours stay stale. Ctrl-C cuts a run short as an unexpected termination,
which Dagster's run retries pick up (iot_lake/dagster_ui.py). Power lost, or SIGKILL to
every process, records no end at all: left STARTED, the run would also hold the instance's
only run slot for good, so no run would follow it (iot_lake/interrupted_runs.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from iot_lake.dagster_ui import GROUP_NAME, live_group_members
from tests.support import wait_until
from tests.ui.commands import STOP_BOUND_S, ctrl_c
from tests.ui.restarts import (
    FAILURE_REASON,
    START_ATTEMPTS,
    runs_of,
    started,
    stopped_mid_run,
    successful_retry,
)


def press_ctrl_c(process: subprocess.Popen[bytes]) -> None:
    code, _ = ctrl_c(process)
    assert code == 0


def failed_by_ctrl_c(home: Path) -> list[dg.DagsterRun]:
    failed = runs_of(home, dg.DagsterRunStatus.FAILURE)
    return [r for r in failed if r.tags.get(FAILURE_REASON) == "UNEXPECTED_TERMINATION"]


def killing_everything(home: Path) -> Callable[[subprocess.Popen[bytes]], None]:
    """A stop that SIGKILLs `iot-lake run`'s group and its dagster dev's at once: power lost."""

    def kill(process: subprocess.Popen[bytes]) -> None:
        groups = (process.pid, int((home / GROUP_NAME).read_text()))
        for pgid in groups:
            os.killpg(pgid, signal.SIGKILL)
        process.wait(STOP_BOUND_S)
        wait_until(lambda: not any(map(live_group_members, groups)), 30, "the groups to end")

    return kill


def left_started(home: Path) -> list[dg.DagsterRun]:
    return runs_of(home, dg.DagsterRunStatus.STARTED)


@pytest.mark.slow
@pytest.mark.integration
def test_runs_stopped_midway_by_ctrl_c_or_a_kill_are_run_again_after_the_restart(
    tmp_path, process_groups
):
    home = tmp_path / ".run" / "dagster"
    kill_everything = killing_everything(home)
    # A run is cut short only if the stop comes while it runs: a start whose run finished
    # first is stopped and started again.
    cut: dg.DagsterRun | None = None
    for _ in range(START_ATTEMPTS):
        process, _ = started(tmp_path, process_groups)
        if cut := stopped_mid_run(process, home, press_ctrl_c, failed_by_ctrl_c):
            break
    assert cut, f"no run was in progress at any of {START_ATTEMPTS} Ctrl-Cs"

    killed: dg.DagsterRun | None = None
    for attempt in range(START_ATTEMPTS):
        process, _ = started(tmp_path, process_groups)
        if attempt == 0:  # the same start runs the cut run again, then is killed
            try:
                successful_retry(home, cut)
            except BaseException:
                kill_everything(process)
                raise
        if killed := stopped_mid_run(process, home, kill_everything, left_started):
            break
    assert killed, f"no run was in progress at any of {START_ATTEMPTS} kills"

    process, output = started(tmp_path, process_groups)
    try:
        successful_retry(home, killed)
    finally:
        press_ctrl_c(process)
    assert f"failed to retry: {killed.run_id}" in output.read_text()
