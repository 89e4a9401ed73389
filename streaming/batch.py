"""A micro-batch of received messages, held column by column until it is committed.

Messages are checked as they arrive, a source's chunk at a time (iot_lake.intake), into
columns, so building the Arrow table at flush time is one concatenation per column.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from iot_lake.catalog import RAW_TELEMETRY
from iot_lake.intake import (
    IDENTITY_COLUMNS,
    InspectedChunk,
    Payloads,
    Topics,
    current_registry,
    inspect_chunk,
)
from iot_lake.wire import Inspected

_SCHEMA = RAW_TELEMETRY.schema
_STRING = pa.string()


def now_micros() -> int:
    """Server ingest time: the consumer's UTC clock in epoch microseconds."""
    return time.time_ns() // 1000


_INT64 = pa.int64()


def int_array(values: npt.NDArray[np.integer], type_: pa.DataType = _INT64) -> pa.Array:
    """An Arrow array of integers from numpy, sharing its memory.

    `pa.array` would first import pandas to test the input: half a second in the middle of
    a consumer's first batch.
    """
    values = np.ascontiguousarray(values, dtype=type_.to_pandas_dtype())
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(values)])


class RawBatch:
    """Rows for raw_telemetry received since the last commit, checked chunk by chunk."""

    def __init__(self, source: str, consumer_id: str, max_payload_bytes: int) -> None:
        self.source = source
        self.consumer_id = consumer_id
        self.max_payload_bytes = max_payload_bytes
        self.opened_at = time.monotonic()
        self.payload_bytes_total = 0
        self.invalid = 0
        self._rows = 0
        self._registry = current_registry()
        self._chunks: list[InspectedChunk] = []
        self._ingest_time: list[pa.Array] = []
        self._positions: list[pa.Array] = []

    def __len__(self) -> int:
        return self._rows

    @property
    def age_s(self) -> float:
        """Seconds since the batch was opened."""
        return time.monotonic() - self.opened_at

    def add(
        self, topic: str | None, payload: bytes, ingest_micros: int, position: str | None
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
        """Check many messages and keep them all, valid or not.

        `topics` and `payloads` as iot_lake.intake.inspect_chunk takes them; `ingest_micros`
        is one time for all or one per message; `positions` may come as an Arrow string
        array; `claimed_devices`: per message, the device the transport vouches for besides
        the topic (a Kinesis partition key).
        """
        chunk = inspect_chunk(
            topics, payloads, self.max_payload_bytes, claimed_devices, self._registry
        )
        self._chunks.append(chunk)
        self._rows += len(chunk)
        self.invalid += len(chunk.refused)
        self.payload_bytes_total += int(chunk.payload_bytes.sum())
        if isinstance(ingest_micros, int):
            self._ingest_time.append(pa.repeat(pa.scalar(ingest_micros, pa.int64()), len(chunk)))
        else:
            self._ingest_time.append(pa.array(ingest_micros, pa.int64()))
        self._positions.append(
            positions if isinstance(positions, pa.Array) else pa.array(positions, _STRING)
        )

    def _refused(self) -> dict[int, Inspected]:
        """Every refused row of the batch by its row number in the batch."""
        refused: dict[int, Inspected] = {}
        offset = 0
        for chunk in self._chunks:
            refused.update((offset + row, verdict) for row, verdict in chunk.refused.items())
            offset += len(chunk)
        return refused

    def _identity_columns(self) -> dict[str, pa.Array]:
        """Topic, tenant, device and kind per row, taken from the registry by topic id."""
        topic_ids = np.concatenate([chunk.topic_ids for chunk in self._chunks])
        identities = self._registry.identity_table().take(int_array(topic_ids, pa.int32()))
        return {name: identities[name].combine_chunks() for name in IDENTITY_COLUMNS}

    def _text(self, column: str) -> pa.Array:
        """A string column of the chunks as one Arrow array."""
        parts = [getattr(chunk, column) for chunk in self._chunks]
        return pl.concat(parts, rechunk=False).to_arrow().cast(_STRING)

    def to_arrow(self) -> pa.Table:
        """The batch as an Arrow table in raw_telemetry's schema."""
        n = len(self)
        if not n:
            return _SCHEMA.empty_table()
        ingest_time = _concat(self._ingest_time, pa.int64()).cast(_SCHEMA.field("ingest_time").type)
        refused = self._refused()
        arrays = {
            "ingest_time": ingest_time,
            "ingest_date": pc.cast(ingest_time, pa.date32()),
            **self._identity_columns(),
            "message_id": self._text("message_id"),
            "source": pa.repeat(pa.scalar(self.source, _STRING), n),
            "source_position": _concat(self._positions, _STRING),
            "consumer_id": pa.repeat(pa.scalar(self.consumer_id, _STRING), n),
            "payload": self._text("payload"),
            "payload_encoding": _sparse(n, "utf-8", refused, "payload_encoding"),
            "payload_bytes": int_array(
                np.concatenate([chunk.payload_bytes for chunk in self._chunks]), pa.int32()
            ),
            "error_code": _sparse(n, None, refused, "error_code"),
            "error_detail": _sparse(n, None, refused, "error_detail"),
        }
        return pa.Table.from_pydict(arrays, schema=_SCHEMA)


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
