"""A micro-batch of received messages, held column by column until it is committed.

Messages are checked as they arrive, a source's chunk at a time (iot_lake.ingest.intake), into
columns, so building the Arrow table at flush time is one concatenation per column.

Chunks are checked on a small pool of threads (CHECKING_THREADS) while the source reads
the next one: checking is polars and numpy work that releases the GIL, about half of a
consumer's CPU, and on one thread it held the whole loop to one core. A batch keeps its
chunks in the order they arrived; its columns wait for their checks only when it is
committed (`checked`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from iot_lake.ingest.intake import (
    IDENTITY_COLUMNS,
    InspectedChunk,
    Payloads,
    Topics,
    current_registry,
    inspect_chunk,
)
from iot_lake.ingest.wire import DEFAULT_IDENTITY, Inspected
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.settings import IdentityRules

_SCHEMA = RAW_TELEMETRY.schema
_STRING = pa.string()
# raw_telemetry's columns with text as Arrow string views: polars' own layout, so the
# payloads and the topics' identities reach the Parquet writer without being copied.
ARROW_SCHEMA = pa.schema(
    [field.with_type(pa.string_view()) if field.type == _STRING else field for field in _SCHEMA]
)
CHECKING_THREADS = 2
_INT64 = pa.int64()


def now_micros() -> int:
    """Server ingest time: the consumer's UTC clock in epoch microseconds."""
    return time.time_ns() // 1000


def int_array(values: npt.NDArray[np.integer], type_: pa.DataType = _INT64) -> pa.Array:
    """An Arrow array of integers from numpy, sharing its memory.

    `pa.array` would first import pandas to test the input: half a second in the middle of
    a consumer's first batch.
    """
    values = np.ascontiguousarray(values, dtype=type_.to_pandas_dtype())
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(values)])


_checkers: ThreadPoolExecutor | None = None
_checkers_lock = threading.Lock()


def _checking_pool() -> ThreadPoolExecutor:
    """The process's chunk-checking threads, started on first use."""
    global _checkers  # one pool per process, shared by its consumers
    with _checkers_lock:
        if _checkers is None:
            _checkers = ThreadPoolExecutor(CHECKING_THREADS, thread_name_prefix="check")
        return _checkers


