"""Jobs over the asset graph: what sensors and operators launch by name."""

from __future__ import annotations

import dagster as dg

from assets.device_events import device_events
from assets.late_data import late_data_ledger
from assets.rollups import rollup_1d, rollup_1h, rollup_1m
from assets.telemetry import telemetry
from iot_lake.lake.catalog import (
    DEVICE_EVENTS,
    LATE_DATA_LEDGER,
    ROLLUP_1D,
    ROLLUP_1H,
    ROLLUP_1M,
    TELEMETRY,
)

# The silver tables rebuilt from raw; a run may select either or both for one event day
# (the job is partitioned like them: Dagster infers it from the selection).
silver_job = dg.define_asset_job(
    "silver_job",
    selection=[telemetry, device_events],
    description="Rebuild event-day partitions of telemetry and device_events from raw.",
    executor_def=dg.in_process_executor,
)

# Silver and the gold built from the same day of it. raw_landing_sensor launches it with a
# per-run selection: the silver tables a day has new rows for plus the gold tables that
# follow them (GOLD_AFTER), so gold of a day never lags its silver by a click.
# device_baselines is not in it: a change to day D changes the baselines of D..D+6, more
# than a one-day run can cover, so baselines follow their automation condition alone (see
# assets/automation.py), which requests exactly those days once rollup_1h of D is rebuilt.
# In this job they would only be computed twice, since that condition counts its own
# requests, not other runs, as handling a rebuild.
event_day_job = dg.define_asset_job(
    "event_day_job",
    selection=[telemetry, device_events, late_data_ledger, rollup_1m, rollup_1h, rollup_1d],
    # One process per run, not per step: a step process costs 8-10 s of start-up (imports)
    # on 2 cores, more than most steps of a day; the steps run one after the other anyway.
    executor_def=dg.in_process_executor,
    description=(
        "Rebuild event-day partitions of silver from raw and of the rollups built from them "
        "(device_baselines follow by their automation condition)."
    ),
)

# The tables to recompute, in build order, when a day of a silver table changes: the
# late-data ledger of the day (it says why the day changed) and the rollups.
GOLD_AFTER: dict[str, tuple[str, ...]] = {
    TELEMETRY.name: (LATE_DATA_LEDGER.name, ROLLUP_1M.name, ROLLUP_1H.name, ROLLUP_1D.name),
    DEVICE_EVENTS.name: (LATE_DATA_LEDGER.name,),
}
