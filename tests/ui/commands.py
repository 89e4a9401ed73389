"""`iot-lake run` started and stopped as a person does it from a terminal, for the UI tests.

The command runs in its own process group, as a terminal's foreground job does, and Ctrl-C
is SIGINT to that group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STOP_BOUND_S = 120  # the consumer's last commit, then dagster dev's own shutdown


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


def ctrl_c(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGINT to the command's group, as a terminal sends it; its exit code and how long it took."""
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    code = process.wait(STOP_BOUND_S)
    return code, time.monotonic() - started
