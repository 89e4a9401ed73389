"""The lake resource: where the lake is and how event time is settled, for assets and sensors."""

from __future__ import annotations

import os
from datetime import timedelta

import dagster as dg

from iot_lake.lake import Lake
from iot_lake.rebuild import EventTimeRules
from iot_lake.settings import Settings, storage_options_from_env


class LakeResource(dg.ConfigurableResource):
    """The lake root plus contract 4's event-time knobs; credentials stay in the environment.

    Storage options (S3 endpoint, region, keys) are read from the process environment when
    the lake is opened, never stored in run config, so they do not show in the UI.
    """

    root: str = Settings.lake_root
    skew_tolerance_s: float = Settings.skew_tolerance_s
    max_lateness_s: float = Settings.max_lateness_s

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeResource:
        """The resource the resolved settings describe (IOT_LAKE_ROOT and friends)."""
        return cls(
            root=settings.lake_root,
            skew_tolerance_s=settings.skew_tolerance_s,
            max_lateness_s=settings.max_lateness_s,
        )

    def lake(self) -> Lake:
        """The lake, with storage options from the environment."""
        return Lake(self.root, storage_options_from_env(os.environ))

    def event_time_rules(self) -> EventTimeRules:
        """How far device clocks are trusted, as the silver decoders take it."""
        return EventTimeRules(
            skew_tolerance=timedelta(seconds=self.skew_tolerance_s),
            max_lateness=timedelta(seconds=self.max_lateness_s),
        )
