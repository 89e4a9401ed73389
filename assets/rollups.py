"""The rollup assets: 1-minute, 1-hour and 1-day mergeable aggregates per event day.

Each level is partitioned like telemetry and built from the same days of the level below
(UTC buckets never straddle a day), so late data in an old day recomputes that day only.
"""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations when the definition is built, and string annotations fail its checks.

import dagster as dg

from assets.metadata import rebuilt_result
from assets.partitions import event_day_asset, run_window
from iot_lake.gold.rebuild import rebuild_rollup
from iot_lake.lake.catalog import ROLLUP_1D, ROLLUP_1H, ROLLUP_1M, TELEMETRY, TableSpec
from resources.lake import LakeResource


@event_day_asset(ROLLUP_1M, [TELEMETRY.name], "gold")
def rollup_1m(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Gold 1-minute aggregates per device x metric, the finest mergeable level (contract 6).

    Count, sum, sum of squares, min, max, first and last of the same event days of
    telemetry: the coarser levels and the baselines merge from these, so their mean and
    standard deviation are exact. A run overwrites exactly its days.
    """
    return _rebuild(context, lake, ROLLUP_1M)


@event_day_asset(ROLLUP_1H, [ROLLUP_1M.name], "gold")
def rollup_1h(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Gold hourly aggregates per device x metric, merged from the same days of rollup_1m.

    What dashboards and the baselines read: 60x fewer rows than rollup_1m, same exact
    mean and standard deviation. A run overwrites exactly its days.
    """
    return _rebuild(context, lake, ROLLUP_1H)


@event_day_asset(ROLLUP_1D, [ROLLUP_1H.name], "gold")
def rollup_1d(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Gold daily aggregates per device x metric, merged from the same day of rollup_1h.

    One row per device x metric x day: fleet reports over months read this. A run
    overwrites exactly its days.
    """
    return _rebuild(context, lake, ROLLUP_1D)


def _rebuild(
    context: dg.AssetExecutionContext, lake: LakeResource, level: TableSpec
) -> dg.MaterializeResult:
    """Rebuild the run's days of a rollup level from the level below."""
    window = run_window(context)
    the_lake = lake.lake()
    rebuilt = rebuild_rollup(the_lake, level, window)
    return rebuilt_result(rebuilt, the_lake.table_uri(level))
