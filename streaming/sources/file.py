"""JSONL file source: one framed message `topic<TAB>payload` per line, optionally followed.

The checkpoint is the byte offset just past the last landed line (the Delta transaction
version), so a restarted consumer seeks there and lands every line exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streaming.batch import RawBatch, now_micros
from streaming.landing import LandingWriter, Position
from streaming.sources.base import FRAME_SEPARATOR

READ_CHUNK_BYTES = 4 * 1024 * 1024


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
                    self._add(batch, [self._pending])
                    self._pending = b""
                return False
            if time.monotonic() >= deadline:
                return True
            time.sleep(self.poll_interval_s)

    def _read_lines(self, max_records: int) -> list[bytes]:
        assert self._handle is not None
        chunks = [self._pending]
        newlines = self._pending.count(b"\n")
        while newlines < max_records:
            chunk = self._handle.read(READ_CHUNK_BYTES)
            if not chunk:
                break
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
        lines = b"".join(chunks).split(b"\n", max_records)
        self._pending = lines.pop()  # an incomplete last line, or lines beyond max_records
        return lines

    def _add(self, batch: RawBatch, lines: list[bytes]) -> None:
        sizes = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)) + 1
        starts = np.cumsum(sizes) - sizes + self._offset
        offset = int(starts[-1] + sizes[-1])
        if not self.follow and not self._pending and offset > self._end_of_file():
            offset -= 1  # the last line had no newline
        self._offset = offset
        frames = [line.partition(FRAME_SEPARATOR) for line in lines]
        topics = [topic if separator else None for topic, separator, _ in frames]
        payloads = [payload if separator else topic for topic, separator, payload in frames]
        if any(payload.endswith(b"\r") for payload in payloads[-1:]):  # CRLF files
            payloads = [payload.removesuffix(b"\r") for payload in payloads]
        positions = pc.binary_join_element_wise(
            f"{self.path.name}@", pa.array(starts).cast(pa.string()), ""
        )
        batch.extend(topics, payloads, now_micros(), positions)

    def _end_of_file(self) -> int:
        assert self._handle is not None
        return self._handle.tell()

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
