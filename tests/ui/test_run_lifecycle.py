"""`iot-lake run` as a person runs it: the UI comes up beside the demo and Ctrl-C stops it all.

The command runs in its own process group, as a terminal's foreground job does, and Ctrl-C
is SIGINT to that group. `dagster dev` runs in a group of its own, so the consumer commits
first and the UI is stopped after it; once the command has exited no process of either
group may be left (webserver, daemon, code servers, run workers).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from iot_lake.app.dagster_ui import GROUP_NAME, live_group_members
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.tables import Lake
from tests.support import free_port, wait_until
from tests.ui.commands import ctrl_c, start_run, wait_for_ui


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
        ready_s = wait_for_ui(output, port)
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


def test_a_dagster_dev_still_running_from_an_earlier_start_is_refused(tmp_path, process_groups):
    # It outlives an `iot-lake run` killed outright (its own session); its run workers may
    # still be writing, so their runs must not be failed and run again beside them.
    home = tmp_path / ".run" / "dagster"
    home.mkdir(parents=True)
    earlier = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "dagster", "dev"],
        start_new_session=True,
    )
    process_groups.add(earlier.pid)
    (home / GROUP_NAME).write_text(str(earlier.pid))
    process, output = start_run(tmp_path, "--ui-port", str(free_port()))
    code = process.wait(60)
    text = output.read_text()
    assert code == 2, text
    assert f"still runs (process group {earlier.pid})" in text
    assert f"kill -INT -{earlier.pid}" in text
    assert earlier.poll() is None  # left alone
    assert not (tmp_path / ".lake").exists()
