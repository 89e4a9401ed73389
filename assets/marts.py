"""dbt_project/'s marts as Dagster assets, downstream of the lake tables they read.

Each dbt source (a catalog table, dbt_project/models/sources.yml) is mapped to the asset
that writes that table, so the marts sit in the same graph as silver and gold: their
lineage shows in the UI, and their dbt tests show as asset checks. A mart is rebuilt by
`dbt build` after any partition of a table it reads is rebuilt (late days included).

dbt runs in its own process and is given the lake resource's root (iot_lake/lake/dbt_plugin.py
takes it from the dbt var `lake_root`), so the marts are built from the graph's own lake.
"""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations when the definition is built, and string annotations fail its checks.

import fcntl
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from assets.automation import after_any_parent_partition
from iot_lake.lake.catalog import table_spec
from iot_lake.settings import absolute_root
from resources.lake import LakeResource

DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"
DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
# The virtualenv's dbt, whether or not its bin/ is on PATH (make runs .venv/bin/dagster).
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")


def ensure_manifest(project: DbtProject = DBT_PROJECT) -> Path:
    """The dbt manifest of the project, parsed again when missing or older than a project file.

    A fresh checkout has none, and an edited model must show in `dagster dev` without a
    manual step: `dbt parse` (a few seconds) writes it. Every process that loads the code
    location calls this, so one parses under a file lock and the others wait and reuse it.
    """
    manifest = project.manifest_path
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with (manifest.parent / "manifest.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _stale(manifest, project.project_dir):
            DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE).cli(
                ["parse", "--quiet"], target_path=project.target_path
            ).wait()
    return manifest


def _stale(manifest: Path, project_dir: Path) -> bool:
    if not manifest.exists():
        return True
    parsed_at = manifest.stat().st_mtime
    sources = [
        *project_dir.glob("*.yml"),
        *project_dir.glob("models/**/*"),
        *project_dir.glob("tests/**/*"),
    ]
    return any(path.stat().st_mtime > parsed_at for path in sources)


class LakeTranslator(DagsterDbtTranslator):
    """dbt sources are the catalog's tables, so each one's asset key is the table's name."""

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        """A source keyed by its table's name; a model in group `marts`, with automation."""
        spec = super().get_asset_spec(manifest, unique_id, project)
        if unique_id.startswith("source."):
            props = self.get_resource_props(manifest, unique_id)
            return spec.replace_attributes(key=dg.AssetKey(table_spec(props["name"]).name))
        return spec.replace_attributes(
            group_name="marts", automation_condition=after_any_parent_partition
        )


@dbt_assets(
    manifest=ensure_manifest(),
    project=DBT_PROJECT,
    dagster_dbt_translator=LakeTranslator(),
)
def dbt_marts(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, lake: LakeResource
) -> Iterator[Any]:
    """`dbt build` of the selected marts: each model, then its tests as asset checks.

    dbt reads the lake resource's lake (the dbt var `lake_root`, taken by the plugin): a
    local root is made absolute, as dbt runs in dbt_project/.
    """
    build = ["build", "--vars", json.dumps({"lake_root": absolute_root(lake.root)})]
    yield from dbt.cli(build, context=context).stream()


def dbt_resource() -> DbtCliResource:
    """The dbt CLI for the marts, with dbt_project/'s own profiles."""
    return DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=DBT_EXECUTABLE)
