# ruff: noqa: E501  (one hostile input a line reads best unwrapped)
"""Hand-written hostile device input: (name, topic, payload, the error code it must get).

Every entry is something a broken, old or malicious firmware could send. The consumer must
keep each in raw with this code (None: valid) and go on. Topics are bytes where a file line
or a Kinesis record could carry any; MQTT brokers only pass UTF-8 topics.
"""

from __future__ import annotations

T = b"tenant/t1/devices/d-1/telemetry"
E = b"tenant/t1/devices/d-1/events"
S = b"tenant/t1/devices/d-1/status"
HEAD = b'{"device_id":"d-1","message_id":"m1","ts":1765100000000'


def telemetry(metrics: bytes, extra: bytes = b"") -> bytes:
    """A telemetry payload with these metrics (JSON text) and extra fields."""
    return HEAD + extra + b',"metrics":' + metrics + b"}"


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# fmt: off
HOSTILE: list[tuple[str, bytes | None, bytes, str | None]] = [
    # Valid messages in unusual but legal forms.
    ("canonical", T, telemetry(b'{"temp":21.5}'), None),
    ("spaces", T, b'{ "device_id" : "d-1", "message_id": "m1", "ts": 1, "metrics": {"t": 1} }', None),
    ("keys reordered", T, b'{"metrics":{"t":1},"ts":1,"message_id":"m1","device_id":"d-1"}', None),
    ("escaped id", T, b'{"device_id":"d\\u002d1","message_id":"m1","ts":1,"metrics":{"t":1}}', None),
    ("unicode message id", T, b'{"device_id":"d-1","message_id":"m\xc3\xa9","ts":1,"metrics":{"t":1}}', None),
    ("emoji in fw", T, telemetry(b'{"t":1}', b',"fw":"\xf0\x9f\x98\x80"'), None),
    ("negative zero", T, telemetry(b'{"t":-0.0}'), None),
    ("big finite", T, telemetry(b'{"t":1.7976931348623157e308}'), None),
    ("tiny", T, telemetry(b'{"t":5e-324}'), None),
    ("integer past 64 bits", T, telemetry(b'{"t":123456789012345678901234567890}'), None),
    ("exponent form", T, telemetry(b'{"t":1E+2}'), None),
    ("bom-free crlf inside", T, b'{"device_id":"d-1",\r"message_id":"m1","ts":1,"metrics":{"t":1}}', None),
    ("tab whitespace", T, b'{"device_id":"d-1",\t"message_id":"m1","ts":1,"metrics":{"t":1}}', None),
    ("units escaped", T, telemetry(b'{"t":1}', b',"units":{"t":"\\u00b0C"}'), None),
    ("type field", T, telemetry(b'{"t":1}', b',"type":"thermo"'), None),
    ("repeated key last wins", T, b'{"device_id":"x","device_id":"d-1","message_id":"m1","ts":1,"metrics":{"t":1}}', None),
    ("event with extras", E, HEAD + b',"event":"boot","reason":"wdt","n":3,"ok":true,"z":null}', None),
    ("status online", S, HEAD + b',"status":"online"}', None),
    ("metric name with colon", T, telemetry(b'{"env:temp":1}'), None),
    ("metric name 128 chars", T, telemetry(b'{"' + b"m" * 128 + b'":1}'), None),
    ("message id 128 chars", T, b'{"device_id":"d-1","message_id":"' + b"m" * 128 + b'","ts":1,"metrics":{"t":1}}', None),
    ("device id 128 chars", b"tenant/t1/devices/" + b"d" * 128 + b"/telemetry", b'{"device_id":"' + b"d" * 128 + b'","message_id":"m","ts":1,"metrics":{"t":1}}', None),
    # Bytes that are not UTF-8.
    ("three bad bytes", T, b"\xff\xfe\xfd", "invalid_encoding"),
    ("bad byte in units", T, telemetry(b'{"temp":21.5}', b',"units":{"temp":"\xff"}'), "invalid_encoding"),
    ("bad byte in fw", T, telemetry(b'{"t":1}', b',"fw":"1.\xff"'), "invalid_encoding"),
    ("bad byte in metric key", T, telemetry(b'{"te\xffmp":1}'), "invalid_encoding"),
    ("bad byte in message id", T, b'{"device_id":"d-1","message_id":"m\xfe","ts":1,"metrics":{"t":1}}', "invalid_encoding"),
    ("bad byte in device id", T, b'{"device_id":"d-\x801","message_id":"m","ts":1,"metrics":{"t":1}}', "invalid_encoding"),
    ("lone continuation", T, b"\x80", "invalid_encoding"),
    ("truncated two-byte", T, telemetry(b'{"t":1}', b',"fw":"\xc3"'), "invalid_encoding"),
    ("overlong slash", T, telemetry(b'{"t":1}', b',"fw":"\xc0\xaf"'), "invalid_encoding"),
    ("surrogate encoded", T, telemetry(b'{"t":1}', b',"fw":"\xed\xa0\x80"'), "invalid_encoding"),
    ("past U+10FFFF", T, telemetry(b'{"t":1}', b',"fw":"\xf4\x90\x80\x80"'), "invalid_encoding"),
    ("utf-16 payload", T, '{"device_id":"d-1"}'.encode("utf-16"), "invalid_encoding"),
    ("latin-1 payload", T, telemetry(b'{"t":1}', b',"fw":"caf\xe9"'), "invalid_encoding"),
    ("bad byte at end", T, telemetry(b'{"t":1}') + b"\xff", "invalid_encoding"),
    ("bad byte in topic", b"tenant/t1/devices/d\xff1/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    ("bad byte in tenant", b"tenant/t\xfe/devices/d-1/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    ("bad byte in kind", b"tenant/t1/devices/d-1/telemetr\xff", telemetry(b'{"t":1}'), "invalid_topic"),
    ("topic all bad bytes", b"\xff\xfe\xfd", telemetry(b'{"t":1}'), "invalid_topic"),
    ("bad topic and payload", b"\xff", b"\xff", "invalid_topic"),
    # Control characters.
    ("nul payload", T, b"\x00", "undecodable"),
    ("nul inside string", T, telemetry(b'{"t":1}', b',"fw":"a\x00b"'), "undecodable"),
    ("nul after object", T, telemetry(b'{"t":1}') + b"\x00", "undecodable"),
    ("escaped nul", T, telemetry(b'{"t":1}', b',"fw":"a\\u0000b"'), None),
    ("raw newline in string", T, telemetry(b'{"t":1}', b',"fw":"a\x0bb"'), "undecodable"),
    ("bell", T, b"\x07", "undecodable"),
    ("nul in topic", b"tenant/t1/devices/d\x001/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    ("cr in topic", b"tenant/t1/devices/d\r1/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    # Not JSON, or not an object.
    ("empty", T, b"", "undecodable"),
    ("whitespace", T, b"   ", "undecodable"),
    ("truncated", T, telemetry(b'{"t":1}')[:-5], "undecodable"),
    ("trailing comma", T, b'{"device_id":"d-1","message_id":"m","ts":1,"metrics":{"t":1},}', "undecodable"),
    ("single quotes", T, b"{'device_id':'d-1'}", "undecodable"),
    ("nan literal", T, telemetry(b'{"t":NaN}'), "undecodable"),
    ("infinity literal", T, telemetry(b'{"t":Infinity}'), "undecodable"),
    ("minus infinity literal", T, telemetry(b'{"t":-Infinity}'), "undecodable"),
    ("hex number", T, telemetry(b'{"t":0x10}'), "undecodable"),
    ("leading zero", T, telemetry(b'{"t":01}'), "undecodable"),
    ("two objects", T, telemetry(b'{"t":1}') * 2, "undecodable"),
    ("comment", T, b"// hi\n" + telemetry(b'{"t":1}'), "undecodable"),
    ("nested 5000", T, telemetry(_nested(5000)), "undecodable"),
    ("array 5000", T, b"[" * 5000 + b"]" * 5000, "undecodable"),
    ("integer of 5000 digits", T, telemetry(b'{"t":' + b"9" * 5000 + b"}"), "undecodable"),
    ("array payload", T, b"[1,2,3]", "not_an_object"),
    ("string payload", T, b'"hello"', "not_an_object"),
    ("number payload", T, b"42", "not_an_object"),
    ("null payload", T, b"null", "not_an_object"),
    ("true payload", T, b"true", "not_an_object"),
    # Fields missing or of the wrong type.
    ("empty object", T, b"{}", "missing_field"),
    ("no metrics", T, HEAD + b"}", "missing_field"),
    ("no ts", T, b'{"device_id":"d-1","message_id":"m","metrics":{"t":1}}', "missing_field"),
    ("no message id", T, b'{"device_id":"d-1","ts":1,"metrics":{"t":1}}', "missing_field"),
    ("no event", E, HEAD + b"}", "missing_field"),
    ("no status", S, HEAD + b"}", "missing_field"),
    ("ts string", T, b'{"device_id":"d-1","message_id":"m","ts":"1","metrics":{"t":1}}', "wrong_type"),
    ("ts float", T, b'{"device_id":"d-1","message_id":"m","ts":1.5,"metrics":{"t":1}}', "wrong_type"),
    ("ts bool", T, b'{"device_id":"d-1","message_id":"m","ts":true,"metrics":{"t":1}}', "wrong_type"),
    ("device id number", T, b'{"device_id":1,"message_id":"m","ts":1,"metrics":{"t":1}}', "wrong_type"),
    ("message id empty", T, b'{"device_id":"d-1","message_id":"","ts":1,"metrics":{"t":1}}', "wrong_type"),
    ("metrics list", T, telemetry(b"[1,2]"), "wrong_type"),
    ("metric string", T, telemetry(b'{"t":"21.5"}'), "wrong_type"),
    ("metric bool", T, telemetry(b'{"t":true}'), "wrong_type"),
    ("metric null", T, telemetry(b'{"t":null}'), "wrong_type"),
    ("metric object", T, telemetry(b'{"t":{"v":1}}'), "wrong_type"),
    ("units string", T, telemetry(b'{"t":1}', b',"units":"C"'), "wrong_type"),
    ("fw number", T, telemetry(b'{"t":1}', b',"fw":2'), "wrong_type"),
    ("status number", S, HEAD + b',"status":1}', "wrong_type"),
    ("event empty", E, HEAD + b',"event":""}', "wrong_type"),
    # Values outside their rules.
    ("metrics empty", T, telemetry(b"{}"), "invalid_value"),
    ("infinite metric", T, telemetry(b'{"t":1e999}'), "invalid_value"),
    ("minus infinite metric", T, telemetry(b'{"t":-1e999}'), "invalid_value"),
    ("integer past a double", T, telemetry(b'{"t":1' + b"0" * 400 + b"}"), "invalid_value"),
    ("infinite event field", E, HEAD + b',"event":"boot","v":1e999}', "invalid_value"),
    ("status unknown", S, HEAD + b',"status":"sleeping"}', "invalid_value"),
    ("metric name with space", T, telemetry(b'{"te mp":1}'), "invalid_value"),
    ("metric name with slash", T, telemetry(b'{"a/b":1}'), "invalid_value"),
    ("metric name empty", T, telemetry(b'{"":1}'), "invalid_value"),
    ("metric name 129 chars", T, telemetry(b'{"' + b"m" * 129 + b'":1}'), "invalid_value"),
    ("metric name unicode", T, telemetry(b'{"temp\xc3\xa9":1}'), "invalid_value"),
    ("message id 129 chars", T, b'{"device_id":"d-1","message_id":"' + b"m" * 129 + b'","ts":1,"metrics":{"t":1}}', "invalid_value"),
    # Topics outside the form or the id rule.
    ("no topic", None, telemetry(b'{"t":1}'), "invalid_topic"),
    ("empty topic", b"", telemetry(b'{"t":1}'), "invalid_topic"),
    ("unknown kind", b"tenant/t1/devices/d-1/shadow", telemetry(b'{"t":1}'), "invalid_topic"),
    ("extra level", b"tenant/t1/devices/d-1/telemetry/x", telemetry(b'{"t":1}'), "invalid_topic"),
    ("missing tenant", b"tenant//devices/d-1/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    ("wildcard device", b"tenant/t1/devices/+/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    ("hash device", b"tenant/t1/devices/#/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    ("space in device", b"tenant/t1/devices/d 1/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    ("dot in tenant", b"tenant/t.1/devices/d-1/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    ("device 129 chars", b"tenant/t1/devices/" + b"d" * 129 + b"/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    ("unicode device", b"tenant/t1/devices/d\xc3\xa9/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    ("sql in device", b"tenant/t1/devices/x';DROP TABLE raw;--/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    ("dollar topic", b"$SYS/broker/load", telemetry(b'{"t":1}'), "invalid_topic"),
    ("leading slash", b"/tenant/t1/devices/d-1/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    ("trailing slash", b"tenant/t1/devices/d-1/telemetry/", telemetry(b'{"t":1}'), "invalid_topic"),
    ("upper case kind", b"tenant/t1/devices/d-1/TELEMETRY", telemetry(b'{"t":1}'), "invalid_topic"),
    ("huge topic", b"tenant/t1/devices/" + b"d" * 100_000 + b"/telemetry", telemetry(b'{"t":1}'), "invalid_topic"),
    # Identity.
    ("other device", T, b'{"device_id":"d-2","message_id":"m","ts":1,"metrics":{"t":1}}', "identity_mismatch"),
    ("device case", T, b'{"device_id":"D-1","message_id":"m","ts":1,"metrics":{"t":1}}', "identity_mismatch"),
    ("device trailing space", T, b'{"device_id":"d-1 ","message_id":"m","ts":1,"metrics":{"t":1}}', "identity_mismatch"),
    ("repeated key other device", T, b'{"device_id":"d-1","device_id":"d-2","message_id":"m","ts":1,"metrics":{"t":1}}', "identity_mismatch"),
    # Size.
    ("oversized", T, telemetry(b'{"t":1}', b',"pad":"' + b"x" * 70_000 + b'"'), "oversized"),
    ("oversized garbage", T, b"\x01" * 70_000, "oversized"),
]
# fmt: on
