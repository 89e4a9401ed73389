"""How the benchmarks print: figures on stdout as `name: value unit`, everything else not.

Tests and the README read the figures by that form; progress goes to stderr and context
lines (the machine's load) start with `#`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


def figure(name: str, value: float, unit: str) -> None:
    """Print one figure as `name: value unit`, the form tests and reports parse."""
    whole = isinstance(value, int) or abs(value) >= 100  # no decimals needed past 100
    text = f"{value:.0f}" if whole else f"{value:.2f}"
    print(f"{name}: {text} {unit}", flush=True)


def at_least_one(text: str) -> int:
    """An argparse type for a count of runs: a whole number of at least 1."""
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {count}")
    return count


def note(text: str) -> None:
    """Progress (and the consumer's own stats lines), kept off stdout."""
    print(text, file=sys.stderr, flush=True)


def print_load(when: str) -> None:
    """How busy the machine is: wall-clock rates on two shared cores depend on it."""
    one, five, _ = os.getloadavg()
    cpus = os.cpu_count()
    print(f"# load {when}: {one:.2f} (1 min), {five:.2f} (5 min) on {cpus} cpus", flush=True)


def own_peak_rss() -> int:
    """This process's peak RSS in bytes since its last exec (VmHWM), 0 where unknown.

    Not `getrusage(...).ru_maxrss`: Linux keeps the largest RSS across fork and exec, so a
    spawned child would report its parent's peak.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    return 0


def run_and_exit(main: Callable[[], int]) -> NoReturn:
    """Run a benchmark's main and leave with its status, skipping interpreter teardown.

    Every figure is printed and every child has exited by then. About one run in three,
    Arrow's C++ teardown aborts the interpreter afterwards ("terminate called without an
    active exception", no Python frame) after the benchmarks' mix of dataset reads, Parquet
    writes and spawned children; leaving without it keeps the exit status the bench's.
    """
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
