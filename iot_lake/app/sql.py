"""DuckDB over the lake: every catalog table is a view of the same name, plus two views.

`quarantine` (raw rows with an error) and `device_connectivity` (device_registry with the
heartbeat timeout applied as of the query's now, see iot_lake.state.connectivity). DuckDB reads
the Delta tables themselves (through delta-rs' Arrow dataset, since the DuckDB delta
extension cannot be installed offline here); nothing is exported by hand.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb

from iot_lake.lake.catalog import (
    CATALOG,
    DEVICE_REGISTRY,
    QUARANTINE_PREDICATE,
    QUARANTINE_VIEW,
    RAW_TELEMETRY,
)
from iot_lake.lake.tables import Lake
from iot_lake.settings import Settings
from iot_lake.state.connectivity import create_connectivity_view

DEFAULT_MEMORY_LIMIT = "4GB"


def connect(
    lake: Lake,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    heartbeat_timeout: timedelta = timedelta(seconds=Settings.heartbeat_timeout_s),
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per lake table; memory capped (default: 80% of RAM)."""
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    for spec in CATALOG.values():
        table = lake.open(spec)
        if table is None:
            continue
        con.register(f"_{spec.name}_dataset", table.to_pyarrow_dataset())
        con.execute(f'CREATE VIEW "{spec.name}" AS SELECT * FROM "_{spec.name}_dataset"')
        if spec is RAW_TELEMETRY:
            con.execute(
                f'CREATE VIEW "{QUARANTINE_VIEW}" AS SELECT * FROM "{spec.name}" '
                f"WHERE {QUARANTINE_PREDICATE}"
            )
        if spec is DEVICE_REGISTRY:
            create_connectivity_view(con, heartbeat_timeout)
    return con


def table_counts(lake: Lake) -> dict[str, int]:
    """Rows per existing table, and the quarantine, for a quick look at the lake."""
    counts: dict[str, int] = {}
    con = connect(lake)
    names = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    for name in [*CATALOG, QUARANTINE_VIEW]:
        if name in names:
            row = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()
            counts[name] = int(row[0]) if row else 0
    return counts
