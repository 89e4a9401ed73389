"""No bytes a device can send stop the checks or the consumer (issue 29, contract 1).

Generated input (hypothesis) and the hand-written corpus go through the column path
(iot_lake.ingest.intake.inspect_chunk, as lists and, where the bytes are text, as polars columns
the way the file source splits them) and through the one-message authority
(iot_lake.ingest.wire.inspect_message): the two must agree row by row, and a consumer fed a file
of such lines must land every line, exactly as received, and finish.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_lake.ingest.intake import InspectedChunk, TopicRegistry, inspect_chunk
from iot_lake.ingest.wire import NOT_UTF8_TOPIC_PREFIX, decode_topic, inspect_message
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.tables import Lake
from iot_lake.settings import BatchLimits, IdentityRules
from streaming.consumer import Consumer, ConsumerOptions
from streaming.landing import LandingWriter
from streaming.sources.file import FileSource
from tests.iot_lake.ingest.hostile_corpus import HOSTILE

MAX_BYTES = 2048
DEVICES = ["d-1", "d-2"]
BAD_BYTES = [
    b"\xff",
    b"\xfe\xfd",
    b"\xc3",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\x80",
    b"\xf4\x90\x80\x80",
]
ODD_BYTES = [*BAD_BYTES, b"\x00", b"\r", b"\t", b"\x1f", b"\\", b'"', b"\xc3\xa9"]
MARK = "\u2063MARK\u2063"  # where a generated string gets odd bytes spliced in

Row = tuple[object, ...]


def chunk_rows(chunk: InspectedChunk) -> list[Row]:
    """What raw_telemetry stores of each message, from the column path."""
    codes, details = chunk.error_columns()
    encodings = [
        chunk.refused[row].payload_encoding if row in chunk.refused else "utf-8"
        for row in range(len(chunk))
    ]
    return list(
        zip(
            chunk.column("topic"),
            chunk.column("tenant_id"),
            chunk.column("device_id"),
            chunk.column("message_kind"),
            chunk.message_id.to_list(),
            chunk.payload.to_list(),
            encodings,
            codes,
            details,
            strict=True,
        )
    )


def authority_rows(
    messages: list[tuple[bytes | None, bytes]],
    keys: list[str | None] | None = None,
    identity: IdentityRules | None = None,
) -> list[Row]:
    """The same, message by message, from inspect_message."""
    rows = []
    for index, (topic, payload) in enumerate(messages):
        key = None if keys is None else keys[index]
        verdict = inspect_message(topic, payload, MAX_BYTES, key, identity or IdentityRules())
        stored_topic, _ = decode_topic(topic)
        rows.append(
            (
                stored_topic,
                verdict.tenant_id,
                verdict.device_id,
                verdict.message_kind,
                verdict.message_id,
                verdict.payload,
                verdict.payload_encoding,
                verdict.error_code,
                verdict.error_detail,
            )
        )
    return rows


def spliced(text: str, draw_bytes: bytes) -> bytes:
    """`text` as UTF-8 with every MARK replaced by `draw_bytes`."""
    return text.encode().replace(MARK.encode(), draw_bytes)


odd_bytes = st.lists(st.sampled_from(ODD_BYTES), min_size=1, max_size=3).map(b"".join)
names = st.one_of(
    st.sampled_from(["temp", "humidity", "env:t", "x" * 128, "x" * 129, "", "a b", "é"]),
    st.text(max_size=6),
    st.just(MARK),
    st.just("t" + MARK),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["1e999", "-1e999", "1" + "0" * 400, "NaN", "1.5", "true", "null", '"1"']),
)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """A payload near the wire format: valid, or wrong in the ways firmware gets it wrong."""
    kind = draw(st.sampled_from(["telemetry", "events", "status", "raw", "nested"]))
    if kind == "raw":
        return draw(st.binary(max_size=200))
    if kind == "nested":
        depth = draw(st.integers(min_value=1, max_value=3000))
        return (
            b'{"device_id":"d-1","message_id":"m","ts":1,"metrics":'
            + b'{"a":' * depth
            + b"1"
            + b"}" * depth
            + b"}"
        )
    device = draw(st.sampled_from([*DEVICES, MARK, "d-1" + MARK]))
    message_id = draw(st.sampled_from(["m1", "m" * 129, MARK, "é", ""]))
    head = {"device_id": device, "message_id": message_id, "ts": draw(st.integers(-(2**64), 2**64))}
    if kind == "telemetry":
        metrics = draw(st.dictionaries(names, numbers, max_size=3))
        units = draw(st.dictionaries(names, st.sampled_from(["C", MARK, "°C"]), max_size=2))
        body = {**head, "fw": draw(st.sampled_from(["1.0", MARK])), "metrics": "METRICS"}
        if units:
            body["units"] = units
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        inner = ",".join(f"{json.dumps(k, ensure_ascii=False)}:{v}" for k, v in metrics.items())
        text = text.replace('"METRICS"', "{" + inner + "}")
    elif kind == "events":
        body = {**head, "event": draw(st.sampled_from(["boot", "", MARK])), "v": draw(numbers)}
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False).replace('"v":"', '"v":')
    else:
        body = {**head, "status": draw(st.sampled_from(["online", "offline", "x", MARK]))}
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    payload = spliced(text, draw(odd_bytes))
    if draw(st.booleans()):  # odd bytes anywhere at all
        at = draw(st.integers(min_value=0, max_value=len(payload)))
        payload = payload[:at] + draw(odd_bytes) + payload[at:]
    if draw(st.integers(min_value=0, max_value=20)) == 0:
        payload += b" " * MAX_BYTES  # oversized
    return payload


@st.composite
def topics(draw: st.DrawFn) -> bytes | None:
    """A topic as a file line or a Kinesis record could carry it."""
    shape = draw(st.integers(min_value=0, max_value=5))
    if shape == 0:
        return None
    if shape == 1:
        return draw(st.binary(max_size=60))
    device = draw(st.sampled_from([*DEVICES, "d 1", "x" * 129, MARK]))
    kind = draw(st.sampled_from(["telemetry", "events", "status", "other"]))
    return spliced(
        f"tenant/t{MARK if shape == 2 else '1'}/devices/{device}/{kind}", draw(odd_bytes)
    )


messages = st.lists(st.tuples(topics(), payloads()), min_size=1, max_size=25)
relaxed = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@relaxed
@given(batch=messages, with_keys=st.booleans(), data=st.data())
def test_the_column_path_agrees_with_the_one_message_path_on_any_bytes(batch, with_keys, data):
    keys = None
    if with_keys:  # Kinesis partition keys: the device the transport vouches for
        keys = data.draw(
            st.lists(
                st.sampled_from([None, *DEVICES, "é"]), min_size=len(batch), max_size=len(batch)
            )
        )
    topics_in = [topic for topic, _ in batch]
    payloads_in = [payload for _, payload in batch]
    chunk = inspect_chunk(topics_in, payloads_in, MAX_BYTES, keys, registry=TopicRegistry())
    assert chunk_rows(chunk) == authority_rows(batch, keys)


@relaxed
@given(batch=messages)
def test_text_columns_agree_with_the_one_message_path(batch):
    """The file source's fast path: lines that are UTF-8 arrive as polars string columns."""
    text = [
        (topic, payload)
        for topic, payload in batch
        if topic is not None and _is_utf8(topic) and _is_utf8(payload)
    ]
    if not text:
        return
    topic_column = pl.Series([t.decode() for t, _ in text], dtype=pl.String)
    payload_column = pl.Series([p.decode() for _, p in text], dtype=pl.String)
    chunk = inspect_chunk(topic_column, payload_column, MAX_BYTES, registry=TopicRegistry())
    assert chunk_rows(chunk) == authority_rows(text)


