"""A barrier at the start of the silver steps, off unless IOT_LAKE_STEP_BARRIER names a file.

It holds a real run in the middle of a step for as long as whoever set it needs: the retry
test (tests/ui/test_run_retries.py) stops `iot-lake run` with Ctrl-C, or kills it, while a
run is certainly in progress, then sees that run retried after the restart. Without it the
test could only hope its stop landed while a run was still going.

`iot-lake run` passes its environment to dagster dev, whose code server passes it to the
run workers, so the variable set for the command reaches the step. While the named file
exists, telemetry and device_events (the first step of every run raw_landing_sensor
requests) log HELD_MESSAGE at their start, then wait until the file is gone, at most
HOLD_LIMIT_S, and go on. A stop signal ends the wait like any other step work.
Unset, as it is outside such tests, it does nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg

STEP_BARRIER_ENV = "IOT_LAKE_STEP_BARRIER"
HELD_MESSAGE = "held at the step barrier"  # logged to the run, where the test looks for it
HOLD_LIMIT_S = 600.0  # a barrier left behind delays a run, never stalls it for good
POLL_S = 0.1


def hold_at_step_barrier(context: dg.AssetExecutionContext) -> None:
    """While the file IOT_LAKE_STEP_BARRIER names exists, wait (HOLD_LIMIT_S at most)."""
    named = os.environ.get(STEP_BARRIER_ENV)
    if not named or not Path(named).exists():
        return
    barrier = Path(named)
    context.log.info(f"{HELD_MESSAGE} ({STEP_BARRIER_ENV}={barrier}) until the file is removed")
    deadline = time.monotonic() + HOLD_LIMIT_S
    while barrier.exists():
        if time.monotonic() >= deadline:
            context.log.warning(f"{barrier} still exists after {HOLD_LIMIT_S:.0f} s: going on")
            return
        time.sleep(POLL_S)
