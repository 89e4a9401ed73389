"""One typed settings object, resolved from the environment with documented defaults.

Local vs S3 is a value of `lake_root`, never a branch in code: the same reader and writer
serve `./.lake` and `s3://bucket/prefix`, with storage options taken from the standard
AWS variables (endpoint, region, credentials, `AWS_ALLOW_HTTP` for a local endpoint).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from iot_lake.errors import InvalidInput

# Storage option keys understood by delta-rs' object store, read from the environment.
_STORAGE_ENV_KEYS = (
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ALLOW_HTTP",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
)


@dataclass(frozen=True)
class BatchLimits:
    """When the consumer flushes a micro-batch: whichever limit is reached first.

    Larger batches spread a batch's fixed cost (its Delta commit, its chunk's dozen polars
    queries, a file per partition) over more messages; smaller ones cut latency and commit
    time. 35,000 messages, measured on 2 cores with the pipelined consumer
    (docs/performance.md, "Landing"): alternating landings of bench/ingest.py's file landed
    at a median of 662,000 msgs/s with commits of 62-87 ms p95, against 600,000 (67-91 ms)
    for 30,000 and 660,000 (70-97 ms, too close to the 100 ms target) for 40,000. At low
    rates `max_age_s` bounds the latency.
    """

    max_records: int = 35_000
    max_bytes: int = 32 * 1024 * 1024
    max_age_s: float = 2.0


@dataclass(frozen=True)
class IdentityRules:
    """The form of the names a device uses: tenant and device ids, metric names, message ids.

    A name outside the rule is refused at intake (the message is kept in raw with an error
    naming the field and the rule), so a table, a partition, a topic filter or a SQL query
    never meets a name it cannot hold. The default is the AWS IoT thing-name rule: 1 to 128
    characters of `[A-Za-z0-9:_-]`. `id_characters` is the body of a regular-expression
    character class; a slash is never allowed (it separates a topic's levels).
    """

    id_max_chars: int = 128
    id_characters: str = "A-Za-z0-9:_-"
    message_id_max_chars: int = 128

    def __post_init__(self) -> None:
        if self.id_max_chars < 1:
            raise InvalidInput("IOT_LAKE_ID_MAX_CHARS", "a whole number from 1", self.id_max_chars)
        if self.message_id_max_chars < 1:
            raise InvalidInput(
                "IOT_LAKE_MESSAGE_ID_MAX_CHARS", "a whole number from 1", self.message_id_max_chars
            )
        expected = "the body of a regular-expression character class without '/', e.g. A-Za-z0-9:_-"
        try:
            pattern = re.compile(self.id_pattern)
        except re.error:
            raise InvalidInput("IOT_LAKE_ID_CHARACTERS", expected, self.id_characters) from None
        if not self.id_characters or pattern.fullmatch("/") or "/" in self.id_characters:
            raise InvalidInput("IOT_LAKE_ID_CHARACTERS", expected, self.id_characters)

    @property
    def id_pattern(self) -> str:
        """A regular expression matching a whole valid id (tenant, device, metric name)."""
        return f"[{self.id_characters}]{{1,{self.id_max_chars}}}"

    @property
    def id_form(self) -> str:
        """The rule in words, for error details."""
        return f"1 to {self.id_max_chars} characters of [{self.id_characters}]"

    def is_id(self, name: str) -> bool:
        """Whether `name` is a valid tenant id, device id or metric name."""
        return _compiled(self.id_pattern).fullmatch(name) is not None


@lru_cache(maxsize=16)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


MQTT_PROTOCOLS = ("3.1.1", "5")


@dataclass(frozen=True)
class MqttSettings:
    """Where the MQTT broker is and how the consumer's persistent session is named."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str = "iot-lake-consumer"
    share_group: str | None = None
    topic_filter: str = "tenant/+/devices/+/+"
    # MQTT 3.1.1 by default: paho parses v5 properties in Python for every PUBLISH, which
    # halved the rate of one consumer here (docs/performance.md). Both keep a persistent session,
    # QoS 1 and shared subscriptions; "5" adds Receive Maximum and a session expiry sent by
    # the client (a 3.1.1 session lives until the broker's persistent_client_expiration).
    protocol: str = "3.1.1"
    session_expiry_s: int = 7 * 24 * 3600

    def __post_init__(self) -> None:
        if self.protocol not in MQTT_PROTOCOLS:
            raise InvalidInput("IOT_LAKE_MQTT_PROTOCOL", "3.1.1 or 5", self.protocol)


@dataclass(frozen=True)
class Settings:
    """Every knob of iot-lake, typed; tests override fields with `dataclasses.replace`."""

    lake_root: str = ".lake"
    storage_options: Mapping[str, str] = field(default_factory=dict)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    batch: BatchLimits = field(default_factory=BatchLimits)
    max_payload_bytes: int = 64 * 1024
    identity: IdentityRules = field(default_factory=IdentityRules)
    log_retention_hours: int = 48
    # Reading a table's log costs delta-rs more with every commit since the last checkpoint
    # (a read finding nothing new: 0.5 ms of CPU 10 commits after, 2.4 ms 60 after), and
    # the landing writer reads it before each commit: over 300 commits of 1,000 messages a
    # commit cost 20.0 ms of CPU with a checkpoint every 100 commits and 10.4 with one every
    # 25 (p95 37.6 and 17.2 ms; docs/performance.md, "Landing").
    checkpoint_interval: int = 25
    # Where `iot-lake run` serves the Dagster UI (dagster dev on 127.0.0.1).
    ui_port: int = 3000
    # Contract 4: a device timestamp within this of ingest time is trusted as event time...
    skew_tolerance_s: float = 300.0
    # ...and so is one behind ingest by up to this much (a device flushing its buffer).
    max_lateness_s: float = 7 * 24 * 3600.0
    # A device whose last message of any kind arrived longer ago than this counts as offline
    # (heartbeat timeout), applied when device connectivity is read, relative to that moment.
    # Five missed heartbeats of the simulator's default fleet (one a minute); set it to a few
    # heartbeat periods of the real fleet.
    heartbeat_timeout_s: float = 300.0
    # Maintenance (iot_lake.lake.maintenance): files replaced by a rewrite stay this long before
    # vacuum deletes them; never below the log retention, so every version the log still
    # holds stays readable (unset: the log retention).
    vacuum_retention_hours: int = 48
    # raw_telemetry ingest days kept before today; None keeps raw forever (it is the only
    # replay source). At least `min_raw_retention_days`: silver rebuilds read raw that old.
    raw_retention_days: int | None = None

    @property
    def is_remote(self) -> bool:
        """True when the lake lives in an object store rather than on a local disk."""
        return is_remote_root(self.lake_root)

    def with_overrides(self, **changes: Any) -> Settings:  # noqa: ANN401
        """Return a copy with the given top-level fields replaced (None values ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def is_remote_root(root: str) -> bool:
    """True for an object-store URI (s3://...), False for a local path or file:// URI."""
    return "://" in root and not root.startswith("file://")


def absolute_root(root: str) -> str:
    """A local lake root made absolute; an object-store URI as it is.

    So that a process with another working directory (dbt, a Dagster run) finds the lake.
    """
    return root if is_remote_root(root) else str(Path(root).absolute())


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(name, "an integer", raw) from None


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(name, "a number of seconds", raw) from None


def min_raw_retention_days(max_lateness_s: float) -> int:
    """The shortest raw retention that keeps every automatic silver rebuild complete.

    A late reading is at most `max_lateness_s` old, and the rebuild of its event day D reads
    raw from ingest day D-1 on; one more day covers a rebuild running just after midnight.
    """
    return math.ceil(max_lateness_s / 86400) + 2


def _env_vacuum_retention(env: Mapping[str, str], log_retention_hours: int) -> int:
    name = "IOT_LAKE_VACUUM_RETENTION_HOURS"
    expected = f"a whole number of hours, at least the log retention ({log_retention_hours})"
    hours = _env_int(env, name, log_retention_hours)
    if hours < log_retention_hours:
        raise InvalidInput(name, expected, env.get(name))
    return hours


def _env_raw_retention(env: Mapping[str, str], max_lateness_s: float) -> int | None:
    name = "IOT_LAKE_RAW_RETENTION_DAYS"
    raw = env.get(name)
    if raw is None or raw.strip() in ("", "forever"):
        return None
    minimum = min_raw_retention_days(max_lateness_s)
    expected = (
        f"a whole number of days, at least {minimum} (IOT_LAKE_MAX_LATENESS_S in days + 2), "
        "or 'forever'"
    )
    try:
        days = int(raw)
    except ValueError:
        raise InvalidInput(name, expected, raw) from None
    if days < minimum:
        raise InvalidInput(name, expected, raw)
    return days


def storage_options_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """The AWS variables delta-rs and boto3 both understand, as delta-rs storage options."""
    options = {key: env[key] for key in _STORAGE_ENV_KEYS if env.get(key)}
    if "AWS_REGION" not in options and "AWS_DEFAULT_REGION" in options:
        options["AWS_REGION"] = options["AWS_DEFAULT_REGION"]
    options.pop("AWS_DEFAULT_REGION", None)
    return options


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings from environment variables (docs/settings.md), else defaults."""
    env = os.environ if env is None else env
    mqtt_defaults = MqttSettings()
    batch_defaults = BatchLimits()
    defaults = Settings()
    mqtt = MqttSettings(
        host=env.get("IOT_LAKE_MQTT_HOST", mqtt_defaults.host),
        port=_env_int(env, "IOT_LAKE_MQTT_PORT", mqtt_defaults.port),
        username=env.get("IOT_LAKE_MQTT_USERNAME") or None,
        password=env.get("IOT_LAKE_MQTT_PASSWORD") or None,
        client_id=env.get("IOT_LAKE_MQTT_CLIENT_ID", mqtt_defaults.client_id),
        share_group=env.get("IOT_LAKE_MQTT_SHARE_GROUP") or None,
        topic_filter=env.get("IOT_LAKE_MQTT_TOPIC_FILTER", mqtt_defaults.topic_filter),
        protocol=env.get("IOT_LAKE_MQTT_PROTOCOL") or mqtt_defaults.protocol,
    )
    batch = BatchLimits(
        max_records=_env_int(env, "IOT_LAKE_BATCH_MAX_RECORDS", batch_defaults.max_records),
        max_bytes=_env_int(env, "IOT_LAKE_BATCH_MAX_BYTES", batch_defaults.max_bytes),
        max_age_s=_env_float(env, "IOT_LAKE_BATCH_MAX_AGE_S", batch_defaults.max_age_s),
    )
    log_retention_hours = _env_int(
        env, "IOT_LAKE_LOG_RETENTION_HOURS", defaults.log_retention_hours
    )
    max_lateness_s = _env_float(env, "IOT_LAKE_MAX_LATENESS_S", defaults.max_lateness_s)
    identity_defaults = IdentityRules()
    identity = IdentityRules(
        id_max_chars=_env_int(env, "IOT_LAKE_ID_MAX_CHARS", identity_defaults.id_max_chars),
        id_characters=env.get("IOT_LAKE_ID_CHARACTERS") or identity_defaults.id_characters,
        message_id_max_chars=_env_int(
            env, "IOT_LAKE_MESSAGE_ID_MAX_CHARS", identity_defaults.message_id_max_chars
        ),
    )
    return Settings(
        lake_root=env.get("IOT_LAKE_ROOT", defaults.lake_root),
        storage_options=storage_options_from_env(env),
        mqtt=mqtt,
        batch=batch,
        max_payload_bytes=_env_int(env, "IOT_LAKE_MAX_PAYLOAD_BYTES", defaults.max_payload_bytes),
        identity=identity,
        log_retention_hours=log_retention_hours,
        checkpoint_interval=_env_int(
            env, "IOT_LAKE_CHECKPOINT_INTERVAL", defaults.checkpoint_interval
        ),
        ui_port=_env_int(env, "IOT_LAKE_UI_PORT", defaults.ui_port),
        skew_tolerance_s=_env_float(env, "IOT_LAKE_SKEW_TOLERANCE_S", defaults.skew_tolerance_s),
        max_lateness_s=max_lateness_s,
        heartbeat_timeout_s=_env_float(
            env, "IOT_LAKE_HEARTBEAT_TIMEOUT_S", defaults.heartbeat_timeout_s
        ),
        vacuum_retention_hours=_env_vacuum_retention(env, log_retention_hours),
        raw_retention_days=_env_raw_retention(env, max_lateness_s),
    )
