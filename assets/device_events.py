"""The device_events asset: silver device events, rebuilt per event day from raw_telemetry."""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations when the definition is built, and string annotations fail its checks.

import dagster as dg

from assets.metadata import rebuilt_result
from assets.partitions import event_day_asset, run_window
from assets.step_barrier import hold_at_step_barrier
from iot_lake.lake.catalog import DEVICE_EVENTS, RAW_TELEMETRY
from iot_lake.silver.rebuild import rebuild_silver
from resources.lake import LakeResource


@event_day_asset(DEVICE_EVENTS, [RAW_TELEMETRY.name], "silver")
def device_events(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Silver device events: boots, crashes, heartbeats, firmware, acks, online/offline.

    Typed and deduplicated by (device_id, message_id): the input of device state, the
    crash-rate gates of OTA waves and command acknowledgement. Partitioned by event date
    and overwritten per run like telemetry.
    """
    hold_at_step_barrier(context)  # off unless IOT_LAKE_STEP_BARRIER is set (tests)
    window = run_window(context)
    the_lake = lake.lake()
    rebuilt = rebuild_silver(the_lake, DEVICE_EVENTS, window, lake.silver_rules())
    return rebuilt_result(rebuilt, the_lake.table_uri(DEVICE_EVENTS))
