"""Bring device_registry and device_state up to date with silver, reading only what changed.

Each run reads the silver rows committed since the versions the previous run consumed,
merges them into the current rows of the devices they name (`iot_lake.state.shadow`) and
writes the rows that changed with one Delta MERGE. The consumed versions travel in the
same commit, as app transactions (`shadow:{source table}`, version = the source's Delta
version; they survive log checkpoints and cleanup) and, readable in `history()`, in the
`iot_lake.source_versions` custom metadata. So a result and its cursor are never apart.

Silver partitions are overwritten, not appended: a rebuild of day D removes D's files and
adds new ones holding all of D's rows, old and new. "Added since version N" is then every
row of the days rebuilt after N, which is what is read (`iot_lake.lake.changes`). That costs a
rebuilt day, not history, and is correct because the merge is idempotent: rows already
applied change nothing. Rows a rebuild drops are not retracted: state is what devices
reported, and a reading once reported stays part of "latest" unless a newer one replaces it.

The first run, or one whose cursor's log entries were cleaned, reads every silver row once.
The merge rewrites the target files holding the devices touched: cost grows with the
number of devices (one row each), never with the number of readings in history.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import polars as pl
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from iot_lake.lake.catalog import (
    DEVICE_EVENTS,
    DEVICE_REGISTRY,
    DEVICE_STATE,
    TELEMETRY,
    TableSpec,
    conform,
    empty_frame,
)
from iot_lake.lake.changes import TableMissing, files_added_since, read_added
from iot_lake.lake.tables import Lake
from iot_lake.state.shadow import update_device_registry, update_device_state

SOURCE_VERSIONS_KEY = "iot_lake.source_versions"

# What each shadow table reads from silver, and the columns it needs.
_TELEMETRY_COLUMNS = [
    "tenant_id",
    "device_id",
    "device_type",
    "metric",
    "value",
    "unit",
    "firmware",
    "event_time",
    "ingest_time",
    "message_id",
]
_EVENT_COLUMNS = [
    "tenant_id",
    "device_id",
    "event_type",
    "status",
    "firmware",
    "details",
    "event_time",
    "ingest_time",
]
SOURCES: dict[str, dict[str, list[str]]] = {
    DEVICE_REGISTRY.name: {TELEMETRY.name: _TELEMETRY_COLUMNS, DEVICE_EVENTS.name: _EVENT_COLUMNS},
    DEVICE_STATE.name: {TELEMETRY.name: _TELEMETRY_COLUMNS},
}
_SPECS = {spec.name: spec for spec in (TELEMETRY, DEVICE_EVENTS)}

Merge = Callable[[pl.DataFrame, Mapping[str, pl.DataFrame]], pl.DataFrame]
_MERGES: dict[str, Merge] = {
    DEVICE_REGISTRY.name: lambda current, new: update_device_registry(
        current, new[TELEMETRY.name], new[DEVICE_EVENTS.name]
    ),
    DEVICE_STATE.name: lambda current, new: update_device_state(current, new[TELEMETRY.name]),
}


@dataclass(frozen=True)
class ShadowUpdate:
    """What one update did: the source versions it covers, rows read and written."""

    table: str
    source_versions: dict[str, int]
    rows_read: int
    rows_changed: int
    rows: int
    delta_version: int
    committed: bool
    sample: pl.DataFrame


def update_shadow_table(
    lake: Lake, spec: TableSpec, *, max_attempts: int = 5, sample_rows: int = 5
) -> ShadowUpdate:
    """Merge the silver rows committed since the last run into device_registry or device_state.

    Nothing new in silver: no commit at all. New silver rows that change nothing: a commit
    with no data that only advances the cursor. A concurrent update of the same table makes
    the commit fail (it is made against the version read) and the whole update is redone.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return _update_once(lake, spec, sample_rows)
        except CommitFailedError:
            if attempt >= max_attempts:
                raise


