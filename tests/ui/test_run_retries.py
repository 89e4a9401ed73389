"""Runs that `iot-lake run` was stopped in the middle of are run again once it starts again.

raw_landing_sensor's cursor is past the raw commits such a run was to rebuild: unless it
is run again, its hours stay stale. Ctrl-C cuts a run short as an unexpected termination,
which Dagster's run retries pick up (iot_lake/app/dagster_ui.py). Power lost, or SIGKILL to
every process, records no end at all: left STARTED, the run would also hold the instance's
only run slot for good, so no run would follow it (iot_lake/app/interrupted_runs.py).

The test makes the run it stops: `iot-lake run` gets IOT_LAKE_STEP_BARRIER, and while the
barrier file exists every silver step waits at its start (assets/step_barrier.py). The
stop comes once a run says it is held there, so it lands mid-step whatever the machine's
speed; the file is removed before the restart, so the retries can finish.
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
from assets.step_barrier import HELD_MESSAGE, STEP_BARRIER_ENV
from iot_lake.app.dagster_ui import GROUP_NAME, live_group_members
from tests.support import free_port, wait_until
from tests.ui.commands import STOP_BOUND_S, ctrl_c, start_run, wait_for_ui

FAILURE_REASON = "dagster/failure_reason"  # why Dagster failed a run
HELD_BOUND_S = 300  # the sensor's first tick (30 s), then the run's queue and its worker's start


def started(
    cwd: Path, process_groups: set[int], barrier: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """`iot-lake run` in `cwd`, its silver steps held while `barrier` exists, once its UI answers.

    Its groups and dagster dev's are recorded. Only once the UI answers has `dagster dev`
    created its storage: a reader opening the instance earlier would create the tables too,
    racing it ("table snapshots already exists").
    """
    port = free_port()
    process, output = start_run(cwd, "--ui-port", str(port), env={STEP_BARRIER_ENV: str(barrier)})
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


def run_now(home: Path, run: dg.DagsterRun) -> dg.DagsterRun:
    """`run` as the instance in `home` records it now."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        now = instance.get_run_by_id(run.run_id)
    assert now is not None, f"run {run.run_id} is gone"
    return now


def held_run(home: Path) -> dg.DagsterRun | None:
    """The run in progress whose silver step waits at the barrier, if there is one yet."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
            if any(HELD_MESSAGE in entry.user_message for entry in instance.all_logs(run.run_id)):
                return run
    return None


def stopped_mid_step(
    process: subprocess.Popen[bytes],
    home: Path,
    stop: Callable[[subprocess.Popen[bytes]], None],
) -> dg.DagsterRun:
    """`stop` the running `iot-lake run` once a run is held at the barrier; that run.

    The barrier file exists: the held run cannot finish before the stop reaches it (its
    step would go on only after HOLD_LIMIT_S, 600 s).
    """
    try:
        held = wait_until(
            lambda: held_run(home), HELD_BOUND_S, "a run held at the step barrier", 0.5
        )
    finally:
        stop(process)
    return held


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


def killing_everything(home: Path) -> Callable[[subprocess.Popen[bytes]], None]:
    """A stop that SIGKILLs `iot-lake run`'s group and its dagster dev's at once: power lost."""

    def kill(process: subprocess.Popen[bytes]) -> None:
        groups = (process.pid, int((home / GROUP_NAME).read_text()))
        for pgid in groups:
            os.killpg(pgid, signal.SIGKILL)
        process.wait(STOP_BOUND_S)
        wait_until(lambda: not any(map(live_group_members, groups)), 30, "the groups to end")

    return kill


@pytest.mark.slow
@pytest.mark.integration
def test_runs_stopped_mid_step_by_ctrl_c_or_a_kill_are_run_again_after_the_restart_issue_29(
    tmp_path, process_groups
):
    home = tmp_path / ".run" / "dagster"
    barrier = tmp_path / "hold-silver-steps"

    barrier.touch()  # from the first run on, every silver step waits
    process, _ = started(tmp_path, process_groups, barrier)
    cut = run_now(home, stopped_mid_step(process, home, press_ctrl_c))
    assert cut.status == dg.DagsterRunStatus.FAILURE, cut
    assert cut.tags.get(FAILURE_REASON) == "UNEXPECTED_TERMINATION", cut.tags

    # The same start runs the cut run again, then holds the next run and is killed.
    barrier.unlink()
    process, _ = started(tmp_path, process_groups, barrier)
    successful_retry(home, cut)
    barrier.touch()
    killed = run_now(home, stopped_mid_step(process, home, killing_everything(home)))
    assert killed.status == dg.DagsterRunStatus.STARTED, killed  # nothing recorded its end

    barrier.unlink()
    process, output = started(tmp_path, process_groups, barrier)
    try:
        successful_retry(home, killed)
    finally:
        press_ctrl_c(process)
    assert f"failed to retry: {killed.run_id}" in output.read_text()
