"""Every partitions definition of the asset graph, defined once.

Derived tables are partitioned by UTC event day. The first day fits the simulator's
default start; `end_offset=1` makes today a partition, so late-evening data and the
current day can be materialized before midnight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg

from iot_lake.catalog import TableSpec

EVENT_DATE_START = "2026-11-01"

event_date_partitions = dg.DailyPartitionsDefinition(
    start_date=EVENT_DATE_START, timezone="UTC", end_offset=1
)

# A backfill covers up to a week per run: raw is read once for the whole range (a
# partition needs raw from the day before to max_lateness after), while memory stays
# bounded by a week of data rather than the whole backfill.
event_date_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=7)


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
