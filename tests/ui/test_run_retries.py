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

from assets.partitions import EVENT_HOURS_TAG
from iot_lake.dagster_ui import GROUP_NAME, live_group_members
from tests.support import free_port, wait_until
from tests.ui.commands import STOP_BOUND_S, ctrl_c, start_run, wait_for_ui

FAILURE_REASON = "dagster/failure_reason"  # why Dagster failed a run
START_ATTEMPTS = 3  # a start whose run finished before the stop is tried again


def started(cwd: Path, process_groups: set[int]) -> tuple[subprocess.Popen[bytes], Path]:
    """`iot-lake run` in `cwd`, once its UI answers; its groups and dagster dev's recorded.

    Only then has `dagster dev` created its storage: a reader opening the instance earlier
    would create the tables too, racing it ("table snapshots already exists").
    """
    port = free_port()
    process, output = start_run(cwd, "--ui-port", str(port))
    process_groups.add(process.pid)
    try:
        wait_for_ui(output, port)
    except TimeoutError:
        ctrl_c(process)
        raise
    process_groups.add(int((cwd / ".run" / "dagster" / GROUP_NAME).read_text()))
    return process, output


def runs_of(home: Path, status: dg.DagsterRunStatus) -> list[dg.DagsterRun]:
    """The runs of the instance in `home` (DAGSTER_HOME) with this status, read from its storage."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_runs(dg.RunsFilter(statuses=[status])))


def stopped_mid_run(
    process: subprocess.Popen[bytes],
    home: Path,
    stop: Callable[[subprocess.Popen[bytes]], None],
    cut_short: Callable[[Path], list[dg.DagsterRun]],
) -> dg.DagsterRun | None:
    """`stop` the running `iot-lake run` as soon as a run has started; the run it cut short.

    None when that run finished before the stop came: the caller starts again.
    """
    try:
        wait_until(
            lambda: runs_of(home, dg.DagsterRunStatus.STARTED), 240, "a run", interval_s=0.25
        )
    finally:
        stop(process)
    runs = cut_short(home)
    return runs[0] if runs else None


def successful_retry(home: Path, first: dg.DagsterRun) -> dg.DagsterRun:
    """Wait for `first`'s successful retry: the same job, partition and event hours."""
    [retry] = wait_until(
        lambda: [
            run
            for run in runs_of(home, dg.DagsterRunStatus.SUCCESS)
            if run.parent_run_id == first.run_id
        ],
        300,
        f"a successful retry of run {first.run_id}",
        interval_s=1,
    )
    assert retry.job_name == first.job_name
    assert retry.tags["dagster/retry_number"] == "1"
    for tag in ("dagster/partition", EVENT_HOURS_TAG):
        assert retry.tags.get(tag) == first.tags.get(tag)
    return retry


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
            successful_retry(home, cut)
        if killed := stopped_mid_run(process, home, kill_everything, left_started):
            break
    assert killed, f"no run was in progress at any of {START_ATTEMPTS} kills"

    process, output = started(tmp_path, process_groups)
    try:
        successful_retry(home, killed)
    finally:
        press_ctrl_c(process)
    assert f"failed to retry: {killed.run_id}" in output.read_text()
