"""Silver rebuilt on an `s3://` lake served by moto: the readers take the lake's storage options.

Derived tables and the sensor read Delta files with polars' own Parquet reader
(`Lake.read_where`, `iot_lake.lake.changes.read_added`), which reaches S3 by its own client, not
delta-rs': it must get the endpoint, region and credentials the settings give delta-rs.
"""

from __future__ import annotations

import os
from datetime import date, timedelta

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from assets.telemetry import telemetry
from iot_lake.lake.catalog import RAW_TELEMETRY, TELEMETRY
from iot_lake.lake.changes import files_added_since, read_added
from iot_lake.lake.partitions import EventWindow
from iot_lake.lake.tables import Lake
from iot_lake.silver.decode import decode_telemetry
from iot_lake.silver.rebuild import rebuild_silver
from iot_lake.silver.rules import SilverRules
from resources.lake import LakeResource
from streaming.simulator.fleet import Fleet, FleetSpec
from tests.integration.aws.conftest import REGION, MotoServer
from tests.support import land_messages

pytestmark = pytest.mark.integration

RULES = SilverRules(skew_tolerance=timedelta(minutes=5), max_lateness=timedelta(days=7))
DAY = EventWindow.day(date(2026, 11, 1))


def test_silver_rebuilt_and_new_raw_read_on_s3(
    aws_env: MotoServer, unique_name: str, monkeypatch: pytest.MonkeyPatch
):
    aws_env.client("s3").create_bucket(Bucket=unique_name)
    # Only the storage options lead to moto: a reader ignoring them fails.
    for key in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP"):
        monkeypatch.delenv(key)
    lake = Lake(f"s3://{unique_name}/lake", aws_env.storage_options)
    messages = list(Fleet(FleetSpec(devices=6, interval_s=600.0)).messages(600))
    land_messages(lake, messages[:300])
    cursor = lake.open(RAW_TELEMETRY).version()
    land_messages(lake, messages[300:])

    rebuilt = rebuild_silver(lake, TELEMETRY, DAY, RULES)
    stored = lake.read_where(TELEMETRY, DAY.partition_filters("event_date")).collect()
    expected = decode_telemetry(
        lake.read(RAW_TELEMETRY), RULES.skew_tolerance, max_lateness=RULES.max_lateness
    ).filter(DAY.contains())
    new_rows = read_added(
        lake, RAW_TELEMETRY, files_added_since(lake, RAW_TELEMETRY, cursor), ["source_position"]
    )

    assert rebuilt.rows == stored.height == expected.height > 0
    assert_frame_equal(stored.sort(*TELEMETRY.key_columns), expected.sort(*TELEMETRY.key_columns))
    assert sorted(new_rows["source_position"].cast(int)) == list(range(300))


def test_the_lake_resource_reaches_s3_through_its_config_alone(
    aws_env: MotoServer, unique_name: str, monkeypatch: pytest.MonkeyPatch
):
    aws_env.client("s3").create_bucket(Bucket=unique_name)
    root = f"s3://{unique_name}/lake"
    land_messages(
        Lake(root, aws_env.storage_options),
        list(Fleet(FleetSpec(devices=6, interval_s=600.0)).messages(300)),
    )
    resource = LakeResource(
        root=root,
        endpoint_url=aws_env.endpoint_url,
        region=REGION,
        access_key_id="testing",
        secret_access_key="testing",
        allow_http=True,
    )
    # No AWS variable left: only the resource's config leads to moto.
    for key in [k for k in os.environ if k.startswith("AWS_") and not k.endswith("_FILE")]:
        monkeypatch.delenv(key)

    result = dg.materialize(
        [telemetry], partition_key=DAY.start.isoformat(), resources={"lake": resource}
    )

    assert result.success
    stored = Lake(root, aws_env.storage_options).read_where(
        TELEMETRY, DAY.partition_filters("event_date")
    )
    assert stored.select(pl.len()).collect().item() > 0
