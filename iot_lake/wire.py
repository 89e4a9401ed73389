"""The device wire format, and the checks every received message goes through.

A message is an MQTT-style topic `tenant/{tenant}/devices/{device}/{kind}` plus a JSON
payload. Checking never raises: it returns what could be read and, for a message that
fails, an error code and a detail naming the field and the expected form (contract 9),
so the consumer keeps the message in raw and goes on (contract 1).

Payload fields, all kinds: `device_id` (string), `message_id` (string, unique per device),
`ts` (integer epoch milliseconds, the device clock). Then per kind:
- telemetry: `metrics`, a non-empty object of metric name -> number; optional `units`
  (object of metric name -> unit string) and `fw` (firmware version string);
- events: `event`, a non-empty string (boot, crash, heartbeat, firmware, ack, ...);
- status: `status`, "online" or "offline".

This module is the authority on every message, one at a time. The consumer checks whole
columns (iot_lake.intake): canonical payloads are recognised in bulk (iot_lake.screen) and
every other message comes here.
"""

from __future__ import annotations

import base64
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

MESSAGE_KINDS = frozenset({"telemetry", "events", "status"})
STATUS_VALUES = frozenset({"online", "offline"})
TOPIC_FORM = "tenant/{tenant}/devices/{device}/{telemetry|events|status}"


class ErrorCode(StrEnum):
    """Why a received message was quarantined; the quarantine view filters on these."""

    INVALID_TOPIC = "invalid_topic"
    INVALID_ENCODING = "invalid_encoding"
    OVERSIZED = "oversized"
    UNDECODABLE = "undecodable"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    IDENTITY_MISMATCH = "identity_mismatch"


class Inspected(NamedTuple):
    """What the consumer learned about one message; error fields are None when it is valid."""

    tenant_id: str | None
    device_id: str | None
    message_kind: str | None
    message_id: str | None
    payload: str
    payload_encoding: str
    error_code: str | None
    error_detail: str | None


class Topic(NamedTuple):
    """The identity a topic claims."""

    tenant_id: str
    device_id: str
    message_kind: str


def topic_for(tenant_id: str, device_id: str, message_kind: str) -> str:
    """The topic a device publishes a message kind on."""
    return f"tenant/{tenant_id}/devices/{device_id}/{message_kind}"


def parse_topic(topic: str | None) -> Topic | None:
    """Split a topic into tenant, device and kind; None when it is not of TOPIC_FORM."""
    if not topic:
        return None
    parts = topic.split("/")
    if (
        len(parts) != 5
        or parts[0] != "tenant"
        or parts[2] != "devices"
        or not parts[1]
        or not parts[3]
        or parts[4] not in MESSAGE_KINDS
    ):
        return None
    return Topic(parts[1], parts[3], parts[4])


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _field_error(
    body: dict[str, Any], name: str, expected: str, ok: bool
) -> tuple[str, str] | None:
    if name not in body:
        return ErrorCode.MISSING_FIELD, f"field '{name}': required, expected {expected}"
    if not ok:
        got = _type_name(body[name])
        return ErrorCode.WRONG_TYPE, f"field '{name}': expected {expected}, got {got}"
    return None


def _common_error(body: dict[str, Any]) -> tuple[str, str] | None:
    device_id = body.get("device_id")
    message_id = body.get("message_id")
    ts = body.get("ts")
    return (
        _field_error(
            body, "device_id", "a non-empty string", isinstance(device_id, str) and bool(device_id)
        )
        or _field_error(
            body,
            "message_id",
            "a non-empty string",
            isinstance(message_id, str) and bool(message_id),
        )
        or _field_error(
            body,
            "ts",
            "integer epoch milliseconds",
            isinstance(ts, int) and not isinstance(ts, bool),
        )
    )


def _telemetry_error(body: dict[str, Any]) -> tuple[str, str] | None:
    metrics = body.get("metrics")
    problem = _field_error(
        body, "metrics", "an object of metric name to number", isinstance(metrics, dict)
    )
    if problem:
        return problem
    assert isinstance(metrics, dict)
    if not metrics:
        return ErrorCode.INVALID_VALUE, "field 'metrics': expected at least one metric, got {}"
    for name, value in metrics.items():
        if not _is_number(value):
            return (
                ErrorCode.WRONG_TYPE,
                f"field 'metrics.{name}': expected a number, got {_type_name(value)}",
            )
    units = body.get("units")
    if units is not None and not isinstance(units, dict):
        return ErrorCode.WRONG_TYPE, f"field 'units': expected an object, got {_type_name(units)}"
    fw = body.get("fw")
    if fw is not None and not isinstance(fw, str):
        return ErrorCode.WRONG_TYPE, f"field 'fw': expected a string, got {_type_name(fw)}"
    return None


