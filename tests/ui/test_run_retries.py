"""A run that `iot-lake run`'s Ctrl-C cut short is run again once the command starts again.

raw_landing_sensor's cursor is past the raw commits such a run was to rebuild: unless the
run is run again, its hours stay stale (iot_lake/dagster_ui.py enables Dagster's run retries
for it in the instance `dagster dev` gets).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import dagster as dg
import pytest

from assets.partitions import EVENT_HOURS_TAG
from tests.support import free_port, wait_until
from tests.ui.commands import ctrl_c, start_run, wait_for_ui

FAILURE_REASON = "dagster/failure_reason"  # why Dagster failed a run


def started(cwd: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`iot-lake run` in `cwd`, once its UI answers.

    Only then has `dagster dev` created its storage: a reader opening the instance earlier
    would create the tables too, racing it ("table snapshots already exists").
    """
    port = free_port()
    process, output = start_run(cwd, "--ui-port", str(port), *args)
    try:
        wait_for_ui(output, port)
    except TimeoutError:
        ctrl_c(process)
        raise
    return process, output


def runs_of(home: Path, status: dg.DagsterRunStatus) -> list[dg.DagsterRun]:
    """The runs of the instance in `home` (DAGSTER_HOME) with this status, read from its storage."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_runs(dg.RunsFilter(statuses=[status])))


@pytest.mark.slow
@pytest.mark.integration
def test_a_run_cut_short_by_ctrl_c_is_run_again_after_the_restart(tmp_path, process_groups):
    # The sensor's cursor is past the commits an interrupted run was to rebuild: unless that
    # run is run again, its hours stay stale. A run is cut short only if Ctrl-C comes while
    # it runs; a start whose run finished first is stopped and started again (at most 3).
    home = tmp_path / ".run" / "dagster"
    cut_short: list[dg.DagsterRun] = []
    for _ in range(3):
        process, output = started(tmp_path)
        process_groups.add(process.pid)
        try:
            wait_until(
                lambda: runs_of(home, dg.DagsterRunStatus.STARTED), 240, "a run", interval_s=0.25
            )
        finally:
            code, _ = ctrl_c(process)
        assert code == 0, output.read_text()
        failed = runs_of(home, dg.DagsterRunStatus.FAILURE)
        cut_short = [r for r in failed if r.tags.get(FAILURE_REASON) == "UNEXPECTED_TERMINATION"]
        if cut_short:
            break
    assert cut_short, "no run was in progress at any of 3 Ctrl-Cs"
    [first] = cut_short

    process, output = started(tmp_path)
    process_groups.add(process.pid)
    try:
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
    finally:
        code, _ = ctrl_c(process)
    assert code == 0, output.read_text()
    assert retry.job_name == first.job_name
    assert retry.tags["dagster/retry_number"] == "1"
    for tag in ("dagster/partition", EVENT_HOURS_TAG):
        assert retry.tags.get(tag) == first.tags.get(tag)
