"""Rollups: exact values by hand, and every level against a naive per-reading oracle.

Random readings are multiples of a power of two (1/16, 2^-30 for latitude) so that every sum
here is exact in float64 whatever the order of addition: merging levels re-associates the
additions, and with these values the oracle's sums and means must then match bit for bit.
Sums of squares of large values are not exact; m2 and the standard deviation are compared
to exact (rational) arithmetic within the rounding their conditioning allows, see
`assert_within_rounding`. Two metrics have a mean far above their spread (latitude
48.1 +- 1e-4, an odometer near 1e9 +- 2), where the sum-of-squares form of the variance
would fail that bound by orders of magnitude.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from polars.testing import assert_frame_equal

from iot_lake.gold.rollups import ROLLUP_SCHEMA, mean_and_stddev, rollup_1m, rollup_up

START = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)
# metric: unit, centre, spread, resolution (a power of two, so sums stay exact).
METRICS = {
    "temperature": ("C", 20.0, 6.0, 2**-4),
    "humidity": ("%", 55.0, 15.0, 2**-4),
    "battery": ("V", 3.5, 0.3, 2**-4),
    "latitude": ("deg", 48.1, 1e-4, 2**-30),
    "odometer": ("m", 1e9, 2.0, 2**-4),
}
STUCK = ("acme", "stuck-1")  # reports one constant value: its stddev must be exactly 0


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def telemetry(rows: Sequence[tuple[str, str, str, str | None, str, float]]) -> pl.DataFrame:
    """Silver readings from (tenant, device, metric, unit, event time, value) tuples."""
    tenant, device, metric, unit, time, value = zip(*rows, strict=True)
    return pl.DataFrame(
        {
            "tenant_id": tenant,
            "device_id": device,
            "metric": metric,
            "value": value,
            "unit": unit,
            "event_time": [ts(t) for t in time],
        },
        schema_overrides={"event_time": pl.Datetime("us", "UTC"), "unit": pl.String},
    )


# The rollup columns the hand-written rows spell out: bucket_hour follows from bucket_start.
WRITTEN_OUT = [name for name in ROLLUP_SCHEMA if name != "bucket_hour"]


def rollup(rows: list[tuple]) -> pl.DataFrame:
    """A rollup frame in the catalog schema from rows written out column by column."""
    frame = pl.DataFrame(rows, schema=WRITTEN_OUT, orient="row")
    return (
        frame.with_columns(
            pl.col(c).str.to_datetime(time_unit="us", time_zone="UTC")
            for c in ("bucket_start", "first_time", "last_time")
        )
        .with_columns(
            bucket_date=pl.col("bucket_start").dt.date(),
            bucket_hour=pl.col("bucket_start").dt.hour(),
            count=pl.col("count").cast(pl.Int64),
        )
        .select(ROLLUP_SCHEMA.names())
    )


HAND_READINGS = [
    ("acme", "env-1", "temperature", "C", "2026-03-02 10:00:59.999999", 19.5),
    ("globex", "env-1", "temperature", "C", "2026-03-02 10:00:10", 30.0),
    ("acme", "env-1", "temperature", "C", "2026-03-02 10:01:00", 18.5),
    ("acme", "env-1", "temperature", "C", "2026-03-02 10:00:00", 20.0),
    ("acme", "env-1", "humidity", "%", "2026-03-01 23:59:59.999999", 40.0),
    ("acme", "env-1", "temperature", "C", "2026-03-02 10:00:30", 22.0),
    ("acme", "env-1", "temperature", "C", "2026-03-02 10:01:00", 18.0),
    ("acme", "env-1", "temperature", "C", "2026-03-02 10:00:30", 21.0),
]

# tenant, device, metric, unit, bucket_start, bucket_date (derived), count, sum, sum_sq, m2,
# min, max, first_value, first_time, last_value, last_time
HAND_1M = [
    ("acme", "env-1", "humidity", "%", "2026-03-01 23:59:00", None, 1, 40.0, 1600.0, 0.0,
     40.0, 40.0, 40.0, "2026-03-01 23:59:59.999999", 40.0, "2026-03-01 23:59:59.999999"),
    # 20, 21, 22, 19.5: mean 20.625, squared deviations 0.390625 + 0.140625 + 1.890625 +
    # 1.265625.
    ("acme", "env-1", "temperature", "C", "2026-03-02 10:00:00", None, 4, 82.5, 1705.25, 3.6875,
     19.5, 22.0, 20.0, "2026-03-02 10:00:00", 19.5, "2026-03-02 10:00:59.999999"),
    # Two readings at 10:01:00 exactly: the smaller is first, the larger last.
    ("acme", "env-1", "temperature", "C", "2026-03-02 10:01:00", None, 2, 36.5, 666.25, 0.125,
     18.0, 18.5, 18.0, "2026-03-02 10:01:00", 18.5, "2026-03-02 10:01:00"),
    ("globex", "env-1", "temperature", "C", "2026-03-02 10:00:00", None, 1, 30.0, 900.0, 0.0,
     30.0, 30.0, 30.0, "2026-03-02 10:00:10", 30.0, "2026-03-02 10:00:10"),
]  # fmt: skip

HAND_1H = [
    ("acme", "env-1", "humidity", "%", "2026-03-01 23:00:00", None, 1, 40.0, 1600.0, 0.0,
     40.0, 40.0, 40.0, "2026-03-01 23:59:59.999999", 40.0, "2026-03-01 23:59:59.999999"),
    # Chan: 3.6875 + 0.125 + 4 (20.625 - 119/6)^2 + 2 (18.25 - 119/6)^2 = 34/3, rounded.
    ("acme", "env-1", "temperature", "C", "2026-03-02 10:00:00", None, 6, 119.0, 2371.5, 34 / 3,
     18.0, 22.0, 20.0, "2026-03-02 10:00:00", 18.5, "2026-03-02 10:01:00"),
    ("globex", "env-1", "temperature", "C", "2026-03-02 10:00:00", None, 1, 30.0, 900.0, 0.0,
     30.0, 30.0, 30.0, "2026-03-02 10:00:10", 30.0, "2026-03-02 10:00:10"),
]  # fmt: skip


def test_rollup_1m_by_hand():
    assert_frame_equal(rollup_1m(telemetry(HAND_READINGS)), rollup(HAND_1M), check_exact=True)


def test_rollup_1m_accepts_a_lazy_frame_with_extra_columns():
    lazy = telemetry(HAND_READINGS).lazy().with_columns(message_id=pl.lit("m"))
    assert_frame_equal(rollup_1m(lazy), rollup(HAND_1M), check_exact=True)


def test_rollup_1h_from_1m_by_hand():
    """Bit for bit, except m2: 34/3 is not a float, and the merge may round it one ulp off."""
    merged, expected = rollup_up(rollup(HAND_1M), "1h"), rollup(HAND_1H)
    assert_frame_equal(merged.drop("m2"), expected.drop("m2"), check_exact=True)
    assert_frame_equal(
        merged.select("m2"), expected.select("m2"), rel_tol=2 * sys.float_info.epsilon
    )


def test_rollup_1d_by_hand_keeps_the_utc_date():
    daily = rollup_up(rollup(HAND_1H), "1d")
    assert daily.select("tenant_id", "metric", "bucket_start", "bucket_date").rows() == [
        ("acme", "humidity", ts("2026-03-01 00:00"), ts("2026-03-01").date()),
        ("acme", "temperature", ts("2026-03-02 00:00"), ts("2026-03-02").date()),
        ("globex", "temperature", ts("2026-03-02 00:00"), ts("2026-03-02").date()),
    ]


def test_empty_input_gives_an_empty_rollup_in_the_catalog_schema():
    empty = telemetry(HAND_READINGS).clear()
    assert rollup_1m(empty).schema == ROLLUP_SCHEMA
    assert rollup_up(rollup_1m(empty), "1d").is_empty()


def test_unknown_level_is_refused_with_the_expected_forms():
    with pytest.raises(ValueError, match=r"every must be one of 1m, 1h, 1d; got '2h'"):
        rollup_up(rollup(HAND_1M), "2h")


def test_mean_and_sample_stddev_by_hand():
    frame = pl.DataFrame({"count": [4, 1], "sum": [16.0, 5.0], "m2": [8.0, 0.0]})
    # 2, 4, 4, 6: m2 = 4 + 0 + 0 + 4, divided by n - 1 = 3; one reading has no sample spread.
    expected = frame.with_columns(
        mean=pl.Series([4.0, 5.0]), stddev=pl.Series([math.sqrt(8 / 3), None])
    )
    assert_frame_equal(mean_and_stddev(frame), expected, check_exact=True)
    assert_frame_equal(mean_and_stddev(frame.lazy()).collect(), expected, check_exact=True)


def test_a_stuck_sensor_has_a_stddev_of_exactly_zero():
    """21.9 is not exact in binary: 600 x 21.9 / 600 may not give 21.9 back in the merge."""
    times = [START + timedelta(seconds=6 * i) for i in range(600)]
    readings = telemetry(
        [("acme", "env-1", "temperature", "C", t.isoformat()[:26], 21.9) for t in times]
    )
    hourly = mean_and_stddev(rollup_up(rollup_1m(readings), "1h"))
    assert hourly.get_column("stddev").to_list() == [0.0, 0.0]


# --- property tests against a naive oracle -------------------------------------------------


def random_telemetry(seed: int, readings: int = 3000) -> pl.DataFrame:
    """Irregular readings over ~2.5 days across hour and day boundaries, with ties."""
    rng = random.Random(seed)
    devices = [("acme", f"env-{i}") for i in range(4)] + [("globex", "env-1"), STUCK]
    span_us = int(timedelta(days=2, hours=3).total_seconds() * 1e6)
    rows = []
    for _ in range(readings):
        tenant, device = rng.choice(devices)
        metric = rng.choice(list(METRICS))
        unit, centre, spread, resolution = METRICS[metric]
        time = _random_time(rng, span_us)
        value = 21.5 if (tenant, device) == STUCK else rng.gauss(centre, spread)
        rows.append((tenant, device, metric, unit, time, round(value / resolution) * resolution))
    # Same device, metric and event time, different values: first/last must not depend on
    # row order.
    rows += [(*row[:5], row[5] + 1) for row in rng.sample(rows, 30)]
    rng.shuffle(rows)
    return pl.DataFrame(
        rows,
        schema=["tenant_id", "device_id", "metric", "unit", "event_time", "value"],
        orient="row",
    ).with_columns(pl.col("event_time").dt.cast_time_unit("us"))


def _random_time(rng: random.Random, span_us: int) -> datetime:
    """Mostly uniform; one in ten exactly on, or just before, an hour or day boundary."""
    offset = timedelta(microseconds=rng.randrange(span_us))
    if rng.random() < 0.1:
        hour = (START + offset).replace(minute=0, second=0, microsecond=0)
        return hour - timedelta(microseconds=rng.choice([0, 1]))
    return START + offset


def naive(readings: pl.DataFrame, bucket_of: Callable[[datetime], datetime]) -> pl.DataFrame:
    """The rollup computed directly from the readings, one Python loop, no polars group-by."""
    groups: dict[tuple, list[tuple[datetime, float, str]]] = defaultdict(list)
    for row in readings.iter_rows(named=True):
        key = (row["tenant_id"], row["device_id"], row["metric"], bucket_of(row["event_time"]))
        groups[key].append((row["event_time"], row["value"], row["unit"]))
    out = []
    for key, group in sorted(groups.items()):
        values = [value for _, value, _ in group]
        first, last = min(group), max(group)
        mean = statistics.fmean(values) if len(values) > 1 else values[0]
        stddev = statistics.stdev(values) if len(values) > 1 else None
        out.append(
            (*key[:3], group[0][2], key[3], key[3].date(), len(values), math.fsum(values),
             math.fsum(v * v for v in values), exact_m2(values), min(values), max(values),
             first[1], first[0], last[1], last[0], mean, stddev)
        )  # fmt: skip
    frame = pl.DataFrame(out, schema=[*WRITTEN_OUT, "mean", "stddev"], orient="row")
    with_hour = frame.with_columns(bucket_hour=pl.col("bucket_start").dt.hour().cast(pl.Int8))
    return with_hour.select(*ROLLUP_SCHEMA.names(), "mean", "stddev").cast(
        ROLLUP_SCHEMA  # type: ignore[arg-type]
    )


def exact_m2(values: Sequence[float]) -> float:
    """The sum of squared deviations from the mean in rational arithmetic, rounded once."""
    exact = [Fraction(value) for value in values]
    mean = sum(exact) / len(exact)
    return float(sum((value - mean) ** 2 for value in exact))


def minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def day(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


LEVELS = {
    "1m": (minute, rollup_1m),
    "1h_from_1m": (hour, lambda x: rollup_up(rollup_1m(x), "1h")),
    "1d_from_1h_from_1m": (day, lambda x: rollup_up(rollup_up(rollup_1m(x), "1h"), "1d")),
}
SEEDS = [pytest.param(seed, id=f"seed-{seed}") for seed in (1, 7, 2026)]


# Relative rounding allowed in m2 and stddev per unit of conditioning (see below); the worst
# measured on these tests is 0.31 eps.
ROUNDING_PER_CONDITION = 8 * sys.float_info.epsilon


def assert_within_rounding(
    actual: pl.Series, expected: pl.Series, stddev: pl.Series, mean: pl.Series
) -> None:
    """`actual` equals the exact `expected` m2 or stddev up to what float64 data allows.

    A bucket's mean is known to about one ulp of itself, so the spread of merged bucket
    means around the total mean, which Chan's merge adds up, is known to relative
    eps * |mean| / stddev: no method working from float64 sums does better. The bound is
    `ROUNDING_PER_CONDITION * (1 + |mean| / stddev)` relative: near machine precision for
    ordinary metrics (temperature 20 +- 6: ~1e-14), looser only in proportion to
    mean / stddev. The sum-of-squares form errs in proportion to (mean / stddev)^2 and fails
    it: on these tests it gave 0 for every latitude and odometer bucket with a spread (its
    cancellation fell below the old clamp), 1.0 relative error. Nulls must match, and a zero
    spread (a stuck sensor) must come out exactly zero.
    """
    assert actual.is_null().to_list() == expected.is_null().to_list()
    frame = pl.DataFrame({"actual": actual, "expected": expected, "stddev": stddev, "mean": mean})
    conditioning = 1 + pl.col("mean").abs() / pl.col("stddev")
    error = (pl.col("actual") - pl.col("expected")).abs()
    allowed = ROUNDING_PER_CONDITION * conditioning * pl.col("expected")
    checked = frame.filter(pl.col("expected").is_not_null()).with_columns(
        excess=pl.when(pl.col("expected") == 0).then(error).otherwise(error - allowed),
        relative_error=error / pl.col("expected"),
    )
    assert (checked["excess"] <= 0).all(), checked.sort("excess").tail(3)


def assert_matches_oracle(actual: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Rollup columns and mean bit for bit, sum_sq to 1e-13; m2 and stddev within rounding."""
    inexact = ["sum_sq", "m2"]
    assert_frame_equal(
        actual.drop(inexact),
        expected.select(ROLLUP_SCHEMA.names()).drop(inexact),
        check_exact=True,
    )
    assert_frame_equal(
        actual.select("sum_sq"), expected.select("sum_sq"), rel_tol=1e-13, abs_tol=0.0
    )
    stats = mean_and_stddev(actual)
    assert_frame_equal(stats.select("mean"), expected.select("mean"), check_exact=True)
    spread = expected["stddev"], expected["mean"]
    assert_within_rounding(stats["m2"], expected["m2"], *spread)
    assert_within_rounding(stats["stddev"], expected["stddev"], *spread)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("level", list(LEVELS))
