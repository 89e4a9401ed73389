"""bench/transform.py at a tiny scale, so the benchmark cannot rot between the runs that use it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import FIGURE, run_bench

BENCH = Path(__file__).resolve().parents[1] / "bench" / "transform.py"
SMOKE_DEVICES = 12  # bench/transform.py's --smoke fleet
HOUR_RUN = re.compile(r"^# incremental \d+/\d+: (?P<seconds>[0-9.]+) s;")

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


@pytest.mark.slow
@pytest.mark.integration
def test_every_figure_is_printed_positive_and_every_line_parses(tmp_path):
    figures, lines = run_bench(
        BENCH, "--smoke", "--hour-runs", "2", "--data-dir", str(tmp_path), timeout_s=300
    )
    for name, unit in EXPECTED.items():
        assert name in figures, f"{name} not printed; got {sorted(figures)}"
        value, printed_unit = figures[name]
        assert printed_unit == unit, f"{name}: unit {printed_unit}, expected {unit}"
        assert value > 0, f"{name}: {value} {unit} is not positive"
    # A 12-device day every 10 s: 8,640 telemetry messages and 1,440 heartbeats per device.
    assert figures["day_messages"][0] == SMOKE_DEVICES * (8640 + 1440)
    assert all(line.startswith("#") or FIGURE.match(line) for line in lines), lines
    # `--hour-runs 2`: each run of the hour on its own line, and the figure one of them or
    # between them (printed to 0.1 s), not their sum.
    hour_runs = [float(m["seconds"]) for line in lines if (m := HOUR_RUN.match(line))]
    assert len(hour_runs) == 2, lines
    hour = figures[f"incremental_hour_{SMOKE_DEVICES}_devices"][0]
    assert min(hour_runs) - 0.06 <= hour <= max(hour_runs) + 0.06, (hour, hour_runs)
    # The landed day is cached by fleet size and seed; the work lake is removed.
    assert [path.name for path in tmp_path.iterdir()] == [f"transform-d{SMOKE_DEVICES}-seed7"]