def _events_error(body: dict[str, Any]) -> tuple[str, str] | None:
    event = body.get("event")
    return _field_error(body, "event", "a non-empty string", isinstance(event, str) and bool(event))


def _status_error(body: dict[str, Any]) -> tuple[str, str] | None:
    status = body.get("status")
    problem = _field_error(body, "status", "a string", isinstance(status, str))
    if problem is None and status not in STATUS_VALUES:
        return (
            ErrorCode.INVALID_VALUE,
            f"field 'status': expected online or offline, got {status!r}",
        )
    return problem


_KIND_CHECKS = {"telemetry": _telemetry_error, "events": _events_error, "status": _status_error}


@lru_cache(maxsize=1_000_000)
def topic_of(topic: str | bytes | None) -> tuple[Topic | None, str | None]:
    """The identity a received topic claims and its text; cached (topics repeat per device).

    Sources that read bytes (files, Kinesis) pass them undecoded: the cache decodes each
    distinct topic once instead of once per message.
    """
    if isinstance(topic, bytes):
        topic = topic.decode(errors="replace")
    return parse_topic(topic), topic


def inspect_message(
    topic: str | bytes | None,
    raw: bytes,
    max_payload_bytes: int,
    claimed_device: str | None = None,
) -> Inspected:
    """Check one received message; never raises, always returns what to store in raw.

    `claimed_device` is the identity the transport vouches for besides the topic (a Kinesis
    partition key); a message whose topic names another device goes no further.
    """
    claimed, topic = topic_of(topic)
    tenant_id, device_id, kind = claimed if claimed is not None else (None, None, None)
    try:
        text, encoding, bad_byte = raw.decode(), "utf-8", None
    except UnicodeDecodeError as exc:
        text, encoding, bad_byte = base64.b64encode(raw).decode(), "base64", exc.start
    if claimed is None:
        return Inspected(
            None, None, None, None, text, encoding, ErrorCode.INVALID_TOPIC,
            f"topic: expected {TOPIC_FORM}, got {topic!r}",
        )  # fmt: skip
    if claimed_device is not None and claimed_device != device_id:
        return Inspected(
            tenant_id, device_id, kind, None, text, encoding, ErrorCode.IDENTITY_MISMATCH,
            f"partition key: expected {device_id!r} (the topic's device), got {claimed_device!r}",
        )  # fmt: skip
    if bad_byte is not None:
        return Inspected(
            tenant_id, device_id, kind, None, text, encoding, ErrorCode.INVALID_ENCODING,
            f"payload: expected UTF-8 JSON, byte {bad_byte} is not UTF-8 (kept base64-encoded)",
        )  # fmt: skip
    if len(raw) > max_payload_bytes:
        return Inspected(
            tenant_id, device_id, kind, None, text, encoding, ErrorCode.OVERSIZED,
            f"payload: expected at most {max_payload_bytes} bytes, got {len(raw)}",
        )  # fmt: skip
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Inspected(
            tenant_id, device_id, kind, None, text, encoding, ErrorCode.UNDECODABLE,
            f"payload: expected JSON, {exc}",
        )  # fmt: skip
    assert kind is not None
    assert device_id is not None
    return _explain(tenant_id, device_id, kind, text, body)


def _explain(
    tenant_id: str | None, device_id: str, kind: str, text: str, body: object
) -> Inspected:
    """The full check of a decoded payload: which field is wrong, and what form it needs."""
    if not isinstance(body, dict):
        return Inspected(
            tenant_id,
            device_id,
            kind,
            None,
            text,
            "utf-8",
            ErrorCode.NOT_AN_OBJECT,
            f"payload: expected a JSON object, got {_type_name(body)}",
        )
    message_id = body.get("message_id")
    message_id = message_id if isinstance(message_id, str) else None
    problem = _common_error(body) or _KIND_CHECKS[kind](body)
    if problem is None and body["device_id"] != device_id:
        problem = (
            ErrorCode.IDENTITY_MISMATCH,
            f"field 'device_id': expected {device_id!r} (the topic's device), "
            f"got {body['device_id']!r}",
        )
    if problem is None:
        return Inspected(tenant_id, device_id, kind, message_id, text, "utf-8", None, None)
    return Inspected(tenant_id, device_id, kind, message_id, text, "utf-8", *problem)
