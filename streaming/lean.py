"""Keep pandas out of a consumer process: 25-45 MB of resident memory it never uses.

pyarrow imports pandas, when it is installed, the first time it converts a Python value
(`pa.scalar`, `pa.array` of a list), and pyarrow.dataset on import. The consumer converts
such values on every batch but never makes a pandas object, yet pandas is installed here
(Dagster needs it), so each consumer process carried it: 33 MB at import, and a soak peak
(bench/ingest.py: 1,000 commits) of 472-479 MB against 431-455 MB with pandas kept out
(2026-12-04, alternating runs). A consumer deployed from its own slim image would not have
it at all; this gives the same process from the one virtualenv.

pyarrow and polars treat pandas as optional and take an ImportError to mean "not
installed", so refusing the import changes nothing else. A library that does need pandas
in this process fails with an error that names this module.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType


class _RefusePandas(importlib.abc.MetaPathFinder):
    """Refuses `pandas` and its submodules, ahead of every other finder."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(
                f"{fullname} is kept out of the consumer process (streaming/lean.py): "
                "nothing in it should need pandas",
                name=fullname,
            )
        return None


def keep_pandas_out() -> bool:
    """Refuse pandas from now on in this process; False if it is already imported."""
    if "pandas" in sys.modules:
        return False
    if not any(isinstance(finder, _RefusePandas) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RefusePandas())
    return True
