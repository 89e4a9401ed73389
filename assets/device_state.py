"""The device shadow's reported half: device_registry and device_state, merged from silver."""

# No `from __future__ import annotations` here: Dagster reads the context and resource
# annotations when the definition is built, and string annotations fail its checks.

import json

import dagster as dg

from assets.automation import after_any_parent_partition
from assets.metadata import markdown_preview
from iot_lake.lake.catalog import DEVICE_EVENTS, DEVICE_REGISTRY, DEVICE_STATE, TELEMETRY, TableSpec
from iot_lake.state.shadow_update import ShadowUpdate, update_shadow_table
from resources.lake import LakeResource


def _shadow_asset(table: TableSpec, deps: list[str]) -> dg.AssetsDefinition:
    """The asset that merges what silver committed since its last run into `table`."""

    @dg.asset(
        name=table.name,
        deps=deps,
        description=table.description,
        kinds={"delta", "polars"},
        group_name="shadow",
        automation_condition=after_any_parent_partition,
        metadata={"key_columns": ", ".join(table.key_columns), "written_by": table.owner},
    )
    def merge_from_silver(
        context: dg.AssetExecutionContext, lake: LakeResource
    ) -> dg.MaterializeResult:
        the_lake = lake.lake()
        update = update_shadow_table(the_lake, table)
        context.log.info(
            f"{table.name}: read {update.rows_read} silver rows up to {update.source_versions}, "
            f"{update.rows_changed} rows changed"
        )
        return _result(update, the_lake.table_uri(table))

    return merge_from_silver


def _result(update: ShadowUpdate, table_uri: str) -> dg.MaterializeResult:
    """Rows, what changed and from which silver versions: what an engineer checks after a run."""
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(update.rows),
            "rows_changed": dg.MetadataValue.int(update.rows_changed),
            "silver_rows_read": dg.MetadataValue.int(update.rows_read),
            "source_versions": dg.MetadataValue.text(json.dumps(update.source_versions)),
            "committed": dg.MetadataValue.bool(update.committed),
            "delta_version": dg.MetadataValue.int(update.delta_version),
            "table_uri": dg.MetadataValue.path(table_uri),
            "preview": dg.MetadataValue.md(markdown_preview(update.sample)),
        }
    )


device_registry = _shadow_asset(DEVICE_REGISTRY, [TELEMETRY.name, DEVICE_EVENTS.name])
device_state = _shadow_asset(DEVICE_STATE, [TELEMETRY.name])
