"""Append Arrow rows to a Delta table as Parquet files pyarrow writes, then one commit.

`write_deltalake` rebuilds the table's whole list of live files after each commit, so
its cost grows with the table. A consumer appends every few seconds for weeks while
today's files pile up between compactions and closed days stay live, so its commits
slowed down all day: `bench/ingest.py --growth-commits 800` (800 commits of 1,000
messages, never compacted) measured 14 ms a commit at first and 106 ms once 800 files
were live (p95 119 ms). Written here and committed with
`DeltaTable.create_write_transaction`, the same commits take 17 to 48 ms (p95 53 ms):
they still grow with the commits replayed since the last log checkpoint, and only
slowly with the live files.

The statistics logged with each file are read back from its footer (`footer_stats`), so
the log describes exactly the bytes written; the footer holds statistics of the
layout's columns only (`ParquetLayout.statistics_columns`).
"""

from __future__ import annotations

import time

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake.transaction import AddAction

from iot_lake.lake.catalog import TableSpec
from iot_lake.lake.delta_files import (
    columns_with_nan,
    file_schema,
    footer_stats,
    make_parent_directory,
    new_file_path,
    partition_value,
    pyarrow_write_options,
)

_NEWEST = pl.CompatLevel.newest()


def write_files(
    filesystem: pafs.FileSystem, table_path: str, spec: TableSpec, rows: pa.Table
) -> list[AddAction]:
    """Write the rows (in the spec's schema) as one file per partition; their add actions.

    In the layout's codec for appended files: compaction rewrites them (ParquetLayout).
    """
    schema = file_schema(spec)
    options = pyarrow_write_options(spec, appended=True)
    actions = []
    for partition, part in _partitions(spec, rows):
        relative = new_file_path(partition, options["compression"])
        target = f"{table_path}/{relative}"
        make_parent_directory(filesystem, target)
        footers: list[pq.FileMetaData] = []
        data = part.select(schema.names)
        with filesystem.open_output_stream(target) as stream:
            # No Arrow schema in the footer: the rows may hold string views (the landing
            # writer's, streaming.batch.ARROW_SCHEMA), and Parquet's own types (UTF8 text,
            # UTC timestamps) read back as the table's schema in every reader.
            pq.write_table(data, stream, metadata_collector=footers, store_schema=False, **options)
            size = stream.tell()
        actions.append(
            AddAction(
                path=relative,
                size=size,
                partition_values=partition,
                modification_time=int(time.time() * 1000),
                data_change=True,
                stats=footer_stats(footers[0], schema, columns_with_nan(data)),
            )
        )
    return actions


def _partitions(spec: TableSpec, rows: pa.Table) -> list[tuple[dict[str, str | None], pa.Table]]:
    """The rows of each partition with its values; one batch is nearly always one partition.

    Split by polars, which keeps the landing writer's string views as they are (pyarrow's
    filter has no kernel for them).
    """
    keys = list(spec.partition_by)
    if not keys:
        return [({}, rows)]
    distinct = rows.select(keys).group_by(keys).aggregate([]).to_pylist()
    if len(distinct) == 1:
        return [(_values(distinct[0], keys), rows)]
    frame = pl.from_arrow(rows)
    assert isinstance(frame, pl.DataFrame)
    return [
        (_values(dict(zip(keys, values, strict=True)), keys), part.to_arrow(compat_level=_NEWEST))
        for values, part in frame.partition_by(keys, as_dict=True, maintain_order=True).items()
    ]


def _values(combination: dict[str, object], keys: list[str]) -> dict[str, str | None]:
    return {key: partition_value(combination[key]) for key in keys}
