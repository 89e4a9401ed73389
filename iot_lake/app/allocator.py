"""Let polars' allocator keep freed memory for a while instead of handing it back at once.

Polars allocates with jemalloc and tells it (`_RJEM_MALLOC_CONF`, set when polars is
imported) to return freed pages to the kernel after half a second. A silver or gold step
frees and allocates a chunk's columns every second or two, so at that setting most of its
allocations fault fresh pages in again: decoding an hour of 10,000 devices took 9.3 s, and
7.5 s with freed pages kept for 30 s, for 3.26 GB of peak RSS against 3.20 GB. Pages are
still returned 30 s after their last use, so a long-running process (the consumer, a code
server) shrinks back when idle.

Polars appends whatever `_RJEM_MALLOC_CONF` holds to its own setting, and jemalloc takes
the last value of a key, so adding ours to the variable overrides polars' decay: in a
process that sets it before importing polars (the `iot-lake` command, iot_lake.app.entry),
and in every process started with it (`dagster dev` and its run workers, a bench child) in
any case. A decay set in the variable by the user (anything after polars' own setting) is
left as it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

JEMALLOC_CONF_VARIABLE = "_RJEM_MALLOC_CONF"
KEEP_FREED_PAGES = "dirty_decay_ms:30000"
# What polars puts first in the variable when it is imported (polars/__init__.py).
POLARS_SETTING = "dirty_decay_ms:500,muzzy_decay_ms:1000"


def freed_pages_setting(env: Mapping[str, str]) -> dict[str, str]:
    """The allocator variable to add to `env` so polars keeps freed pages 30 s; {} if chosen.

    A mapping, not a change to os.environ, so a process can give it to its children (the
    environment of `dagster dev` and its run workers) without changing its own.
    """
    conf = env.get(JEMALLOC_CONF_VARIABLE, "")
    chosen = conf
    while chosen.startswith(POLARS_SETTING):  # polars adds its own again in each process
        chosen = chosen.removeprefix(POLARS_SETTING).lstrip(",")
    if "dirty_decay_ms" in chosen:  # ours, from a parent process, or the user's
        return {}
    return {JEMALLOC_CONF_VARIABLE: f"{conf},{KEEP_FREED_PAGES}" if conf else KEEP_FREED_PAGES}


def keep_freed_pages() -> None:
    """Set the 30 s decay in this process's environment, for polars and every child process.

    Only a process entry point calls it (iot_lake.app.entry, bench/ingest.py), before polars
    is imported: importing iot_lake changes nothing in os.environ.
    """
    os.environ.update(freed_pages_setting(os.environ))
