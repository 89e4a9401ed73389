"""Every partitions definition of the asset graph, defined once.

Derived tables are partitioned by UTC event day. The first day fits the simulator's
default start; `end_offset=1` makes today a partition, so late-evening data and the
current day can be materialized before midnight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg

from iot_lake.lake.catalog import TableSpec
from iot_lake.lake.partitions import ONE_DAY, EventWindow

EVENT_DATE_START = "2026-11-01"

event_date_partitions = dg.DailyPartitionsDefinition(
    start_date=EVENT_DATE_START, timezone="UTC", end_offset=1
)

# A backfill covers up to a week per run: raw is read once for the whole range (a
# partition needs raw from the day before to max_lateness after), while memory stays
# bounded by a week of data rather than the whole backfill.
event_date_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=7)

# The run tag raw_landing_sensor sets on a day's run: the UTC hours of the day its new raw
# rows touched (`3,22,23`). Tables with an hour column rebuild only those; a run without the
# tag (a backfill, a replay, a click in the UI) rebuilds whole days.
EVENT_HOURS_TAG = "iot_lake/event_hours"


def run_window(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> EventWindow:
    """The event window this run rebuilds: its partitions' days, or the hours its tag names."""
    window = EventWindow.from_datetimes(*context.partition_time_window)
    tag = context.run.tags.get(EVENT_HOURS_TAG)
    if tag is None or window.end - window.start != ONE_DAY:
        return window
    return EventWindow.hours_of(window.start, parse_hours(tag))


def hours_tag(hours: set[int]) -> str:
    """The EVENT_HOURS_TAG value naming these hours."""
    return ",".join(str(hour) for hour in sorted(hours))


def parse_hours(tag: str) -> list[int]:
    """The hours an EVENT_HOURS_TAG value names; a clear error for anything else."""
    try:
        hours = [int(part) for part in tag.split(",")]
    except ValueError:
        hours = []
    if not hours or not all(0 <= hour <= 23 for hour in hours):
        raise ValueError(
            f"run tag {EVENT_HOURS_TAG}={tag!r}: expected UTC hours 0-23 separated by commas, "
            "such as '22,23'"
        )
    return hours


def event_day_asset(
    table: TableSpec,
    deps: Sequence[str | dg.AssetDep],
    group: str,
    automation_condition: dg.AutomationCondition | None = None,
) -> Callable[[Callable[..., dg.MaterializeResult]], dg.AssetsDefinition]:
    """The decorator every event-day asset shares: key and partitioning from the catalog.

    Each such asset overwrites exactly its days of `table`; the decorated function's
    docstring becomes the asset's description in the UI. Without an automation condition
    the asset is rebuilt by the runs raw_landing_sensor requests (or by hand).
    """
    return dg.asset(
        key=table.name,
        deps=list(deps),
        partitions_def=event_date_partitions,
        backfill_policy=event_date_backfill_policy,
        kinds={"delta", "polars"},
        group_name=group,
        automation_condition=automation_condition,
        metadata={"partition_columns": ", ".join(table.partition_by)},
    )
