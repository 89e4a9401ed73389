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
columns (iot_lake.ingest.intake): canonical payloads are recognised in bulk (ingest.screen) and
every other message comes here.
"""

from __future__ import annotations

import base64
import json
import math
import sys
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from iot_lake.settings import IdentityRules

# How raw_telemetry stores a topic whose bytes are not UTF-8 (see `decode_topic`).
NOT_UTF8_TOPIC_PREFIX = "base64:"
DEFAULT_IDENTITY = IdentityRules()
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


def parse_topic(topic: str | None, identity: IdentityRules = DEFAULT_IDENTITY) -> Topic | None:
    """Split a topic into tenant, device and kind; None when it is not of TOPIC_FORM.

    The tenant and device ids must follow `identity` (a topic naming an id outside the rule
    claims no identity at all).
    """
    claimed = claim_topic(topic, identity)
    return claimed if isinstance(claimed, Topic) else None


def claim_topic(topic: str | None, identity: IdentityRules = DEFAULT_IDENTITY) -> Topic | str:
    """The identity a topic claims, or why it claims none (an error detail)."""
    parts = (topic or "").split("/")
    if (
        len(parts) != 5
        or parts[0] != "tenant"
        or parts[2] != "devices"
        or not parts[1]
        or not parts[3]
        or parts[4] not in MESSAGE_KINDS
    ):
        return f"topic: expected {TOPIC_FORM}, got {topic!r}"
    for name, value in (("tenant", parts[1]), ("device", parts[3])):
        if not identity.is_id(value):
            return f"topic: {name} id expected {identity.id_form}, got {value!r}"
    return Topic(parts[1], parts[3], parts[4])


def decode_topic(topic: str | bytes | None) -> tuple[str | None, int | None]:
    """A received topic as raw_telemetry stores it, and its first byte that is not UTF-8.

    Topics are text (MQTT brokers refuse others), but a file line or a Kinesis record can
    carry any bytes: those are kept, base64-encoded after NOT_UTF8_TOPIC_PREFIX, and the
    message is refused as `invalid_topic`. Nothing is replaced, so nothing is lost.
    """
    if not isinstance(topic, bytes):
        return topic, None
    try:
        return topic.decode(), None
    except UnicodeDecodeError as exc:
        return NOT_UTF8_TOPIC_PREFIX + base64.b64encode(topic).decode(), exc.start


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


def _common_error(body: dict[str, Any], identity: IdentityRules) -> tuple[str, str] | None:
    device_id = body.get("device_id")
    message_id = body.get("message_id")
    ts = body.get("ts")
    problem = (
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
    if problem is None and len(str(message_id)) > identity.message_id_max_chars:
        return (
            ErrorCode.INVALID_VALUE,
            f"field 'message_id': expected at most {identity.message_id_max_chars} characters, "
            f"got {len(str(message_id))}",
        )
    return problem


def _not_finite(name: str, value: object) -> tuple[str, str] | None:
    """A number that would poison a sum or a mean (1e999 decodes to infinity).

    An integer too large for a float (past about 1.8e308) is one too: silver reads every
    reading as a double.
    """
    if isinstance(value, float) and not math.isfinite(value):
        shown = str(value)
    elif isinstance(value, int) and abs(value) > _LARGEST_FLOAT_INTEGER:
        shown = f"an integer of {value.bit_length()} bits"
    else:
        return None
    return ErrorCode.INVALID_VALUE, f"field '{name}': expected a finite number, got {shown}"


_LARGEST_FLOAT_INTEGER = int(sys.float_info.max)


def _telemetry_error(body: dict[str, Any], identity: IdentityRules) -> tuple[str, str] | None:
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
        if not identity.is_id(name):
            return (
                ErrorCode.INVALID_VALUE,
                f"field 'metrics': expected metric names of {identity.id_form}, got {name!r}",
            )
        if not _is_number(value):
            return (
                ErrorCode.WRONG_TYPE,
                f"field 'metrics.{name}': expected a number, got {_type_name(value)}",
            )
        problem = _not_finite(f"metrics.{name}", value)
        if problem:
            return problem
    units = body.get("units")
    if units is not None and not isinstance(units, dict):
        return ErrorCode.WRONG_TYPE, f"field 'units': expected an object, got {_type_name(units)}"
    fw = body.get("fw")
    if fw is not None and not isinstance(fw, str):
        return ErrorCode.WRONG_TYPE, f"field 'fw': expected a string, got {_type_name(fw)}"
    return None


def _events_error(body: dict[str, Any], identity: IdentityRules) -> tuple[str, str] | None:
    event = body.get("event")
    return _field_error(
        body, "event", "a non-empty string", isinstance(event, str) and bool(event)
    ) or _extra_fields_error(body)


def _status_error(body: dict[str, Any], identity: IdentityRules) -> tuple[str, str] | None:
    status = body.get("status")
    problem = _field_error(body, "status", "a string", isinstance(status, str))
    if problem is None and status not in STATUS_VALUES:
        return (
            ErrorCode.INVALID_VALUE,
            f"field 'status': expected online or offline, got {status!r}",
        )
    return problem or _extra_fields_error(body)


def _extra_fields_error(body: dict[str, Any]) -> tuple[str, str] | None:
    """An event's or status's own fields hold no infinite number (silver keeps them)."""
    return next(filter(None, (_not_finite(name, value) for name, value in body.items())), None)


_KIND_CHECKS = {"telemetry": _telemetry_error, "events": _events_error, "status": _status_error}


@lru_cache(maxsize=1_000_000)
def topic_of(
    topic: str | bytes | None, identity: IdentityRules = DEFAULT_IDENTITY
) -> tuple[Topic | str, str | None]:
    """The identity a received topic claims (or why none), and its stored text; cached.

    Sources that read bytes (files, Kinesis) pass them undecoded: the cache decodes each
    distinct topic once instead of once per message.
    """
    text, bad_byte = decode_topic(topic)
    if bad_byte is not None:
        return (
            f"topic: expected UTF-8 text of the form {TOPIC_FORM}, byte {bad_byte} is not "
            f"UTF-8 (kept base64-encoded after {NOT_UTF8_TOPIC_PREFIX!r})",
            text,
        )
    return claim_topic(text, identity), text


def inspect_message(
    topic: str | bytes | None,
    raw: bytes,
    max_payload_bytes: int,
    claimed_device: str | None = None,
    identity: IdentityRules = DEFAULT_IDENTITY,
) -> Inspected:
    """Check one received message; never raises, always returns what to store in raw.

    `claimed_device` is the identity the transport vouches for besides the topic (a Kinesis
    partition key); a message whose topic names another device goes no further. `identity`
    is the form ids and metric names must have.
    """
    claimed, _ = topic_of(topic, identity)
    try:
        text, encoding, bad_byte = raw.decode(), "utf-8", None
    except UnicodeDecodeError as exc:
        text, encoding, bad_byte = base64.b64encode(raw).decode(), "base64", exc.start
    if not isinstance(claimed, Topic):
        return Inspected(
            None, None, None, None, text, encoding, ErrorCode.INVALID_TOPIC, claimed
        )  # fmt: skip
    tenant_id, device_id, kind = claimed
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
        body = _parse_json(raw)
    except ValueError as exc:
        return Inspected(
            tenant_id, device_id, kind, None, text, encoding, ErrorCode.UNDECODABLE,
            f"payload: expected JSON, {exc}",
        )  # fmt: skip
    return _explain(tenant_id, device_id, kind, text, body, identity)


def _parse_json(raw: bytes) -> object:
    """The payload's JSON, as any JSON parser reads it; ValueError when it is not JSON.

    orjson refuses numbers it cannot hold (1e999, integers past 64 bits) as undecodable,
    though they are valid JSON: those payloads are parsed again by the standard library,
    so the checks can name the field (`invalid_value` for a number that is not finite).
    NaN and Infinity, which only the standard library takes, are not JSON and stay refused.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise ValueError(str(exc)) from None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _explain(
    tenant_id: str | None,
    device_id: str,
    kind: str,
    text: str,
    body: object,
    identity: IdentityRules,
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
    problem = _common_error(body, identity) or _KIND_CHECKS[kind](body, identity)
    if problem is None and body["device_id"] != device_id:
        problem = (
            ErrorCode.IDENTITY_MISMATCH,
            f"field 'device_id': expected {device_id!r} (the topic's device), "
            f"got {body['device_id']!r}",
        )
    if problem is None:
        return Inspected(tenant_id, device_id, kind, message_id, text, "utf-8", None, None)
    return Inspected(tenant_id, device_id, kind, message_id, text, "utf-8", *problem)
