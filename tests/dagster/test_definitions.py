"""The code location loads: in process, and through the `dagster` CLI as a deployment does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from iot_lake.definitions import defs, lake_resource
from iot_lake.settings import storage_options_from_env

REPO = Path(__file__).resolve().parents[2]


def test_definitions_hold_the_silver_and_gold_assets_sensor_and_lake():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == {
        "raw_telemetry",
        "telemetry",
        "device_events",
        "late_data_ledger",
        "rollup_1m",
        "rollup_1h",
        "rollup_1d",
        "device_baselines",
        "device_registry",
        "device_state",
        "fleet_metric_daily",
        "device_daily_health",
    }
    assert defs.resolve_sensor_def("raw_landing_sensor").job_name == "event_day_job"


@pytest.mark.slow
def test_dagster_cli_validates_the_workspace(tmp_path):
    dagster = Path(sys.executable).with_name("dagster")
    completed = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env={"PATH": str(dagster.parent), "DAGSTER_HOME": str(tmp_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


S3_ENV = {
    "IOT_LAKE_ROOT": "s3://bucket/lake",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "key-id",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_ALLOW_HTTP": "true",
}


def test_the_lake_resource_names_the_secrets_it_reads_and_never_holds_them():
    resource = lake_resource(S3_ENV)

    assert resource.root == "s3://bucket/lake"
    for field, variable in [
        ("endpoint_url", "AWS_ENDPOINT_URL"),
        ("access_key_id", "AWS_ACCESS_KEY_ID"),
        ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ]:
        value = getattr(resource, field)
        assert isinstance(value, dg.EnvVar)
        assert value.env_var_name == variable
    # Unset: no EnvVar, which would fail every launch.
    assert resource.session_token is None
    assert (resource.region, resource.allow_http) == ("eu-west-1", True)


def test_the_lake_resource_gets_the_storage_options_the_environment_gives(monkeypatch):
    for variable, value in S3_ENV.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", raising=False)

    with dg.build_resources({"lake": lake_resource(S3_ENV)}) as resources:
        options = resources.lake.storage_options()

    assert options == storage_options_from_env(S3_ENV)


def test_a_local_lake_resource_has_no_storage_options():
    resource = lake_resource({"IOT_LAKE_ROOT": "/tmp/lake"})
    assert resource.storage_options() == {}
    assert resource.lake().storage_options == {}
