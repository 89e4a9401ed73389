"""Merge a partition's small files into larger ones, committed only while they are all live.

delta-rs' OPTIMIZE (`DeltaTable.optimize.compact`, deltalake 1.6) does not conflict with a
concurrent OPTIMIZE of the same files: two writers compacting one partition both commit,
each adding a file with every row of it, and the partition's rows are doubled (with
`max_commit_retries=0` too; tests/iot_lake/lake/test_compaction.py races two). Each consumer
compacts raw's partitions and the nightly maintenance compacts every closed one, so two
consumers crossing midnight together, or a consumer and the maintenance job, did exactly
that.

Here the small files are read a slice at a time and written as larger ones with pyarrow
(memory bounded by a row group, not by the partition), then committed as remove and add
actions (dataChange false) with the fence `delta_files.commit_overwrite` keeps: on the
latest version, only while every file being removed is still live, with no commit retry,
so a commit landing between the check and ours fails ours and the check runs again.
Appends to the same partition meanwhile do not stop it; a compaction or overwrite that
removed one of its files does, and the files written for it are deleted again.

Cost, measured on the consumer's pass over 250 raw files of 1,000 messages: 1.0-1.5 s
(OPTIMIZE: 0.5-0.8 s). bench/ingest.py's soak (1,000 commits, a pass every 250) peaked at
494 and 501 MB against 527 and 541 MB with OPTIMIZE, alternating runs. Polars' streaming
sink did the merge in 0.3 s but kept ~145 MB more resident afterwards, which a consumer
carries for weeks; Arrow's system allocator instead of mimalloc cut the peak by another
~15 MB but let the soak's RSS grow by 97-124 MB instead of ~60.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, CommitProperties, RemoveAction

from iot_lake.lake.catalog import TableSpec
from iot_lake.lake.delta_files import (
    columns_with_nan,
    delete_files,
    file_schema,
    footer_stats,
    make_parent_directory,
    new_file_path,
    output_filesystem,
    partition_value,
    pyarrow_write_options,
)

log = logging.getLogger(__name__)

# Marks a compaction's commit in its commitInfo: the commit is an append of files that hold
# rows already in the table, which readers of new commits (iot_lake.lake.changes) must skip.
COMPACTION_KEY = "iot_lake.compaction"
# Rows are buffered up to this much Arrow memory before a row group is written (~25,000
# raw rows), read from the inputs this many rows at a time. A scratch soak harness peaked
# at 513-529 MB with these, 536-560 MB with 16 MiB and 16,384 rows.
ROW_GROUP_BYTES = 8 * 1024 * 1024
_READ_ROWS = 4096
_COMMIT_ATTEMPTS = 20

PartitionKey = tuple[str | None, ...]


def is_compaction(commit: Mapping[str, object]) -> bool:
    """Whether a commit (an entry of `DeltaTable.history`) is one of these compactions."""
    return COMPACTION_KEY in commit


@dataclass(frozen=True)
class LiveFile:
    """A data file of the table's current snapshot, as its add action logs it."""

    path: str
    size: int
    partition: PartitionKey


def live_files(table: DeltaTable, spec: TableSpec) -> list[LiveFile]:
    """Every data file of the table's loaded snapshot, with its partition values as text."""
    actions = pa.table(table.get_add_actions(flatten=True))
    columns = [actions.column(f"partition.{key}").to_pylist() for key in spec.partition_by]
    partitions = zip(*columns, strict=True) if columns else ((),) * actions.num_rows
    return [
        LiveFile(str(path), int(size), tuple(partition_value(value) for value in partition))
        for path, size, partition in zip(
            actions.column("path").to_pylist(),
            actions.column("size_bytes").to_pylist(),
            partitions,
            strict=True,
        )
    ]


def plan(
    table: DeltaTable, spec: TableSpec, target_bytes: int
) -> dict[PartitionKey, list[list[LiveFile]]]:
    """The partitions worth compacting, each with its small files in bins of one output file.

    A file under a quarter of the target is small; small files are packed in log order
    into bins of at most `target_bytes`, and a bin of one file is left alone. A compacted
    partition therefore keeps at most one small file, and is not rewritten again until new
    small files arrive. A quarter, not a half: the consumer appends in a fast codec and
    compaction rewrites in the layout's own (ParquetLayout), so a full bin of appended raw
    files comes out at about 45% of the target, and must not count as small again.
    """
    small: dict[PartitionKey, list[LiveFile]] = defaultdict(list)
    for file in live_files(table, spec):
        if file.size < target_bytes // 4:
            small[file.partition].append(file)
    planned = {}
    for partition, files in small.items():
        bins: list[list[LiveFile]] = [[]]
        filled = 0
        for file in files:
            if bins[-1] and filled + file.size > target_bytes:
                bins.append([])
                filled = 0
            bins[-1].append(file)
            filled += file.size
        worth = [group for group in bins if len(group) >= 2]
        if worth:
            planned[partition] = worth
    return planned


