"""A table created before the catalog gained a column is refused by name, not half-written."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import polars as pl
import pyarrow as pa
import pytest

from iot_lake.gold.rollups import rollup_1m, rollup_up
from iot_lake.lake.catalog import ROLLUP_1H
from iot_lake.lake.tables import Lake, TableSchemaOutdated
from tests.iot_lake.gold.test_rollups import random_telemetry

DAY = date(2026, 3, 2)
PREDICATE = f"bucket_date = '{DAY}'"


def test_a_rollup_table_from_before_m2_is_refused_by_name(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    before_m2 = replace(
        ROLLUP_1H, schema=pa.schema([f for f in ROLLUP_1H.schema if f.name != "m2"])
    )
    hourly = rollup_up(rollup_1m(random_telemetry(1)), "1h").filter(pl.col("bucket_date") == DAY)
    version = lake.replace_partition(before_m2, hourly.drop("m2").to_arrow(), PREDICATE)

    with pytest.raises(TableSchemaOutdated, match=r"rollup_1h at .* \(missing: m2; not in the"):
        lake.replace_partition(ROLLUP_1H, hourly.to_arrow(), PREDICATE)

    assert lake.open(ROLLUP_1H).version() == version
