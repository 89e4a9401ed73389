"""Data quality of telemetry and the rollups: what is checked, and the verdicts, per event day.

The expectations follow from the catalogs (`iot_lake.quality.expectations` builds them as Great
Expectations suites): the table catalog's key columns are not null and unique together,
and each known metric's canonical-unit values lie within the metric catalog's plausible
range. A metric the catalog does not know, or a known one in a unit it could not convert,
has no range and is not range-checked (see `iot_lake.silver.metrics`).

Hard failures and thresholds. A null or duplicated key means a writer is broken: rollups
would drop or double-count readings, so those expectations hold for every row or fail. A
reading outside its plausible range usually means a broken sensor, and a fleet always has
a few (the simulator spikes one reading in a thousand on purpose): failing the fleet's day
for them would block every rollup and alert because of one device, while device-level
alerting is what should catch it. So a range holds when at least `range_mostly` of a
metric's rows of the day are inside it, per metric, so a metric whose readings are all
wrong cannot hide behind the healthy ones. The default 0.99 tolerates 1 reading in 100
(100 devices of 10,000 with a dead sensor all day) and fails on what is systematic: a
firmware wave reporting mV as V, a unit conversion bug. 1.0 makes every reading count.

Ranges are checked on telemetry (per reading) and on rollup_1m (each bucket's min and max).
A bucket stands for all its readings (six for a device reporting every 10 s), and one spike
puts the whole bucket out of range, so rollup_1m's tolerance is counted in readings, as
telemetry's is: at most (1 - `range_mostly`) of the readings behind a metric's buckets may
sit in out-of-range buckets. A bucket out of range holds at least one reading out of range,
so a day whose telemetry passes passes here too; counted in buckets, the demo fleet's
spikes (0.3% of speed readings) failed 1.9% of its speed buckets and blocked every rollup
of the day. Not checked on rollup_1h and rollup_1d: with hundreds of readings behind a
bucket, that tolerance would excuse every bucket; their values are merged from rollup_1m,
which is checked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from iot_lake.lake.catalog import ROLLUP_1D, ROLLUP_1H, ROLLUP_1M, TELEMETRY, TableSpec
from iot_lake.lake.partitions import EventWindow
from iot_lake.lake.tables import Lake
from iot_lake.lake.windows import read_window

# The checks an expectation can belong to; each must hold for downstream assets to run.
KEYS_NOT_NULL = "keys_not_null"
KEYS_UNIQUE = "keys_unique"
VALUES_IN_RANGE = "values_in_range"

DEFAULT_RANGE_MOSTLY = 0.99
DEFAULT_MAX_LAG = timedelta(hours=1)
# Rows GX validates at once: about 1.5 GB of pandas working memory (see validate_in_shards).
DEFAULT_MAX_ROWS = 5_000_000
EXAMPLES = 5

# The columns whose values must lie within their metric's range, per checked table: a
# reading's value; a 1-minute bucket's min and max (both inside <=> all its readings are).
RANGE_COLUMNS: dict[str, tuple[str, ...]] = {
    TELEMETRY.name: ("value",),
    ROLLUP_1M.name: ("min", "max"),
    ROLLUP_1H.name: (),
    ROLLUP_1D.name: (),
}
# Where a row stands for several readings: the column that says how many (a row is one
# reading elsewhere). The range tolerance is counted in readings.
READINGS_COLUMN: dict[str, str] = {ROLLUP_1M.name: "count"}
CHECKED_TABLES = (TELEMETRY, ROLLUP_1M, ROLLUP_1H, ROLLUP_1D)


class QualityError(RuntimeError):
    """An expectation could not be evaluated (a missing column, say): fail, never pass."""


def checks_for(spec: TableSpec) -> tuple[str, ...]:
    """The blocking checks of a table: keys always, ranges where it has range columns."""
    ranges = (VALUES_IN_RANGE,) if RANGE_COLUMNS[spec.name] else ()
    return (KEYS_NOT_NULL, KEYS_UNIQUE, *ranges)


def columns_for(spec: TableSpec) -> list[str]:
    """The only columns a validation reads: keys, metric and unit, the range-checked values."""
    ranged = RANGE_COLUMNS[spec.name]
    readings = READINGS_COLUMN.get(spec.name)
    wanted = {*spec.key_columns, "metric", "unit", *ranged, *([readings] if readings else [])}
    return [name for name in spec.column_names if name in wanted]


def range_mostly_of_rows(
    spec: TableSpec, frame: pl.DataFrame, range_mostly: float
) -> dict[tuple[str, str], float]:
    """Per (metric, unit): the share of rows that must be in range, for `range_mostly` of readings.

    With r readings behind n rows, (1 - range_mostly) * r rows may miss, so the rows' own
    share is 1 - (1 - range_mostly) * r / n (0 when that tolerance covers every row). Empty
    for a table whose rows are readings: there the two shares are the same.
    """
    column = READINGS_COLUMN.get(spec.name)
    if column is None or frame.is_empty():
        return {}
    shares = frame.group_by("metric", "unit").agg(rows=pl.len(), readings=pl.col(column).sum())
    return {
        (metric, unit): max(0.0, 1.0 - (1.0 - range_mostly) * readings / rows)
        for metric, unit, rows, readings in shares.iter_rows()
        if metric is not None and unit is not None
    }


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation over one partition: what it asked, what it saw, examples of misses.

    `unexpected_percent` is the observed value the expectation judged: the share of the
    rows it applied to (a metric's rows, for a range) that missed. `tolerated` is how many
    rows could miss with the expectation still holding: none for keys, (1 - mostly) of the
    readings behind the rows for a range.
    """

    check: str
    name: str
    passed: bool
    element_count: int
    unexpected_count: int
    unexpected_percent: float
    tolerated: float
    examples: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Validation:
    """A table's suite run against one event day."""

    table: str
    day: date
    rows: int
    seconds: float
    outcomes: tuple[ExpectationOutcome, ...]

    @property
    def passed(self) -> bool:
        """True when every expectation held."""
        return all(outcome.passed for outcome in self.outcomes)

    def of_check(self, check: str) -> tuple[ExpectationOutcome, ...]:
        """The outcomes of one check's expectations."""
        return tuple(outcome for outcome in self.outcomes if outcome.check == check)


