"""Asset checks on telemetry and the rollups: blocking quality gates and a freshness warning.

Keys not null, keys unique and values within the metric catalog's ranges are blocking
checks of severity ERROR: when one fails, the assets built from the checked table in the
same run (rollup_1m after telemetry, and so on) do not execute, so bad data stops at the
table where it appeared. Freshness only warns: a quiet fleet is worth a look, not a reason
to hold back the data that did arrive.

The checks are partitioned like their assets (`partitions_def` on a check is a preview
feature in dagster 1.13): a one-day run, as raw_landing_sensor launches, records each
result against that day. A range run (a backfill, up to 7 days per run) has no single
partition key and Dagster takes one result per check per run: the check validates every
day of the run separately (memory stays one day's worth) and fails if any day failed, the
failing days named in its metadata; the result is recorded for the run, not per day.
"""

# No `from __future__ import annotations` here: Dagster reads the context, config and
# resource annotations when the definition is built, and string annotations fail its checks.

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
from pydantic import Field

from assets.metadata import markdown_preview
from assets.partitions import event_date_partitions, run_window
from iot_lake.lake.catalog import ROLLUP_1D, ROLLUP_1H, ROLLUP_1M, TELEMETRY, TableSpec
from iot_lake.lake.partitions import EventWindow
from iot_lake.quality.checks import (
    DEFAULT_MAX_LAG,
    DEFAULT_RANGE_MOSTLY,
    KEYS_NOT_NULL,
    KEYS_UNIQUE,
    VALUES_IN_RANGE,
    CheckSummary,
    checks_for,
    freshness,
    summarize,
    validate_window,
)
from resources.lake import LakeResource

FRESHNESS = "freshness"

CHECK_DESCRIPTIONS = {
    KEYS_NOT_NULL: "Every key column is set on every row (a null key is a broken writer).",
    KEYS_UNIQUE: "No two rows share a key (a duplicate would be counted twice downstream).",
    VALUES_IN_RANGE: (
        "Each known metric's values lie within the metric catalog's range for at least "
        "range_mostly of its rows of the day (a few broken sensors pass, systematic errors fail)."
    ),
}


class QualityConfig(dg.Config):
    """How strict the range check is; keys are always checked on every row."""

    range_mostly: float = Field(
        default=DEFAULT_RANGE_MOSTLY,
        gt=0.0,
        le=1.0,
        description="Share of a metric's rows of a day that must lie within its range.",
    )


class FreshnessConfig(dg.Config):
    """How far behind the newest reading of a day may be before the check warns."""

    max_lag_minutes: float = Field(default=DEFAULT_MAX_LAG.total_seconds() / 60, gt=0.0)


def check_result(summary: CheckSummary, config: QualityConfig) -> dg.AssetCheckResult:
    """A check's verdict with what the UI should show: counts, failures, example rows."""
    outcomes = [
        {
            "day": day.isoformat(),
            "expectation": outcome.name,
            "passed": outcome.passed,
            "rows": outcome.element_count,
            "unexpected": outcome.unexpected_count,
            "unexpected_%": round(outcome.unexpected_percent, 4),
        }
        for day, outcome in summary.outcomes
    ]
    metadata: dict[str, dg.MetadataValue] = {
        "rows_validated": dg.MetadataValue.int(summary.rows),
        "unexpected_count": dg.MetadataValue.int(summary.unexpected_count),
        "failed_expectations": dg.MetadataValue.int(len(summary.failed)),
        "expectations": dg.MetadataValue.md(markdown_preview(pl.DataFrame(outcomes))),
        "unexpected_examples": dg.MetadataValue.json(summary.examples),
    }
    if summary.check == VALUES_IN_RANGE:
        metadata["range_mostly"] = dg.MetadataValue.float(config.range_mostly)
    held = f"{len(outcomes)} of {len(outcomes)} expectations held"
    description = "; ".join(summary.failed) or held
    return dg.AssetCheckResult(
        check_name=summary.check,
        passed=summary.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata=metadata,
    )


def table_quality_checks(spec: TableSpec) -> dg.AssetChecksDefinition:
    """The blocking checks of one table, evaluated together from one read of each day."""

    @dg.multi_asset_check(
        name=f"{spec.name}_quality",
        specs=[
            dg.AssetCheckSpec(
                check,
                asset=spec.name,
                description=CHECK_DESCRIPTIONS[check],
                blocking=True,
                partitions_def=event_date_partitions,
            )
            for check in checks_for(spec)
        ],
    )
    def table_quality(
        context: dg.AssetCheckExecutionContext, config: QualityConfig, lake: LakeResource
    ) -> Iterator[dg.AssetCheckResult]:
        window = run_window(context)
        validations = validate_window(lake.lake(), spec, window, config.range_mostly)
        for validation in validations:
            context.log.info(
                f"{spec.name} {validation.day}: {validation.rows} rows validated in "
                f"{validation.seconds:.1f} s"
            )
        for check in checks_for(spec):
            yield check_result(summarize(validations, check), config)

    return table_quality


telemetry_quality = table_quality_checks(TELEMETRY)
rollup_1m_quality = table_quality_checks(ROLLUP_1M)
rollup_1h_quality = table_quality_checks(ROLLUP_1H)
rollup_1d_quality = table_quality_checks(ROLLUP_1D)


@dg.asset_check(
    asset=TELEMETRY.name,
    name=FRESHNESS,
    blocking=False,
    partitions_def=event_date_partitions,
)
def telemetry_freshness(
    context: dg.AssetCheckExecutionContext, config: FreshnessConfig, lake: LakeResource
) -> dg.AssetCheckResult:
    """The newest reading of the day is at most max_lag_minutes behind the day's end (or now).

    A WARN, never blocking: a fleet that went quiet should be looked at, but the readings
    that did arrive are still right. Measured on event time, which Dagster's built-in
    freshness checks cannot see (they judge when the asset was last materialized, and a
    day rebuilt a minute ago can still hold data that stopped at noon).
    """
    window = EventWindow.from_datetimes(*context.partition_time_window)
    max_lag = timedelta(minutes=config.max_lag_minutes)
    found = freshness(lake.lake(), TELEMETRY, window, datetime.now(UTC), max_lag)
    lag = found.lag
    metadata = {
        "newest_event_time": dg.MetadataValue.text(
            found.newest_event_time.isoformat() if found.newest_event_time else "no rows"
        ),
        "reference_time": dg.MetadataValue.text(found.reference_time.isoformat()),
        "max_lag_minutes": dg.MetadataValue.float(config.max_lag_minutes),
    }
    if lag is None:
        description = "no readings for this day"
    else:
        minutes = round(lag.total_seconds() / 60, 1)
        metadata["lag_minutes"] = dg.MetadataValue.float(minutes)
        description = f"newest reading {minutes} min behind (at most {config.max_lag_minutes})"
    return dg.AssetCheckResult(
        passed=found.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


QUALITY_CHECKS = [
    telemetry_quality,
    telemetry_freshness,
    rollup_1m_quality,
    rollup_1h_quality,
    rollup_1d_quality,
]
