"""The table catalog: the one place a table's name, schema, partitioning and owner are spelled.

Readers, writers, DuckDB views and (later) dbt sources all come from here; no other module
spells a table path. Timestamps are UTC with microsecond precision everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

UTC_MICROS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableSpec:
    """A Delta table of the lake: its contract, not its location (the lake resolves that)."""

    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    key_columns: tuple[str, ...]
    owner: str
    description: str

    @property
    def column_names(self) -> list[str]:
        """The table's columns in schema order."""
        return list(self.schema.names)


RAW_TELEMETRY = TableSpec(
    name="raw_telemetry",
    schema=pa.schema(
        [
            pa.field("ingest_time", UTC_MICROS, nullable=False),
            pa.field("ingest_date", pa.date32(), nullable=False),
            pa.field("tenant_id", pa.string()),
            pa.field("device_id", pa.string()),
            pa.field("message_kind", pa.string()),
            pa.field("message_id", pa.string()),
            pa.field("topic", pa.string()),
            pa.field("source", pa.string(), nullable=False),
            pa.field("source_position", pa.string()),
            pa.field("consumer_id", pa.string(), nullable=False),
            pa.field("payload", pa.string(), nullable=False),
            pa.field("payload_encoding", pa.string(), nullable=False),
            pa.field("payload_bytes", pa.int32(), nullable=False),
            pa.field("error_code", pa.string()),
            pa.field("error_detail", pa.string()),
        ]
    ),
    partition_by=("ingest_date",),
    key_columns=("source", "source_position"),
    owner="streaming consumer",
    description=(
        "Bronze: every message the consumer received, exactly as received (payload text), "
        "with server ingest time, source and position; invalid messages carry an error code."
    ),
)

CATALOG: dict[str, TableSpec] = {spec.name: spec for spec in (RAW_TELEMETRY,)}

# The quarantine (DLQ) is a view over raw rows that carry an error, not a second copy.
QUARANTINE_VIEW = "quarantine"
QUARANTINE_PREDICATE = "error_code IS NOT NULL"


def table_spec(name: str) -> TableSpec:
    """Look a table up by name, with an error that lists the tables there are."""
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise KeyError(f"unknown table {name!r}; the catalog has: {known}") from None
