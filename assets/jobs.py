"""Jobs over the asset graph: what sensors and operators launch by name."""

from __future__ import annotations

import dagster as dg

from assets.device_events import device_events
from assets.telemetry import telemetry

# The silver tables rebuilt from raw; a run may select either or both for one event day
# (the job is partitioned like them: Dagster infers it from the selection).
silver_job = dg.define_asset_job(
    "silver_job",
    selection=[telemetry, device_events],
    description="Rebuild event-day partitions of telemetry and device_events from raw.",
)
