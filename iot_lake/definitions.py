"""The Dagster code location: one Definitions assembled from explicit lists.

For now it declares raw_telemetry, which the streaming consumer writes, as an external
asset; the lakehouse assets, checks and sensors join these lists as they are built.
"""

from __future__ import annotations

import dagster as dg

from iot_lake.catalog import RAW_TELEMETRY

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

defs = dg.Definitions(assets=[raw_telemetry])
