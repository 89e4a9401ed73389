"""Payload JSON decoded by DuckDB inside the process, a column of messages at a time.

Silver (iot_lake.silver.decode) decides which raw rows count and when they happened; this module
reads their payloads. DuckDB's `from_json`, not polars: measured on 822k simulator
messages (2 cores) it takes 1.8 s against 3.5 s for polars' `str.json_decode` with the
same explicit schema, and it lists the open-ended metric names (`json_keys`) in 0.7 s
against 4.7 s for `json_path_match`; `json_keys` is only run where the names of the batch
before do not account for a payload's keys (`decode_metrics`). DuckDB is also lenient
where polars fails the whole batch: a nested object where a string is expected becomes
that object's JSON text, a `ts` beyond 64 bits becomes null. Rows come back in input order
(`preserve_insertion_order`), so decoded columns line up with the messages.

Every function takes valid messages: a frame with `message_kind` and `payload` (and the
ids, for `device_ts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import orjson
import polars as pl

from iot_lake.silver.metrics import METRICS

# In-process DuckDB: a quarter of the memory at most (its default is 80%), input order kept.
_DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "memory_limit": "25%",
    "preserve_insertion_order": True,
}
_COMMON_FIELDS = ("device_id", "message_id", "ts")

# A valid payload in the wire format's canonical form starts with its device and message
# ids, then its `ts` (iot_lake.ingest.screen): `{"device_id":"<d>","message_id":"<m>","ts":<n>,`.
# An int64 is at most 20 characters (`-` and 19 digits); one more holds the `,` or `}`.
_TS_TEXT_CHARS = 21
_TS_END = r"[,}]"


def device_ts(messages: pl.DataFrame) -> pl.Series:
    """Each valid message's `ts` (epoch ms), as `from_json` decodes it for silver.

    Most payloads are in canonical form, where `ts` follows the ids at a known offset:
    those are read by a prefix comparison and a slice up to the next `,` or `}`, the rest
    by DuckDB. The slice is parsed by `to_integer`, not by a regular expression's capture
    group: 0.9-1.0 s against 1.3 s for 4M messages of the ingest bench's file.
    A prefix that matches has ids without escapes, so its length in the payload is theirs.
    """
    device, message = pl.col("device_id"), pl.col("message_id")
    head, middle, tail = '{"device_id":"', '","message_id":"', '","ts":'
    prefix = pl.concat_str(pl.lit(head), device, pl.lit(middle), message, pl.lit(tail))
    # Where `ts` starts when the prefix matches, from the ids' lengths: the prefix's own
    # length would build it a second time.
    ts_at = device.str.len_chars() + message.str.len_chars() + len(head + middle + tail)
    payload = pl.col("payload")
    after = payload.str.slice(ts_at, _TS_TEXT_CHARS)
    # The digits up to the first `,` or `}`: anything but a plain integer there (a fraction,
    # an exponent, a space) is no integer to `to_integer` and falls to DuckDB below.
    at_offset = after.str.head(after.str.find(_TS_END)).str.to_integer(strict=False)
    matched = pl.when(payload.str.starts_with(prefix)).then(at_offset)
    fast = _on_every_core(messages, matched.alias("ts"))
    rest = fast.is_null().arg_true()
    if rest.is_empty():
        return fast
    query = "SELECT from_json(payload, $structure).ts AS ts FROM p"
    structure = {"structure": '{"ts": "BIGINT"}'}
    slow = _query(messages[rest].select("payload"), query, structure).get_column("ts")
    return fast.scatter(rest, slow)


def _on_every_core(frame: pl.DataFrame, expression: pl.Expr) -> pl.Series:
    """One expression over a frame, evaluated by polars' streaming engine.

    The engine splits the rows over every core (an eager Series method runs on one): half
    the time on two.
    """
    return frame.lazy().select(expression).collect(engine="streaming").to_series()


def _query(columns: pl.DataFrame, query: str, params: Mapping[str, object]) -> pl.DataFrame:
    """Run a query over some message columns (as table `p`) in a private in-memory DuckDB.

    Rows come back in input order (`preserve_insertion_order`), so decoded columns line
    up with the message frame. `columns` holds only what the query reads.
    """
    con = duckdb.connect(config=_DUCKDB_CONFIG)
    try:
        # A session option (refused in the connect config): long queries would otherwise
        # draw a progress bar on the stdout of a run or a bench.
        con.execute("SET enable_progress_bar = false")
        # As Arrow string views, polars' own layout: registering the frame as it is would
        # copy every payload into an Arrow string array first (63 ns a payload).
        con.register("p", columns.to_arrow(compat_level=pl.CompatLevel.newest()))
        frame = pl.from_arrow(con.sql(query, params=dict(params)).to_arrow_table())
    finally:
        con.close()
    assert isinstance(frame, pl.DataFrame)
    return frame


def _metric_names(messages: pl.DataFrame) -> list[str]:
    """Every metric name in the payloads, sorted, by a JSON parser (any valid form)."""
    query = "SELECT DISTINCT unnest(json_keys(payload, '$.metrics')) AS name FROM p ORDER BY 1"
    return _query(messages.select("payload"), query, {}).get_column("name").to_list()


def _case_distinct_groups(names: Sequence[str]) -> list[list[str]]:
    """Split names so no group holds two that differ only in case.

    DuckDB matches a field by its exact name but refuses a structure with both `Temp` and
    `temp` (it compares structure keys case-insensitively); such names are decoded in
    separate passes, almost always there is one.
    """
    groups: list[list[str]] = []
    taken: list[set[str]] = []
    for name in names:
        key = name.casefold()
        index = next((i for i, keys in enumerate(taken) if key not in keys), len(groups))
        if index == len(groups):
            groups.append([])
            taken.append(set())
        groups[index].append(name)
        taken[index].add(key)
    return groups


def _telemetry_structure(names: Sequence[str], header: bool) -> str:
    """The `from_json` structure for telemetry: metrics as numbers, `units` as its JSON text.

    The header (ts, type, fw, and `units` whole, for `_units_of`) is read in the first pass.
    """
    structure: dict[str, object] = (
        {"ts": "BIGINT", "type": "VARCHAR", "fw": "VARCHAR", "units": "JSON"} if header else {}
    )
    structure["metrics"] = dict.fromkeys(names, "DOUBLE")
    return orjson.dumps(structure).decode()


def _units_of(units_text: pl.Series, groups: Sequence[Sequence[str]]) -> dict[str, pl.Series]:
    """Per metric name, the unit each payload's `units` object gives it (null where none).

    A fleet sends few distinct `units` objects (the simulator's 10,000 devices send three), so
    each distinct text is decoded once and its units gathered into the payloads' rows: about
    40 ns a message, against about 200 for ten string fields decoded in every payload (700k
    messages of the 10,000-device bench). DuckDB reads a field the same from the object's
    text as from within the payload (a non-string unit becomes its JSON text either way).
    A fleet whose every payload has its own `units` pays a second, smaller parse instead.
    """
    distinct = units_text.drop_nulls().unique()
    row_of = units_text.replace_strict(
        distinct,
        pl.Series(range(len(distinct)), dtype=pl.UInt32),
        default=None,
        return_dtype=pl.UInt32,
    )
    units: dict[str, pl.Series] = {}
    for group in groups:
        structure = orjson.dumps(dict.fromkeys(group, "VARCHAR")).decode()
        query = "SELECT from_json(payload, $structure) AS j FROM p"
        decoded = _query(distinct.alias("payload").to_frame(), query, {"structure": structure})
        for column in decoded.get_column("j").struct.unnest():
            units[column.name] = column.gather(row_of)
    return units


@dataclass(frozen=True)
class DecodedTelemetry:
    """A batch's payloads decoded for some metric names: header, and per name its columns."""

    names: list[str]
    header: pl.DataFrame  # ts, type, fw
    values: dict[str, pl.Series]
    units: dict[str, pl.Series]
    units_given: pl.Series  # whether the payload has a `units` object

    def unexplained(self, payloads: pl.Series) -> pl.Series:
        """Whether each payload may hold a key this decoding did not take.

        A valid telemetry payload's keys are device_id, message_id, ts and metrics, then
        type, fw, units and the names in metrics and units where given. Each key the
        decoding took (a non-null field: DuckDB matches names exactly) has its own `:` in
        the payload, so a payload with exactly that many colons holds no other key: no
        metric outside `names`. More colons (another metric, a colon inside a string, an
        extra field, a repeated key) only send the payload to `json_keys`.
        """
        taken = [
            self.header.get_column("type").is_not_null(),
            self.header.get_column("fw").is_not_null(),
            self.units_given,
            *(column.is_not_null() for column in self.values.values()),
            *(column.is_not_null() for column in self.units.values()),
        ]
        columns = [column.alias(str(index)) for index, column in enumerate(taken)]
        keys = pl.DataFrame(columns).select(pl.sum_horizontal(pl.all()).alias("keys"))
        colon = pl.col("payload").str.count_matches(":", literal=True)
        colons = _on_every_core(payloads.to_frame("payload"), colon)
        return colons != keys.get_column("keys") + _REQUIRED_TELEMETRY_KEYS


# device_id, message_id, ts, metrics: present in every valid telemetry payload.
_REQUIRED_TELEMETRY_KEYS = 4
# The metric names the last telemetry batch held (at first the catalog's): the next batch
# is decoded for them first. A hint for speed only; the names decoded never depend on it.
_recent_metric_names: frozenset[str] = frozenset(METRICS)


def decode_metrics(messages: pl.DataFrame) -> DecodedTelemetry:
    """Decode telemetry payloads for every metric name they hold, found as cheaply as can be.

    Listing a batch's metric names with `json_keys` parses every payload once more (0.15 to
    0.25 s per 500k messages). Instead the payloads are decoded for the names of the last
    batch, and `json_keys` reads only those whose keys that decoding does not explain
    (`DecodedTelemetry.unexplained`, a colon count: 0.08 s); when they hold new names, the
    batch is decoded again with them.
    """
    global _recent_metric_names
    decoded = _decode_telemetry_payloads(messages, sorted(_recent_metric_names))
    unexplained = decoded.unexplained(messages.get_column("payload"))
    if unexplained.any():
        found = _metric_names(messages.filter(unexplained))
        if not set(found) <= set(decoded.names):
            names = sorted({*decoded.names, *found})
            decoded = _decode_telemetry_payloads(messages, names)
    held = [name for name in decoded.names if decoded.values[name].null_count() < len(messages)]
    _recent_metric_names = frozenset(held)
    return DecodedTelemetry(
        held,
        decoded.header,
        {name: decoded.values[name] for name in held},
        {name: decoded.units[name] for name in held},
        decoded.units_given,
    )


def _decode_telemetry_payloads(messages: pl.DataFrame, names: Sequence[str]) -> DecodedTelemetry:
    """Header fields (ts, type, fw) and, per metric name, its value and unit columns."""
    header = pl.DataFrame()
    units_text = pl.Series(dtype=pl.String)
    values: dict[str, pl.Series] = {}
    groups = _case_distinct_groups(names)
    for index, group in enumerate(groups):
        structure = _telemetry_structure(group, header=index == 0)
        query = "SELECT from_json(payload, $structure) AS j FROM p"
        decoded = _query(messages.select("payload"), query, {"structure": structure}).unnest("j")
        if index == 0:
            header = decoded.select("ts", "type", "fw")
            units_text = decoded.get_column("units")
        values.update(zip(group, decoded.get_column("metrics").struct.unnest(), strict=True))
    units = _units_of(units_text, groups)
    return DecodedTelemetry(list(names), header, values, units, units_text.is_not_null())


_EVENT_STRUCTURE = orjson.dumps(
    {
        "ts": "BIGINT",
        "event": "VARCHAR",
        "status": "VARCHAR",
        "version": "VARCHAR",
        "command_id": "VARCHAR",
    }
).decode()


def _removal_patch(fields: Sequence[str]) -> str:
    """A JSON merge patch (RFC 7396) that removes the given fields."""
    return orjson.dumps(dict.fromkeys(fields)).decode()


def decode_event_fields(messages: pl.DataFrame) -> pl.DataFrame:
    """ts, event, status, version, command_id, and the remaining fields as `details`."""
    select = """
        j.ts AS ts, j.event AS event, j.status AS status, j.version AS version,
        j.command_id AS command_id,
        CAST(json_merge_patch(payload, CASE
            WHEN message_kind = 'status' THEN $status
            WHEN j.event = 'firmware' THEN $firmware
            ELSE $event END) AS VARCHAR) AS details
    """
    query = f"SELECT {select} FROM (SELECT *, from_json(payload, $structure) AS j FROM p)"
    params = {
        "structure": _EVENT_STRUCTURE,
        "status": _removal_patch((*_COMMON_FIELDS, "status")),
        "firmware": _removal_patch((*_COMMON_FIELDS, "event", "version", "command_id")),
        "event": _removal_patch((*_COMMON_FIELDS, "event", "command_id")),
    }
    return _query(messages.select("message_kind", "payload"), query, params)