def test_levels_match_the_naive_oracle(level, seed):
    readings = random_telemetry(seed)
    bucket_of, compute = LEVELS[level]
    assert_matches_oracle(compute(readings), naive(readings, bucket_of))


@pytest.mark.parametrize("seed", SEEDS)
def test_partial_rollups_of_one_bucket_merge_to_the_whole(seed):
    """Late data: a bucket rolled up in two parts and merged equals one rollup of it all."""
    readings = random_telemetry(seed).with_row_index()
    early, late = (
        readings.filter(pl.col("index") % 3 != 0),
        readings.filter(pl.col("index") % 3 == 0),
    )
    merged = rollup_up(pl.concat([rollup_1m(late), rollup_1m(early)]), "1m")
    assert_matches_oracle(merged, naive(readings.drop("index"), minute))


@pytest.mark.parametrize("seed", SEEDS)
def test_recomputing_a_partition_is_idempotent_and_row_order_free(seed):
    """Rerun or shuffled, the rollup matches the oracle again: same rows, same first and last.

    Not bit for bit in m2 (nor, on real data, in sum and sum_sq): polars' default engine adds
    partial aggregates in the order its threads finish, so a float sum may differ in its last
    bits from one run to the next. The readings here keep sum exact; m2 stays within rounding.
    """
    readings = random_telemetry(seed)
    expected = naive(readings, hour)
    shuffled = readings.sample(fraction=1.0, shuffle=True, seed=seed)
    for run in (readings, readings, shuffled):
        assert_matches_oracle(rollup_up(rollup_1m(run), "1h"), expected)


