"""Helpers shared by tests: waiting on conditions with a deadline, free loopback ports."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pyarrow as pa

from iot_lake.lake import compaction
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.tables import Lake
from streaming.batch import RawBatch
from streaming.simulator.fleet import SimMessage

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.05
) -> T:
    """Poll `predicate` until it returns something truthy; fail saying what we waited for."""
    deadline = time.monotonic() + timeout_s
    last: T = predicate()
    while not last:
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval_s)
        last = predicate()
    return last


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_in_threads(
    target: Callable[[], object], count: int, timeout_s: float
) -> list[BaseException]:
    """Run `target` in `count` threads at once; the exceptions they raised (none: [])."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_s)
    return errors


def raw_rows(first: int, count: int, day: date = date(2026, 11, 1)) -> pa.Table:
    """`count` raw_telemetry rows of one ingest day, numbered from `first` (the number is
    the source position and the ingest second after noon)."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return pa.Table.from_pylist(
        [
            {
                "ingest_time": noon + timedelta(seconds=first + i),
                "ingest_date": day,
                "source": "test",
                "source_position": str(first + i),
                "consumer_id": "test",
                "payload": "{}",
                "payload_encoding": "utf-8",
                "payload_bytes": 2,
            }
            for i in range(count)
        ],
        schema=RAW_TELEMETRY.schema,
    )


def compact_raw_from_two_threads(lake: Lake, target_bytes: int = 16 * 1024 * 1024) -> list[bool]:
    """Two writers plan a compaction of raw on the same snapshot, then run it at once.

    What two consumers (or a consumer and the maintenance job) do when the day turns; the
    outcome of each partition's compaction, per writer.
    """
    barrier = threading.Barrier(2)
    outcomes: list[bool] = []

    def compact() -> None:
        table = lake.open(RAW_TELEMETRY)
        assert table is not None
        planned = compaction.plan(table, RAW_TELEMETRY, target_bytes)
        barrier.wait(timeout=30)
        for partition, bins in planned.items():
            outcomes.append(
                compaction.compact_partition(
                    table, RAW_TELEMETRY, lake.storage_options, partition, bins
                )
            )

    threads = [threading.Thread(target=compact) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def land_messages(
    lake: Lake,
    messages: Sequence[SimMessage],
    *,
    delay_us: int = 150_000,
    max_payload_bytes: int = 64 * 1024,
    first: int = 0,
    prefix: str = "",
) -> None:
    """Append simulator messages to raw in one commit, checked as the consumer checks them.

    Ingest time is the publish time plus `delay_us`; source positions `{prefix}{first + i}`.
    """
    batch = RawBatch("test", "test", max_payload_bytes)
    batch.extend(
        [m.topic for m in messages],
        [m.payload for m in messages],
        [m.sim_ms * 1000 + delay_us for m in messages],
        [f"{prefix}{first + i}" for i in range(len(messages))],
    )
    lake.append(RAW_TELEMETRY, batch.to_arrow())


# A benchmark's figure line, `name: value unit` (as bench/report.py's `figure` prints it).
FIGURE = re.compile(r"^(?P<name>[a-z0-9_]+): (?P<value>-?[0-9.]+) (?P<unit>\S+)$")


def run_bench(
    script: Path, *args: str, timeout_s: float
) -> tuple[dict[str, tuple[float, str]], list[str]]:
    """Run a benchmark script to its end: its figures by name, and every stdout line."""
    completed = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    figures = {}
    for line in lines:
        match = FIGURE.match(line)
        if match:
            figures[match["name"]] = (float(match["value"]), match["unit"])
    return figures, lines
