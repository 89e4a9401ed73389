import math
import statistics
from collections import defaultdict
from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from iot_lake.gold.baselines import BASELINE_SCHEMA, device_baselines
from iot_lake.gold.rollups import rollup_1m, rollup_up
from tests.iot_lake.gold.test_rollups import (
    SEEDS,
    assert_within_rounding,
    exact_m2,
    random_telemetry,
    rollup,
)

AS_OF = date(2026, 3, 7)


def hourly(key: str, bucket_start: str, values: list[float]) -> tuple:
    """The hourly rollup row of these readings; first and last play no part in baselines."""
    tenant, device, metric = key.split("/")
    values = [float(value) for value in values]
    return (tenant, device, metric, "C", bucket_start, None, len(values), sum(values),
            sum(v * v for v in values), exact_m2(values), min(values), max(values),
            0.0, bucket_start, 0.0, bucket_start)  # fmt: skip


def profile(by_hour: dict[int, float | int], empty: float | int | None) -> list:
    """A 24-element hour-of-day list: the given hours, `empty` elsewhere."""
    return [by_hour.get(hour, empty) for hour in range(24)]


HAND_1H = [
    hourly("acme/env-1/temperature", "2026-03-05 23:00:00", [18, 19, 20, 21, 22]),  # before
    hourly("acme/env-1/temperature", "2026-03-06 00:00:00", [19, 21]),
    hourly("acme/env-1/temperature", "2026-03-07 00:00:00", [21, 23]),
    hourly("acme/env-1/temperature", "2026-03-07 23:00:00", [24, 25, 25, 26]),
    hourly("acme/env-1/temperature", "2026-03-08 00:00:00", [30, 30, 30]),  # after the window
    hourly("acme/env-1/humidity", "2026-03-06 12:00:00", [50]),
    hourly("globex/env-9/temperature", "2026-03-05 12:00:00", [20] * 9),  # before the window
]


def test_baselines_by_hand():
    expected = pl.DataFrame(
        {
            "tenant_id": ["acme", "acme"],
            "device_id": ["env-1", "env-1"],
            "metric": ["humidity", "temperature"],
            "as_of_date": [AS_OF, AS_OF],
            "window_days": [2, 2],
            "count": [1, 8],
            # 19, 21, 21, 23, 24, 25, 25, 26: mean 23, squared deviations 42, 42 / 7 = 6.
            "mean": [50.0, 23.0],
            "stddev": [None, math.sqrt(6.0)],
            "hour_of_day_mean": [profile({12: 50.0}, None), profile({0: 21.0, 23: 25.0}, None)],
            "hour_of_day_count": [profile({12: 1}, 0), profile({0: 4, 23: 4}, 0)],
            "trusted": [False, True],
        },
        schema=BASELINE_SCHEMA,
    )
    actual = device_baselines(rollup(HAND_1H), AS_OF, window_days=2, min_samples=8)
    assert_frame_equal(actual, expected, check_exact=True)


@pytest.mark.parametrize(
    ("bucket_start", "window_days", "inside"),
    [
        pytest.param("2026-03-01 00:00:00", 7, True, id="first-hour-of-7-day-window"),
        pytest.param("2026-02-28 23:00:00", 7, False, id="hour-before-7-day-window"),
        pytest.param("2026-03-07 23:00:00", 7, True, id="last-hour-of-as-of-day"),
        pytest.param("2026-03-08 00:00:00", 7, False, id="day-after-as-of"),
        pytest.param("2026-03-07 00:00:00", 1, True, id="1-day-window-is-as-of-day"),
        pytest.param("2026-03-06 23:00:00", 1, False, id="1-day-window-excludes-day-before"),
    ],
)
def test_window_boundaries(bucket_start, window_days, inside):
    rows = [hourly("acme/env-1/temperature", bucket_start, [19, 20, 21])]
    baselines = device_baselines(rollup(rows), AS_OF, window_days=window_days)
    assert baselines.height == (1 if inside else 0)
    assert baselines.schema == BASELINE_SCHEMA


@pytest.mark.parametrize(("min_samples", "trusted"), [(7, True), (8, True), (9, False)])
def test_trusted_needs_min_samples_readings(min_samples, trusted):
    rows = [
        hourly("acme/env-1/temperature", "2026-03-07 01:00:00", [18, 19, 20, 21, 22]),
        hourly("acme/env-1/temperature", "2026-03-07 02:00:00", [19, 20, 21]),
    ]
    baselines = device_baselines(rollup(rows), AS_OF, min_samples=min_samples)
    assert baselines.get_column("trusted").to_list() == [trusted]


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ({"window_days": 0}, r"window_days must be a whole number of days >= 1; got 0"),
        ({"min_samples": 0}, r"min_samples must be an integer >= 1; got 0"),
    ],
)
def test_bad_arguments_are_refused_by_name(argument, message):
    with pytest.raises(ValueError, match=message):
        device_baselines(rollup(HAND_1H), AS_OF, **argument)


@pytest.mark.parametrize("seed", SEEDS)
def test_baselines_from_rollups_match_the_readings(seed):
    """Merged from 1m -> 1h rollups, a baseline equals statistics over the raw readings.

    Count, mean and hour-of-day counts exactly (the readings' sums are exact); the standard
    deviation within rounding, latitude and odometer (mean >> spread) included.
    """
    readings = random_telemetry(seed)
    as_of, window_days = date(2026, 3, 3), 2
    baselines = device_baselines(rollup_up(rollup_1m(readings), "1h"), as_of, window_days)
    groups: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    for row in readings.iter_rows(named=True):
        if date(2026, 3, 2) <= row["event_time"].date() <= as_of:
            key = (row["tenant_id"], row["device_id"], row["metric"])
            groups[key].append((row["event_time"].hour, row["value"]))
    expected = []
    for key, group in sorted(groups.items()):
        values = [value for _, value in group]
        counts = [sum(1 for hour, _ in group if hour == h) for h in range(24)]
        stddev = statistics.stdev(values) if len(values) > 1 else None
        expected.append((*key, len(values), statistics.fmean(values), stddev, counts))
    columns = ["tenant_id", "device_id", "metric", "count", "mean", "stddev", "hour_of_day_count"]
    oracle = pl.DataFrame(expected, schema=columns, orient="row").cast(
        {"count": pl.Int64, "hour_of_day_count": pl.List(pl.Int64)}
    )
    assert_frame_equal(
        baselines.select(columns).drop("stddev"), oracle.drop("stddev"), check_exact=True
    )
    assert_within_rounding(baselines["stddev"], oracle["stddev"], oracle["stddev"], oracle["mean"])
