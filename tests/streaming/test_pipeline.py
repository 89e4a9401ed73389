"""The consumer's pipeline: chunks checked on other threads, batches committed in flight."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import polars as pl
import pytest

from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.settings import BatchLimits
from streaming.batch import RawBatch
from streaming.consumer import Consumer, ConsumerOptions
from streaming.landing import CommitOutcome, LandingWriter, Position, PreparedBatch
from streaming.simulator.fleet import Fleet
from streaming.sources.file import FileSource
from tests.conftest import framed_file


def test_chunks_checked_at_once_keep_every_row_with_its_own_verdict(noisy_fleet):
    messages = list(Fleet(noisy_fleet).messages(2000))
    batch = RawBatch("test", "test", max_payload_bytes=64 * 1024)
    start = 0
    for size in [1, 7, 300, 2, 900, 13, 777]:  # uneven chunks, checked concurrently
        chunk = messages[start : start + size]
        batch.extend(
            [m.topic for m in chunk],
            [m.payload for m in chunk],
            0,
            [str(start + i) for i in range(len(chunk))],
        )
        start += size
    assert start == len(messages)

    rows = pl.from_arrow(batch.to_arrow())
    assert isinstance(rows, pl.DataFrame)
    assert rows["source_position"].to_list() == [str(i) for i in range(len(messages))]
    assert rows["topic"].to_list() == [m.topic for m in messages]
    assert rows["payload"].to_list() == [m.payload.decode(errors="replace") for m in messages]
    assert rows["error_code"].to_list() == [m.expected_error for m in messages]
    assert batch.invalid == sum(m.expected_error is not None for m in messages)


class FailingThirdCommit(LandingWriter):
    """A writer whose third commit fails, as when storage refuses the log entry.

    It fails only once the fourth batch is prepared and queued behind it, so the consumer
    has a later batch ready to commit at the moment of the failure.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.commits = 0
        self.prepared = 0
        self.fourth_prepared = threading.Event()

    def prepare(self, batch: RawBatch) -> PreparedBatch:
        prepared = super().prepare(batch)
        self.prepared += 1
        if self.prepared == 4:
            self.fourth_prepared.set()
        return prepared

    def commit_prepared(
        self, prepared: PreparedBatch, positions: Sequence[Position]
    ) -> CommitOutcome:
        self.commits += 1
        if self.commits == 3:
            assert self.fourth_prepared.wait(30), "the fourth batch was never prepared"
            raise OSError("injected: the storage refused the commit")
        return super().commit_prepared(prepared, positions)


def test_no_batch_commits_after_one_whose_commit_failed(lake, tmp_path, noisy_fleet):
    messages = list(Fleet(noisy_fleet).messages(1000))
    path = framed_file(tmp_path / "fleet.jsonl", messages)
    options = ConsumerOptions(batch=BatchLimits(max_records=100), stats_interval_s=3600)
    writer = FailingThirdCommit(lake, "test")
    consumer = Consumer(FileSource(path), writer, options, report=lambda _: None)
    assert FileSource.commits_in_flight == 2

    with pytest.raises(OSError, match="injected"):
        consumer.run()

    assert writer.commits == 3  # the fourth batch's commit never reached the writer
    assert lake.read(RAW_TELEMETRY).height == 200
    after_two_batches = path.read_bytes().split(b"\n", 200)[:200]
    resume_offset = sum(len(line) + 1 for line in after_two_batches)
    writer_after = LandingWriter(lake, "check")
    assert writer_after.committed_version(FileSource(path).app_id) == resume_offset

    restart = Consumer(
        FileSource(path), LandingWriter(lake, "test"), options, report=lambda _: None
    )
    assert restart.run().messages == 800
    raw = lake.read(RAW_TELEMETRY)
    assert raw.height == len(messages)
    assert raw["source_position"].n_unique() == len(messages)
