"""The lake's tables as dbt sources: a dbt-duckdb plugin that finds them in the catalog.

dbt_project/ declares each catalog table as a source of this plugin (alias `lake`, in
dbt_project/models/sources.yml). The plugin opens the table where the settings say the
lake is (IOT_LAKE_ROOT and the storage options, as every other reader does) and hands
DuckDB its current Delta snapshot as an Arrow dataset (`Lake.dataset`); dbt-duckdb makes
it a view, so a model reads the tables themselves and scans only the files its filters
keep. No table path is spelled in dbt, and nothing is exported by hand.

A table that does not exist yet reads as empty, with its catalog schema, so the marts build
on a new lake; a source the catalog does not know is refused, naming the tables it has.
"""

from __future__ import annotations

from typing import Any

import pyarrow.dataset as ds
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig

from iot_lake.lake.catalog import table_spec
from iot_lake.lake.tables import Lake
from iot_lake.settings import load_settings


class Plugin(BasePlugin):  # type: ignore[misc]  # dbt-duckdb ships no type information
    """dbt-duckdb's entry point: `load` is called once per source a run selects."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        """The lake of the `root` the profile passes (dbt var `lake_root`), else the settings'.

        Storage options come from the environment either way, as for every other reader.
        """
        root = plugin_config.get("root") or None
        self.lake = Lake.from_settings(load_settings().with_overrides(lake_root=root))

    def load(self, source_config: SourceConfig) -> ds.Dataset:
        """The source's table, by the name dbt_project/models/sources.yml gives it."""
        return self.lake.dataset(table_spec(source_config.identifier), [])

    def default_materialization(self) -> str:
        """A view, not a copy: each model reads the table's files, pruned by its filters."""
        return "view"
