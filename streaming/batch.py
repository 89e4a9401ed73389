"""A micro-batch of received messages, held column by column until it is committed.

Messages are checked as they arrive (iot_lake.wire.inspect_many) into per-column lists, so
building the Arrow table at flush time is one conversion per column, not per row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from iot_lake.catalog import RAW_TELEMETRY
from iot_lake.wire import IDENTITY_COLUMNS, InspectedColumns, inspect_many

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
    """Rows for raw_telemetry received since the last commit."""

    def __init__(self, source: str, consumer_id: str, max_payload_bytes: int) -> None:
        self.source = source
        self.consumer_id = consumer_id
        self.max_payload_bytes = max_payload_bytes
        self.opened_at = time.monotonic()
        self.payload_bytes_total = 0
        self.invalid = 0
        self._ingest_time: list[pa.Array] = []
        self._positions: list[pa.Array] = []
        self._payload_bytes: list[npt.NDArray[np.int64]] = []
        self._payloads: list[bytes] = []
        self._inspected = InspectedColumns()

    def __len__(self) -> int:
        return len(self._payloads)

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
        topics: Sequence[str | bytes | None],
        payloads: Sequence[bytes],
        ingest_micros: Sequence[int] | int,
        positions: Sequence[str | None] | pa.Array,
        sizes: npt.NDArray[np.int64] | None = None,
        claimed_devices: Sequence[str | None] | None = None,
    ) -> None:
        """Check many messages and keep them all, valid or not.

        `ingest_micros` is one time for all or one per message; `positions` may come as an
        Arrow string array and `sizes` (payload bytes) as an array, when the source has them
        vectorised; `claimed_devices`: per message, the device the transport vouches for
        besides the topic (a Kinesis partition key).
        """
        self.invalid += inspect_many(
            topics, payloads, self.max_payload_bytes, self._inspected, claimed_devices
        )
        if sizes is None:
            sizes = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
        self._payload_bytes.append(sizes)
        self.payload_bytes_total += int(sizes.sum())
        self._payloads.extend(payloads)
        if isinstance(ingest_micros, int):
            self._ingest_time.append(pa.repeat(pa.scalar(ingest_micros, pa.int64()), len(sizes)))
        else:
            self._ingest_time.append(pa.array(ingest_micros, pa.int64()))
        self._positions.append(
            positions if isinstance(positions, pa.Array) else pa.array(positions, _STRING)
        )

    def _payload_column(self) -> pa.Array:
        """Payload text: the received bytes as one UTF-8 buffer, base64 only where not UTF-8."""
        inspected = self._inspected
        if inspected.not_utf8:
            texts = [payload.decode(errors="replace") for payload in self._payloads]
            for index, row in inspected.refused.items():
                texts[index] = row.payload
            return pa.array(texts, _STRING)
        offsets = np.zeros(len(self._payloads) + 1, dtype=np.int64)
        np.cumsum(self._sizes(), out=offsets[1:])
        column = pa.LargeStringArray.from_buffers(
            len(self._payloads), pa.py_buffer(offsets), pa.py_buffer(b"".join(self._payloads))
        )
        return column.cast(_STRING)

    def _sizes(self) -> npt.NDArray[np.int64]:
        if not self._payload_bytes:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(self._payload_bytes)

    def _identity_columns(self) -> dict[str, pa.Array]:
        """Topic, tenant, device and kind per row, taken from the batch's distinct topics."""
        inspected = self._inspected
        distinct, rows = np.unique(
            np.asarray(inspected.topic_ids, dtype=np.int64), return_inverse=True
        )
        identities = [inspected.registry.identities[i] for i in distinct]
        take = int_array(rows, pa.int32())
        return {
            name: pa.array([identity[i] for identity in identities], _STRING).take(take)
            for i, name in enumerate(IDENTITY_COLUMNS)
        }

    def to_arrow(self) -> pa.Table:
        """The batch as an Arrow table in raw_telemetry's schema."""
        n = len(self)
        ingest_time = _concat(self._ingest_time, pa.int64()).cast(_SCHEMA.field("ingest_time").type)
        inspected = self._inspected
        codes, details = inspected.error_columns()
        encodings = ["utf-8"] * n
        for index, row in inspected.refused.items():
            encodings[index] = row.payload_encoding
        arrays = {
            "ingest_time": ingest_time,
            "ingest_date": pc.cast(ingest_time, pa.date32()),
            **self._identity_columns(),
            "message_id": pa.array(inspected.message_id, _STRING),
            "source": pa.repeat(pa.scalar(self.source, _STRING), n),
            "source_position": _concat(self._positions, _STRING),
            "consumer_id": pa.repeat(pa.scalar(self.consumer_id, _STRING), n),
            "payload": self._payload_column(),
            "payload_encoding": pa.array(encodings, _STRING),
            "payload_bytes": int_array(self._sizes(), pa.int32()),
            "error_code": pa.array(codes, _STRING),
            "error_detail": pa.array(details, _STRING),
        }
        return pa.Table.from_pydict(arrays, schema=_SCHEMA)


def _concat(parts: list[pa.Array], type_: pa.DataType) -> pa.Array:
    if not parts:
        return pa.array([], type_)
    return pa.concat_arrays([part.cast(type_) for part in parts])
