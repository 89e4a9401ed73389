"""JSONL file source: one framed message `topic<TAB>payload` per line, optionally followed.

The checkpoint is the byte offset just past the last landed line (the Delta transaction
version), so a restarted consumer seeks there and lands every line exactly once.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from streaming.batch import RawBatch, int_array, now_micros
from streaming.landing import LandingWriter, Position
from streaming.sources.base import FRAME_SEPARATOR

# A poll reads about as many bytes as the batch has room for lines, judged by the last
# chunk's mean line, within these bounds. Checking a chunk has a fixed cost of about 3 ms
# (a dozen polars queries: iot_lake.ingest.intake), so a batch is best read in one chunk: with
# 4 MiB reads a 30,000-message batch took three chunks (bench/ingest.py; docs/performance.md).
MIN_READ_BYTES = 1024 * 1024
MAX_READ_BYTES = 32 * 1024 * 1024
FIRST_LINE_BYTES_GUESS = 512
_NEWLINE, _CARRIAGE_RETURN, _TAB = ord("\n"), ord("\r"), ord(FRAME_SEPARATOR)


@dataclass(frozen=True)
class Frames:
    """Lines split into topics and payloads (polars columns, or lists), with each line's start."""

    topics: pl.Series | list[bytes | None]
    payloads: pl.Series | list[bytes]
    starts: npt.NDArray[np.int64]


def split_lines(lines: bytes | memoryview, ends: npt.NDArray[np.int64] | None = None) -> Frames:
    """Split newline-terminated `topic<TAB>payload` lines at their first tab, in bulk.

    `ends`: the offsets of the newlines, when the caller has found them already. Topics and
    payloads become Arrow string views into the read buffer itself (no copy, no Python
    object per line); polars only finds each line's first tab. A line without a tab is a
    payload without a topic; a carriage return before the newline is framing, not payload. A
    chunk that is not UTF-8 (a device sent invalid bytes) is split line by line in Python,
    so its bytes reach the checks, and raw, unaltered.
    """
    buffer = np.frombuffer(lines, dtype=np.uint8)
    if ends is None:
        ends = np.flatnonzero(buffer == _NEWLINE)
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)[: len(ends)]
    column = pa.Array.from_buffers(
        pa.large_binary(),
        len(ends),
        [None, pa.py_buffer(np.append(starts, len(lines))), pa.py_buffer(lines)],
    )
    try:
        text = column.cast(pa.large_string())  # checks UTF-8, shares the buffer
    except pa.ArrowInvalid:
        return _split_in_python(lines, starts)
    tabs = _first_tabs(buffer, starts, ends, text)
    has_topic = tabs >= 0
    payload_starts = np.where(has_topic, starts + tabs + 1, starts)
    crlf = (buffer[np.maximum(ends - 1, 0)] == _CARRIAGE_RETURN) & (ends > payload_starts)
    payload_ends = ends - crlf
    topics = _string_views(lines, starts, np.where(has_topic, tabs, 0), has_topic)
    payloads = _string_views(lines, payload_starts, payload_ends - payload_starts)
    return Frames(topics, payloads, starts)


def _first_tabs(
    buffer: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    text: pa.Array,
) -> npt.NDArray[np.int64]:
    """Offset of each line's first tab within the line, -1 for a line without one."""
    tabs = np.flatnonzero(buffer == _TAB)
    if len(tabs) == len(ends) and bool(np.all((tabs >= starts) & (tabs < ends))):
        return tabs - starts  # the norm: exactly one tab a line
    separator = FRAME_SEPARATOR.decode()
    found = pl.Series(text).str.find(separator, literal=True).fill_null(-1)
    return found.to_numpy().astype(np.int64)


_INLINE = np.arange(12)


