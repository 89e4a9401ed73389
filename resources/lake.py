"""The lake resource: where the lake is and how event time is settled, for assets and sensors."""

from __future__ import annotations

import os
from datetime import timedelta

import dagster as dg

from iot_lake.lake.tables import Lake
from iot_lake.settings import Settings, storage_options_from_env
from iot_lake.silver.rules import SilverRules


class LakeResource(dg.ConfigurableResource):
    """The lake root plus how raw becomes silver (SilverRules); credentials stay in the environment.

    Storage options (S3 endpoint, region, keys) are read from the process environment when
    the lake is opened, never stored in run config, so they do not show in the UI.
    """

    root: str = Settings.lake_root
    skew_tolerance_s: float = Settings.skew_tolerance_s
    max_lateness_s: float = Settings.max_lateness_s
    max_payload_bytes: int = Settings.max_payload_bytes
    raw_retention_days: int | None = Settings.raw_retention_days

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeResource:
        """The resource the resolved settings describe (IOT_LAKE_ROOT and friends)."""
        return cls(
            root=settings.lake_root,
            skew_tolerance_s=settings.skew_tolerance_s,
            max_lateness_s=settings.max_lateness_s,
            max_payload_bytes=settings.max_payload_bytes,
            raw_retention_days=settings.raw_retention_days,
        )

    def lake(self) -> Lake:
        """The lake, with storage options from the environment."""
        return Lake(self.root, storage_options_from_env(os.environ))

    def silver_rules(self) -> SilverRules:
        """How raw rows become silver (clock trust, payload limit), as the decoders take it."""
        return SilverRules(
            skew_tolerance=timedelta(seconds=self.skew_tolerance_s),
            max_lateness=timedelta(seconds=self.max_lateness_s),
            max_payload_bytes=self.max_payload_bytes,
            raw_retention_days=self.raw_retention_days,
        )
