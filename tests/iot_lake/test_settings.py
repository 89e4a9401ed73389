import pytest

from iot_lake.errors import InvalidInput
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.tables import Lake
from iot_lake.settings import Settings, load_settings


def test_defaults_are_a_local_lake_and_documented_batch_limits():
    settings = load_settings({})
    assert settings == Settings()
    assert settings.lake_root == ".lake"
    assert not settings.is_remote
    assert settings.batch.max_records == 35_000


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
        ("IOT_LAKE_MQTT_PROTOCOL", "3", "3.1.1 or 5"),
    ],
)
def test_bad_environment_value_names_the_variable(name, value, expected):
    with pytest.raises(InvalidInput, match=f"{name}: expected {expected}, got '{value}'"):
        load_settings({name: value})


def test_retention_defaults_keep_raw_forever_and_vacuum_at_the_log_retention():
    assert (load_settings({}).vacuum_retention_hours, load_settings({}).raw_retention_days) == (
        48,
        None,
    )
    longer_log = load_settings({"IOT_LAKE_LOG_RETENTION_HOURS": "168"})
    assert longer_log.vacuum_retention_hours == 168
    chosen = load_settings(
        {"IOT_LAKE_VACUUM_RETENTION_HOURS": "72", "IOT_LAKE_RAW_RETENTION_DAYS": "90"}
    )
    assert (chosen.vacuum_retention_hours, chosen.raw_retention_days) == (72, 90)
    assert load_settings({"IOT_LAKE_RAW_RETENTION_DAYS": "forever"}).raw_retention_days is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"IOT_LAKE_VACUUM_RETENTION_HOURS": "12"},
            "IOT_LAKE_VACUUM_RETENTION_HOURS: expected a whole number of hours, at least the "
            "log retention (48), got '12'",
            id="vacuum-below-log-retention",
        ),
        pytest.param(
            {"IOT_LAKE_RAW_RETENTION_DAYS": "8"},
            "IOT_LAKE_RAW_RETENTION_DAYS: expected a whole number of days, at least 9 "
            "(IOT_LAKE_MAX_LATENESS_S in days + 2), or 'forever', got '8'",
            id="raw-shorter-than-lateness",
        ),
        pytest.param(
            {"IOT_LAKE_RAW_RETENTION_DAYS": "a month"},
            "IOT_LAKE_RAW_RETENTION_DAYS: expected a whole number of days",
            id="raw-not-a-number",
        ),
    ],
)
def test_bad_retention_names_the_variable_and_the_floor(env, message):
    with pytest.raises(InvalidInput) as refused:
        load_settings(env)
    assert str(refused.value).startswith(message)


def test_local_table_uri_is_absolute_under_the_root(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    assert lake.table_uri(RAW_TELEMETRY) == str(tmp_path / "lake" / "raw_telemetry")