def _string_views(
    data: bytes | memoryview,
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    valid: npt.NDArray[np.bool_] | None = None,
) -> pl.Series:
    """Strings `data[start:start + length]` as an Arrow string-view column over `data`.

    A view is 16 bytes: the length, then up to 12 bytes inline for a short string, or the
    first 4 bytes, buffer 0 and the offset for a longer one (Arrow's BinaryView layout).
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    last = max(len(buffer) - 1, 0)
    views = np.zeros((len(starts), 4), dtype="<i4")
    views[:, 0] = lengths
    if len(buffer) >= 4:
        # Every 4 bytes of the buffer as one overlapping int32, so a string's prefix is one
        # gather (clipped: a string too close to the end to have one is short, just below).
        # Indexing reads the strided view in place; `take` would first copy it contiguous,
        # four times the buffer's size.
        words = np.ndarray((len(buffer) - 3,), dtype="<i4", buffer=buffer, strides=(1,))
        views[:, 1] = words[np.minimum(starts, len(buffer) - 4)]
    views[:, 3] = starts
    short = np.flatnonzero(lengths <= 12)
    if len(short):
        inline = buffer[np.minimum(starts[short, None] + _INLINE, last)]
        inline[lengths[short, None] <= _INLINE] = 0  # bytes past a short string's end are zero
        views[short, 1:] = inline.view("<i4")
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    array = pa.Array.from_buffers(
        pa.string_view(), len(starts), [bitmap, pa.py_buffer(views), pa.py_buffer(data)]
    )
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series


def _split_in_python(lines: bytes | memoryview, starts: npt.NDArray[np.int64]) -> Frames:
    frames = [line.partition(FRAME_SEPARATOR) for line in bytes(lines)[:-1].split(b"\n")]
    topics = [topic if separator else None for topic, separator, _ in frames]
    payloads = [payload if separator else topic for topic, separator, payload in frames]
    return Frames(topics, [payload.removesuffix(b"\r") for payload in payloads], starts)


class FileSource:
    """Reads a framed-JSONL file from the last committed offset; `follow` tails it."""

    name = "file"
    max_batch_records: int | None = None
    commits_in_flight = 2

    def __init__(
        self, path: str | Path, *, follow: bool = False, poll_interval_s: float = 0.2
    ) -> None:
        self.path = Path(path).absolute()
        self.follow = follow
        self.poll_interval_s = poll_interval_s
        self.app_id = f"file:{self.path}"
        self._offset = 0
        self._pending = memoryview(b"")
        self._pending_newlines = np.empty(0, dtype=np.int64)
        self._line_bytes = FIRST_LINE_BYTES_GUESS
        self._handle: BufferedReader | None = None

    def resume(self, writer: LandingWriter) -> None:
        """Seek to the committed offset of this file (0 for a file never landed)."""
        if not self.path.is_file():
            raise FileNotFoundError(f"--source file: no such file {self.path}")
        self._offset = writer.committed_version(self.app_id) or 0
        self._handle = self.path.open("rb")
        self._handle.seek(self._offset)

    def poll(self, batch: RawBatch, max_records: int, timeout_s: float) -> bool:
        """Land up to `max_records` complete lines; at EOF wait (follow) or finish."""
        assert self._handle is not None, "resume() first"
        deadline = time.monotonic() + timeout_s
        while True:
            lines, ends = self._read_lines(max_records)
            if lines:
                self._add(batch, lines, ends)
                return True
            if not self.follow:
                if self._pending:  # a last line without a newline is still a message
                    last, self._pending = bytes(self._pending), memoryview(b"")
                    self._add(batch, last + b"\n", None, consumed=len(last))
                return False
            if time.monotonic() >= deadline:
                return True
            time.sleep(self.poll_interval_s)

    def _read_lines(self, max_records: int) -> tuple[memoryview, npt.NDArray[np.int64]]:
        """Up to `max_records` complete lines (each with its newline), and where each ends.

        When fewer lines are pending, reads enough for `max_records` lines half as long
        again as the last chunk's mean, so a batch is usually one chunk. The read goes into
        a fresh buffer after a copy of the pending bytes, and only new bytes are scanned for
        newlines; what is returned and what stays pending are views of that buffer, which
        the batch keeps alive until it is committed.
        """
        assert self._handle is not None
        data, newlines = self._pending, self._pending_newlines
        unread = os.fstat(self._handle.fileno()).st_size - self._handle.tell()
        if len(newlines) < max_records and unread > 0:
            wanted = max_records * self._line_bytes * 3 // 2 - len(data)
            wanted = min(max(wanted, MIN_READ_BYTES), MAX_READ_BYTES, unread)
            buffer = bytearray(len(data) + wanted)
            buffer[: len(data)] = data
            read = self._handle.readinto(memoryview(buffer)[len(data) :])
            fresh = np.frombuffer(buffer, dtype=np.uint8, count=read, offset=len(data))
            newlines = np.concatenate([newlines, np.flatnonzero(fresh == _NEWLINE) + len(data)])
            data = memoryview(buffer)[: len(data) + read]
        taken = min(max_records, len(newlines))
        end = int(newlines[taken - 1]) + 1 if taken else 0
        if taken:
            self._line_bytes = -(-end // taken)
        # An incomplete last line, or lines beyond max_records.
        self._pending, self._pending_newlines = data[end:], newlines[taken:] - end
        return data[:end], newlines[:taken]

    def _add(
        self,
        batch: RawBatch,
        lines: bytes | memoryview,
        ends: npt.NDArray[np.int64] | None,
        consumed: int | None = None,
    ) -> None:
        """Add newline-terminated lines: `consumed` bytes of the file (all of `lines` if None)."""
        frames = split_lines(lines, ends)
        starts = frames.starts + self._offset
        self._offset += len(lines) if consumed is None else consumed
        positions = pc.binary_join_element_wise(
            f"{self.path.name}@", int_array(starts).cast(pa.string()), ""
        )
        batch.extend(frames.topics, frames.payloads, now_micros(), positions)

    def positions(self) -> list[Position]:
        """The offset just past the last line polled."""
        return [Position(self.app_id, self._offset)]

    def committed(self) -> None:
        """Nothing to acknowledge: the offset in the commit is the checkpoint."""

    def lag(self) -> str | None:
        """Bytes of the file not yet landed."""
        return f"{max(self.path.stat().st_size - self._offset, 0)} B"

    def close(self) -> None:
        """Close the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
