"""Per device x metric baselines over a trailing window of hourly rollups.

A baseline is what "normal" looks like for one device's metric: the mean and (sample)
standard deviation over the last `window_days` UTC days ending on `as_of`, and an
hour-of-day profile, because many metrics (temperature, load, battery drain) follow the
daily cycle and a 3 a.m. reading should be judged against other 3 a.m. readings. All of it is
merged from the rollups' count, sum and m2 (Chan's merge, as between rollup levels), so it is
exact, not an average of averages.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Final

import polars as pl

from iot_lake.gold.rollups import (
    KEY_COLUMNS,
    constant_has_no_spread,
    mean_expr,
    merged_m2,
    spread_between,
    stddev_expr,
)
from iot_lake.lake.catalog import DEVICE_BASELINES

BASELINE_SCHEMA: Final = pl.DataFrame(DEVICE_BASELINES.schema.empty_table()).schema

# Readings needed before a baseline is trusted for alerting. From n readings the sample
# standard deviation is within about +-14% of the true one (95%, normal data) at n = 100, so
# a z-score threshold means roughly what it says; below that, alerts should fall back to
# static limits.
DEFAULT_MIN_SAMPLES: Final = 100

HOURS_PER_DAY: Final = 24


def device_baselines(
    rollup_1h: pl.DataFrame | pl.LazyFrame,
    as_of: date,
    window_days: int = 7,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> pl.DataFrame:
    """Each device x metric's baseline over the `window_days` UTC days ending on `as_of`.

    The window holds buckets starting in [as_of - window_days + 1 day 00:00, as_of + 1 day
    00:00) UTC. Only keys with readings in the window get a row. An hour of day without
    readings has count 0 and a null mean (null, not NaN: NaN would slip through arithmetic
    and comparisons downstream, null is the lake's "unknown"). Any rollup level of one hour or
    finer works as input; 1h is the cheapest.
    """
    if window_days < 1:
        raise ValueError(f"window_days must be a whole number of days >= 1; got {window_days}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be an integer >= 1; got {min_samples}")
    by_hour = _hourly_totals(_in_window(rollup_1h.lazy(), as_of, window_days)).collect()
    totals = _merge(by_hour.lazy(), list(KEY_COLUMNS))
    baselines = (
        totals.join(_hour_profile(by_hour), on=KEY_COLUMNS, how="left")
        .with_columns(
            as_of_date=pl.lit(as_of, pl.Date),
            window_days=pl.lit(window_days, pl.Int32),
            mean=mean_expr(),
            stddev=stddev_expr(),
            trusted=pl.col("count") >= min_samples,
        )
        .sort(KEY_COLUMNS)
    )
    return baselines.select(
        pl.col(name).cast(dtype) for name, dtype in BASELINE_SCHEMA.items()
    ).collect()


def window_bounds(as_of: date, window_days: int) -> tuple[datetime, datetime]:
    """The window's [start, end) in UTC: whole days, the last one being `as_of`."""
    end = datetime.combine(as_of + timedelta(days=1), time(), tzinfo=UTC)
    return end - timedelta(days=window_days), end


def _in_window(rollup: pl.LazyFrame, as_of: date, window_days: int) -> pl.LazyFrame:
    """Buckets that start inside the window."""
    start, end = window_bounds(as_of, window_days)
    bucket = pl.col("bucket_start")
    return rollup.filter(bucket >= start, bucket < end)


def _hourly_totals(rollup: pl.LazyFrame) -> pl.LazyFrame:
    """Count, sum, m2, min and max per key and UTC hour of day, merged over the window."""
    with_hour = rollup.with_columns(hour=pl.col("bucket_start").dt.hour())
    return _merge(with_hour, [*KEY_COLUMNS, "hour"])


def _merge(parts: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
    """Count, sum, m2, min and max of the parts merged per group of `by` (Chan's merge)."""
    return (
        parts.with_columns(spread_between(by))
        .group_by(by)
        .agg(pl.col("count", "sum").sum(), merged_m2(), pl.col("min").min(), pl.col("max").max())
        .with_columns(constant_has_no_spread())
    )


def _hour_profile(by_hour: pl.DataFrame) -> pl.LazyFrame:
    """24-element lists (hour 0 first) of mean and count per key; empty hours count 0."""
    hours = pl.LazyFrame({"hour": range(HOURS_PER_DAY)}, schema={"hour": pl.Int8})
    grid = by_hour.lazy().select(KEY_COLUMNS).unique().join(hours, how="cross")
    return (
        grid.join(by_hour.lazy(), on=[*KEY_COLUMNS, "hour"], how="left")
        .sort(*KEY_COLUMNS, "hour")
        .group_by(KEY_COLUMNS, maintain_order=True)
        .agg(
            hour_of_day_mean=pl.col("sum") / pl.col("count"),
            hour_of_day_count=pl.col("count").fill_null(0),
        )
    )
