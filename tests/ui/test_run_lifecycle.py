"""`iot-lake run` as a person runs it: the UI comes up beside the demo and Ctrl-C stops it all.

The command runs in its own process group, as a terminal's foreground job does, and Ctrl-C
is SIGINT to that group. `dagster dev` runs in a group of its own, so the consumer commits
first and the UI is stopped after it; once the command has exited no process of either
group may be left (webserver, daemon, code servers, run workers). A run the Ctrl-C cut short
is run again by the daemon once the command is started again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psutil
import pytest

from assets.partitions import EVENT_HOURS_TAG
from iot_lake.catalog import RAW_TELEMETRY
from iot_lake.dagster_ui import live_group_members
from iot_lake.lake import Lake
from tests.support import free_port, wait_until

STOP_BOUND_S = 120  # the consumer's last commit, then dagster dev's own shutdown
FAILURE_REASON = "dagster/failure_reason"  # why Dagster failed a run


def start_run(cwd: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`iot-lake run` in `cwd` (its .lake and .run land there), output to a file."""
    env = {k: v for k, v in os.environ.items() if k not in ("IOT_LAKE_ROOT", "DAGSTER_HOME")}
    output = cwd / "run.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "iot_lake.cli", "run", "--devices", "10", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, output


@pytest.fixture
def process_groups() -> Iterator[set[int]]:
    """Groups the test started; whatever of them still runs at teardown is killed."""
    groups: set[int] = set()
    yield groups
    for pgid in groups:
        for member in live_group_members(pgid):
            member.kill()


def ctrl_c(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGINT to the command's group, as a terminal sends it; its exit code and how long it took."""
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    code = process.wait(STOP_BOUND_S)
    return code, time.monotonic() - started


def runs_of(home: Path, status: dg.DagsterRunStatus) -> list[dg.DagsterRun]:
    """The runs of the instance in `home` (DAGSTER_HOME) with this status, read from its storage.

    None before `dagster dev` has created its run storage (opening the instance first would
    create it too, racing dagster's own creation).
    """
    if not (home / "storage" / "history" / "runs.db").exists():
        return []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_runs(dg.RunsFilter(statuses=[status])))


def raw_landed(cwd: Path) -> bool:
    """True once the consumer has committed data (version 0 only creates the table)."""
    table = Lake(str(cwd / ".lake")).open(RAW_TELEMETRY)
    return table is not None and table.version() > 0


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_stops_the_consumer_then_every_dagster_process(tmp_path, process_groups, capsys):
    port = free_port()
    process, output = start_run(tmp_path, "--ui-port", str(port))
    process_groups.add(process.pid)
    try:
        started = time.monotonic()
        wait_until(
            lambda: f"Dagster UI ready at http://127.0.0.1:{port}" in output.read_text(),
            120,
            f"the UI on port {port}",
            interval_s=0.25,
        )
        ready_s = time.monotonic() - started
        wait_until(lambda: raw_landed(tmp_path), 60, "the consumer's first commit")
        children = psutil.Process(process.pid).children(recursive=True)
        commands = " ".join(" ".join(child.cmdline()) for child in children)
        for part in ("dagster dev", "dagster_webserver", "dagster._daemon", "code-server"):
            assert part in commands, f"no {part} among {commands}"
        dagster_groups = {os.getpgid(child.pid) for child in children}
        process_groups.update(dagster_groups)
    finally:
        code, stop_s = ctrl_c(process)

    text = output.read_text()
    assert code == 0, text
    assert len(dagster_groups) == 1
    assert process.pid not in dagster_groups  # its own group: Ctrl-C reaches the consumer first
    assert text.index("stopped cleanly") < text.index("Dagster UI stopped in"), text
    assert [child for child in children if child.is_running() and child.status() != "zombie"] == []
    assert live_group_members(dagster_groups.pop()) == []
    assert live_group_members(process.pid) == []
    with capsys.disabled():
        print(f"\nUI ready {ready_s:.1f} s after start; Ctrl-C to exit {stop_s:.1f} s")


@pytest.mark.slow
@pytest.mark.integration
def test_no_ui_runs_the_demo_alone(tmp_path, process_groups):
    process, output = start_run(tmp_path, "--no-ui")
    process_groups.add(process.pid)
    try:
        wait_until(lambda: raw_landed(tmp_path), 60, "the consumer's first commit")
        children = psutil.Process(process.pid).children(recursive=True)
    finally:
        code, _ = ctrl_c(process)
    assert code == 0, output.read_text()
    assert children == []
    assert not (tmp_path / ".run" / "dagster").exists()


def test_a_taken_ui_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process, output = start_run(tmp_path, "--ui-port", str(port))
        code = process.wait(60)
    text = output.read_text()
    assert code == 2, text
    assert f"127.0.0.1:{port} is already in use" in text
    assert "--no-ui" in text
    assert not (tmp_path / ".lake").exists()
    assert not (tmp_path / ".run").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_a_run_cut_short_by_ctrl_c_is_run_again_after_the_restart(tmp_path, process_groups):
    # The sensor's cursor is past the commits an interrupted run was to rebuild: unless that
    # run is run again, its hours stay stale. A run is cut short only if Ctrl-C comes while
    # it runs; a start whose run finished first is stopped and started again (at most 3).
    home = tmp_path / ".run" / "dagster"
    cut_short: list[dg.DagsterRun] = []
    for _ in range(3):
        process, output = start_run(tmp_path, "--ui-port", str(free_port()))
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

    process, output = start_run(tmp_path, "--ui-port", str(free_port()))
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
