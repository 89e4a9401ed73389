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
    "landing_one_bad_line": "msgs/s",
    "landing_one_bad_line_cpu": "msgs/cpu-s",
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
    r"^# landing \d+/\d+: (?P<landing>\d+) msgs/s, limit before (?P<before>\d+) and after "
    r"(?P<after>\d+) msgs/s, ratio (?P<ratio>[0-9.]+) \(to the limit after alone "
    r"(?P<ratio_after>[0-9.]+)\)$"
)
WARM_UP = re.compile(r"^# warm-up \(not counted\): landing \d+ msgs/s, limit \d+ msgs/s$")


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
    # `--landing-runs 2`: a warm-up not counted, then each landing on a line with the limits
    # run before and after it (the one after a landing is the one before the next); each
    # figure one of the runs or between them (as printed), not a sum, and the ratio to the
    # mean of the limits around the landing, not across landings.
    assert sum(bool(WARM_UP.match(line)) for line in lines) == 1, lines
    pairs = [match for line in lines if (match := LANDING_PAIR.match(line))]
    assert len(pairs) == 2, lines
    assert pairs[0]["after"] == pairs[1]["before"]
    limits = [float(pairs[0]["before"])] + [float(pair["after"]) for pair in pairs]
    landings = [float(pair["landing"]) for pair in pairs]
    for name, runs in (("landing", landings), ("limit", limits)):
        assert min(runs) - 1 <= figures[name][0] <= max(runs) + 1, (name, figures[name], runs)
    ratios = [float(pair["ratio"]) for pair in pairs]
    for pair, ratio in zip(pairs, ratios, strict=True):
        landing, before, after = (float(pair[key]) for key in ("landing", "before", "after"))
        assert abs(landing / ((before + after) / 2) - ratio) < 0.002, pair
        assert abs(landing / after - float(pair["ratio_after"])) < 0.002, pair
    assert min(ratios) - 0.006 <= figures["landing_vs_limit"][0] <= max(ratios) + 0.006
    # A batch lands (sealed to committed) no sooner than its own commit takes.
    assert figures["landed_p95"][0] >= figures["commit_p95"][0] - 1


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not _mqtt_available(), reason="mosquitto or the MQTT publisher is missing")
def test_mqtt_figures_are_printed(tmp_path):
    figures, _ = run_ingest_bench("--landing-runs", "1", tmp_path=tmp_path)
    assert_figures(figures, FILE_FIGURES | MQTT_FIGURES)
