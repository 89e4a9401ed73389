"""The late_data_ledger asset: per event day, which devices' messages arrived late and how late."""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations when the definition is built, and string annotations fail its checks.

import dagster as dg
import polars as pl

from assets.metadata import rebuilt_result
from assets.partitions import event_day_asset, run_window
from iot_lake.gold.rebuild import late_data_window, rebuild_gold
from iot_lake.lake.catalog import DEVICE_EVENTS, LATE_DATA_LEDGER, TELEMETRY
from iot_lake.silver.late_data import ledger_summary
from resources.lake import LakeResource


@event_day_asset(LATE_DATA_LEDGER, [TELEMETRY.name, DEVICE_EVENTS.name], "silver")
def late_data_ledger(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Late messages per device x silver table x event day x arrival day, and how late.

    Rebuilt in the same run as the silver day it describes, so when a buffered flush makes
    the sensor recompute an old day, this partition says why: which devices, how many
    messages, arriving when, up to how late. A run overwrites exactly its days.
    """
    window = run_window(context)
    the_lake = lake.lake()
    skew_tolerance = lake.silver_rules().skew_tolerance
    written: list[pl.DataFrame] = []  # the rows of the attempt that committed (the last)

    def compute() -> pl.DataFrame:
        written.append(late_data_window(the_lake, window, skew_tolerance))
        return written[-1]

    rebuilt = rebuild_gold(the_lake, LATE_DATA_LEDGER, window, compute)
    summary = ledger_summary(written[-1])
    extra = {
        "late_messages": dg.MetadataValue.int(summary.late_messages),
        "late_devices": dg.MetadataValue.int(summary.devices),
        "max_lateness_hours": dg.MetadataValue.float(summary.max_lateness_s / 3600),
    }
    return rebuilt_result(rebuilt, the_lake.table_uri(LATE_DATA_LEDGER), extra)
