"""Materialization metadata shared by the assets that write lake tables."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import polars as pl

from iot_lake.lake.overwrites import Rebuilt


def rebuilt_result(
    rebuilt: Rebuilt, table_uri: str, extra: Mapping[str, dg.MetadataValue] | None = None
) -> dg.MaterializeResult:
    """Row count, window, Delta version and a preview: what an engineer checks after a run.

    The row count is the partition's (the whole day's) also when the run rewrote some hours
    of it, whose rows are `rows_rewritten`. `extra` adds what else decided the content (a
    baseline's window length, say).
    """
    rewritten = {}
    if rebuilt.window.hours is not None:
        rewritten = {"rows_rewritten": dg.MetadataValue.int(rebuilt.rows)}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(rebuilt.day_rows),
            **rewritten,
            "event_date_window": dg.MetadataValue.text(rebuilt.window.label),
            "delta_version": dg.MetadataValue.int(rebuilt.delta_version),
            "table_uri": dg.MetadataValue.path(table_uri),
            "preview": dg.MetadataValue.md(markdown_preview(rebuilt.sample)),
            **(extra or {}),
        }
    )


def markdown_preview(frame: pl.DataFrame) -> str:
    """A frame as a GitHub-flavoured markdown table: Dagster's metadata panel renders markdown."""
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_cols=-1,
        tbl_rows=-1,
        fmt_str_lengths=40,
    ):
        return str(frame)
