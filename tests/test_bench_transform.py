"""bench/transform.py at a tiny scale, so the benchmark cannot rot between the runs that use it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "transform.py"
FIGURE = re.compile(r"^(?P<name>[a-z0-9_]+): (?P<value>-?[0-9.]+) (?P<unit>\S+)$")
SMOKE_DEVICES = 12  # bench/transform.py's --smoke fleet

EXPECTED = {
    "day_messages": "msgs",
    "day_readings": "rows",
    "telemetry": "msgs/s",
    "device_events": "msgs/s",
    "rollup_1m": "rows/s",
    "rollup_1h": "rows/s",
    "rollup_1d": "rows/s",
    f"day_{SMOKE_DEVICES}_devices": "s",
    "peak_rss": "GB",
    "duckdb_rollup_1m": "rows/s",
    "rollup_1m_vs_duckdb": "x",
    "rollup_1m_compute_vs_duckdb": "x",
    "duckdb_peak_rss": "GB",
    f"incremental_hour_{SMOKE_DEVICES}_devices": "s",
    "incremental_hour_vs_day": "x",
    "incremental_peak_rss": "GB",
}


def run_bench(data_dir: Path) -> tuple[dict[str, tuple[float, str]], list[str]]:
    completed = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = {}
    lines = completed.stdout.splitlines()
    for line in lines:
        match = FIGURE.match(line)
        if match:
            figures[match["name"]] = (float(match["value"]), match["unit"])
    return figures, lines


@pytest.mark.slow
@pytest.mark.integration
def test_every_figure_is_printed_positive_and_every_line_parses(tmp_path):
    figures, lines = run_bench(tmp_path)
    for name, unit in EXPECTED.items():
        assert name in figures, f"{name} not printed; got {sorted(figures)}"
        value, printed_unit = figures[name]
        assert printed_unit == unit, f"{name}: unit {printed_unit}, expected {unit}"
        assert value > 0, f"{name}: {value} {unit} is not positive"
    # A 12-device day every 10 s: 8,640 telemetry messages and 1,440 heartbeats per device.
    assert figures["day_messages"][0] == SMOKE_DEVICES * (8640 + 1440)
    assert all(line.startswith("#") or FIGURE.match(line) for line in lines), lines
    # The landed day is cached by fleet size and seed; the work lake is removed.
    assert [path.name for path in tmp_path.iterdir()] == [f"transform-d{SMOKE_DEVICES}-seed7"]
