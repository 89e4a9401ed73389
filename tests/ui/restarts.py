"""Start `iot-lake run`, stop it in the middle of a run, start it again: for the retry tests.

raw_landing_sensor's cursor is past the raw commits a run stopped midway was to rebuild:
unless the run is run again, its hours stay stale (iot_lake/dagster_ui.py enables Dagster's
run retries in the instance `dagster dev` gets).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from assets.partitions import EVENT_HOURS_TAG
from iot_lake.dagster_ui import GROUP_NAME
from tests.support import free_port, wait_until
from tests.ui.commands import ctrl_c, start_run, wait_for_ui

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
