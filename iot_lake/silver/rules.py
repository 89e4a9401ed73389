"""How raw rows become silver rows: the knobs a rebuild and the decoders take.

Kept apart from the rebuild so the lake resource can build the rules without importing the
decoders (polars, DuckDB) and what rebuilds silver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from iot_lake.settings import IdentityRules, Settings


@dataclass(frozen=True)
class SilverRules:
    """How raw rows become silver rows.

    Contract 4's knobs (how far a device clock is trusted ahead of and behind ingest), and
    the payload size limit and id rules that quarantined raw rows are checked against
    again, so a rebuild after a fix of the checks (or of a limit) takes in what now passes.
    """

    skew_tolerance: timedelta
    max_lateness: timedelta
    max_payload_bytes: int = Settings.max_payload_bytes
    identity: IdentityRules = field(default_factory=IdentityRules)
    # Days of raw the lake keeps (None: forever); a window needing older raw is refused.
    raw_retention_days: int | None = None
