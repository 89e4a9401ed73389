import pytest

from iot_lake.catalog import RAW_TELEMETRY
from iot_lake.errors import InvalidInput
from iot_lake.lake import Lake
from iot_lake.settings import Settings, load_settings


def test_defaults_are_a_local_lake_and_documented_batch_limits():
    settings = load_settings({})
    assert settings == Settings()
    assert settings.lake_root == ".lake"
    assert not settings.is_remote
    assert settings.batch.max_records == 50_000


def test_environment_overrides_and_s3_storage_options():
    settings = load_settings(
        {
            "IOT_LAKE_ROOT": "s3://fleet-lake/prod",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ALLOW_HTTP": "true",
            "IOT_LAKE_MQTT_PORT": "1884",
            "IOT_LAKE_BATCH_MAX_AGE_S": "0.5",
        }
    )
    assert settings.is_remote
    assert settings.storage_options == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "AWS_REGION": "eu-west-1",
        "AWS_ALLOW_HTTP": "true",
    }
    assert settings.mqtt.port == 1884
    assert settings.batch.max_age_s == 0.5
    assert (
        Lake.from_settings(settings).table_uri(RAW_TELEMETRY)
        == "s3://fleet-lake/prod/raw_telemetry"
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("IOT_LAKE_MQTT_PORT", "eighteen", "an integer"),
        ("IOT_LAKE_BATCH_MAX_AGE_S", "soon", "a number of seconds"),
    ],
)
def test_bad_environment_value_names_the_variable(name, value, expected):
    with pytest.raises(InvalidInput, match=f"{name}: expected {expected}, got '{value}'"):
        load_settings({name: value})


def test_local_table_uri_is_absolute_under_the_root(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    assert lake.table_uri(RAW_TELEMETRY) == str(tmp_path / "lake" / "raw_telemetry")
