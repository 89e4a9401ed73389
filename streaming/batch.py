"""A micro-batch of received messages, held column by column until it is committed.

Messages are checked as they arrive (iot_lake.wire.inspect_many) into per-column lists, so
building the Arrow table at flush time is one conversion per column, not per row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_lake.catalog import RAW_TELEMETRY
from iot_lake.wire import InspectedColumns, inspect_many

_SCHEMA = RAW_TELEMETRY.schema


def now_micros() -> int:
    """Server ingest time: the consumer's UTC clock in epoch microseconds."""
    return time.time_ns() // 1000


class RawBatch:
    """Rows for raw_telemetry received since the last commit."""

    def __init__(self, source: str, consumer_id: str, max_payload_bytes: int) -> None:
        self.source = source
        self.consumer_id = consumer_id
        self.max_payload_bytes = max_payload_bytes
        self.opened_at = time.monotonic()
        self.payload_bytes_total = 0
        self.invalid = 0
        self._ingest_time: list[int] = []
        self._topic: list[str | None] = []
        self._position: list[str | None] = []
        self._payload_bytes: list[int] = []
        self._payloads: list[bytes] = []
        self._inspected = InspectedColumns()

    def __len__(self) -> int:
        return len(self._ingest_time)

    @property
    def age_s(self) -> float:
        """Seconds since the batch was opened."""
        return time.monotonic() - self.opened_at

    def add(
        self, topic: str | None, payload: bytes, ingest_micros: int, position: str | None
    ) -> None:
        """Check one message and keep it, valid or not."""
        self.extend([topic], [payload], [ingest_micros], [position])

    def extend(
        self,
        topics: Sequence[str | None],
        payloads: Sequence[bytes],
        ingest_micros: Sequence[int],
        positions: Sequence[str | None],
        claimed_devices: Sequence[str | None] | None = None,
    ) -> None:
        """Check many messages and keep them all, valid or not.

        `claimed_devices`: per message, the device the transport vouches for besides the
        topic (a Kinesis partition key), or None.
        """
        self.invalid += inspect_many(
            topics, payloads, self.max_payload_bytes, self._inspected, claimed_devices
        )
        sizes = [len(payload) for payload in payloads]
        self._payload_bytes.extend(sizes)
        self.payload_bytes_total += sum(sizes)
        self._ingest_time.extend(ingest_micros)
        self._payloads.extend(payloads)
        self._topic.extend(topics)
        self._position.extend(positions)

    def _payload_column(self, payloads: list[bytes]) -> pa.Array:
        """Payload text: the received bytes as one UTF-8 buffer, base64 only where not UTF-8."""
        inspected = self._inspected
        if inspected.not_utf8:
            texts = [payload.decode(errors="replace") for payload in payloads]
            for index, row in inspected.refused.items():
                texts[index] = row.payload
            return pa.array(texts, pa.string())
        offsets = np.zeros(len(payloads) + 1, dtype=np.int64)
        np.cumsum(self._payload_bytes, out=offsets[1:])
        column = pa.LargeStringArray.from_buffers(
            len(payloads), pa.py_buffer(offsets), pa.py_buffer(b"".join(payloads))
        )
        return column.cast(pa.string())

    def to_arrow(self) -> pa.Table:
        """The batch as an Arrow table in raw_telemetry's schema."""
        n = len(self)
        ingest_time = pa.array(self._ingest_time, pa.int64()).cast(
            _SCHEMA.field("ingest_time").type
        )
        inspected = self._inspected
        codes, details = inspected.error_columns()
        encodings = ["utf-8"] * n
        for index, row in inspected.refused.items():
            encodings[index] = row.payload_encoding
        arrays = {
            "ingest_time": ingest_time,
            "ingest_date": pc.cast(ingest_time, pa.date32()),
            "tenant_id": pa.array(inspected.tenant_id, pa.string()),
            "device_id": pa.array(inspected.device_id, pa.string()),
            "message_kind": pa.array(inspected.message_kind, pa.string()),
            "message_id": pa.array(inspected.message_id, pa.string()),
            "topic": pa.array(self._topic, pa.string()),
            "source": pa.repeat(self.source, n),  # type: ignore[call-overload]
            "source_position": pa.array(self._position, pa.string()),
            "consumer_id": pa.repeat(self.consumer_id, n),  # type: ignore[call-overload]
            "payload": self._payload_column(self._payloads),
            "payload_encoding": pa.array(encodings, pa.string()),
            "payload_bytes": pa.array(self._payload_bytes, pa.int32()),
            "error_code": pa.array(codes, pa.string()),
            "error_detail": pa.array(details, pa.string()),
        }
        return pa.Table.from_pydict(arrays, schema=_SCHEMA)
