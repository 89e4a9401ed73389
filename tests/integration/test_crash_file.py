"""Contract 2 under kill -9: a file source lands every line exactly once across crashes."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iot_lake.lake.catalog import RAW_TELEMETRY
from streaming.simulator.fleet import Fleet, FleetSpec
from tests.conftest import framed_file
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = 20


def start_consumer(path, lake_root, *, follow=False):
    """`iot-lake consume` of the file; following it, it never exits on its own."""
    source = f"file:{path}?follow=true" if follow else f"file:{path}"
    ends = [] if follow else ["--stop-when-idle-s", "1"]
    return subprocess.Popen(
        [
            sys.executable, "-m", "iot_lake.app.entry", "consume",
            "--source", source, "--lake-root", lake_root,
            "--max-records", "100", "--max-age-s", "0.2",
            "--stats-interval-s", "3600", *ends,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def read_offset(pid, path):
    """How far a process has read a file: the position of its descriptor (Linux /proc)."""
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            if fd.readlink() == path:
                fields = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text().split()
                return int(fields[fields.index("pos:") + 1])
        except OSError:
            continue
    return None


def committed_offset(lake, app_id):
    table = lake.open(RAW_TELEMETRY)
    return table.transaction_version(app_id) if table is not None else None


def test_kill_9_at_random_points_lands_every_line_exactly_once(lake, tmp_path):
    rng = random.Random(2)
    # Enough lines that most kills land in the middle of work (about 1,100 lines a cycle
    # were seen under load). The killed consumers follow the file, so one that reaches its
    # end waits there instead of exiting: every round ends in a kill, however fast the
    # machine lands the lines.
    messages = list(Fleet(FleetSpec(devices=60, seed=5)).messages(60_000))
    path = framed_file(tmp_path / "fleet.jsonl", messages)
    app_id = f"file:{path}"
    size = path.stat().st_size
    for _ in range(KILLS):
        before = committed_offset(lake, app_id) or 0
        process = start_consumer(path, lake.root, follow=True)
        # Let it commit at least once more (unless all is in), then kill it at a random
        # instant of its work.
        wait_until(
            lambda b=before, p=process: (
                (committed_offset(lake, app_id) or 0) > b or b == size or p.poll() is not None
            ),
            60,
            "the consumer's next commit",
        )
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        # A random instant after that commit: mid-read, mid-write or mid-commit of the next.
        # This sleep is the crash point itself, not a wait for anything.
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    final = start_consumer(path, lake.root)
    assert final.wait(timeout=120) == 0, final.stderr.read().decode() if final.stderr else ""
    raw = lake.read(RAW_TELEMETRY)
    assert committed_offset(lake, app_id) == size
    assert raw.height == len(messages)
    assert raw["source_position"].n_unique() == len(messages)


def test_sigterm_commits_the_open_batch_and_exits_0(lake, tmp_path):
    messages = list(Fleet(FleetSpec(devices=20, seed=6)).messages(3000))
    path = framed_file(tmp_path / "fleet.jsonl", messages)
    process = subprocess.Popen(
        [
            sys.executable, "-m", "iot_lake.app.entry", "consume",
            "--source", f"file:{path}?follow=true", "--lake-root", lake.root,
            "--max-records", "100000", "--max-age-s", "3600", "--stats-interval-s", "3600",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    # Everything is read into one open batch that only a stop will flush (no age, no size).
    table_exists = wait_until(lambda: lake.open(RAW_TELEMETRY), 60, "the consumer to start")
    assert table_exists is not None
    assert lake.read(RAW_TELEMETRY).height == 0
    size = path.stat().st_size
    wait_until(lambda: read_offset(process.pid, path) == size, 60, "the whole file to be read")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, process.stderr.read().decode() if process.stderr else ""
    assert lake.read(RAW_TELEMETRY).height == len(messages)
