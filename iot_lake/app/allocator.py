"""Let polars' allocator keep freed memory for a while instead of handing it back at once.

Polars allocates with jemalloc and tells it (`_RJEM_MALLOC_CONF`, set when polars is
imported) to return freed pages to the kernel after half a second. A silver or gold step
frees and allocates a chunk's columns every second or two, so at that setting most of its
allocations fault fresh pages in again: decoding an hour of 10,000 devices took 9.3 s, and
7.5 s with freed pages kept for 30 s, for 3.26 GB of peak RSS against 3.20 GB. Pages are
still returned 30 s after their last use, so a long-running process (the consumer, a code
server) shrinks back when idle.

Polars appends whatever `_RJEM_MALLOC_CONF` holds to its own setting, and jemalloc takes
the last value of a key, so adding ours to the variable overrides polars' decay: in this
process when polars is imported after this module, and in every process started from it
(a Dagster run worker, a bench child) in any case. A decay set in the variable by the user
(anything after polars' own setting) is left as it is.
"""

from __future__ import annotations

import os

JEMALLOC_CONF_VARIABLE = "_RJEM_MALLOC_CONF"
KEEP_FREED_PAGES = "dirty_decay_ms:30000"
# What polars puts first in the variable when it is imported (polars/__init__.py).
POLARS_SETTING = "dirty_decay_ms:500,muzzy_decay_ms:1000"


def keep_freed_pages() -> None:
    """Add the 30 s decay to polars' allocator setting, unless a decay is chosen already."""
    conf = os.environ.get(JEMALLOC_CONF_VARIABLE, "")
    chosen = conf
    while chosen.startswith(POLARS_SETTING):  # polars adds its own again in each process
        chosen = chosen.removeprefix(POLARS_SETTING).lstrip(",")
    if "dirty_decay_ms" in chosen:  # ours, from a parent process, or the user's
        return
    os.environ[JEMALLOC_CONF_VARIABLE] = f"{conf},{KEEP_FREED_PAGES}" if conf else KEEP_FREED_PAGES
