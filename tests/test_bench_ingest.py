"""bench/ingest.py at a tiny scale, so the benchmark cannot rot between the runs that use it."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streaming.broker import MosquittoError, find_mosquitto

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ingest.py"
FIGURE = re.compile(r"^(?P<name>[a-z0-9_]+): (?P<value>-?[0-9.]+) (?P<unit>\S+)$")

FILE_FIGURES = {
    "message_size": "bytes",
    "landing": "msgs/s",
    "commit_p50": "ms",
    "commit_p95": "ms",
    "limit": "msgs/s",
    "landing_vs_limit": "x",
    "naive_per_message": "msgs/s",
    "soak": "msgs/s",
    "soak_commits": "commits",
    "soak_commit_p95": "ms",
    "consumer_peak_rss": "MB",
    "consumer_rss_growth": "MB",
}
MQTT_FIGURES = {"mqtt_1_consumer": "msgs/s", "mqtt_2_consumers": "msgs/s"}
# Growth is a difference of two means: near zero (either sign) is the healthy answer.
SIGNED = {"consumer_rss_growth"}


def _mqtt_available() -> bool:
    try:
        find_mosquitto()
    except MosquittoError:
        return False
    return importlib.util.find_spec("streaming.simulator.mqtt_publisher") is not None


def run_bench(*args: str, tmp_path: Path) -> dict[str, tuple[float, str]]:
    completed = subprocess.run(
        [sys.executable, str(BENCH), "--messages", "3000", "--data-dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = {}
    for line in completed.stdout.splitlines():
        match = FIGURE.match(line)
        if match:
            figures[match["name"]] = (float(match["value"]), match["unit"])
    return figures


def assert_figures(figures: dict[str, tuple[float, str]], expected: dict[str, str]) -> None:
    for name, unit in expected.items():
        assert name in figures, f"{name} not printed; got {sorted(figures)}"
        value, printed_unit = figures[name]
        assert printed_unit == unit, f"{name}: unit {printed_unit}, expected {unit}"
        if name not in SIGNED:
            assert value > 0, f"{name}: {value} {unit} is not positive"


@pytest.mark.slow
def test_file_figures_are_printed(tmp_path):
    figures = run_bench("--skip-mqtt", tmp_path=tmp_path)
    assert_figures(figures, FILE_FIGURES)
    assert not set(MQTT_FIGURES) & set(figures)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not _mqtt_available(), reason="mosquitto or the MQTT publisher is missing")
def test_mqtt_figures_are_printed(tmp_path):
    figures = run_bench(tmp_path=tmp_path)
    assert_figures(figures, FILE_FIGURES | MQTT_FIGURES)
