import random

import orjson
import pytest

from iot_lake.wire import ErrorCode, InspectedColumns, inspect_many, inspect_message
from streaming.simulator.fleet import Fleet

TOPIC = "tenant/acme/devices/env-1/telemetry"
GOOD = {
    "device_id": "env-1",
    "message_id": "env-1-1",
    "ts": 1_793_491_200_000,
    "metrics": {"temperature": 21.5},
}


def body(**changes):
    payload = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in payload.items() if v is not ...})


@pytest.mark.parametrize(
    ("topic", "payload", "code", "detail_names"),
    [
        ("not/a/topic", body(), ErrorCode.INVALID_TOPIC, "topic"),
        ("tenant/acme/devices/env-1/gossip", body(), ErrorCode.INVALID_TOPIC, "topic"),
        (TOPIC, b"\xff\xfe{", ErrorCode.INVALID_ENCODING, "payload"),
        (TOPIC, b'{"device_id": "env-1", ', ErrorCode.UNDECODABLE, "payload"),
        (TOPIC, b"[1, 2]", ErrorCode.NOT_AN_OBJECT, "payload"),
        (TOPIC, body(message_id=...), ErrorCode.MISSING_FIELD, "field 'message_id'"),
        (TOPIC, body(ts="1793491200000"), ErrorCode.WRONG_TYPE, "field 'ts'"),
        (TOPIC, body(ts=True), ErrorCode.WRONG_TYPE, "field 'ts'"),
        (TOPIC, body(metrics={"temperature": "hot"}), ErrorCode.WRONG_TYPE, "metrics.temperature"),
        (TOPIC, body(metrics={}), ErrorCode.INVALID_VALUE, "field 'metrics'"),
        (TOPIC, body(device_id="env-2"), ErrorCode.IDENTITY_MISMATCH, "field 'device_id'"),
        (TOPIC, body(pad="x" * 2000), ErrorCode.OVERSIZED, "at most 1024 bytes"),
        (
            "tenant/acme/devices/env-1/status",
            body(status="sleepy"),
            ErrorCode.INVALID_VALUE,
            "online or offline",
        ),
        ("tenant/acme/devices/env-1/events", body(event=""), ErrorCode.WRONG_TYPE, "field 'event'"),
    ],
    ids=[
        "short-topic",
        "unknown-kind",
        "not-utf8",
        "broken-json",
        "array",
        "missing-message-id",
        "ts-as-string",
        "ts-as-bool",
        "metric-as-string",
        "no-metrics",
        "spoofed-device",
        "oversized",
        "bad-status",
        "empty-event",
    ],
)
def test_refused_message_names_field_and_expected_form(topic, payload, code, detail_names):
    checked = inspect_message(topic, payload, max_payload_bytes=1024)
    assert checked.error_code == code
    assert detail_names in checked.error_detail
    assert "expected" in checked.error_detail or "required" in checked.error_detail


def test_valid_message_keeps_identity_and_exact_text():
    payload = body()
    checked = inspect_message(TOPIC, payload, max_payload_bytes=1024)
    assert checked.error_code is None
    assert (checked.tenant_id, checked.device_id, checked.message_kind) == (
        "acme",
        "env-1",
        "telemetry",
    )
    assert checked.message_id == "env-1-1"
    assert checked.payload.encode() == payload


def test_non_utf8_payload_is_kept_base64_with_its_topic_identity():
    checked = inspect_message(TOPIC, b"\xff\x00abc", max_payload_bytes=1024)
    assert checked.payload_encoding == "base64"
    assert checked.payload == "/wBhYmM="
    assert checked.device_id == "env-1"


def _mutations(rng: random.Random, payload: bytes) -> bytes:
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    choice = rng.randrange(10)
    if choice == 0:
        return payload[: rng.randrange(len(payload))]
    if choice == 5:  # a repeated key: the last one counts, for both checks
        key = rng.choice(["device_id", "message_id", "ts", "status", "event"])
        return (
            payload[:-1] + b',"' + key.encode() + b'":' + rng.choice([b'"x"', b"1", b"null"]) + b"}"
        )
    if choice == 6:
        return payload.replace(b":", b": ", 1).replace(b"1", b"1.0", 1)
    if choice == 1:
        key = rng.choice(list(parsed))
        parsed[key] = rng.choice([None, 1, 1.5, "x", [], {}, True])
    elif choice == 2:
        parsed.pop(rng.choice(list(parsed)))
    elif choice == 3 and "metrics" in parsed:
        parsed["metrics"][rng.choice(["a", "temperature"])] = rng.choice([None, "1", True, {}])
    elif choice == 4:
        parsed["device_id"] = parsed.get("device_id", "") + rng.choice(["", "x"])
    return orjson.dumps(parsed)


def test_fast_path_agrees_with_the_full_check_on_mutated_fleet_messages():
    """The hot loop may only accept what the full check accepts, with the same identity."""
    rng = random.Random(5)
    messages = list(Fleet(_fleet_spec()).messages(3000))
    topics = [m.topic for m in messages]
    payloads = [_mutations(rng, m.payload) if rng.random() < 0.5 else m.payload for m in messages]
    columns = InspectedColumns()
    invalid = inspect_many(topics, payloads, 64 * 1024, columns)
    expected = [inspect_message(t, p, 64 * 1024) for t, p in zip(topics, payloads, strict=True)]
    assert invalid == sum(e.error_code is not None for e in expected)
    assert columns.message_id == [e.message_id for e in expected]
    assert columns.column("device_id") == [e.device_id for e in expected]
    assert columns.column("tenant_id") == [e.tenant_id for e in expected]
    assert columns.column("message_kind") == [e.message_kind for e in expected]
    codes, details = columns.error_columns()
    assert codes == [e.error_code for e in expected]
    assert details == [e.error_detail for e in expected]
    assert 0 < invalid < len(messages)


def _fleet_spec():
    from streaming.simulator.fleet import FleetSpec

    return FleetSpec(devices=30, seed=3)


def test_transport_identity_must_match_the_topic_device():
    checked = inspect_message(TOPIC, body(), 1024, claimed_device="env-9")
    assert checked.error_code == ErrorCode.IDENTITY_MISMATCH
    assert (
        checked.error_detail == "partition key: expected 'env-1' (the topic's device), got 'env-9'"
    )
    columns = InspectedColumns()
    invalid = inspect_many([TOPIC, TOPIC], [body(), body()], 1024, columns, ["env-1", "env-9"])
    assert invalid == 1
    assert columns.error_columns()[0] == [None, ErrorCode.IDENTITY_MISMATCH]
