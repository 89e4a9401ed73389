"""Keep raw_telemetry cheap to commit to for weeks: compact the partitions that are closed.

Every commit adds a file per touched ingest_date partition; a consumer flushing every two
seconds adds ~43,000 files a day. Commit time and the memory of a Delta log checkpoint grow
with the number of live files (DESIGN.md: 14 -> 98 ms over 400 files; delta-rs #2628 saw
~7 GiB at checkpoints). Yesterday's partition receives no more appends once the day has
turned, so the consumer compacts it into a few large files; the checkpoint then holds a few
file actions per day instead of tens of thousands. Today's partition is compacted too,
every few hundred commits (bench/ingest.py measured commit time at ~0.2 ms per live file:
43 ms at 190 files, 225 ms at 1,000); compaction only merges files below the target size,
so each pass rewrites roughly the data of the last few hundred commits, not the whole day.
Old log entries are removed after each checkpoint (table property
delta.logRetentionDuration), so the log stays bounded too.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError

from iot_lake.catalog import RAW_TELEMETRY
from iot_lake.lake import writer_properties

log = logging.getLogger(__name__)

# A closed partition with fewer live files than this is left alone.
MIN_FILES_TO_COMPACT = 8
# Files the consumer's compaction writes, and leaves alone once written: a pass rewrites
# only the files below this size, so its memory does not grow with the day. With
# delta-rs's 100 MiB default each pass of today's partition rewrote all of it, and the soak
# (bench/ingest.py) peaked at 405, 490, then 560 MB; with 16 MiB every pass peaks at
# ~470 MB. The nightly maintenance merges a closed day's 16 MiB files into 128 MiB ones.
COMPACTED_FILE_BYTES = 16 * 1024 * 1024


def files_per_partition(table: DeltaTable) -> Counter[str]:
    """Live files in each ingest_date partition (ISO date string)."""
    actions = pa.table(table.get_add_actions(flatten=True))
    return Counter(str(value) for value in actions.column("partition.ingest_date").to_pylist())


def compact_partition(table: DeltaTable, day: str) -> bool:
    """Merge the small files of one ingest_date partition; files at target size stay put.

    Several consumers may race to compact the same partition; the loser's commit conflicts
    and is dropped (the partition is compacted either way), so this never fails a batch.
    """
    try:
        table.optimize.compact(
            partition_filters=[("ingest_date", "=", day)],
            target_size=COMPACTED_FILE_BYTES,
            writer_properties=writer_properties(RAW_TELEMETRY),
        )
    except (CommitFailedError, DeltaError) as exc:
        log.info("compaction of ingest_date=%s left to another writer: %s", day, exc)
        table.update_incremental()
        return False
    return True


def compact_closed_partitions(table: DeltaTable, today: date) -> list[str]:
    """Compact every ingest_date partition before `today` that has many small files."""
    return [
        day
        for day, files in sorted(files_per_partition(table).items())
        if day < today.isoformat()
        and files >= MIN_FILES_TO_COMPACT
        and compact_partition(table, day)
    ]