def _update_once(lake: Lake, spec: TableSpec, sample_rows: int) -> ShadowUpdate:
    table = lake.ensure_table(spec)
    cursor = {name: table.transaction_version(_app_id(name)) for name in SOURCES[spec.name]}
    new_rows, versions = _read_new_silver(lake, cursor, SOURCES[spec.name])
    rows_read = sum(frame.height for frame in new_rows.values())
    if versions == cursor:
        return _result(table, spec, versions, rows_read, 0, False, sample_rows)
    current = _current_rows(table, spec, new_rows)
    merged = _MERGES[spec.name](current, new_rows)
    changed = merged.join(current, on=spec.column_names, how="anti", nulls_equal=True)
    properties = _commit_properties(versions, rows_read, changed.height)
    data = changed.to_arrow().cast(spec.schema)
    if changed.is_empty():
        write_deltalake(table, data, mode="append", commit_properties=properties)
    else:
        on = " AND ".join(f"t.{key} = s.{key}" for key in spec.key_columns)
        merge = table.merge(
            data, on, source_alias="s", target_alias="t", commit_properties=properties
        )
        merge.when_matched_update_all().when_not_matched_insert_all().execute()
    return _result(table, spec, versions, rows_read, changed.height, True, sample_rows, changed)


def _read_new_silver(
    lake: Lake, cursor: Mapping[str, int | None], sources: Mapping[str, list[str]]
) -> tuple[dict[str, pl.DataFrame], dict[str, int | None]]:
    """Each source's rows committed after its cursor version, and the version read up to."""
    frames: dict[str, pl.DataFrame] = {}
    versions: dict[str, int | None] = {}
    for name, columns in sources.items():
        source = _SPECS[name]
        try:
            added = files_added_since(lake, source, cursor[name])
        except TableMissing:
            frames[name] = pl.DataFrame(source.schema.empty_table().select(columns))
            versions[name] = cursor[name]
            continue
        frames[name] = read_added(lake, source, added, columns)
        versions[name] = added.to_version
    return frames, versions


def _current_rows(
    table: DeltaTable, spec: TableSpec, new_rows: Mapping[str, pl.DataFrame]
) -> pl.DataFrame:
    """The target's rows of the devices the new silver rows name (at the version read)."""
    keys = ["tenant_id", "device_id"]
    devices = pl.concat([frame.select(keys) for frame in new_rows.values()]).unique()
    rows = pl.scan_pyarrow_dataset(table.to_pyarrow_dataset()).join(
        devices.lazy(), on=keys, how="semi"
    )
    return conform(rows.collect(), spec)


def _commit_properties(
    versions: Mapping[str, int | None], rows_read: int, rows_changed: int
) -> CommitProperties:
    consumed = {name: version for name, version in versions.items() if version is not None}
    return CommitProperties(
        app_transactions=[Transaction(_app_id(name), v) for name, v in consumed.items()],
        custom_metadata={
            SOURCE_VERSIONS_KEY: json.dumps(consumed, sort_keys=True),
            "iot_lake.rows_read": str(rows_read),
            "iot_lake.rows_changed": str(rows_changed),
        },
    )


def _result(
    table: DeltaTable,
    spec: TableSpec,
    versions: Mapping[str, int | None],
    rows_read: int,
    rows_changed: int,
    committed: bool,
    sample_rows: int,
    changed: pl.DataFrame | None = None,
) -> ShadowUpdate:
    sample = (changed if changed is not None else empty_frame(spec)).head(sample_rows)
    return ShadowUpdate(
        table=spec.name,
        source_versions={name: v for name, v in versions.items() if v is not None},
        rows_read=rows_read,
        rows_changed=rows_changed,
        rows=table.to_pyarrow_dataset().count_rows(),
        delta_version=table.version(),
        committed=committed,
        sample=sample,
    )


def _app_id(source: str) -> str:
    return f"shadow:{source}"
