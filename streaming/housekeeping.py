"""Keep raw_telemetry cheap to commit to for weeks: compact the partitions that are closed.

Every commit adds a file per touched ingest_date partition; a consumer flushing every two
seconds adds ~43,000 files a day. A Delta log checkpoint and every reader's table load grow
with the number of live files (delta-rs #2628 saw ~7 GiB at checkpoints), and so did each
commit until the landing writer stopped using `write_deltalake` (iot_lake.lake.appends: 14 ->
106 ms over 800 files before, 17-48 ms after). Yesterday's partition receives no more
appends once the day has turned, so the consumer compacts it into a few large files; the
checkpoint then holds a few file actions per day instead of tens of thousands. Today's
partition is compacted too, every few hundred commits; compaction only merges files below
a quarter of the target size, so each pass rewrites roughly the data of the last few
hundred commits, not the day.
Old log entries are removed after each checkpoint (table property
delta.logRetentionDuration), so the log stays bounded too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import date

from deltalake import DeltaTable

from iot_lake.lake import compaction
from iot_lake.lake.catalog import RAW_TELEMETRY

# Files the consumer's compaction writes, and leaves alone once written: a pass rewrites
# only the files below half this size, so its memory does not grow with the day. With
# delta-rs's 100 MiB default each pass of today's partition rewrote all of it, and the soak
# (bench/ingest.py) peaked at 405, 490, then 560 MB; with 16 MiB every pass peaks at
# ~470 MB. The nightly maintenance merges a closed day's files into 128 MiB ones.
COMPACTED_FILE_BYTES = 16 * 1024 * 1024


def files_per_partition(table: DeltaTable) -> Counter[str]:
    """Live files in each ingest_date partition (ISO date string)."""
    return Counter(str(file.partition[0]) for file in compaction.live_files(table, RAW_TELEMETRY))


def compact_partition(table: DeltaTable, storage_options: Mapping[str, str], day: str) -> bool:
    """Merge the small files of one ingest_date partition; whether a compaction was committed.

    Several consumers may compact the same partition at once: the first to commit wins,
    the others find its files gone and drop their own (iot_lake.lake.compaction), so this
    never fails a batch and never doubles a row.
    """
    table.update_incremental()
    bins = compaction.plan(table, RAW_TELEMETRY, COMPACTED_FILE_BYTES).get((day,), [])
    return bool(bins) and compaction.compact_partition(
        table, RAW_TELEMETRY, storage_options, (day,), bins
    )


def compact_closed_partitions(
    table: DeltaTable, storage_options: Mapping[str, str], today: date
) -> list[str]:
    """Compact every ingest_date partition before `today` that holds small files; those done."""
    table.update_incremental()
    planned = compaction.plan(table, RAW_TELEMETRY, COMPACTED_FILE_BYTES)
    return [
        str(day)
        for (day,), bins in sorted(planned.items(), key=lambda item: str(item[0]))
        if str(day) < today.isoformat()
        and compaction.compact_partition(table, RAW_TELEMETRY, storage_options, (day,), bins)
    ]
