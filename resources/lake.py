"""The lake resource: where the lake is and how event time is settled, for assets and sensors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import dagster as dg

from iot_lake.lake.tables import Lake
from iot_lake.settings import IdentityRules, Settings
from iot_lake.silver.rules import SilverRules

# Each storage field and the delta-rs storage option (also the AWS variable) it stands for,
# the keys iot_lake.settings.storage_options_from_env reads.
STORAGE_OPTION_OF = {
    "endpoint_url": "AWS_ENDPOINT_URL",
    "region": "AWS_REGION",
    "access_key_id": "AWS_ACCESS_KEY_ID",
    "secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "session_token": "AWS_SESSION_TOKEN",
}
FLAG_OPTION_OF = {
    "allow_http": "AWS_ALLOW_HTTP",
    "virtual_hosted_style_request": "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
}
# How object_store reads a flag option.
_TRUE = {"1", "true", "on", "yes", "y"}


class LakeResource(dg.ConfigurableResource):
    """The lake root, its storage options, and how raw becomes silver (SilverRules).

    Everything is config, nothing is read from the process environment when the lake is
    opened: the code location (iot_lake/definitions.py) passes the credentials and the
    endpoint as dg.EnvVar, so the UI and the run config show the variable's name, never
    its value, and Dagster reads it when a run starts.
    """

    root: str = Settings.lake_root
    skew_tolerance_s: float = Settings.skew_tolerance_s
    max_lateness_s: float = Settings.max_lateness_s
    max_payload_bytes: int = Settings.max_payload_bytes
    # The id rules quarantined raw rows are checked against again (IdentityRules).
    id_max_chars: int = IdentityRules.id_max_chars
    id_characters: str = IdentityRules.id_characters
    message_id_max_chars: int = IdentityRules.message_id_max_chars
    raw_retention_days: int | None = Settings.raw_retention_days
    # Storage options of an s3:// root (None: not set; a local root needs none).
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    allow_http: bool = False
    virtual_hosted_style_request: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: str | None) -> LakeResource:
        """The resource the resolved settings describe (IOT_LAKE_ROOT, AWS_* and friends).

        `overrides` replace string fields, as the code location replaces the secrets by a
        dg.EnvVar (a str).
        """
        return cls(**{**settings_fields(settings), **overrides})

    def storage_options(self) -> dict[str, str]:
        """The delta-rs storage options of the storage fields, as the settings name them."""
        options = {
            option: str(value)
            for field, option in STORAGE_OPTION_OF.items()
            if (value := getattr(self, field))
        }
        options |= {
            option: "true" for field, option in FLAG_OPTION_OF.items() if getattr(self, field)
        }
        return options

    def lake(self) -> Lake:
        """The lake, with the storage options of this resource's config."""
        return Lake(self.root, self.storage_options())

    def silver_rules(self) -> SilverRules:
        """How raw rows become silver (clock trust, payload limit), as the decoders take it."""
        return SilverRules(
            skew_tolerance=timedelta(seconds=self.skew_tolerance_s),
            max_lateness=timedelta(seconds=self.max_lateness_s),
            max_payload_bytes=self.max_payload_bytes,
            identity=IdentityRules(
                self.id_max_chars, self.id_characters, self.message_id_max_chars
            ),
            raw_retention_days=self.raw_retention_days,
        )


def settings_fields(settings: Settings) -> dict[str, Any]:
    """The resource's fields as plain values from the settings: what from_settings starts from."""
    options = settings.storage_options
    return {
        "root": settings.lake_root,
        "skew_tolerance_s": settings.skew_tolerance_s,
        "max_lateness_s": settings.max_lateness_s,
        "max_payload_bytes": settings.max_payload_bytes,
        "id_max_chars": settings.identity.id_max_chars,
        "id_characters": settings.identity.id_characters,
        "message_id_max_chars": settings.identity.message_id_max_chars,
        "raw_retention_days": settings.raw_retention_days,
        **{field: options.get(option) for field, option in STORAGE_OPTION_OF.items()},
        **{
            field: options.get(option, "").strip().lower() in _TRUE
            for field, option in FLAG_OPTION_OF.items()
        },
    }