def test_a_stricter_id_rule_agrees_on_both_paths():
    strict = IdentityRules(id_max_chars=3, id_characters="a-z0-9-", message_id_max_chars=2)
    batch = [(topic, payload) for _, topic, payload, _ in HOSTILE if topic is not None]
    registry = TopicRegistry(strict)
    chunk = inspect_chunk(
        [t for t, _ in batch], [p for _, p in batch], MAX_BYTES, registry=registry
    )
    rows = chunk_rows(chunk)
    assert rows == authority_rows(batch, identity=strict)
    details = {row[-1] for row in rows}
    assert "topic: device id expected 1 to 3 characters of [a-z0-9-], got 'd-1'" not in details
    assert "field 'message_id': expected at most 2 characters, got 3" not in details
    assert any("expected 1 to 3 characters of [a-z0-9-]" in (d or "") for d in details)


@pytest.mark.parametrize(
    ("topic", "payload", "code"),
    [(topic, payload, code) for _, topic, payload, code in HOSTILE],
    ids=[name for name, *_ in HOSTILE],
)
def test_the_hostile_corpus_gets_its_error_code(topic, payload, code):
    verdict = inspect_message(topic, payload, 64 * 1024)
    assert verdict.error_code == code, verdict.error_detail
    if code is not None:
        assert verdict.error_detail.split(":")[0] in {
            "topic",
            "payload",
        } or verdict.error_detail.startswith("field '"), "a refusal names the field"


