"""bench/ingest.py at a tiny scale, so the benchmark cannot rot between the runs that use it."""

from __future__ import annotations

import importlib.util
import re
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
    "landed_p95": "ms",
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
GROWTH_FIGURES = {
    "growth_commit_first": "ms",
    "growth_commit_last": "ms",
    "growth_commit_p95": "ms",
}
# Growth is a difference of two means: near zero (either sign) is the healthy answer.
SIGNED = {"consumer_rss_growth"}
LANDING_PAIR = re.compile(
    r"^# landing \d+/\d+: (?P<landing>\d+) msgs/s, limit (?P<limit>\d+) msgs/s, "
    r"ratio (?P<ratio>[0-9.]+)$"
)


def _mqtt_available() -> bool:
    try:
        find_mosquitto()
    except MosquittoError:
        return False
    return importlib.util.find_spec("streaming.simulator.mqtt_publisher") is not None


def run_ingest_bench(*args: str, tmp_path: Path) -> tuple[dict[str, tuple[float, str]], list[str]]:
    return run_bench(BENCH, "--messages", "3000", "--data-dir", str(tmp_path), *args, timeout_s=120)


def assert_figures(figures: dict[str, tuple[float, str]], expected: dict[str, str]) -> None:
    for name, unit in expected.items():
        assert name in figures, f"{name} not printed; got {sorted(figures)}"
        value, printed_unit = figures[name]
        assert printed_unit == unit, f"{name}: unit {printed_unit}, expected {unit}"
        if name not in SIGNED:
            assert value > 0, f"{name}: {value} {unit} is not positive"


@pytest.mark.slow
def test_file_figures_are_printed(tmp_path):
    figures, lines = run_ingest_bench(
        "--skip-mqtt", "--landing-runs", "2", "--growth-commits", "4", tmp_path=tmp_path
    )
    assert_figures(figures, FILE_FIGURES | GROWTH_FIGURES)
    assert not set(MQTT_FIGURES) & set(figures)
    assert any(line.startswith("# growth: median commit per 4 commits (ms): ") for line in lines)
    # `--landing-runs 2`: each landing and its limit on a line; each figure one of the two
    # or between them (as printed), not a sum, and the ratio from pairs, not across them.
    pairs = [match for line in lines if (match := LANDING_PAIR.match(line))]
    assert len(pairs) == 2, lines
    for name in ("landing", "limit"):
        runs = [float(pair[name]) for pair in pairs]
        assert min(runs) - 1 <= figures[name][0] <= max(runs) + 1, (name, figures[name], runs)
    ratios = [float(pair["ratio"]) for pair in pairs]
    for pair, ratio in zip(pairs, ratios, strict=True):
        assert abs(float(pair["landing"]) / float(pair["limit"]) - ratio) < 0.002, pair
    assert min(ratios) - 0.006 <= figures["landing_vs_limit"][0] <= max(ratios) + 0.006
    # A batch lands (sealed to committed) no sooner than its own commit takes.
    assert figures["landed_p95"][0] >= figures["commit_p95"][0] - 1


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not _mqtt_available(), reason="mosquitto or the MQTT publisher is missing")
def test_mqtt_figures_are_printed(tmp_path):
    figures, _ = run_ingest_bench("--landing-runs", "1", tmp_path=tmp_path)
    assert_figures(figures, FILE_FIGURES | MQTT_FIGURES)
