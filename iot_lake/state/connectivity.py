"""Device connectivity, decided when it is read: status messages plus a heartbeat timeout.

device_registry stores facts (the last status message and its reason, when the last
message of any kind arrived); whether a device is online *now* depends on when "now" is,
so it is computed at read time, never materialized. A table written when silver changes
would keep saying "online" about a device that went silent at 03:00, because silence
produces no silver rows and so no new materialization: an engineer querying at 10:00
must see it offline. The rules, in order:

1. the last status message says offline (the MQTT Last Will included: `status_reason`
   says `connection_lost`) -> offline, reason `reported_offline`, since that message;
2. nothing arrived from the device for longer than the heartbeat timeout -> offline,
   reason `heartbeat_timeout`, since its last message;
3. otherwise online: reason `reported_online` (since the online status) or
   `recent_message` when the device never sent a status (since first seen).

Times compared are ingest (server) times, the authoritative arrival clock (contract 4).
The same SQL backs the `device_connectivity` DuckDB view (relative to the query's
`current_timestamp`) and `device_connectivity`, which takes "now" as an argument.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import polars as pl

from iot_lake.lake.catalog import DEVICE_REGISTRY

CONNECTIVITY_VIEW = "device_connectivity"


def connectivity_query(registry: str, now: str, timeout: timedelta) -> str:
    """SELECT every registry row plus connectivity, reason and since, as of SQL `now`."""
    timeout_us = int(timeout / timedelta(microseconds=1))
    silent = f"last_ingest_time < {now} - to_microseconds({timeout_us})"
    return f"""
        SELECT *,
            CASE WHEN status = 'offline' OR {silent} THEN 'offline' ELSE 'online' END
                AS connectivity,
            CASE WHEN status = 'offline' THEN 'reported_offline'
                 WHEN {silent} THEN 'heartbeat_timeout'
                 WHEN status = 'online' THEN 'reported_online'
                 ELSE 'recent_message' END AS connectivity_reason,
            CASE WHEN status = 'offline' THEN status_since
                 WHEN {silent} THEN last_ingest_time
                 WHEN status = 'online' THEN status_since
                 ELSE first_seen END AS connectivity_since
        FROM {registry}
    """


def create_connectivity_view(con: duckdb.DuckDBPyConnection, timeout: timedelta) -> None:
    """The `device_connectivity` view over a connection's `device_registry` view."""
    query = connectivity_query(f'"{DEVICE_REGISTRY.name}"', "current_timestamp", timeout)
    con.execute(f'CREATE VIEW "{CONNECTIVITY_VIEW}" AS {query}')


def device_connectivity(registry: pl.DataFrame, now: datetime, timeout: timedelta) -> pl.DataFrame:
    """Registry rows with connectivity, reason and since as of `now` (a UTC datetime)."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("registry", registry.to_arrow())
        query = connectivity_query("registry", "$now::TIMESTAMPTZ", timeout)
        frame = pl.from_arrow(con.sql(query, params={"now": now}).to_arrow_table())
    finally:
        con.close()
    assert isinstance(frame, pl.DataFrame)
    return frame
