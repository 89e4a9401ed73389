import orjson
import pytest

from iot_lake.ingest.intake import inspect_chunk
from iot_lake.ingest.wire import ErrorCode, inspect_message

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


def test_transport_identity_must_match_the_topic_device():
    checked = inspect_message(TOPIC, body(), 1024, claimed_device="env-9")
    assert checked.error_code == ErrorCode.IDENTITY_MISMATCH
    assert (
        checked.error_detail == "partition key: expected 'env-1' (the topic's device), got 'env-9'"
    )
    chunk = inspect_chunk([TOPIC, TOPIC], [body(), body()], 1024, ["env-1", "env-9"])
    assert list(chunk.refused) == [1]
    assert chunk.error_columns()[0] == [None, ErrorCode.IDENTITY_MISMATCH]