class RawBatch:
    """Rows for raw_telemetry received since the last commit, checked chunk by chunk."""

    def __init__(
        self,
        source: str,
        consumer_id: str,
        max_payload_bytes: int,
        identity: IdentityRules = DEFAULT_IDENTITY,
    ) -> None:
        self.source = source
        self.consumer_id = consumer_id
        self.max_payload_bytes = max_payload_bytes
        self.opened_at = time.monotonic()
        self.payload_bytes_total = 0
        self._rows = 0
        self._registry = current_registry(identity)
        self._checks: list[Future[InspectedChunk]] = []
        self._ingest_time: list[pa.Array] = []
        self._positions: list[pa.Array] = []

    def __len__(self) -> int:
        return self._rows

    @property
    def age_s(self) -> float:
        """Seconds since the batch was opened."""
        return time.monotonic() - self.opened_at

    def add(
        self, topic: str | bytes | None, payload: bytes, ingest_micros: int, position: str | None
    ) -> None:
        """Check one message and keep it, valid or not."""
        self.extend([topic], [payload], ingest_micros, [position])

    def extend(
        self,
        topics: Topics,
        payloads: Payloads,
        ingest_micros: Sequence[int] | int,
        positions: Sequence[str | None] | pa.Array,
        claimed_devices: Sequence[str | None] | None = None,
    ) -> None:
        """Keep many messages, valid or not; they are checked on the checking threads.

        `topics` and `payloads` as iot_lake.ingest.intake.inspect_chunk takes them (the batch holds
        them until checked: the caller must not change them); `ingest_micros` is one time
        for all or one per message; `positions` may come as an Arrow string array;
        `claimed_devices`: per message, the device the transport vouches for besides the
        topic (a Kinesis partition key).
        """
        rows = len(topics)
        self._checks.append(
            _checking_pool().submit(
                inspect_chunk,
                topics,
                payloads,
                self.max_payload_bytes,
                claimed_devices,
                self._registry,
            )
        )
        self._rows += rows
        self.payload_bytes_total += _payload_bytes(payloads)
        if isinstance(ingest_micros, int):
            self._ingest_time.append(pa.repeat(pa.scalar(ingest_micros, pa.int64()), rows))
        else:
            self._ingest_time.append(pa.array(ingest_micros, pa.int64()))
        self._positions.append(
            positions if isinstance(positions, pa.Array) else pa.array(positions, _STRING)
        )

    def checked(self) -> list[InspectedChunk]:
        """The batch's chunks once checked, in arrival order (waits for their checks)."""
        return [check.result() for check in self._checks]

    @property
    def invalid(self) -> int:
        """Messages refused (waits for the checks)."""
        return sum(len(chunk.refused) for chunk in self.checked())

    def to_arrow(self) -> pa.Table:
        """The batch as an Arrow table: raw_telemetry's columns, text as views (ARROW_SCHEMA)."""
        n = len(self)
        if not n:
            return ARROW_SCHEMA.empty_table()
        chunks = self.checked()
        ingest_time = _concat(self._ingest_time, pa.int64()).cast(_SCHEMA.field("ingest_time").type)
        refused = _refused(chunks)
        arrays = {
            "ingest_time": ingest_time,
            "ingest_date": pc.cast(ingest_time, pa.date32()),
            **self._identity_columns(chunks),
            "message_id": _views(pl.concat([chunk.message_id for chunk in chunks], rechunk=False)),
            "source": pa.repeat(pa.scalar(self.source, _STRING), n),
            "source_position": _concat(self._positions, _STRING),
            "consumer_id": pa.repeat(pa.scalar(self.consumer_id, _STRING), n),
            "payload": _views(pl.concat([chunk.payload for chunk in chunks], rechunk=False)),
            "payload_encoding": _sparse(n, "utf-8", refused, "payload_encoding"),
            "payload_bytes": int_array(
                np.concatenate([chunk.payload_bytes for chunk in chunks]), pa.int32()
            ),
            "error_code": _sparse(n, None, refused, "error_code"),
            "error_detail": _sparse(n, None, refused, "error_detail"),
        }
        return pa.Table.from_pydict(arrays, schema=ARROW_SCHEMA)

    def _identity_columns(self, chunks: list[InspectedChunk]) -> dict[str, pa.Array]:
        """Topic, tenant, device and kind per row, gathered from the registry by topic id."""
        topic_ids = np.concatenate([chunk.topic_ids for chunk in chunks])
        identities = self._registry.identity_frame()[topic_ids]
        return {name: _views(identities.get_column(name)) for name in IDENTITY_COLUMNS}


def _refused(chunks: list[InspectedChunk]) -> dict[int, Inspected]:
    """Every refused row of the chunks by its row number in the batch."""
    refused: dict[int, Inspected] = {}
    offset = 0
    for chunk in chunks:
        refused.update((offset + row, verdict) for row, verdict in chunk.refused.items())
        offset += len(chunk)
    return refused


def _payload_bytes(payloads: Payloads) -> int:
    """The payloads' total size, for the batch's byte limit (before they are checked)."""
    if isinstance(payloads, pl.Series):
        return int(payloads.str.len_bytes().sum() or 0)
    return sum(map(len, payloads))


def _views(column: pl.Series) -> pa.Array:
    """A polars string column as one Arrow string-view array, sharing its buffers."""
    array = column.to_arrow(compat_level=pl.CompatLevel.newest())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _sparse(n: int, usual: str | None, refused: dict[int, Inspected], field: str) -> pa.Array:
    """A string column that is `usual` everywhere but in refused rows, which say their own."""
    column = pa.repeat(pa.scalar(usual, _STRING), n)
    if not refused:
        return column
    rows = sorted(refused)
    mask = np.zeros(n, dtype=np.bool_)
    mask[rows] = True
    values = pa.array([getattr(refused[row], field) for row in rows], _STRING)
    return pc.replace_with_mask(column, pa.array(mask), values)


def _concat(parts: list[pa.Array], type_: pa.DataType) -> pa.Array:
    if not parts:
        return pa.array([], type_)
    return pa.concat_arrays([part.cast(type_) for part in parts])