@dataclass(frozen=True)
class CheckSummary:
    """One check over the days of a run: passed only if it held on every day."""

    check: str
    rows: int
    outcomes: tuple[tuple[date, ExpectationOutcome], ...]

    @property
    def passed(self) -> bool:
        """True when every expectation of the check held on every day."""
        return all(outcome.passed for _, outcome in self.outcomes)

    @property
    def unexpected_count(self) -> int:
        """Rows that missed an expectation of this check, over all days."""
        return sum(outcome.unexpected_count for _, outcome in self.outcomes)

    @property
    def failed(self) -> list[str]:
        """One line per failed expectation: day, expectation, how many rows missed."""
        return [
            f"{day.isoformat()}: {outcome.name}: {outcome.unexpected_count} of "
            f"{outcome.element_count} rows ({outcome.unexpected_percent:.2f}%), "
            f"{int(outcome.tolerated)} tolerated"
            for day, outcome in self.outcomes
            if not outcome.passed
        ]

    @property
    def examples(self) -> list[dict[str, Any]]:
        """A few missing rows, those of failed expectations first, with day and expectation."""
        ordered = sorted(self.outcomes, key=lambda pair: pair[1].passed)
        found = [
            {"day": day.isoformat(), "expectation": outcome.name, **example}
            for day, outcome in ordered
            for example in outcome.examples
        ]
        return found[:EXAMPLES]


def summarize(validations: Sequence[Validation], check: str) -> CheckSummary:
    """One check's verdict over the days a run covered."""
    outcomes = tuple(
        (validation.day, outcome)
        for validation in validations
        for outcome in validation.of_check(check)
    )
    return CheckSummary(check, sum(validation.rows for validation in validations), outcomes)


