"""The consumer loop: poll a source into micro-batches and land each with its checkpoint.

A batch is flushed when it reaches `max_records`, `max_bytes` or `max_age_s`, whichever
comes first (iot_lake.settings.BatchLimits documents the trade-off). SIGTERM and SIGINT
stop polling; the open batch is committed before the loop returns, so a clean stop loses
nothing and a kill -9 loses only what was never committed (and is read again on restart).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import FrameType

from iot_lake.settings import BatchLimits, IdentityRules
from streaming.batch import RawBatch
from streaming.housekeeping import compact_closed_partitions, compact_partition
from streaming.landing import CommitOutcome, LandingWriter, Position, PreparedBatch
from streaming.sources.base import Source
from streaming.stats import ConsumerStats

POLL_SLICE_S = 0.5


@dataclass(frozen=True)
class _InFlight:
    batch: RawBatch
    future: Future[CommitOutcome]
    sealed_at: float  # time.perf_counter() when the batch was sealed


@dataclass
class ConsumerOptions:
    """How the loop batches, reports and stops; tests override fields one by one."""

    batch: BatchLimits = field(default_factory=BatchLimits)
    max_payload_bytes: int = 64 * 1024
    identity: IdentityRules = field(default_factory=IdentityRules)
    stats_interval_s: float = 10.0
    stop_when_idle_s: float | None = None
    # Compact today's partition after this many commits (closed days once a day); None: never.
    compact_every_commits: int | None = 250


class Consumer:
    """Runs one source into raw_telemetry until stopped or the source is exhausted."""

    def __init__(
        self,
        source: Source,
        writer: LandingWriter,
        options: ConsumerOptions | None = None,
        report: Callable[[str], None] = print,
    ) -> None:
        self.source = source
        self.writer = writer
        self.options = options or ConsumerOptions()
        self.stop_requested = threading.Event()
        self.stats = ConsumerStats(report=report)
        self._tidied_on: date | None = None
        self._commits_since_compaction = 0

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT ask the loop to flush, commit and return."""

        def request_stop(signum: int, frame: FrameType | None) -> None:
            self.stop_requested.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    def run(self) -> ConsumerStats:
        """Consume until stopped or the source runs dry; returns the run's statistics.

        Up to `source.commits_in_flight` sealed batches commit while the next one fills,
        so reading and checking messages, encoding a batch's Parquet files and the Delta
        commit of the batch before it all proceed at once (each mostly in native code with
        the GIL released). A batch's files are written on the preparer thread; its commit,
        on the single committer thread, waits for them and for the commit before it, so
        commits land in order and none lands after one that failed. The source
        acknowledges a batch only once its own commit is done.
        """
        self.source.resume(self.writer)
        idle_since = time.monotonic()
        in_flight: deque[_InFlight] = deque()
        try:
            with (
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as preparer,
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit") as committer,
            ):
                exhausted = False
                while not exhausted and not self.stop_requested.is_set():
                    batch, exhausted = self._fill_batch()
                    if len(batch):
                        positions = self.source.positions()
                        sealed_at = time.perf_counter()
                        prepared = preparer.submit(self.writer.prepare, batch)
                        before = in_flight[-1].future if in_flight else None
                        future = committer.submit(self._commit, prepared, positions, before)
                        in_flight.append(_InFlight(batch, future, sealed_at))
                        while len(in_flight) > self.source.commits_in_flight:
                            self._finish(in_flight.popleft())
                        idle_since = time.monotonic()
                    elif self._idle_too_long(idle_since):
                        break
                    self.stats.maybe_report(self.options.stats_interval_s, self.source.lag())
                while in_flight:
                    self._finish(in_flight.popleft())
        finally:
            self.source.close()
        self.stats.report_now(self.source.lag())
        return self.stats

    def _commit(
        self,
        prepared: Future[PreparedBatch],
        positions: list[Position],
        before: Future[CommitOutcome] | None,
    ) -> CommitOutcome:
        """Commit a batch (on the committer thread), then compact closed partitions once a day.

        The commit before it must have succeeded: a later batch's positions cover its
        messages, so committing past a failed batch would lose them.
        """
        if before is not None:
            before.result()
        outcome = self.writer.commit_prepared(prepared.result(), positions)
        every = self.options.compact_every_commits
        if every is None or outcome.already_landed:
            return outcome
        today = datetime.now(UTC).date()
        options = self.writer.lake.storage_options
        if self._tidied_on != today:
            compacted = self.writer.with_table(
                lambda t: compact_closed_partitions(t, options, today)
            )
            if compacted:
                self.stats.report(f"consumer: compacted closed partitions {', '.join(compacted)}")
            self._tidied_on = today
        self._commits_since_compaction += 1
        if self._commits_since_compaction >= every:
            self.writer.with_table(lambda t: compact_partition(t, options, today.isoformat()))
            self._commits_since_compaction = 0
        return outcome

    def _finish(self, in_flight: _InFlight) -> None:
        """Wait for a commit in flight; a failed commit raises here, nothing acknowledged."""
        outcome = in_flight.future.result()
        self.source.committed()
        self.stats.record(in_flight.batch, outcome, outcome.finished_at - in_flight.sealed_at)

    def _new_batch(self) -> RawBatch:
        return RawBatch(
            self.source.name,
            self.writer.consumer_id,
            self.options.max_payload_bytes,
            self.options.identity,
        )

    def _fill_batch(self) -> tuple[RawBatch, bool]:
        limits = self.options.batch
        max_records = min(limits.max_records, self.source.max_batch_records or limits.max_records)
        batch = self._new_batch()
        while not self.stop_requested.is_set():
            remaining_age = limits.max_age_s - batch.age_s
            room = max_records - len(batch)
            if room <= 0 or remaining_age <= 0 or batch.payload_bytes_total >= limits.max_bytes:
                break
            # Short polls, so a stop request is seen within POLL_SLICE_S even when idle.
            if not self.source.poll(batch, room, min(remaining_age, POLL_SLICE_S)):
                return batch, True
        return batch, False

    def _idle_too_long(self, idle_since: float) -> bool:
        limit = self.options.stop_when_idle_s
        return limit is not None and time.monotonic() - idle_since >= limit
