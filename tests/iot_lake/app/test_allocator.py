"""Polars in our processes keeps freed pages 30 s (iot_lake.app.allocator), whatever came first."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

import pytest

from iot_lake.app.allocator import JEMALLOC_CONF_VARIABLE
from iot_lake.app.dagster_ui import DagsterDev

PRINT_STATS = "stats_print:true"  # jemalloc prints its options to stderr at exit
CONSOLE_SCRIPT = ["-m", "iot_lake.app.entry", "--help"]  # what `iot-lake --help` runs


def _environment(conf: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != JEMALLOC_CONF_VARIABLE}
    if conf is not None:
        env[JEMALLOC_CONF_VARIABLE] = conf
    return env


def _printed_decays(args: list[str], env: Mapping[str, str]) -> set[str]:
    """The dirty-page decays jemalloc prints in a fresh interpreter run with `args`.

    One per jemalloc the process loaded: polars has one, and so has deltalake, which reads
    the same variable.
    """
    done = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    decays = [line for line in done.stderr.splitlines() if "opt.dirty_decay_ms:" in line]
    assert decays, f"jemalloc printed no statistics: {done.stderr[-2000:]}"
    return {line.split(":", 1)[1].split()[0] for line in decays}


@pytest.mark.parametrize("users_conf", [PRINT_STATS, f"muzzy_decay_ms:2000,{PRINT_STATS}"])
def test_the_console_script_keeps_freed_pages(users_conf: str) -> None:
    assert _printed_decays(CONSOLE_SCRIPT, _environment(users_conf)) == {"30000"}


def test_a_decay_the_user_chose_is_kept() -> None:
    env = _environment(f"dirty_decay_ms:1234,{PRINT_STATS}")
    assert _printed_decays(CONSOLE_SCRIPT, env) == {"1234"}


def test_importing_the_package_leaves_polars_setting_alone() -> None:
    # Only entry points set it up: a library import changes nothing in the process.
    code = "import iot_lake.lake.tables, polars as pl; pl.Series(range(3))"
    assert _printed_decays(["-c", code], _environment(PRINT_STATS)) == {"500"}


def test_a_child_of_a_process_that_imported_polars_first_keeps_freed_pages() -> None:
    # The bench imports polars before it sets this up: the parent's own allocator keeps
    # polars' setting, but its children inherit the variable as the set-up left it.
    parent = (
        "import os, subprocess, sys, polars; "
        "from iot_lake.app.allocator import keep_freed_pages; keep_freed_pages(); "
        f"env = {{**os.environ, {JEMALLOC_CONF_VARIABLE!r}: "
        f"os.environ[{JEMALLOC_CONF_VARIABLE!r}] + ',{PRINT_STATS}'}}; "
        "subprocess.run([sys.executable, '-c', 'import polars as pl; pl.Series(range(3))'], "
        "env=env, check=True)"
    )
    assert _printed_decays(["-c", parent], _environment(None)) == {"30000"}


@pytest.mark.parametrize(
    ("users_conf", "decay"), [(None, "30000"), ("dirty_decay_ms:1234", "1234")]
)
def test_dagster_dev_and_its_run_workers_keep_freed_pages(
    tmp_path, monkeypatch: pytest.MonkeyPatch, users_conf: str | None, decay: str
) -> None:
    # `iot-lake run` starts dagster dev with this environment, whoever started iot-lake run.
    monkeypatch.delenv(JEMALLOC_CONF_VARIABLE, raising=False)
    if users_conf is not None:
        monkeypatch.setenv(JEMALLOC_CONF_VARIABLE, users_conf)
    env = DagsterDev(tmp_path, 3000, {}).child_environment()
    env[JEMALLOC_CONF_VARIABLE] += f",{PRINT_STATS}"
    code = "import polars as pl; pl.Series(range(3))"
    assert _printed_decays(["-c", code], env) == {decay}
