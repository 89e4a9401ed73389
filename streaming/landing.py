"""Commit a micro-batch and its source checkpoint to raw_telemetry in one Delta commit.

Contract 2: the data and the source position land together or not at all. Each source
position is a Delta app transaction `(app_id, version)`; its human-readable form (a file
offset, a Kinesis sequence number) rides in the same commit's custom metadata. delta-rs
does not refuse a repeated or older transaction version, so before every commit the writer
reads the committed versions and skips a batch that is already landed (see DESIGN.md).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction

from iot_lake.errors import CheckpointError
from iot_lake.lake.appends import write_files
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.delta_files import delete_files, output_filesystem
from iot_lake.lake.tables import Lake
from streaming.batch import RawBatch

T = TypeVar("T")
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
    """What happened to one batch: its Delta version, or that it was landed before.

    `seconds`: writing the batch's files plus its Delta commit, not the time it waited
    for its checks or for the commit before it (the consumer pipelines batches);
    `finished_at`: time.perf_counter() when the commit was done.
    """

    delta_version: int | None
    rows: int
    seconds: float
    finished_at: float
    already_landed: bool = False


@dataclass(frozen=True)
class PreparedBatch:
    """A batch's data files, written but not yet committed (`LandingWriter.commit_prepared`)."""

    files: list[AddAction]
    rows: int
    write_seconds: float


class LandingWriter:
    """The only writer of raw_telemetry: appends batches with their checkpoints."""

    def __init__(self, lake: Lake, consumer_id: str, max_attempts: int = 10) -> None:
        self.lake = lake
        self.consumer_id = consumer_id
        self.max_attempts = max_attempts
        self.table: DeltaTable = lake.ensure_table(RAW_TELEMETRY)
        self._filesystem, self._table_path = output_filesystem(
            self.table.table_uri, lake.storage_options
        )
        # Sources look positions up from their threads while the committer thread commits:
        # one lock serialises every use of the table object.
        self._lock = threading.Lock()

    def committed_version(self, app_id: str) -> int | None:
        """The last version committed for a source partition, from the latest table state."""
        with self._lock:
            self.table.update_incremental()
            return self.table.transaction_version(app_id)

    def committed_detail(self, app_id: str) -> str | None:
        """The resume detail stored with the last committed version of `app_id`."""
        return self.committed_details([app_id])[app_id]

    def committed_details(self, app_ids: Sequence[str]) -> dict[str, str | None]:
        """The resume details stored with the last committed versions of several sources.

        Walks the commit history from the newest commit back, in pages that double in size,
        until every version is found: a restarting consumer needs the latest commits, so the
        walk is short (each commit is one object GET on S3).
        """
        with self._lock:
            self.table.update_incremental()
            wanted = {app: self.table.transaction_version(app) for app in app_ids}
            found: dict[str, str | None] = {app: None for app in app_ids}
            missing = {app for app, version in wanted.items() if version is not None}
            limit, seen = 64, 0
            while missing:
                commits = self.table.history(limit)
                for commit in commits[seen:]:
                    for app, entry in _positions_of(commit).items():
                        if app in missing and entry.get("version") == wanted[app]:
                            detail = entry.get("detail")
                            found[app] = None if detail is None else str(detail)
                            missing.discard(app)
                if len(commits) < limit:
                    break
                seen, limit = len(commits), limit * 2
        if missing:
            raise CheckpointError(
                f"raw_telemetry has transactions {sorted(missing)} but no commit in the retained "
                "log carries their positions: the log was cleaned past them. The consumer will "
                "not guess (re-landing or skipping data); keep IOT_LAKE_LOG_RETENTION_HOURS at "
                "least as long as the stream's retention (see docs/operations.md, 'Checkpoints')."
            )
        return found

    def with_table(self, work: Callable[[DeltaTable], T]) -> T:
        """Run maintenance (compaction) on the table under the writer's lock."""
        with self._lock:
            return work(self.table)

    def commit(self, batch: RawBatch, positions: Sequence[Position]) -> CommitOutcome:
        """Land the batch and its positions atomically; idempotent for a replayed batch."""
        return self.commit_prepared(self.prepare(batch), positions)

    def prepare(self, batch: RawBatch) -> PreparedBatch:
        """Write the batch's data files, not yet part of the table (any thread, no lock).

        Waits for the batch's checks first, so `write_seconds` counts only building and
        writing its files.
        """
        batch.checked()
        started = time.perf_counter()
        files = write_files(self._filesystem, self._table_path, RAW_TELEMETRY, batch.to_arrow())
        return PreparedBatch(files, len(batch), time.perf_counter() - started)

    def commit_prepared(
        self, prepared: PreparedBatch, positions: Sequence[Position]
    ) -> CommitOutcome:
        """Commit a batch's written files with its positions (again after a lost race).

        The files are deleted again only where no commit can hold them: the batch was
        landed by another commit, or every attempt lost the race. After any other error (a
        log checkpoint failing after the commit, say) they stay, and vacuum removes orphans.
        """
        started = time.perf_counter()
        with self._lock:
            attempt = 0
            while True:
                attempt += 1
                self.table.update_incremental()
                if self._already_landed(positions):
                    delete_files(self._filesystem, self._table_path, prepared.files)
                    finished = time.perf_counter()
                    seconds = prepared.write_seconds + finished - started
                    return CommitOutcome(None, 0, seconds, finished, already_landed=True)
                try:
                    self._commit_files(prepared.files, positions, prepared.rows)
                    break
                except CommitFailedError:
                    if attempt >= self.max_attempts:
                        delete_files(self._filesystem, self._table_path, prepared.files)
                        raise
                    time.sleep(min(0.05 * 2**attempt, 2.0))
            # The transaction leaves the table object where it was: the version after the
            # commit is ours unless another writer committed right after it.
            self.table.update_incremental()
            version = self.table.version()
        finished = time.perf_counter()
        seconds = prepared.write_seconds + finished - started
        return CommitOutcome(version, prepared.rows, seconds, finished)

    def _commit_files(
        self, files: list[AddAction], positions: Sequence[Position], rows: int
    ) -> None:
        self.table.create_write_transaction(
            list(files),  # the transaction takes adds and removes: a list of either
            mode="append",
            schema=RAW_TELEMETRY.schema,
            partition_by=list(RAW_TELEMETRY.partition_by),
            commit_properties=self._commit_properties(positions, rows),
        )

    def _already_landed(self, positions: Sequence[Position]) -> bool:
        """Whether the batch is landed already; refuses a batch that is landed in part."""
        landed = self._landed(positions)
        if any(landed) and not all(landed):
            raise CheckpointError(
                "part of a batch is already landed: "
                + ", ".join(p.app_id for p, done in zip(positions, landed, strict=True) if done)
                + "; two consumers are reading the same source partition. Give each "
                "consumer its own files, shards or MQTT share group."
            )
        return bool(landed) and all(landed)

    def _landed(self, positions: Iterable[Position]) -> list[bool]:
        landed = []
        for position in positions:
            committed = self.table.transaction_version(position.app_id)
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
