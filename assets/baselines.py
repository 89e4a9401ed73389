"""The device_baselines asset: per device x metric "normal", as of each event day."""

# No `from __future__ import annotations` here: Dagster reads the context, config and
# resource annotations when the definition is built, and string annotations fail its checks.

import dagster as dg
from pydantic import Field

from assets.automation import after_window_rebuilt
from assets.metadata import rebuilt_result
from assets.partitions import event_day_asset
from iot_lake.gold.baselines import DEFAULT_MIN_SAMPLES
from iot_lake.gold.rebuild import DEFAULT_WINDOW_DAYS, baselines_window, rebuild_gold
from iot_lake.lake.catalog import DEVICE_BASELINES, ROLLUP_1H
from iot_lake.lake.partitions import EventWindow
from resources.lake import LakeResource


class BaselineConfig(dg.Config):
    """How much history a baseline covers and how much it needs before alerts trust it."""

    window_days: int = Field(
        default=DEFAULT_WINDOW_DAYS, ge=1, description="UTC days ending on as_of_date."
    )
    min_samples: int = Field(
        default=DEFAULT_MIN_SAMPLES, ge=1, description="Readings before a baseline is trusted."
    )


@event_day_asset(
    DEVICE_BASELINES,
    # The baseline as of D reads rollup_1h of D and the days before it; the mapping tells the
    # asset graph (and the automation condition) so, for the default window. The first days'
    # windows reach before the first partition: those days simply hold no rows.
    [
        dg.AssetDep(
            ROLLUP_1H.name,
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-(DEFAULT_WINDOW_DAYS - 1),
                end_offset=0,
                allow_nonexistent_upstream_partitions=True,
            ),
        )
    ],
    "gold",
    automation_condition=after_window_rebuilt,
)
def device_baselines(
    context: dg.AssetExecutionContext, config: BaselineConfig, lake: LakeResource
) -> dg.MaterializeResult:
    """Per device x metric baseline over the trailing window ending on each as_of_date.

    Mean, sample standard deviation, reading count and an hour-of-day profile, merged
    exactly from rollup_1h: what alerts compare a reading against. Marked trusted only
    from min_samples readings on. A late reading on day D changes the baselines of D and
    the window_days - 1 days after it: once rollup_1h of D is rebuilt, the automation
    condition requests all of those days (of the default window; a run configured with a
    longer window_days is not followed that way).
    """
    window = EventWindow.from_datetimes(*context.partition_time_window)
    the_lake = lake.lake()
    rebuilt = rebuild_gold(
        the_lake,
        DEVICE_BASELINES,
        window,
        lambda: baselines_window(the_lake, window, config.window_days, config.min_samples),
    )
    extra = {
        "window_days": dg.MetadataValue.int(config.window_days),
        "min_samples": dg.MetadataValue.int(config.min_samples),
    }
    return rebuilt_result(rebuilt, the_lake.table_uri(DEVICE_BASELINES), extra)