def _dictionary_chunks(frame: pl.DataFrame, chunks: int) -> pa.Table:
    """The frame as Arrow with dictionary-encoded strings, each chunk its own dictionaries,
    as a Parquet scan with `dictionary_columns` hands them over."""
    table = frame.to_arrow()
    size = -(-table.num_rows // chunks)
    batches = []
    for start in range(0, table.num_rows, size):
        part = table.slice(start, size)
        encoded = [
            pc.dictionary_encode(part.column(name)).combine_chunks()
            if pa.types.is_large_string(part.schema.field(name).type)
            else part.column(name).combine_chunks()
            for name in part.column_names
        ]
        batches.append(pa.record_batch(encoded, names=part.column_names))
    return pa.Table.from_batches(batches)


@pytest.mark.parametrize("seed", SEEDS)
def test_rollup_1m_is_the_same_to_the_bit_from_any_row_order_or_encoding(seed):
    """Shuffled rows, dictionary-encoded chunks, and an input so wide that its sort key does
    not fit one Int64 with the time (the general sort) all give the same bits."""
    readings = random_telemetry(seed)
    expected = rollup_1m(readings)
    shuffled = readings.sample(fraction=1.0, shuffle=True, seed=seed)
    assert_frame_equal(rollup_1m(shuffled), expected, check_exact=True)
    assert_frame_equal(rollup_1m(_dictionary_chunks(shuffled, 3)), expected, check_exact=True)
    # One reading ~5,000 years on: 3 tenant x 7 device x 6 metric ranks x 2.6e9 minutes is
    # over 2^37 buckets, too many to pack beside 26 bits of microseconds.
    far = datetime(7026, 1, 1, tzinfo=UTC)
    far_reading = telemetry([("acme", "far-1", "humidity", "%", "7026-01-01", 1.0)])
    wide = pl.concat([shuffled, far_reading.select(shuffled.columns)])
    wide_rollup = rollup_1m(wide)
    assert wide_rollup.filter(pl.col("bucket_start") == far).height == 1
    assert_frame_equal(wide_rollup.filter(pl.col("bucket_start") < far), expected, check_exact=True)