def compact_partition(
    table: DeltaTable,
    spec: TableSpec,
    storage_options: Mapping[str, str],
    partition: PartitionKey,
    bins: Sequence[Sequence[LiveFile]],
) -> bool:
    """Write each bin of one partition's files as one file and swap them in one commit.

    False when another commit removed one of the files first (a concurrent compaction or
    a rewrite of the partition): nothing is committed and the files written are deleted.
    """
    filesystem, root = output_filesystem(table.table_uri, dict(storage_options))
    values = dict(zip(spec.partition_by, partition, strict=True))
    written: list[AddAction] = []
    try:
        written.extend(_merge(filesystem, root, spec, values, group) for group in bins)
        merged = [file for group in bins for file in group]
        if _commit_swap(table, spec, merged, written):
            return True
    except BaseException:
        delete_files(filesystem, root, written)
        raise
    delete_files(filesystem, root, written)
    log.info(
        "compaction of %s %s left to the writer that removed its files first", spec.name, values
    )
    return False


def _merge(
    filesystem: pafs.FileSystem,
    root: str,
    spec: TableSpec,
    partition: dict[str, str | None],
    files: Sequence[LiveFile],
) -> AddAction:
    """Copy the files' rows, in order, into one new file of the partition; its add action."""
    schema = file_schema(spec)
    options = pyarrow_write_options(spec)
    relative = new_file_path(partition, options["compression"])
    target = f"{root}/{relative}"
    make_parent_directory(filesystem, target)
    with_nan: set[str] = set()
    with (
        filesystem.open_output_stream(target) as stream,
        pq.ParquetWriter(stream, schema, **options) as writer,
    ):
        buffered: list[pa.RecordBatch] = []
        buffered_bytes = 0
        for batch in _batches(filesystem, root, files, schema):
            with_nan |= columns_with_nan(batch)
            buffered.append(batch)
            buffered_bytes += batch.nbytes
            if buffered_bytes >= ROW_GROUP_BYTES:
                writer.write_table(pa.Table.from_batches(buffered), row_group_size=1 << 30)
                buffered, buffered_bytes = [], 0
        if buffered:
            writer.write_table(pa.Table.from_batches(buffered), row_group_size=1 << 30)
    # The pool keeps freed buffers for reuse; the consumer would carry them as RSS.
    pa.default_memory_pool().release_unused()
    with filesystem.open_input_file(target) as written:
        size = written.size()
        metadata = pq.ParquetFile(written).metadata
    return AddAction(
        path=relative,
        size=size,
        partition_values=partition,
        modification_time=int(time.time() * 1000),
        data_change=False,
        stats=footer_stats(metadata, schema, with_nan),
    )


def _batches(
    filesystem: pafs.FileSystem, root: str, files: Sequence[LiveFile], schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """The files' rows in order, a slice at a time: one file may be a large earlier merge."""
    for file in files:
        with filesystem.open_input_file(f"{root}/{file.path}") as source:
            for batch in pq.ParquetFile(source).iter_batches(_READ_ROWS, columns=schema.names):
                yield batch.cast(schema)


def _commit_swap(
    table: DeltaTable, spec: TableSpec, removed: Sequence[LiveFile], added: Sequence[AddAction]
) -> bool:
    """Commit the removal of `removed` and the files added, while all of `removed` are live."""
    now = int(time.time() * 1000)
    actions: list[AddAction | RemoveAction] = [
        RemoveAction(
            path=file.path,
            data_change=False,
            deletion_timestamp=now,
            size=file.size,
            partition_values=dict(zip(spec.partition_by, file.partition, strict=True)),
        )
        for file in removed
    ]
    actions += added
    paths = {file.path for file in removed}
    properties = CommitProperties(
        max_commit_retries=0,
        custom_metadata={COMPACTION_KEY: f"{len(removed)} files into {len(added)}"},
    )
    for _ in range(_COMMIT_ATTEMPTS):
        table.update_incremental()
        live = set(pa.table(table.get_add_actions(flatten=False)).column("path").to_pylist())
        if not paths <= live:
            return False
        try:
            table.create_write_transaction(
                actions,
                mode="append",
                schema=spec.schema,
                partition_by=list(spec.partition_by),
                commit_properties=properties,
            )
        except CommitFailedError:
            continue  # a commit took the next version first: check the files again
        table.update_incremental()  # the transaction does not move the table object on
        return True
    raise CommitFailedError(f"{spec.name}: {_COMMIT_ATTEMPTS} compaction commits lost the race")
