"""Turn a `--source` URI into a Source; every refusal names the form that is expected."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from iot_lake.errors import InvalidInput
from iot_lake.settings import Settings
from streaming.simulator.fleet import FleetSpec
from streaming.sources.base import Source

SOURCE_FORMS = (
    "file:PATH[?follow=true]",
    "mqtt://HOST:PORT[?group=SHARE_GROUP&client_id=ID]",
    "kinesis://STREAM[?endpoint=URL&region=REGION&shards=ID,ID]",
    "simulator://[?devices=N&seed=S&speed=X&messages=N]",
)
EXPECTED = "one of " + ", ".join(SOURCE_FORMS)


def _single(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _int(query: dict[str, list[str]], name: str, default: int | None) -> int | None:
    raw = _single(query, name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"--source ?{name}=", "an integer", raw) from None


def _float(query: dict[str, list[str]], name: str, default: float | None) -> float | None:
    raw = _single(query, name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(f"--source ?{name}=", "a number", raw) from None


def open_source(uri: str, settings: Settings) -> Source:
    """The source a URI names, configured from the URI, then settings, then defaults."""
    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    scheme = parts.scheme.lower()
    if scheme == "file":
        from streaming.sources.file import FileSource

        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not path:
            raise InvalidInput("--source", "file:PATH with a path", uri)
        follow = (_single(query, "follow") or "false").lower() in {"1", "true", "yes"}
        return FileSource(path, follow=follow)
    if scheme == "mqtt":
        from dataclasses import replace

        from streaming.sources.mqtt import MqttSource

        mqtt = replace(
            settings.mqtt,
            host=parts.hostname or settings.mqtt.host,
            port=parts.port or settings.mqtt.port,
            share_group=_single(query, "group") or settings.mqtt.share_group,
            client_id=_single(query, "client_id") or settings.mqtt.client_id,
        )
        return MqttSource(mqtt)
    if scheme == "kinesis":
        from streaming.sources.kinesis import KinesisSource

        if not parts.netloc:
            raise InvalidInput("--source", "kinesis://STREAM with a stream name", uri)
        shards = _single(query, "shards")
        return KinesisSource(
            parts.netloc,
            shard_ids=shards.split(",") if shards else None,
            endpoint_url=_single(query, "endpoint")
            or settings.storage_options.get("AWS_ENDPOINT_URL"),
            region=_single(query, "region") or settings.storage_options.get("AWS_REGION"),
        )
    if scheme == "simulator":
        from streaming.sources.simulated import SimulatorSource

        spec = FleetSpec(
            devices=_int(query, "devices", 100) or 100,
            seed=_int(query, "seed", 7) or 0,
            tenants=_int(query, "tenants", 2) or 2,
            interval_s=_float(query, "interval_s", 10.0) or 10.0,
        )
        return SimulatorSource(
            spec, speed=_float(query, "speed", None), max_messages=_int(query, "messages", None)
        )
    raise InvalidInput("--source", EXPECTED, uri)
