"""Device shards: a window's raw rows split by device, so a rebuild decodes one slice at a time.

Silver deduplicates by (device_id, message_id): two copies of a message always carry the
same device id, so rows split by a hash of device_id can be decoded shard by shard and
each shard's deduplication stays exact. A rebuild then holds one shard's raw rows and
readings at a time instead of the whole day's (22.8 GB for a day of 1,000 devices).

The split is one pass over raw that appends every row to the Arrow IPC file of its shard
in a scratch directory (LZ4-compressed). Filtering the raw scan once per shard instead
would read every payload K times: a pyarrow scan reads all projected columns of a row
group before it filters.
"""

from __future__ import annotations

import math
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from queue import Empty, Queue
from typing import TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.ipc as ipc

# Raw messages per shard or chunk: about 2.5 GB of peak RSS each at the simulator's payload
# sizes (5.0 GB for a one-shard day of 2.0M messages), and up to three are alive at once
# (one written, one decoded ahead, one read). Measured on the 1,000-device day decoded in
# raw chunks (iot_lake.silver.raw_chunks): 1M a chunk peaked at 8.7 GB in 37.6 s, 500k at 5.9 GB
# in 33.2 s.
SHARD_MESSAGES = 500_000
_SHARD = "__shard"

T = TypeVar("T")


def shard_count(messages: int, per_shard: int = SHARD_MESSAGES) -> int:
    """How many device shards `messages` raw rows are split into: one for small windows."""
    return max(1, math.ceil(messages / per_shard))


@contextmanager
def device_shards(batches: Iterable[pa.RecordBatch], shards: int) -> Iterator[list[Path]]:
    """Write raw batches into `shards` files by a hash of device_id; yield the files' paths.

    Every row of a device lands in the same file (rows without a device id, all in one).
    A shard no row hashes to has no file. The files are deleted when the context exits.
    """
    with tempfile.TemporaryDirectory(prefix="iot-lake-shards-") as scratch:
        paths: dict[int, Path] = {}
        with ExitStack() as open_files:
            writers: dict[int, ipc.RecordBatchFileWriter] = {}
            options = ipc.IpcWriteOptions(compression="lz4")
            for batch in batches:
                # Dictionary columns go back to strings: an IPC file holds one dictionary per
                # column, and each batch read from Parquet brings its own.
                frame = pl.DataFrame(pl.from_arrow(batch)).with_columns(
                    pl.col(pl.Categorical).cast(pl.String)
                )
                shard_of = (pl.col("device_id").hash() % shards).alias(_SHARD)
                parts = frame.with_columns(shard_of).partition_by(_SHARD, as_dict=True)
                for (shard, *_), part in parts.items():
                    rows = part.drop(_SHARD).to_arrow()
                    if shard not in writers:
                        paths[shard] = Path(scratch) / f"shard-{shard}.arrow"
                        writers[shard] = open_files.enter_context(
                            ipc.new_file(paths[shard], rows.schema, options=options)
                        )
                    writers[shard].write_table(rows)
        yield [paths[shard] for shard in sorted(paths)]


@contextmanager
def in_device_shards(
    dataset: ds.Dataset,
    rows: pc.Expression,
    columns: Sequence[str],
    per_shard: int,
    whole: Callable[[], pl.DataFrame],
    part: Callable[[pl.LazyFrame], pl.DataFrame],
) -> Iterator[Iterator[pl.DataFrame]]:
    """A computation over some rows of a dataset, one device shard at a time (lazily).

    At most `per_shard` rows are computed `whole`, as one shard; more are spilled by device
    (`device_shards`, only `columns`) and `part` runs on each shard file in turn. The input is
    read here, before the shards are consumed: their consumer is delta-rs' writer, from
    inside which delta-rs cannot be called again (its runtime panics).
    """
    shards = shard_count(dataset.count_rows(filter=rows), per_shard)
    if shards == 1:
        yield iter([whole()])
        return
    with device_shards(dataset.to_batches(columns=list(columns), filter=rows), shards) as paths:
        yield (part(pl.scan_ipc(path)) for path in paths)


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """The items of an iterator, each computed in a background thread up to `depth` ahead.

    A rebuild's writer (polars, or delta-rs for a window that is not whole partitions) then
    writes shard k while shard k+1 is decoded or rolled up (DuckDB and polars, native code
    that releases the GIL), so both cores work instead of taking turns. Memory grows by the
    `depth` results held. An error in the producer is raised here, in order. When the
    consumer stops early, the producer stops after its current item and is waited for, so
    nothing it reads (a shard file in a scratch directory) is removed from under it.
    """
    queue: Queue[tuple[str, object]] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                queue.put(("item", item))
                if stop.is_set():
                    return
            queue.put(("end", None))
        except BaseException as error:  # handed to the consumer, who raises it
            queue.put(("error", error))

    thread = threading.Thread(target=produce, name="shard-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = queue.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():  # make room for the producer's last put, then wait for it
            with suppress(Empty):
                queue.get(timeout=0.05)