def _merged(shards: Sequence[ExpectationOutcome]) -> ExpectationOutcome:
    """One expectation over a whole day from its outcome on each device shard.

    Counts add up because every key holds the device id, so a duplicate never spans two
    shards, and so do the rows each shard tolerated: the verdict over the day is the one
    rule of the expectation (keys hold on every row; a range on `range_mostly` of the
    metric's readings) applied to the sums.
    """
    rows = sum(shard.element_count for shard in shards)
    unexpected = sum(shard.unexpected_count for shard in shards)
    tolerated = sum(shard.tolerated for shard in shards)
    return ExpectationOutcome(
        check=shards[0].check,
        name=shards[0].name,
        passed=unexpected <= tolerated,
        element_count=rows,
        unexpected_count=unexpected,
        unexpected_percent=100.0 * unexpected / rows if rows else 0.0,
        tolerated=tolerated,
        examples=tuple(example for shard in shards for example in shard.examples)[:EXAMPLES],
    )


def validate_in_shards(
    spec: TableSpec,
    frame: pl.DataFrame,
    day: date,
    range_mostly: float = DEFAULT_RANGE_MOSTLY,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Validation:
    """Run the suite on a day's rows in device shards of at most about `max_rows` rows.

    GX's pandas engine needs several times the frame's Arrow size while it works (about
    300 MB per million telemetry rows): a day of 10,000 devices (86M rows) at once would
    need tens of GB, one shard a bounded amount. Only the Arrow frame of the day's needed
    columns (about 40 MB per million rows) is held whole.
    """
    # Imported here: loading GX takes seconds, which only a validating process should pay.
    from iot_lake.quality.expectations import validate_frame

    shards = max(1, -(-frame.height // max_rows))
    if shards == 1:
        return validate_frame(spec, frame, day, range_mostly)
    started = time.perf_counter()
    shard = pl.col("device_id").hash() % shards
    parts = [
        validate_frame(spec, frame.filter(shard == index), day, range_mostly)
        for index in range(shards)
    ]
    outcomes = tuple(_merged(same) for same in zip(*(part.outcomes for part in parts), strict=True))
    return Validation(spec.name, day, frame.height, time.perf_counter() - started, outcomes)


def validate_day(
    lake: Lake,
    spec: TableSpec,
    window: EventWindow,
    range_mostly: float = DEFAULT_RANGE_MOSTLY,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Validation:
    """Run a table's suite against one event day, or some hours of it, on the columns it needs."""
    frame = read_window(lake, spec, window).select(columns_for(spec)).collect()
    return validate_in_shards(spec, frame, window.start, range_mostly, max_rows)


def validate_window(
    lake: Lake, spec: TableSpec, window: EventWindow, range_mostly: float = DEFAULT_RANGE_MOSTLY
) -> list[Validation]:
    """The suite run day by day, so memory is bounded by one day whatever a run covers.

    A window of some hours of a day (a run the sensor requested for new rows) validates just
    those hours of a table that has an hour column: what the run rewrote, at the cost of the
    new data; a backfill or replay validates whole days.
    """
    if window.hours is not None and spec.hour_column is not None:
        return [validate_day(lake, spec, window, range_mostly)]
    return [validate_day(lake, spec, EventWindow.day(day), range_mostly) for day in window.days()]


@dataclass(frozen=True)
class Freshness:
    """How far a window's newest reading lags behind the moment it should have reached."""

    newest_event_time: datetime | None
    reference_time: datetime
    max_lag: timedelta

    @property
    def lag(self) -> timedelta | None:
        """reference_time - newest_event_time; None when the window holds no rows."""
        if self.newest_event_time is None:
            return None
        return self.reference_time - self.newest_event_time

    @property
    def passed(self) -> bool:
        """Fresh when there is data and its newest reading lags by at most max_lag."""
        return self.lag is not None and self.lag <= self.max_lag


def freshness(
    lake: Lake,
    spec: TableSpec,
    window: EventWindow,
    now: datetime,
    max_lag: timedelta = DEFAULT_MAX_LAG,
) -> Freshness:
    """The lag of a window's newest event_time behind its end, or behind now while it is open.

    Against the window's end for a closed day, so re-running an old day tells whether its
    data stops early (a consumer or fleet outage), not merely how old the day is.
    """
    newest = read_window(lake, spec, window).select(pl.col("event_time").max()).collect().item()
    reference = min(now.astimezone(UTC), window.end_time)
    return Freshness(newest, reference, max_lag)
