"""The contract between the consumer loop and a message source."""

from __future__ import annotations

from typing import Protocol

from streaming.batch import RawBatch
from streaming.landing import LandingWriter, Position

FRAME_SEPARATOR = b"\t"


def split_frame(frame: bytes) -> tuple[bytes | None, bytes]:
    """Split a framed message `topic<TAB>payload` (files, Kinesis records) into its parts.

    A frame without a tab has no topic: it is kept whole as the payload and the consumer
    records it as `invalid_topic`. The topic stays bytes: the checks decode it, and keep
    one that is not UTF-8 rather than replace its bytes (iot_lake.ingest.wire.decode_topic).
    """
    topic, separator, payload = frame.partition(FRAME_SEPARATOR)
    if not separator:
        return None, frame
    return topic, payload


class Source(Protocol):
    """A stream of messages the consumer lands in raw_telemetry.

    The consumer calls `resume` once, then repeatedly `poll`s into a batch; `positions()`
    seals the batch (what was polled so far belongs to it) and returns its checkpoint. While
    that batch commits (with up to `commits_in_flight` sealed batches), the next one fills;
    when a commit is done the consumer calls `committed()`, which acknowledges the OLDEST
    sealed batch not yet acknowledged. `close` at the end. A replayable source (file,
    Kinesis) resumes exactly after what is committed; MQTT acknowledges to the broker in
    `committed()`, so an uncommitted message is delivered again.
    """

    name: str
    # The most messages one batch may hold, when the source limits it (MQTT: two batches
    # in flight must fit the broker's window of unacknowledged messages); None for no cap.
    max_batch_records: int | None
    # How many sealed batches may be committing while the next one fills. Two let a
    # batch's files be written while the batch before it commits; MQTT takes one, as its
    # sealed batches and the open one must all fit the broker's window.
    commits_in_flight: int

    def resume(self, writer: LandingWriter) -> None:
        """Position the source just after what raw_telemetry already holds from it."""

    def poll(self, batch: RawBatch, max_records: int, timeout_s: float) -> bool:
        """Add at most `max_records` messages to the batch, waiting at most `timeout_s`.

        Returns False once a finite source has nothing more to give.
        """

    def positions(self) -> list[Position]:
        """Seal the batch: checkpoints covering every message polled so far."""

    def committed(self) -> None:
        """The oldest sealed batch is durable: acknowledge it where the source needs that."""

    def lag(self) -> str | None:
        """How far behind the source's head the consumer is, when the source knows it."""

    def close(self) -> None:
        """Release connections and files."""
