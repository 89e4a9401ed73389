"""The telemetry asset: silver readings, rebuilt per event day from raw_telemetry."""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations when the definition is built, and string annotations fail its checks.

import dagster as dg

from assets.metadata import rebuilt_result
from assets.partitions import event_day_asset, run_window
from assets.step_barrier import hold_at_step_barrier
from iot_lake.lake.catalog import RAW_TELEMETRY, TELEMETRY
from iot_lake.silver.rebuild import rebuild_silver
from resources.lake import LakeResource


@event_day_asset(TELEMETRY, [RAW_TELEMETRY.name], "silver")
def telemetry(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Silver readings: one row per device x metric x event time, units normalized.

    Decoded from valid raw messages and deduplicated by (device_id, message_id).
    Partitioned by event date (device clock within tolerance, else ingest time), so late
    data lands in the day it describes; a run overwrites exactly its days, so reruns and
    backfills are idempotent.
    """
    hold_at_step_barrier(context)  # off unless IOT_LAKE_STEP_BARRIER is set (tests)
    window = run_window(context)
    the_lake = lake.lake()
    rebuilt = rebuild_silver(the_lake, TELEMETRY, window, lake.silver_rules())
    return rebuilt_result(rebuilt, the_lake.table_uri(TELEMETRY))
