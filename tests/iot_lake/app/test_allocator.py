"""Polars in our processes keeps freed pages 30 s (iot_lake.app.allocator), whatever came first."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from iot_lake.app.allocator import JEMALLOC_CONF_VARIABLE

PRINT_STATS = "stats_print:true"  # jemalloc prints its options to stderr at exit


def _printed_decays(code: str, conf: str | None) -> set[str]:
    """The dirty-page decays jemalloc prints in a fresh interpreter running `code`.

    One per jemalloc the process loaded: polars has one, and so has deltalake, which reads
    the same variable.
    """
    env = {k: v for k, v in os.environ.items() if k != JEMALLOC_CONF_VARIABLE}
    if conf is not None:
        env[JEMALLOC_CONF_VARIABLE] = conf
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    decays = [line for line in done.stderr.splitlines() if "opt.dirty_decay_ms:" in line]
    assert decays, f"jemalloc printed no statistics: {done.stderr[-2000:]}"
    return {line.split(":", 1)[1].split()[0] for line in decays}


@pytest.mark.parametrize("users_conf", [PRINT_STATS, f"muzzy_decay_ms:2000,{PRINT_STATS}"])
def test_polars_imported_after_the_package_keeps_freed_pages(users_conf: str) -> None:
    code = "import iot_lake.lake.tables, polars as pl; pl.Series(range(3))"
    assert _printed_decays(code, users_conf) == {"30000"}


def test_a_decay_the_user_chose_is_kept() -> None:
    code = "import iot_lake.lake.tables, polars as pl; pl.Series(range(3))"
    assert _printed_decays(code, f"dirty_decay_ms:1234,{PRINT_STATS}") == {"1234"}


def test_a_child_of_a_process_that_imported_polars_first_keeps_freed_pages() -> None:
    # The bench and pytest import polars before this package: the parent's own allocator
    # keeps polars' setting, but its children inherit the variable as the package left it.
    parent = (
        "import os, subprocess, sys, polars, iot_lake; "
        f"env = {{**os.environ, {JEMALLOC_CONF_VARIABLE!r}: "
        f"os.environ[{JEMALLOC_CONF_VARIABLE!r}] + ',{PRINT_STATS}'}}; "
        "subprocess.run([sys.executable, '-c', 'import polars as pl; pl.Series(range(3))'], "
        "env=env, check=True)"
    )
    assert _printed_decays(parent, None) == {"30000"}
