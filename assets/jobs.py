"""Jobs over the asset graph: what sensors and operators launch by name."""

from __future__ import annotations

import dagster as dg

from assets.baselines import device_baselines
from assets.device_events import device_events
from assets.rollups import rollup_1d, rollup_1h, rollup_1m
from assets.telemetry import telemetry
from iot_lake.catalog import DEVICE_BASELINES, ROLLUP_1D, ROLLUP_1H, ROLLUP_1M, TELEMETRY

# The silver tables rebuilt from raw; a run may select either or both for one event day
# (the job is partitioned like them: Dagster infers it from the selection).
silver_job = dg.define_asset_job(
    "silver_job",
    selection=[telemetry, device_events],
    description="Rebuild event-day partitions of telemetry and device_events from raw.",
)

# Silver and everything built from it per event day. raw_landing_sensor launches it with a
# per-run selection: the silver tables a day has new rows for plus the gold tables that
# follow them (GOLD_AFTER), so gold of a day never lags its silver by a click.
event_day_job = dg.define_asset_job(
    "event_day_job",
    selection=[telemetry, device_events, rollup_1m, rollup_1h, rollup_1d, device_baselines],
    description=(
        "Rebuild event-day partitions of silver from raw and of the rollups and baselines "
        "built from them."
    ),
)

# The gold tables to recompute, in build order, when a day of a silver table changes.
# device_events feeds no gold table yet.
GOLD_AFTER: dict[str, tuple[str, ...]] = {
    TELEMETRY.name: (ROLLUP_1M.name, ROLLUP_1H.name, ROLLUP_1D.name, DEVICE_BASELINES.name),
}
