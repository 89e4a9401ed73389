"""The Dagster code location: one Definitions assembled from explicit lists.

raw_telemetry, which the streaming consumer writes, is an external asset (an AssetSpec);
the silver assets rebuild event-day partitions from it, the gold assets (rollups,
baselines) the same days from silver, and raw_landing_sensor requests the partitions each
new raw commit touched, silver, the late-data ledger and rollups in one run per day;
device_baselines follow by their automation condition (D..D+6 after rollup_1h of D is
rebuilt). device_registry and
device_state (unpartitioned) merge what silver committed since their last run; their
automation condition requests them whenever any silver day is rebuilt.
dbt_marts are dbt_project/'s models (assets/marts.py), downstream of the tables their dbt
sources name, requested by automation after any of those is rebuilt.
lake_maintenance_schedule runs lake_maintenance_job nightly (compaction, vacuum, raw
retention). automation_condition_sensor evaluates all automation conditions and, unlike
Dagster's default one, starts running. Every list is spelled out
here, so what the code location holds is visible in one place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from assets.baselines import device_baselines
from assets.checks import QUALITY_CHECKS
from assets.device_events import device_events
from assets.device_state import device_registry, device_state
from assets.jobs import event_day_job, silver_job
from assets.late_data import late_data_ledger
from assets.marts import dbt_marts, dbt_resource
from assets.rollups import rollup_1d, rollup_1h, rollup_1m
from assets.telemetry import telemetry
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.settings import load_settings
from resources.lake import STORAGE_OPTION_OF, LakeResource
from sensors.automation import automation_condition_sensor
from sensors.maintenance import lake_maintenance_job, lake_maintenance_schedule
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


# The storage fields given as dg.EnvVar: the credentials, and the endpoint (which names the
# deployment). The region and the flags are plain config, shown in the UI.
ENV_VAR_FIELDS = ("endpoint_url", "access_key_id", "secret_access_key", "session_token")


def lake_resource(env: Mapping[str, str]) -> LakeResource:
    """The code location's lake: the settings `env` gives, its secrets as dg.EnvVar.

    A dg.EnvVar is read when a run starts, so a secret never lands in run config or the UI.
    It is given only for a variable set in `env` now: an EnvVar of an unset variable fails
    every launch, where an unset option simply is not passed (a local lake needs none).
    """
    secrets = {
        field: dg.EnvVar(STORAGE_OPTION_OF[field])
        for field in ENV_VAR_FIELDS
        if env.get(STORAGE_OPTION_OF[field])
    }
    return LakeResource.from_settings(load_settings(env), **secrets)


def resources_with_lake(lake: LakeResource) -> dict[str, dg.ConfigurableResource]:
    """The resources the code location's assets need, with `lake` as the lake.

    The code location's own below; a test or bench pointing the graph at another lake
    builds its Definitions from this, so a new resource is added here once.
    """
    return {"lake": lake, "dbt": dbt_resource()}


defs = dg.Definitions(
    assets=[
        raw_telemetry,
        telemetry,
        device_events,
        late_data_ledger,
        rollup_1m,
        rollup_1h,
        rollup_1d,
        device_baselines,
        device_registry,
        device_state,
        dbt_marts,
    ],
    asset_checks=QUALITY_CHECKS,
    jobs=[silver_job, event_day_job, lake_maintenance_job],
    sensors=[raw_landing_sensor, automation_condition_sensor],
    schedules=[lake_maintenance_schedule],
    resources=resources_with_lake(lake_resource(os.environ)),
)
