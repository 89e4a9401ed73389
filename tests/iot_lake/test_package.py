"""Importing iot_lake, or any module of it, changes nothing in the process's environment.

Process set-up (polars' allocator setting) belongs to the entry points; a library that
edits os.environ when imported changes every process that imports it, tests included.
"""

from __future__ import annotations

import os
import subprocess
import sys

from iot_lake.app.allocator import JEMALLOC_CONF_VARIABLE

# Run in a fresh interpreter: prints the names of the variables `{imports}` changed.
SCRIPT = """
{first}
import os
before = dict(os.environ)
{imports}
after = dict(os.environ)
print(",".join(sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))))
"""
EVERY_MODULE = """
import importlib, pkgutil, iot_lake
for module in pkgutil.walk_packages(iot_lake.__path__, "iot_lake."):
    importlib.import_module(module.name)
"""


def _variables_changed_by(imports: str, *, first: str = "") -> str:
    code = SCRIPT.format(first=first, imports=imports)
    # Without the allocator variable: a parent's setting would hide a change made at import.
    env = {k: v for k, v in os.environ.items() if k != JEMALLOC_CONF_VARIABLE}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_importing_iot_lake_leaves_os_environ_unchanged():
    assert _variables_changed_by("import iot_lake") == ""


def test_importing_every_iot_lake_module_leaves_os_environ_unchanged():
    # polars sets its own allocator variable when imported: imported first, it is not ours.
    assert _variables_changed_by(EVERY_MODULE, first="import polars") == ""
