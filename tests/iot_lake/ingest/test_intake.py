"""Column-wise checking (ingest.intake, ingest.screen) against the one-message authority."""

import json
import random
import threading

import numpy as np
import orjson
import polars as pl
import pytest

from iot_lake.ingest.intake import HashIndex, TopicRegistry, inspect_chunk, parse_topics
from iot_lake.ingest.screen import KIND_CODES, screen
from iot_lake.ingest.wire import inspect_message, parse_topic
from streaming.simulator.fleet import Fleet, FleetSpec

MAX_BYTES = 64 * 1024


def _mutated(rng: random.Random, payload: bytes) -> bytes:
    """A fleet payload changed the ways devices get it wrong (or right, differently)."""
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    choice = rng.randrange(12)
    if choice == 0:
        return payload[: rng.randrange(len(payload))]
    if choice == 5:  # a repeated key: the last one counts, for every decoder
        key = rng.choice(["device_id", "message_id", "ts", "status", "event", "fw", "metrics"])
        return (
            payload[:-1] + b',"' + key.encode() + b'":' + rng.choice([b'"x"', b"1", b"null"]) + b"}"
        )
    if choice == 6:
        return payload.replace(b":", b": ", 1).replace(b"1", b"1.0", 1)
    if choice == 7:  # the same content, keys in another order
        return orjson.dumps(dict(reversed(list(parsed.items()))))
    if choice == 8:  # escapes and non-ASCII text in the ids
        parsed["message_id"] = rng.choice(['m"1', "m\\1", "mé-1", "m\u20281", ""])
    elif choice == 9 and "metrics" in parsed:
        parsed["metrics"][rng.choice(["ts", "device_id", "x"])] = rng.choice(
            [1e300, 10**20, -0.0, 12345678901234567890, "1"]
        )
    elif choice == 10:
        parsed["ts"] = rng.choice([2**63, -1, 1.0, True, "1", 10**19])
    elif choice == 1:
        key = rng.choice(list(parsed))
        parsed[key] = rng.choice([None, 1, 1.5, "x", [], {}, True])
    elif choice == 2:
        parsed.pop(rng.choice(list(parsed)))
    elif choice == 3 and "metrics" in parsed:
        parsed["metrics"][rng.choice(["a", "temperature"])] = rng.choice([None, "1", True, {}])
    elif choice == 4:
        parsed["device_id"] = parsed.get("device_id", "") + rng.choice(["", "x"])
    elif choice == 11:
        parsed["extra"] = rng.choice([{"nested": 1}, [1], "x", 2])
    # The standard library writes integers past 64 bits, which orjson refuses to.
    return json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()


def _fleet_chunk(seed: int, count: int) -> tuple[list[str], list[bytes]]:
    rng = random.Random(seed)
    messages = list(Fleet(FleetSpec(devices=30, seed=seed)).messages(count))
    topics = [m.topic for m in messages]
    payloads = [_mutated(rng, m.payload) if rng.random() < 0.5 else m.payload for m in messages]
    return topics, payloads


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_column_checks_agree_with_the_full_check_on_mutated_fleet_messages(seed):
    """Identities, message ids, verdicts and stored text equal inspect_message's, row by row."""
    topics, payloads = _fleet_chunk(seed, 3000)
    chunk = inspect_chunk(topics, payloads, MAX_BYTES, registry=TopicRegistry())
    expected = [inspect_message(t, p, MAX_BYTES) for t, p in zip(topics, payloads, strict=True)]
    assert chunk.message_id.to_list() == [e.message_id for e in expected]
    assert chunk.column("topic") == topics
    for name in ("tenant_id", "device_id", "message_kind"):
        assert chunk.column(name) == [getattr(e, name) for e in expected]
    codes, details = chunk.error_columns()
    assert codes == [e.error_code for e in expected]
    assert details == [e.error_detail for e in expected]
    assert chunk.payload.to_list() == [e.payload for e in expected]
    assert 0 < len(chunk.refused) < len(topics)


def _screened(topics: list[str], payloads: list[bytes]) -> tuple[np.ndarray, list[str | None]]:
    kinds = np.array([KIND_CODES[t.rsplit("/", 1)[1]] for t in topics], dtype=np.int8)
    devices = pl.Series([t.split("/")[3] for t in topics], dtype=pl.String)
    text = pl.Series([p.decode(errors="replace") for p in payloads], dtype=pl.String)
    accepted, message_id = screen(text, kinds, devices)
    return accepted, message_id.to_list()