def test_the_hostile_corpus_agrees_on_both_paths():
    batch = [(topic, payload) for _, topic, payload, _ in HOSTILE]
    chunk = inspect_chunk(
        [t for t, _ in batch], [p for _, p in batch], 64 * 1024, registry=TopicRegistry()
    )
    assert [row[-2] for row in chunk_rows(chunk)] == [code for *_, code in HOSTILE]


def test_bytes_that_are_not_utf8_are_stored_base64_and_decode_back():
    batch = [(t, p) for _, t, p, code in HOSTILE if code in ("invalid_encoding", "invalid_topic")]
    chunk = inspect_chunk(
        [t for t, _ in batch], [p for _, p in batch], 64 * 1024, registry=TopicRegistry()
    )
    for (topic, payload), row in zip(batch, chunk_rows(chunk), strict=True):
        stored_topic, _, _, _, _, stored_payload, encoding, _, _ = row
        assert _received(stored_payload, encoding) == payload
        if topic is not None and not _is_utf8(topic):
            assert stored_topic.startswith(NOT_UTF8_TOPIC_PREFIX)
            assert base64.b64decode(stored_topic.removeprefix(NOT_UTF8_TOPIC_PREFIX)) == topic


# A file line: any bytes but a newline (the framing), often `topic<TAB>payload`.
line_bytes = st.binary(max_size=120).map(lambda b: b.replace(b"\n", b""))
framed_lines = st.one_of(
    line_bytes,
    st.tuples(topics(), payloads()).map(
        lambda m: (m[0] or b"").replace(b"\n", b"") + b"\t" + m[1].replace(b"\n", b"")
    ),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(framed_lines, min_size=1, max_size=60))
def test_a_consumer_lands_every_line_of_any_bytes_exactly_as_received(lines):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        lake = Lake(str(Path(folder) / "lake"))
        options = ConsumerOptions(batch=BatchLimits(max_records=17), stats_interval_s=3600)
        source = FileSource(path)
        stats = Consumer(source, LandingWriter(lake, "test"), options, report=lambda _: None).run()
        raw = lake.read(RAW_TELEMETRY)
    assert stats.messages == raw.height == len(lines)
    assert sorted(_line_of(row) for row in raw.iter_rows(named=True)) == sorted(
        line.removesuffix(b"\r") for line in lines
    )


def test_the_cli_consumer_exits_0_on_the_hostile_corpus_and_lands_every_line(tmp_path):
    lines = [
        (topic.replace(b"\n", b"") + b"\t" if topic is not None else b"")
        + payload.replace(b"\n", b" ")
        for _, topic, payload, _ in HOSTILE
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    done = subprocess.run(
        [sys.executable, "-m", "iot_lake.app.entry", "consume", "--source", f"file:{path}",
         "--lake-root", str(tmp_path / "lake"), "--stats-interval-s", "3600"],
        capture_output=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    raw = Lake(str(tmp_path / "lake")).read(RAW_TELEMETRY)
    assert raw.height == len(HOSTILE)
    assert sorted(_line_of(row) for row in raw.iter_rows(named=True)) == sorted(lines)


def _line_of(row: dict[str, object]) -> bytes:
    """The file line a raw row was landed from (its CR framing aside)."""
    payload = _received(str(row["payload"]), str(row["payload_encoding"]))
    topic = row["topic"]
    if topic is None:
        return payload
    assert isinstance(topic, str)
    detail = str(row["error_detail"] or "")
    if detail.startswith("topic: expected UTF-8 text"):
        return base64.b64decode(topic.removeprefix(NOT_UTF8_TOPIC_PREFIX)) + b"\t" + payload
    return topic.encode() + b"\t" + payload


def _received(payload: str, encoding: str) -> bytes:
    return base64.b64decode(payload) if encoding == "base64" else payload.encode()


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True
