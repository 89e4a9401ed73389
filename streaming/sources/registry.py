"""Turn a `--source` URI into a Source; every refusal names the form that is expected."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
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
N = TypeVar("N", int, float)
D = TypeVar("D", int, float, None)
EXPECTED = "one of " + ", ".join(SOURCE_FORMS)


def _single(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _number(query: dict[str, list[str]], name: str, cast: Callable[[str], N], default: D) -> N | D:
    """A numeric query parameter, or `default` when absent; refused naming it when malformed."""
    raw = _single(query, name)
    if raw is None:
        return default
    try:
        return cast(raw)
    except ValueError:
        expected = "an integer" if cast is int else "a number"
        raise InvalidInput(f"--source ?{name}=", expected, raw) from None


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
            devices=_number(query, "devices", int, 100),
            seed=_number(query, "seed", int, 7),
            tenants=_number(query, "tenants", int, 2),
            interval_s=_number(query, "interval_s", float, 10.0),
        )
        return SimulatorSource(
            spec,
            speed=_number(query, "speed", float, None),
            max_messages=_number(query, "messages", int, None),
        )
    raise InvalidInput("--source", EXPECTED, uri)
