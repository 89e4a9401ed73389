"""JSONL file source: one framed message `topic<TAB>payload` per line, optionally followed.

The checkpoint is the byte offset just past the last landed line (the Delta transaction
version), so a restarted consumer seeks there and lands every line exactly once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from streaming.batch import RawBatch, int_array, now_micros
from streaming.landing import LandingWriter, Position
from streaming.sources.base import FRAME_SEPARATOR

READ_CHUNK_BYTES = 4 * 1024 * 1024
_NEWLINE, _TAB = ord("\n"), ord(FRAME_SEPARATOR)


@dataclass(frozen=True)
class Frames:
    """Lines split into topics and payloads, with each line's start and payload size."""

    topics: list[bytes | None]
    payloads: list[bytes]
    starts: npt.NDArray[np.int64]
    sizes: npt.NDArray[np.int64]


def split_lines(lines: bytes) -> Frames:
    """Split newline-terminated `topic<TAB>payload` lines, vectorised where the framing allows.

    When every line holds exactly one tab (the norm), turning tabs into newlines makes one
    `split` yield topic, payload, topic, payload...: two objects a line instead of a line, a
    tuple and two parts (half the time here). A line without its tab or with a second one
    (JSON may hold a tab as whitespace) sends the whole chunk through the line-by-line split.
    """
    buffer = np.frombuffer(lines, dtype=np.uint8)
    ends = np.flatnonzero(buffer == _NEWLINE)
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    tabs = np.flatnonzero(buffer == _TAB)
    if len(tabs) == len(ends) and bool(np.all(tabs >= starts)) and bool(np.all(tabs < ends)):
        parts = lines.replace(FRAME_SEPARATOR, b"\n").split(b"\n")
        parts.pop()  # after the last newline
        topics: list[bytes | None] = parts[0::2]  # type: ignore[assignment]  # no None here
        payloads: list[bytes] = parts[1::2]
    else:
        frames = [line.partition(FRAME_SEPARATOR) for line in lines[:-1].split(b"\n")]
        topics = [topic if separator else None for topic, separator, _ in frames]
        payloads = [payload if separator else topic for topic, separator, payload in frames]
    if b"\r\n" in lines:  # a CRLF file: the carriage return is framing, not payload
        payloads = [payload.removesuffix(b"\r") for payload in payloads]
    sizes = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
    return Frames(topics, payloads, starts, sizes)


class FileSource:
    """Reads a framed-JSONL file from the last committed offset; `follow` tails it."""

    name = "file"
    max_batch_records: int | None = None

    def __init__(
        self, path: str | Path, *, follow: bool = False, poll_interval_s: float = 0.2
    ) -> None:
        self.path = Path(path).absolute()
        self.follow = follow
        self.poll_interval_s = poll_interval_s
        self.app_id = f"file:{self.path}"
        self._offset = 0
        self._pending = b""
        self._handle: BinaryIO | None = None

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
            lines = self._read_lines(max_records)
            if lines:
                self._add(batch, lines)
                return True
            if not self.follow:
                if self._pending:  # a last line without a newline is still a message
                    self._add(batch, self._pending)
                    self._pending = b""
                return False
            if time.monotonic() >= deadline:
                return True
            time.sleep(self.poll_interval_s)

    def _read_lines(self, max_records: int) -> bytes:
        """Up to `max_records` complete lines (each with its newline), one read at a time.

        A chunk per call keeps every pass over the bytes (newlines, tabs, the split) within
        a few MiB; the consumer polls again while its batch has room.
        """
        assert self._handle is not None
        data = self._pending
        if len(data) < READ_CHUNK_BYTES or b"\n" not in data:
            data += self._handle.read(READ_CHUNK_BYTES)
        newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _NEWLINE)
        end = int(newlines[min(max_records, len(newlines)) - 1]) + 1 if len(newlines) else 0
        self._pending = data[end:]  # an incomplete last line, or lines beyond max_records
        return data[:end]

    def _add(self, batch: RawBatch, lines: bytes) -> None:
        """Add whole lines (the last one may lack its newline only at the end of a file)."""
        unterminated = not lines.endswith(b"\n")
        frames = split_lines(lines + b"\n" if unterminated else lines)
        starts = frames.starts + self._offset
        self._offset += len(lines)
        positions = pc.binary_join_element_wise(
            f"{self.path.name}@", int_array(starts).cast(pa.string()), ""
        )
        batch.extend(frames.topics, frames.payloads, now_micros(), positions, frames.sizes)

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
