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
from collections.abc import Mapping
from pathlib import Path

from tests.support import wait_until

STOP_BOUND_S = 120  # the consumer's last commit, then dagster dev's own shutdown
UI_BOUND_S = 120  # as long as `iot-lake run` itself waits for the UI to answer


def start_run(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """`iot-lake run` in `cwd` (its .lake and .run land there), output to a file.

    `env` adds variables to the command's environment, which dagster dev and its run
    workers inherit.
    """
    left_out = ("IOT_LAKE_ROOT", "DAGSTER_HOME")  # the lake and instance are cwd's own
    environment = {k: v for k, v in os.environ.items() if k not in left_out} | dict(env or {})
    output = cwd / "run.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "iot_lake.app.entry", "run", "--devices", "10", *args],
            cwd=cwd,
            env=environment,
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


def wait_for_ui(output: Path, port: int) -> float:
    """Wait until `iot-lake run` prints that its UI answers on `port`; the seconds it took."""
    started = time.monotonic()
    ready = f"Dagster UI ready at http://127.0.0.1:{port}"
    wait_until(lambda: ready in output.read_text(), UI_BOUND_S, f"the UI on port {port}", 0.25)
    return time.monotonic() - started