def test_the_screen_vouches_only_for_valid_messages_and_for_nearly_all_canonical_ones():
    """Soundness on mutations; and the fast path is real: canonical fleet messages pass it."""
    topics, payloads = _fleet_chunk(7, 4000)
    accepted, message_ids = _screened(topics, payloads)
    for row in np.flatnonzero(accepted):
        verdict = inspect_message(topics[row], payloads[row], MAX_BYTES)
        assert verdict.error_code is None, payloads[row]
        assert verdict.message_id == message_ids[row]
    pristine = list(Fleet(FleetSpec(devices=30, seed=7)).messages(4000))
    valid = [
        m for m in pristine if inspect_message(m.topic, m.payload, MAX_BYTES).error_code is None
    ]
    accepted, _ = _screened([m.topic for m in valid], [m.payload for m in valid])
    assert accepted.mean() > 0.99


TELEMETRY = "tenant/t/devices/d-1/telemetry"
EVENTS = "tenant/t/devices/d-1/events"
STATUS = "tenant/t/devices/d-1/status"
HEAD = '{"device_id":"d-1","message_id":"m-1","ts":1700000000000'


@pytest.mark.parametrize(
    ("topic", "payload", "vouched"),
    [
        (TELEMETRY, HEAD + ',"metrics":{"x":1.5,"y":-2e-3}}', True),
        (TELEMETRY, HEAD + ',"type":"env","fw":"1.2","metrics":{"x":1},"units":{"x":"C"}}', True),
        (TELEMETRY, HEAD + ',"metrics":{"ts":1}}', True),  # a metric may be called ts
        (TELEMETRY, HEAD + ',"metrics":{}}', False),  # at least one metric
        (TELEMETRY, HEAD + ',"metrics":{"x":"1"}}', False),
        (TELEMETRY, HEAD + ',"fw":1,"metrics":{"x":1}}', False),
        (TELEMETRY, HEAD + ',"metrics":{"x":1},"units":{"x":1}}', False),
        (TELEMETRY, HEAD + ',"metrics":{"x":1},"fw":"late"}', False),  # another order: full check
        (TELEMETRY, HEAD + ', "metrics":{"x":1}}', False),  # whitespace: full check
        (EVENTS, HEAD + ',"event":"boot","reason":"power_on","n":3,"ok":true}', True),
        (EVENTS, HEAD + ',"event":"boot","event":""}', False),  # the repeat would win
        (EVENTS, HEAD + ',"event":"boot","device_id":"d-2"}', False),
        (EVENTS, HEAD + ',"event":"boot","n":1,"message_id":"m-2"}', False),
        (STATUS, HEAD + ',"status":"online","at":1,"ts":2}', False),
        (STATUS, HEAD + ',"status":"online","status":"offline"}', False),
        # keys that only start like a reserved one, or that one starts like, are extra fields
        (EVENTS, HEAD + ',"event":"boot","events":1,"t":2,"tss":3,"device_i":4,"":5}', True),
        (STATUS, HEAD + ',"status":"online","statu":"x","device_idx":null,"Ts":1}', True),
        (EVENTS, HEAD + ',"event":""}', False),
        (EVENTS, HEAD + ',"event":"boot","detail":{"a":1}}', False),
        (STATUS, HEAD + ',"status":"online"}', True),
        (STATUS, HEAD + ',"status":"asleep"}', False),
        (STATUS, '{"device_id":"d-2","message_id":"m-1","ts":1,"status":"online"}', False),
        (STATUS, '{"device_id":"d-1","message_id":"m\\"1","ts":1,"status":"online"}', False),
        (STATUS, '{"device_id":"d-1","message_id":"m-1","ts":1.0,"status":"online"}', False),
        (
            STATUS,
            '{"device_id":"d-1","message_id":"m-1","ts":9223372036854775808,"status":"online"}',
            False,
        ),
        (STATUS, '{"device_id":"d-1","message_id":"mé","ts":-5,"status":"offline"}', True),
        (EVENTS, HEAD + ',"status":"online"}', False),  # the kind comes from the topic
    ],
)
def test_the_screen_on_edge_cases(topic, payload, vouched):
    accepted, message_ids = _screened([topic], [payload.encode()])
    assert bool(accepted[0]) is vouched
    verdict = inspect_message(topic, payload.encode(), MAX_BYTES)
    if vouched:
        assert verdict.error_code is None
        assert message_ids[0] == verdict.message_id


def topic_variants() -> list[str]:
    """Topics of TOPIC_FORM and near misses: every part missing, empty, extra or altered."""
    good = ["tenant", "acme", "devices", "env-1", "telemetry"]
    variants = ["", "/", "tenant", "tenant/acme/devices/env-1", "x/" + "/".join(good)]
    kinds = ["telemetry", "events", "status", "Telemetry", "status ", "gossip", ""]
    variants += ["/".join([*good[:4], kind]) for kind in kinds]
    for index in range(5):
        for replacement in ["", " ", "a/b", "é", "\n", "devices", "tenant", "acme"]:
            parts = list(good)
            parts[index] = replacement
            variants.append("/".join(parts))
    variants += ["/".join(good) + suffix for suffix in ["/", "/x", "\n", " "]]
    variants += ["/" + "/".join(good), "tenant//devices/env-1/status", "tenant/a/devices//status"]
    return variants


