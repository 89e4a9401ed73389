"""Kinesis Data Streams source: every shard of a stream, each checkpointed on its own.

Each record is one framed message `topic<TAB>payload` whose PartitionKey is the device id.
A shard's checkpoint is the Delta app transaction `kinesis:{stream}:{shard_id}`: its
version counts the batches that carried records of that shard (a sequence number, up to
129 digits, does not fit a 64-bit txn version), and the last landed sequence number rides
in the same commit's custom metadata (LandingWriter's `detail`). A restarted consumer
resumes each shard AFTER_SEQUENCE_NUMBER that number, so every record lands exactly once.

Resharding follows AWS's rules: a parent shard is read to its end (GetRecords returns no
NextShardIterator) before any of its children is read, so records of one device stay in
order across a split or merge; the shard list is read again periodically and whenever a
shard ends, which is how children are found.

Ingest time is the record's ApproximateArrivalTimestamp: the time Kinesis accepted it,
which is the server time of arrival (contract 4) and, unlike the consumer's clock, does not
change when a record is read again after a crash.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from streaming.batch import RawBatch
from streaming.landing import LandingWriter, Position
from streaming.sources.base import split_frame

# GetRecords returns at most 10,000 records per call (AWS limit).
MAX_RECORDS_PER_CALL = 10_000
# AWS allows 5 GetRecords calls per second per shard: 0.2 s between calls stays under it.
DEFAULT_POLL_INTERVAL_S = 0.2
DEFAULT_RELIST_INTERVAL_S = 10.0
_MAX_BACKOFF_S = 5.0
_THROTTLED = frozenset(
    {"ProvisionedThroughputExceededException", "LimitExceededException", "KMSThrottlingException"}
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def arrival_micros(arrived: datetime) -> int:
    """ApproximateArrivalTimestamp (an aware datetime from boto3) as epoch microseconds.

    Integer arithmetic on the timedelta, not `timestamp() * 1e6`: a float loses the exact
    microsecond at today's epoch values.
    """
    return (arrived - _EPOCH) // _MICROSECOND


@dataclass
class ShardState:
    """What the source knows about one shard: lineage, where it reads, whether it ended."""

    shard_id: str
    parents: tuple[str, ...] = ()
    last_sequence: str | None = None
    iterator: str | None = None
    finished: bool = False
    next_read_at: float = 0.0
    backoff_s: float = 0.0
    millis_behind: int | None = None
    version: int = 0  # the batch counter of the last sealed batch with records of this shard
    landed_sequence: str | None = None


def shard_lineage(listing: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Parent shard ids of every listed shard (a split has one parent, a merge two)."""
    lineage: dict[str, tuple[str, ...]] = {}
    for shard in listing:
        parents = (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
        lineage[shard["ShardId"]] = tuple(p for p in parents if p)
    return lineage


def owned_shards(
    lineage: Mapping[str, tuple[str, ...]], shard_ids: Sequence[str] | None
) -> list[str]:
    """The listed shards a consumer reads, in listing order.

    With no `shard_ids` it reads all of them. Otherwise it reads the given shards plus every
    descendant whose parents are all its own (a split child follows its parent; a merge of
    shards owned by two consumers belongs to neither and needs a new assignment).
    """
    if shard_ids is None:
        return list(lineage)
    wanted = set(shard_ids)
    owned: list[str] = []
    for shard_id, parents in lineage.items():
        if shard_id in wanted or (parents and all(p in wanted for p in parents)):
            wanted.add(shard_id)
            owned.append(shard_id)
    return owned


def readable_shards(shards: Mapping[str, ShardState]) -> list[ShardState]:
    """Shards that may be read now: not ended, and every parent we track has ended.

    A parent that is not tracked (past the stream's retention, or another consumer's)
    does not hold its child back.
    """
    return [
        state
        for state in shards.values()
        if not state.finished and all(shards[p].finished for p in state.parents if p in shards)
    ]


@dataclass
class _Polled:
    """Records of one GetRecords call, as the batch wants them."""

    topics: list[bytes | None] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    ingest_micros: list[int] = field(default_factory=list)
    positions: list[str | None] = field(default_factory=list)
    partition_keys: list[str | None] = field(default_factory=list)


class KinesisSource:
    """Reads every shard of a Kinesis stream (or the given ones) from its last checkpoint."""

    name = "kinesis"
    max_batch_records: int | None = None
    commits_in_flight = 2

    def __init__(
        self,
        stream_name: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        shard_ids: Sequence[str] | None = None,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        relist_interval_s: float = DEFAULT_RELIST_INTERVAL_S,
    ) -> None:
        """Set up the client; nothing is read from AWS or the lake before `resume`.

        Args:
            stream_name: The Kinesis stream to read.
            endpoint_url: A non-AWS endpoint (moto, LocalStack); None uses AWS_ENDPOINT_URL
                or the regional AWS endpoint.
            region: AWS region; None uses AWS_REGION / AWS_DEFAULT_REGION.
            shard_ids: Shards this consumer owns (one consumer per shard scales out); None
                reads them all. Descendants of owned shards are followed.
            poll_interval_s: Least time between two GetRecords calls on one shard when it
                has nothing new (AWS allows 5 calls per second per shard).
            relist_interval_s: How often the shard list is read again to find new shards.
        """
        self.stream_name = stream_name
        self.shard_ids = None if shard_ids is None else list(shard_ids)
        self.poll_interval_s = poll_interval_s
        self.relist_interval_s = relist_interval_s
        self._client = boto3.client(
            "kinesis",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(retries={"mode": "standard", "max_attempts": 10}),
        )
        self._writer: LandingWriter | None = None
        self._shards: dict[str, ShardState] = {}
        self._pending: dict[str, str] = {}  # shard -> last sequence polled since the seal
        self._sealed: deque[list[Position]] = deque()  # sealed batches not yet committed
        self._relist_at = 0.0

    def app_id(self, shard_id: str) -> str:
        """The Delta app transaction that checkpoints one shard."""
        return f"kinesis:{self.stream_name}:{shard_id}"

    def resume(self, writer: LandingWriter) -> None:
        """Read the shard list and each shard's last landed sequence number from the lake."""
        self._writer = writer
        self._relist()

    def _relist(self) -> None:
        """Track shards that appeared since the last listing (children after a reshard)."""
        assert self._writer is not None, "resume() first"
        lineage = shard_lineage(self._list_shards())
        for shard_id in owned_shards(lineage, self.shard_ids):
            if shard_id not in self._shards:
                app_id = self.app_id(shard_id)
                landed = self._writer.committed_detail(app_id)
                self._shards[shard_id] = ShardState(
                    shard_id,
                    parents=lineage[shard_id],
                    last_sequence=landed,
                    version=self._writer.committed_version(app_id) or 0,
                    landed_sequence=landed,
                )
        self._relist_at = time.monotonic() + self.relist_interval_s

    def _list_shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        response = self._client.list_shards(StreamName=self.stream_name)
        shards.extend(response["Shards"])
        while response.get("NextToken"):
            response = self._client.list_shards(NextToken=response["NextToken"])
            shards.extend(response["Shards"])
        return shards

    def poll(self, batch: RawBatch, max_records: int, timeout_s: float) -> bool:
        """Add up to `max_records` records from readable shards; a stream never runs dry."""
        deadline = time.monotonic() + timeout_s
        while True:
            if time.monotonic() >= self._relist_at:
                self._relist()
            added = 0
            for state in readable_shards(self._shards):
                if added >= max_records:
                    break
                if time.monotonic() >= state.next_read_at:
                    added += self._read(state, batch, max_records - added)
            now = time.monotonic()
            if added or now >= deadline:
                return True
            time.sleep(max(0.0, min(self._next_read_at(), self._relist_at, deadline) - now))

    def _next_read_at(self) -> float:
        readable = readable_shards(self._shards)
        return min((s.next_read_at for s in readable), default=self._relist_at)

    def _read(self, state: ShardState, batch: RawBatch, limit: int) -> int:
        """One GetRecords call on a shard; returns how many records joined the batch."""
        try:
            if state.iterator is None:
                state.iterator = self._iterator(state)
                if state.iterator is None:
                    return 0
            response = self._client.get_records(
                ShardIterator=state.iterator, Limit=min(limit, MAX_RECORDS_PER_CALL)
            )
        except ClientError as exc:
            self._on_error(state, exc)
            return 0
        state.backoff_s = 0.0
        state.iterator = response.get("NextShardIterator")
        state.millis_behind = response.get("MillisBehindLatest")
        records = response["Records"]
        caught_up = not records or not state.millis_behind
        state.next_read_at = time.monotonic() + (self.poll_interval_s if caught_up else 0.0)
        if records:
            self._add(state, records, batch)
        if state.iterator is None:  # the shard is closed and read to its end
            state.finished = True
            self._relist_at = 0.0
        return len(records)

    def _iterator(self, state: ShardState) -> str | None:
        """An iterator just after the last record read, else at the shard's oldest record."""
        if state.last_sequence is not None:
            kwargs = {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": state.last_sequence,
            }
        else:
            kwargs = {"ShardIteratorType": "TRIM_HORIZON"}
        try:
            response = self._client.get_shard_iterator(
                StreamName=self.stream_name, ShardId=state.shard_id, **kwargs
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                state.finished = True  # past retention: nothing left to read in it
                return None
            raise
        return response["ShardIterator"]

    def _on_error(self, state: ShardState, exc: ClientError) -> None:
        """Throttling backs off this shard; an expired iterator is fetched again."""
        code = exc.response["Error"]["Code"]
        if code == "ExpiredIteratorException":
            state.iterator = None  # re-got from last_sequence: nothing is skipped or re-read
            return
        if code in _THROTTLED:
            state.backoff_s = min(max(state.backoff_s * 2, self.poll_interval_s), _MAX_BACKOFF_S)
            state.next_read_at = time.monotonic() + state.backoff_s
            return
        raise exc

    def _add(self, state: ShardState, records: list[dict[str, Any]], batch: RawBatch) -> None:
        polled = _Polled()
        prefix = f"{state.shard_id}/"
        for record in records:
            topic, payload = split_frame(record["Data"])
            polled.topics.append(topic)
            polled.payloads.append(payload)
            polled.ingest_micros.append(arrival_micros(record["ApproximateArrivalTimestamp"]))
            polled.positions.append(prefix + record["SequenceNumber"])
            polled.partition_keys.append(record["PartitionKey"])
        batch.extend(
            polled.topics,
            polled.payloads,
            polled.ingest_micros,
            polled.positions,
            claimed_devices=polled.partition_keys,
        )
        state.last_sequence = records[-1]["SequenceNumber"]
        self._pending[state.shard_id] = state.last_sequence

    def positions(self) -> list[Position]:
        """Seal the batch: one checkpoint per shard with records polled since the last seal.

        The version is the shard's batch counter, assigned here rather than at commit: the
        next batch fills (and is sealed) while this one is still committing.
        """
        sealed = []
        for shard_id, sequence in self._pending.items():
            state = self._shards[shard_id]
            state.version += 1
            sealed.append(Position(self.app_id(shard_id), state.version, sequence))
        self._pending.clear()
        self._sealed.append(sealed)
        return sealed

    def committed(self) -> None:
        """The oldest sealed batch is landed: note how far each of its shards is durable."""
        if not self._sealed:
            return
        for position in self._sealed.popleft():
            shard_id = position.app_id.rsplit(":", 1)[1]
            self._shards[shard_id].landed_sequence = position.detail

    def lag(self) -> str | None:
        """The furthest behind the stream's tip any shard is (MillisBehindLatest)."""
        behind = [s.millis_behind for s in self._shards.values() if s.millis_behind is not None]
        return f"{max(behind)} ms behind" if behind else None

    def shard_states(self) -> dict[str, ShardState]:
        """The shards tracked so far, for operators and tests."""
        return dict(self._shards)

    def close(self) -> None:
        """Close the Kinesis client's connections."""
        self._client.close()
