"""The Dagster code location: one Definitions assembled from explicit lists.

raw_telemetry, which the streaming consumer writes, is an external asset (an AssetSpec);
the silver assets rebuild event-day partitions from it, the gold assets (rollups,
baselines) the same days from silver, and raw_landing_sensor requests the partitions each
new raw commit touched, silver and gold in one run per day. Every list is spelled out
here, so what the code location holds is visible in one place.
"""

from __future__ import annotations

import dagster as dg

from assets.baselines import device_baselines
from assets.device_events import device_events
from assets.jobs import event_day_job, silver_job
from assets.rollups import rollup_1d, rollup_1h, rollup_1m
from assets.telemetry import telemetry
from iot_lake.catalog import RAW_TELEMETRY
from iot_lake.settings import load_settings
from resources.lake import LakeResource
from sensors.raw_landing import raw_landing_sensor

raw_telemetry = dg.AssetSpec(
    key=RAW_TELEMETRY.name,
    description=RAW_TELEMETRY.description,
    kinds={"delta"},
    owners=[],
    group_name="bronze",
    metadata={
        "partition_columns": ", ".join(RAW_TELEMETRY.partition_by),
        "written_by": RAW_TELEMETRY.owner,
    },
)

defs = dg.Definitions(
    assets=[
        raw_telemetry,
        telemetry,
        device_events,
        rollup_1m,
        rollup_1h,
        rollup_1d,
        device_baselines,
    ],
    jobs=[silver_job, event_day_job],
    sensors=[raw_landing_sensor],
    resources={"lake": LakeResource.from_settings(load_settings())},
)