def test_topics_parsed_in_bulk_as_one_at_a_time():
    topics = topic_variants()
    parsed = parse_topics(pl.Series(topics, dtype=pl.String)).rows()
    assert [claimed or (None, None, None) for claimed in map(parse_topic, topics)] == parsed
    assert sum(row[0] is not None for row in parsed) >= 5  # the valid ones are there too


def test_topics_resolve_across_chunks_and_a_hash_match_is_confirmed_by_the_text():
    registry = TopicRegistry()
    first, second = "tenant/a/devices/d-1/status", "tenant/a/devices/d-2/events"
    ids, kinds, devices = registry.resolve(pl.Series([first, None, first]))
    assert ids[0] == ids[2] != ids[1]
    assert kinds.tolist() == [KIND_CODES["status"], -1, KIND_CODES["status"]]
    assert devices.to_list() == ["d-1", None, "d-1"]
    # Pretend `second` hashes like `first` (a collision): it must still get its own id.
    second_hash = pl.Series([second]).hash(seed=registry_seed()).to_numpy()
    registry._index.add(second_hash, np.array([ids[0]], dtype=np.int32))
    for _ in range(2):  # registered on first sight, then found by its text
        again, _, devices = registry.resolve(pl.Series([second, first, None]))
        assert again[0] not in (ids[0], ids[1])
        assert again[1:].tolist() == [ids[0], ids[1]]
        assert registry.identity(again[0]) == (second, "a", "d-2", "events")
        assert devices.to_list() == ["d-2", "d-1", None]
    assert registry.size == 3


def test_the_registry_is_one_chunk_again_once_a_chunk_brings_no_new_topic():
    """Gathering identities from several chunks copies their text: only while topics arrive."""
    registry = TopicRegistry()
    chunks = [[f"tenant/a/devices/d-{i}/status" for i in range(j, j + 3)] for j in (0, 3, 6)]
    for chunk in chunks:
        registry.resolve(pl.Series(chunk))
    assert registry.identity_frame().n_chunks() == 3
    ids, _, devices = registry.resolve(pl.Series(chunks[1]))
    assert registry.identity_frame().n_chunks() == 1
    assert ids.tolist() == [3, 4, 5]
    assert devices.to_list() == ["d-3", "d-4", "d-5"]
    assert registry.identity_frame().get_column("device_id").to_list()[3:6] == devices.to_list()


def test_hash_index_finds_every_hash_through_shared_slots_and_growth():
    rng = np.random.default_rng(5)
    # Hashes sharing their low bits land in the same slot and probe past each other.
    hashes = np.unique(rng.integers(0, 2**63, 3000, dtype=np.uint64) << np.uint64(12))
    index = HashIndex()
    for start in range(0, len(hashes), 700):  # grows several times
        part = hashes[start : start + 700]
        index.add(part, np.arange(start, start + len(part), dtype=np.int32))
    assert index.find(hashes).tolist() == list(range(len(hashes)))
    unknown = hashes[:50] + np.uint64(1)
    assert index.find(unknown).tolist() == [-1] * 50
    # A hash seen before, or twice in one call, keeps its first id and is not placed again.
    fresh = hashes[0] + np.uint64(1)
    again = np.array([hashes[0], fresh, fresh], dtype=np.uint64)
    placed = index.add(again, np.array([99_997, 99_998, 99_999], dtype=np.int32))
    assert placed.tolist() == [False, True, False]
    assert index.find(again).tolist() == [0, 99_998, 99_998]


def registry_seed() -> int:
    from iot_lake.ingest import intake

    return intake._HASH_SEED


def test_threads_sharing_a_registry_each_get_the_identity_of_their_own_topics():
    """Consumers in one process share the registry; ids must stay aligned with topics."""
    registry = TopicRegistry()
    topics = [f"tenant/t/devices/d-{i}/status" for i in range(400)]
    chunks = [pl.Series(topics[i::3] + topics[: 50 * (i + 1)]) for i in range(6)]
    errors: list[BaseException] = []

    def resolve(chunk: pl.Series) -> None:
        try:
            for _ in range(20):
                ids, _, devices = registry.resolve(chunk)
                named = [registry.identity(i)[0] for i in ids]
                assert named == chunk.to_list()
                assert devices.to_list() == [t.split("/")[3] for t in chunk.to_list()]
        except BaseException as exc:  # reported below, from the main thread
            errors.append(exc)

    threads = [threading.Thread(target=resolve, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert registry.size == len(topics)
