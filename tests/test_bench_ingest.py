"""bench/ingest.py at a tiny scale, so the benchmark cannot rot between the runs that use it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from streaming.broker import MosquittoError, find_mosquitto
from tests.support import run_bench

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ingest.py"

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


def run_ingest_bench(*args: str, tmp_path: Path) -> dict[str, tuple[float, str]]:
    figures, _ = run_bench(
        BENCH, "--messages", "3000", "--data-dir", str(tmp_path), *args, timeout_s=120
    )
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
    figures = run_ingest_bench("--skip-mqtt", tmp_path=tmp_path)
    assert_figures(figures, FILE_FIGURES)
    assert not set(MQTT_FIGURES) & set(figures)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not _mqtt_available(), reason="mosquitto or the MQTT publisher is missing")
def test_mqtt_figures_are_printed(tmp_path):
    figures = run_ingest_bench(tmp_path=tmp_path)
    assert_figures(figures, FILE_FIGURES | MQTT_FIGURES)
