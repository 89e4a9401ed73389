"""Commit a micro-batch and its source checkpoint to raw_telemetry in one Delta commit.

Contract 2: the data and the source position land together or not at all. Each source
position is a Delta app transaction `(app_id, version)`; its human-readable form (a file
offset, a Kinesis sequence number) rides in the same commit's custom metadata. delta-rs
does not refuse a repeated or older transaction version, so before every commit the writer
reads the committed versions and skips a batch that is already landed (see DESIGN.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from iot_lake.catalog import RAW_TELEMETRY
from iot_lake.errors import CheckpointError
from iot_lake.lake import Lake
from streaming.batch import RawBatch

POSITIONS_KEY = "iot_lake.positions"
CONSUMER_KEY = "iot_lake.consumer"


@dataclass(frozen=True)
class Position:
    """How far one source partition (a file, a Kinesis shard) is landed.

    `version` must grow with every batch of that partition; `detail` is what the source
    needs to resume when the version alone does not say it (a Kinesis sequence number).
    """

    app_id: str
    version: int
    detail: str | None = None


@dataclass(frozen=True)
class CommitOutcome:
    """What happened to one batch: its Delta version, or that it was landed before."""

    delta_version: int | None
    rows: int
    seconds: float
    already_landed: bool = False


class LandingWriter:
    """The only writer of raw_telemetry: appends batches with their checkpoints."""

    def __init__(self, lake: Lake, consumer_id: str, max_attempts: int = 10) -> None:
        self.lake = lake
        self.consumer_id = consumer_id
        self.max_attempts = max_attempts
        self.table: DeltaTable = lake.ensure_table(RAW_TELEMETRY)

    def committed_version(self, app_id: str) -> int | None:
        """The last version committed for a source partition, from the latest table state."""
        return self.table.transaction_version(app_id)

    def committed_detail(self, app_id: str) -> str | None:
        """The resume detail stored with the last committed version of `app_id`.

        Walks the commit history from the newest commit back to the one that carries that
        version; the latest commits are the ones a restarting consumer needs, so the walk
        is short in practice.
        """
        version = self.committed_version(app_id)
        if version is None:
            return None
        for commit in self.table.history():
            positions = _positions_of(commit)
            entry = positions.get(app_id)
            if entry is not None and entry.get("version") == version:
                detail = entry.get("detail")
                return None if detail is None else str(detail)
        raise CheckpointError(
            f"raw_telemetry has transaction {app_id} at version {version} but no commit in the "
            "retained log carries its position; the log was cleaned past it. Restart this "
            "source from a known position (see the README, 'Resetting a source')."
        )

    def commit(self, batch: RawBatch, positions: Sequence[Position]) -> CommitOutcome:
        """Land the batch and its positions atomically; idempotent for a replayed batch."""
        started = time.perf_counter()
        data = batch.to_arrow()
        attempt = 0
        while True:
            attempt += 1
            self.table.update_incremental()
            landed = self._landed(positions)
            if landed and all(landed):
                return CommitOutcome(None, 0, time.perf_counter() - started, already_landed=True)
            if any(landed):
                raise CheckpointError(
                    "part of a batch is already landed: "
                    + ", ".join(p.app_id for p, done in zip(positions, landed, strict=True) if done)
                    + "; two consumers are reading the same source partition. Give each "
                    "consumer its own files, shards or MQTT share group."
                )
            try:
                write_deltalake(
                    self.table,
                    data,
                    mode="append",
                    commit_properties=self._commit_properties(positions, len(batch)),
                )
            except CommitFailedError:
                if attempt >= self.max_attempts:
                    raise
                time.sleep(min(0.05 * 2**attempt, 2.0))
                continue
            return CommitOutcome(self.table.version(), len(batch), time.perf_counter() - started)

    def _landed(self, positions: Iterable[Position]) -> list[bool]:
        landed = []
        for position in positions:
            committed = self.committed_version(position.app_id)
            landed.append(committed is not None and committed >= position.version)
        return landed

    def _commit_properties(self, positions: Sequence[Position], rows: int) -> CommitProperties:
        now_ms = int(time.time() * 1000)
        return CommitProperties(
            app_transactions=[Transaction(p.app_id, p.version, now_ms) for p in positions],
            custom_metadata={
                CONSUMER_KEY: self.consumer_id,
                POSITIONS_KEY: json.dumps(
                    {p.app_id: {"version": p.version, "detail": p.detail} for p in positions}
                ),
                "iot_lake.rows": str(rows),
            },
        )


def _positions_of(commit: dict[str, object]) -> dict[str, dict[str, object]]:
    raw = commit.get(POSITIONS_KEY)
    if not isinstance(raw, str):
        return {}
    parsed = json.loads(raw)
    return parsed if isinstance(parsed, dict) else {}
