"""The Great Expectations side of the quality checks: suites from the catalogs, and running one.

Kept apart from `iot_lake.quality.checks` because importing GX (scipy, altair, every datasource)
takes seconds: only a process that validates pays for it, not every process that loads the
Dagster code location. GX has no polars engine, so a partition goes to its pandas engine,
restricted to the columns the suite reads and Arrow-backed (`use_pyarrow_extension_array`:
no copy of the strings into Python objects).

Much of GX's cost is fixed per expectation (building its metric graph, ~0.1 s each here)
rather than per row; the measured figures are in docs/performance.md ("Quality checks").
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import great_expectations as gx
import pandas as pd
import polars as pl
from great_expectations.core.expectation_validation_result import (
    ExpectationValidationResult,
)
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.expectations.row_conditions import Column

from iot_lake.lake.catalog import TableSpec
from iot_lake.quality.checks import (
    DEFAULT_RANGE_MOSTLY,
    EXAMPLES,
    KEYS_NOT_NULL,
    KEYS_UNIQUE,
    RANGE_COLUMNS,
    VALUES_IN_RANGE,
    ExpectationOutcome,
    QualityError,
    Validation,
    columns_for,
    range_mostly_of_rows,
)
from iot_lake.silver.metrics import METRICS, MetricSpec


def _meta(check: str, name: str) -> dict[str, str]:
    """What an expectation reports under: its check, and a name a person can read."""
    return {"check": check, "name": name}


def _range_expectations(
    column: str,
    metrics: Mapping[str, MetricSpec],
    mostly: float,
    mostly_of_rows: Mapping[tuple[str, str], float],
) -> list[gx.expectations.Expectation]:
    """Per known metric: `column` within its range, for rows in its canonical unit.

    `mostly_of_rows` gives, per (metric, unit), the share of rows for `mostly` of the
    readings where a row stands for several (iot_lake.quality.checks.range_mostly_of_rows).
    """
    expectations: list[gx.expectations.Expectation] = []
    for spec in metrics.values():
        # A known metric in a unit the catalog cannot convert keeps the value as reported
        # (iot_lake.silver.metrics): comparing it with a canonical-unit range would be meaningless.
        in_canonical_unit = (Column("metric") == spec.name) & (Column("unit") == spec.unit)
        name = f"{column} of {spec.name} in [{spec.minimum:g}, {spec.maximum:g}] {spec.unit}"
        expectations.append(
            gx.expectations.ExpectColumnValuesToBeBetween(
                column=column,
                min_value=spec.minimum,
                max_value=spec.maximum,
                mostly=mostly_of_rows.get((spec.name, spec.unit), mostly),
                row_condition=in_canonical_unit,
                meta=_meta(VALUES_IN_RANGE, name),
            )
        )
    return expectations


def suite_for(
    spec: TableSpec,
    range_mostly: float = DEFAULT_RANGE_MOSTLY,
    metrics: Mapping[str, MetricSpec] = METRICS,
    mostly_of_rows: Mapping[tuple[str, str], float] | None = None,
) -> gx.ExpectationSuite:
    """The expectations a partition of a checked table must meet, from the two catalogs.

    Key columns not null and unique together, for every row; each known metric's values
    within its range for at least `range_mostly` of its readings (see `iot_lake.quality.checks`;
    `mostly_of_rows` for a table whose rows stand for several readings).
    """
    if not 0.0 < range_mostly <= 1.0:
        raise ValueError(f"range_mostly must be in (0, 1], got {range_mostly}")
    keys = list(spec.key_columns)
    expectations: list[gx.expectations.Expectation] = [
        gx.expectations.ExpectColumnValuesToNotBeNull(
            column=column, meta=_meta(KEYS_NOT_NULL, f"{column} is not null")
        )
        for column in keys
    ]
    expectations.append(
        gx.expectations.ExpectCompoundColumnsToBeUnique(
            column_list=keys, meta=_meta(KEYS_UNIQUE, f"({', '.join(keys)}) is unique")
        )
    )
    for column in RANGE_COLUMNS[spec.name]:
        expectations.extend(
            _range_expectations(column, metrics, range_mostly, mostly_of_rows or {})
        )
    # Given whole: `add_expectation` would look for a data context to save the suite in.
    return gx.ExpectationSuite(name=spec.name, expectations=expectations)


def _plain(value: object) -> object:
    """A GX example value as plain JSON: missing -> None, timestamps -> ISO text."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    return item() if callable(item) else value


def _examples(result: Mapping[str, Any]) -> tuple[dict[str, object], ...]:
    """The first failing rows, each with its key (GX's index list) or at least its value."""
    rows = result.get("partial_unexpected_index_list") or [
        {"value": value} for value in result.get("partial_unexpected_list") or []
    ]
    return tuple({key: _plain(value) for key, value in row.items()} for row in rows[:EXAMPLES])


def _outcome(result: ExpectationValidationResult) -> ExpectationOutcome:
    """One GX result as ours; an expectation GX could not evaluate fails the validation."""
    config = result.expectation_config
    assert config is not None  # GX always sets it on results of a suite run
    if result.exception_info and result.exception_info.get("raised_exception"):
        message = result.exception_info.get("exception_message")
        raise QualityError(f"{config.meta['name']} could not be evaluated: {message}")
    details = result.result
    element_count = int(details.get("element_count") or 0)
    mostly = float(config.kwargs.get("mostly", 1.0))
    return ExpectationOutcome(
        check=config.meta["check"],
        name=config.meta["name"],
        passed=bool(result.success),
        element_count=element_count,
        unexpected_count=int(details.get("unexpected_count") or 0),
        unexpected_percent=float(details.get("unexpected_percent") or 0.0),
        tolerated=(1.0 - mostly) * element_count,
        examples=_examples(details),
    )


def validate_frame(
    spec: TableSpec,
    frame: pl.DataFrame,
    day: date,
    range_mostly: float = DEFAULT_RANGE_MOSTLY,
) -> Validation:
    """Run a table's suite against one day's rows (a frame holding at least `columns_for`)."""
    started = time.perf_counter()
    data = frame.select(columns_for(spec)).to_pandas(use_pyarrow_extension_array=True)
    # Ephemeral: suites and results stay in memory; Dagster keeps the record of the checks.
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("lake")
        .add_dataframe_asset(spec.name)
        .add_batch_definition_whole_dataframe("partition")
        .get_batch(batch_parameters={"dataframe": data})
    )
    suite = suite_for(
        spec, range_mostly, mostly_of_rows=range_mostly_of_rows(spec, frame, range_mostly)
    )
    result = batch.validate(
        suite,
        result_format={
            "result_format": "SUMMARY",
            "partial_unexpected_count": EXAMPLES,
            # Examples name the row (its key), not just the offending value.
            "unexpected_index_column_names": list(spec.key_columns),
        },
    )
    outcomes = tuple(_outcome(item) for item in result.results)
    return Validation(spec.name, day, frame.height, time.perf_counter() - started, outcomes)
