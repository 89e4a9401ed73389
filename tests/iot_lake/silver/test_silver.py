from datetime import UTC, date, datetime, timedelta

import duckdb
import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from iot_lake.ingest.wire import topic_for
from iot_lake.lake.catalog import DEVICE_EVENTS, TELEMETRY, empty_frame
from iot_lake.silver.decode import decode_device_events, decode_telemetry, event_partitions_touched
from iot_lake.silver.metrics import metric_spec
from iot_lake.silver.payloads import device_ts
from streaming.batch import RawBatch
from streaming.simulator.fleet import Fleet, FleetSpec

SKEW = timedelta(minutes=5)
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
LATENCY = timedelta(milliseconds=150)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(t: datetime) -> int:
    return (t - EPOCH) // timedelta(milliseconds=1)


def message(kind, fields, *, message_id="env-1-1", ts=T0, device="env-1", tenant="acme"):
    """A (topic, payload) pair as a device publishes it."""
    body = {"device_id": device, "message_id": message_id, "ts": ms(ts), **fields}
    return topic_for(tenant, device, kind), orjson.dumps(body)


def land(*received):
    """raw_telemetry rows for (topic, payload, ingest time) triples, checked like the consumer."""
    batch = RawBatch("test", "test-consumer", 64 * 1024)
    for position, (topic, payload, ingest) in enumerate(received):
        batch.add(topic, payload, (ingest - EPOCH) // timedelta(microseconds=1), str(position))
    return pl.from_arrow(batch.to_arrow())


def at(pair, ingest):
    return (*pair, ingest)


def expected(spec, rows):
    """Rows in the table's schema; event_hour follows each row's event_time."""
    hours = [{**row, "event_hour": row["event_time"].hour} for row in rows]
    return pl.DataFrame(hours, schema=empty_frame(spec).schema)


def reading(**columns):
    """A telemetry row: env-1's first message at T0, received 150 ms later, plus `columns`."""
    row = {
        "tenant_id": "acme",
        "device_id": "env-1",
        "device_type": "env_sensor",
        "metric": None,
        "value": None,
        "unit": None,
        "reported_value": None,
        "reported_unit": None,
        "event_time": T0,
        "event_date": date(2026, 11, 1),
        "device_time": T0,
        "ingest_time": T0 + LATENCY,
        "time_source": "device",
        "message_id": "env-1-1",
        "firmware": "1.4.2",
        "ingest_date": date(2026, 11, 1),
    }
    assert set(columns) <= set(row)
    return {**row, **columns}


def env_reading(metrics, units=None, **kwargs):
    fields = {"type": "env_sensor", "fw": "1.4.2", "metrics": metrics}
    if units is not None:
        fields["units"] = units
    return message("telemetry", fields, **kwargs)


def assert_rows(actual, expected_frame):
    assert_frame_equal(actual, expected_frame, check_row_order=False)


def test_one_row_per_metric_with_units_normalized():
    raw = land(
        at(
            env_reading(
                {"temperature": 69.8, "humidity": 41, "co2": 412.5},
                {"temperature": "degF", "humidity": "pct", "co2": "ppm"},
            ),
            T0 + LATENCY,
        )
    )
    want = [
        reading(
            metric="temperature",
            value=21.0,
            unit="degC",
            reported_value=69.8,
            reported_unit="degF",
        ),
        reading(
            metric="humidity", value=41.0, unit="pct", reported_value=41.0, reported_unit="pct"
        ),
        reading(metric="co2", value=412.5, unit="ppm", reported_value=412.5, reported_unit="ppm"),
    ]
    assert_rows(decode_telemetry(raw, SKEW), expected(TELEMETRY, want))


def test_missing_and_unknown_units():
    raw = land(
        at(
            env_reading(
                {"temperature": 500.0, "pressure": 1013.2, "co2": 400}, {"temperature": "R"}
            ),
            T0 + LATENCY,
        )
    )
    want = [
        reading(
            metric="temperature", value=500.0, unit="R", reported_value=500.0, reported_unit="R"
        ),
        reading(metric="pressure", value=1013.2, unit="hPa", reported_value=1013.2),
        reading(metric="co2", value=400.0, reported_value=400.0),
    ]
    assert_rows(decode_telemetry(raw, SKEW), expected(TELEMETRY, want))


@pytest.mark.parametrize(
    ("device_ahead", "time_source"),
    [
        (timedelta(minutes=4, seconds=59), "device"),
        (timedelta(minutes=-5), "device"),
        (timedelta(minutes=5, milliseconds=1), "ingest"),
        (timedelta(hours=-3), "ingest"),
    ],
    ids=["ahead-within", "behind-at-tolerance", "ahead-beyond", "behind-beyond"],
)
def test_event_time_rule(device_ahead, time_source):
    ingest = T0 + LATENCY
    device_time = ingest + device_ahead
    raw = land(at(env_reading({"humidity": 40}, ts=device_time), ingest))
    event_time = device_time if time_source == "device" else ingest
    want = reading(
        metric="humidity",
        value=40.0,
        reported_value=40.0,
        unit="pct",
        device_time=device_time,
        event_time=event_time,
        event_date=event_time.date(),
        time_source=time_source,
    )
    assert_rows(decode_telemetry(raw, SKEW), expected(TELEMETRY, [want]))


def test_late_data_lands_in_its_old_event_date():
    sampled = datetime(2026, 10, 30, 23, 59, 50, tzinfo=UTC)
    flushed = datetime(2026, 11, 1, 0, 0, 5, tzinfo=UTC)
    raw = land(
        at(env_reading({"humidity": 40}, message_id="env-1-7", ts=sampled), flushed),
        at(env_reading({"humidity": 41}, message_id="env-1-9", ts=flushed), flushed),
    )
    common = {"metric": "humidity", "unit": "pct", "ingest_time": flushed}
    want = [
        reading(
            **common,
            value=40.0,
            reported_value=40.0,
            message_id="env-1-7",
            device_time=sampled,
            event_time=sampled,
            event_date=date(2026, 10, 30),
        ),
        reading(
            **common,
            value=41.0,
            reported_value=41.0,
            message_id="env-1-9",
            device_time=flushed,
            event_time=flushed,
        ),
    ]
    assert_rows(decode_telemetry(raw, timedelta(days=3)), expected(TELEMETRY, want))


@pytest.mark.parametrize(
    ("device_ahead", "time_source"),
    [
        (timedelta(hours=-30), "device"),
        (timedelta(days=-3, seconds=-1), "ingest"),
        (timedelta(minutes=5), "device"),
        (timedelta(minutes=6), "ingest"),
    ],
    ids=["behind-within-lateness", "behind-beyond-lateness", "ahead-within", "ahead-beyond"],
)
def test_max_lateness_widens_the_window_behind_ingest_only(device_ahead, time_source):
    ingest = T0 + LATENCY
    raw = land(at(env_reading({"humidity": 40}, ts=ingest + device_ahead), ingest))
    decoded = decode_telemetry(raw, SKEW, max_lateness=timedelta(days=3))
    assert decoded.get_column("time_source").to_list() == [time_source]


def test_duplicates_keep_the_earliest_ingest():
    pair = env_reading({"humidity": 40})
    raw = land(
        at(pair, T0 + timedelta(seconds=9)),
        at(pair, T0 + LATENCY),
        at(pair, T0 + timedelta(seconds=3)),
    )
    want = reading(metric="humidity", value=40.0, reported_value=40.0, unit="pct")
    assert_rows(decode_telemetry(raw, SKEW), expected(TELEMETRY, [want]))


def test_lazy_input_decodes_the_same():
    raw = land(
        at(env_reading({"humidity": 40}), T0 + LATENCY),
        at(message("events", {"event": "boot"}, message_id="env-1-2"), T0 + LATENCY),
    )
    assert_frame_equal(decode_telemetry(raw.lazy(), SKEW), decode_telemetry(raw, SKEW))
    assert_frame_equal(decode_device_events(raw.lazy(), SKEW), decode_device_events(raw, SKEW))
    assert_frame_equal(
        event_partitions_touched(raw.lazy(), SKEW), event_partitions_touched(raw, SKEW)
    )


def test_invalid_rows_and_other_kinds_are_ignored():
    ingest = T0 + LATENCY
    topic, _ = env_reading({"humidity": 40})
    _, spoofed = env_reading({"humidity": 40}, message_id="env-2-1", device="env-2")
    raw = land(
        at(env_reading({"humidity": 40}), ingest),
        (topic, b'{"device_id": "env-1", "message_id": "env-1-2", ', ingest),
        at(env_reading({"humidity": "wet"}, message_id="env-1-3"), ingest),
        (topic, spoofed, ingest),
        at(message("events", {"event": "boot"}, message_id="env-1-4"), ingest),
        at(message("status", {"status": "online"}, message_id="env-1-5"), ingest),
    )
    errors = raw.get_column("error_code").drop_nulls().to_list()
    assert errors == ["undecodable", "wrong_type", "identity_mismatch"]
    want = reading(metric="humidity", value=40.0, reported_value=40.0, unit="pct")
    assert_rows(decode_telemetry(raw, SKEW), expected(TELEMETRY, [want]))


def test_nothing_to_decode_gives_empty_tables():
    raw = land(at(message("events", {"event": "boot"}), T0))
    assert_rows(decode_telemetry(raw, SKEW), empty_frame(TELEMETRY))
    assert_rows(decode_device_events(raw.clear(), SKEW), empty_frame(DEVICE_EVENTS))


def test_names_differing_only_in_case_are_distinct_metrics():
    raw = land(
        at(env_reading({"Temp": 1.5}, {"Temp": "a"}, message_id="env-1-1"), T0 + LATENCY),
        at(
            env_reading(
                {"temp": 2.5, "TEMP": 3.5}, {"temp": "b", "TEMP": "c"}, message_id="env-1-2"
            ),
            T0 + LATENCY,
        ),
    )
    decoded = decode_telemetry(raw, SKEW).select("message_id", "metric", "value", "reported_unit")
    want = pl.DataFrame(
        {
            "message_id": ["env-1-1", "env-1-2", "env-1-2"],
            "metric": ["Temp", "temp", "TEMP"],
            "value": [1.5, 2.5, 3.5],
            "reported_unit": ["a", "b", "c"],
        }
    )
    assert_rows(decoded, want)


def test_each_message_keeps_its_own_units():
    """Units objects repeat across a fleet; each reading still gets its own message's unit."""
    units = [{"temperature": "degF"}, {"temperature": "degC"}, {"temperature": "degF"}, None]
    rows = [
        at(env_reading({"temperature": 20.0}, given, message_id=f"env-1-{index}"), T0 + LATENCY)
        for index, given in enumerate(units)
    ]
    topic, _ = env_reading({})
    null_units = {
        "device_id": "env-1",
        "message_id": "env-1-9",
        "ts": ms(T0),
        "metrics": {"humidity": 1},
    }
    rows.append((topic, orjson.dumps({**null_units, "units": None}), T0 + LATENCY))
    decoded = decode_telemetry(land(*rows), SKEW).select("message_id", "reported_unit")
    want = pl.DataFrame(
        {
            "message_id": ["env-1-0", "env-1-1", "env-1-2", "env-1-3", "env-1-9"],
            "reported_unit": ["degF", "degC", "degF", None, None],
        }
    )
    assert_rows(decoded, want)


def test_odd_but_valid_payloads_decode():
    """Fields the wire checks leave free (type, unit values, ts range) never fail a batch."""
    far_future = 10**17
    topic, _ = env_reading({})
    body = {
        "device_id": "env-1",
        "message_id": "env-1-1",
        "ts": far_future,
        "type": {"model": "x"},
        "metrics": {"humidity": 40},
        "units": {"humidity": ["pct"]},
    }
    raw = land((topic, orjson.dumps(body), T0))
    want = reading(
        metric="humidity",
        value=40.0,
        unit='["pct"]',
        reported_value=40.0,
        reported_unit='["pct"]',
        device_type='{"model":"x"}',
        firmware=None,
        device_time=datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        event_time=T0,
        ingest_time=T0,
        time_source="ingest",
    )
    assert_rows(decode_telemetry(raw, SKEW), expected(TELEMETRY, [want]))


def event(**columns):
    row = {
        "tenant_id": "acme",
        "device_id": "env-1",
        "event_type": None,
        "status": None,
        "firmware": None,
        "command_id": None,
        "details": None,
        "event_time": T0,
        "event_date": date(2026, 11, 1),
        "device_time": T0,
        "ingest_time": T0 + LATENCY,
        "time_source": "device",
        "message_id": None,
        "ingest_date": date(2026, 11, 1),
    }
    assert set(columns) <= set(row)
    return {**row, **columns}


def test_device_events_decode():
    sent = [
        ("status", {"status": "online"}),
        ("events", {"event": "boot", "reason": "power_on"}),
        ("events", {"event": "firmware", "version": "2.1.0"}),
        ("events", {"event": "heartbeat", "uptime_s": 60}),
        ("events", {"event": "crash", "code": "watchdog_reset"}),
        ("events", {"event": "ack", "command_id": "cmd-9", "result": "ok", "version": "x"}),
        ("status", {"status": "offline", "reason": "connection_lost"}),
        ("telemetry", {"metrics": {"humidity": 40}}),
    ]
    raw = land(
        *(
            at(message(kind, fields, message_id=f"env-1-{n}"), T0 + LATENCY)
            for n, (kind, fields) in enumerate(sent)
        ),
        at(message("events", {"event": "boot", "reason": "power_on"}, message_id="env-1-1"), T0),
    )
    want = [
        event(message_id="env-1-0", event_type="status", status="online"),
        event(
            message_id="env-1-1",
            event_type="boot",
            details='{"reason":"power_on"}',
            ingest_time=T0,
        ),
        event(message_id="env-1-2", event_type="firmware", firmware="2.1.0"),
        event(message_id="env-1-3", event_type="heartbeat", details='{"uptime_s":60}'),
        event(message_id="env-1-4", event_type="crash", details='{"code":"watchdog_reset"}'),
        event(
            message_id="env-1-5",
            event_type="ack",
            command_id="cmd-9",
            details='{"result":"ok","version":"x"}',
        ),
        event(
            message_id="env-1-6",
            event_type="status",
            status="offline",
            details='{"reason":"connection_lost"}',
        ),
    ]
    assert_rows(decode_device_events(raw, SKEW), expected(DEVICE_EVENTS, want))


def test_device_events_use_the_event_time_rule():
    skewed = T0 + timedelta(hours=2)
    raw = land(at(message("status", {"status": "online"}, ts=skewed), T0))
    want = event(
        message_id="env-1-1",
        event_type="status",
        status="online",
        device_time=skewed,
        ingest_time=T0,
        time_source="ingest",
    )
    assert_rows(decode_device_events(raw, SKEW), expected(DEVICE_EVENTS, [want]))


def test_event_partitions_touched():
    flushed = datetime(2026, 11, 2, 0, 10, tzinfo=UTC)
    day1 = datetime(2026, 11, 1, 23, 0, tzinfo=UTC)
    raw = land(
        at(env_reading({"humidity": 1}, message_id="env-1-1", ts=day1), flushed),
        at(
            env_reading({"humidity": 1}, message_id="env-1-2", ts=day1 + timedelta(hours=0.5)),
            flushed,
        ),
        at(env_reading({"humidity": 1}, message_id="env-1-3", ts=flushed), flushed),
        at(message("status", {"status": "online"}, message_id="env-1-4", ts=flushed), flushed),
        at(env_reading({"humidity": 1}, message_id="env-2-1", device="env-2", ts=flushed), flushed),
        # Beyond the lateness allowed: ingest time, not day 1's hour 20.
        at(env_reading({"humidity": 1}, message_id="env-2-2", ts=day1.replace(hour=20)), flushed),
    )
    want = pl.DataFrame(
        {
            "table": ["device_events", "telemetry", "telemetry"],
            "event_date": [date(2026, 11, 2), date(2026, 11, 1), date(2026, 11, 2)],
            "event_hour": [0, 23, 0],
        },
        schema_overrides={"event_hour": pl.Int8},
    )
    assert_frame_equal(event_partitions_touched(raw, timedelta(hours=2)), want)


TS = 1_793_000_000_123


@pytest.mark.parametrize(
    "payload",
    [
        f'{{"device_id":"env-1","message_id":"m-1","ts":{TS},"metrics":{{"rssi":-61}}}}',
        f'{{"device_id":"env-1","message_id":"m-1","ts":{TS}}}',
        f'{{"device_id":"env-1","message_id":"m-1","ts":-{TS}}}',
        '{"device_id":"env-1","message_id":"m-1","ts":0}',
        f'{{"device_id":"env-1","message_id":"m-1","ts":{TS} ,"x":1}}',
        f'{{ "device_id":"env-1","message_id":"m-1","ts":{TS}}}',
        f'{{"message_id":"m-1","device_id":"env-1","ts":{TS}}}',
        f'{{"device_id":"env-\\u0031","message_id":"m-1","ts":{TS}}}',
        f'{{"device_id":"env-1","message_id":"m-1","x":{{"ts":1}},"ts":{TS}}}',
        f'{{"device_id":"env-1","message_id":"m-1","ts":{TS}000000}}',
        f'{{"device_id":"env-1","message_id":"m-1","ts":{TS}0000000000}}',
        '{"device_id":"env-1","message_id":"m-1","ts":"1"}',
        f'{{"device_id":"env-1","message_id":"m-1","ts":{TS}.0,"x":1}}',
        '{"device_id":"env-1","message_id":"m-1","ts":17e11}',
        f'{{"device_id":"env-1","message_id":"m-1","ts": {TS}}}',
        f'{{"device_id":"env-1","message_id":"m-1","ts":{TS}\n}}',
        f'{{"device_id":"env-1","message_id":"m-1","tz":5,"ts":{TS}}}',
    ],
    ids=[
        "canonical",
        "ts-last",
        "negative",
        "zero",
        "space-after",
        "space-before-ids",
        "ids-swapped",
        "escaped-id",
        "nested-ts-first",
        "19-digits",
        "beyond-64-bits",
        "string",
        "fraction",
        "exponent",
        "space-before",
        "newline-after",
        "integer-where-ts-would-be",
    ],
)
def test_device_ts_is_what_the_json_decoder_reads(payload):
    """The canonical fast path and DuckDB's decoder agree on every form."""
    messages = pl.DataFrame(
        {
            "device_id": ["env-1", "env-1"],
            "message_id": ["m-1", "m-2"],
            "message_kind": ["telemetry", "telemetry"],
            "payload": [payload, f'{{"device_id":"env-1","message_id":"m-2","ts":{TS},"m":1}}'],
        }
    )
    decoded = duckdb.sql(
        'SELECT from_json(payload, \'{"ts": "BIGINT"}\').ts AS ts FROM messages'
    ).pl()
    assert device_ts(messages).to_list() == decoded.get_column("ts").to_list()


def expected_readings(messages, ingest_us):
    """The oracle: decode with orjson, dedupe with a set, convert with the scalar catalog."""
    rows, seen = [], set()
    for sent, ingest in zip(messages, ingest_us, strict=True):
        if sent.kind != "telemetry" or sent.expected_error is not None:
            continue
        body = orjson.loads(sent.payload)
        key = (sent.device_id, body["message_id"])
        if key in seen:
            continue
        seen.add(key)
        device_us = body["ts"] * 1000
        trusted = abs(device_us - ingest) <= SKEW / timedelta(microseconds=1)
        for metric, reported in body["metrics"].items():
            unit = body["units"][metric]
            spec = metric_spec(metric)
            value, canonical = spec.to_canonical(reported, unit) if spec else (reported, unit)
            event_us, source = (device_us, "device") if trusted else (ingest, "ingest")
            rows.append((*key, metric, value, canonical, unit, event_us, source))
    schema = {
        "device_id": pl.String,
        "message_id": pl.String,
        "metric": pl.String,
        "value": pl.Float64,
        "unit": pl.String,
        "reported_unit": pl.String,
        "event_time": pl.Int64,
        "time_source": pl.String,
    }
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    return frame.with_columns(pl.col("event_time").cast(pl.Datetime("us", "UTC")))


def test_simulated_fleet_decodes_every_reading_once():
    messages = list(Fleet(FleetSpec(devices=30)).messages(5000))
    ingest_us = [sent.sim_ms * 1000 + 150_000 for sent in messages]
    batch = RawBatch("sim", "test", 64 * 1024)
    batch.extend(
        [m.topic for m in messages], [m.payload for m in messages], ingest_us, [None] * 5000
    )
    decoded = decode_telemetry(pl.from_arrow(batch.to_arrow()), SKEW)

    unique_valid = [
        orjson.loads(sent.payload)
        for sent in messages
        if sent.kind == "telemetry" and sent.expected_error is None and sent.fault != "duplicate"
    ]
    assert decoded.height == sum(len(body["metrics"]) for body in unique_valid)
    want = expected_readings(messages, ingest_us)
    assert_rows(decoded.select(want.columns), want)
    assert set(decoded.get_column("time_source")) == {"device", "ingest"}
    assert "degF" in set(decoded.get_column("reported_unit"))


@pytest.mark.parametrize(
    "metrics_text",
    [
        '{"rssi":-61}',
        '{ "rssi" : -6.1e1 }',
        '{"rss\\u0069":-61}',
        '{"rssi":-61,"rssi":-61}',
    ],
    ids=["compact", "spaced", "escaped-name", "repeated-name"],
)
def test_metric_names_are_found_in_any_valid_form(metrics_text):
    """A name the last batch did not hold is found whatever the form of its payload."""
    # The batch before holds humidity only: the next is decoded for it first (the hint).
    decode_telemetry(land(at(env_reading({"humidity": 1.0}), T0 + LATENCY)), SKEW)
    topic, _ = env_reading({})
    head = '{"device_id":"env-1","message_id":"env-1-1","ts":%d,"type":"env_sensor","fw":"1.4.2"'
    payload = (head % ms(T0) + f',"metrics":{metrics_text}}}').encode()
    other_topic, other_payload = env_reading({"humidity": 40.0}, message_id="env-1-2")
    raw = land((topic, payload, T0 + LATENCY), (other_topic, other_payload, T0 + LATENCY))
    assert raw.get_column("error_code").is_null().all()

    decoded = decode_telemetry(raw, SKEW).select("message_id", "metric", "reported_value")

    want = pl.DataFrame(
        {
            "message_id": ["env-1-1", "env-1-2"],
            "metric": ["rssi", "humidity"],
            "reported_value": [-61.0, 40.0],
        }
    )
    assert_rows(decoded, want)
