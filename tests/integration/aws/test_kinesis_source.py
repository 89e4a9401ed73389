"""KinesisSource against moto's Kinesis over HTTP: every shard landed once, resumed, resharded."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import polars as pl
import pytest

from iot_lake.ingest.wire import ErrorCode, topic_for
from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.tables import Lake
from iot_lake.settings import BatchLimits
from streaming.consumer import Consumer, ConsumerOptions
from streaming.landing import LandingWriter
from streaming.simulator.fleet import SimMessage
from streaming.simulator.kinesis_publisher import create_stream, put_messages
from streaming.sources.kinesis import (
    KinesisSource,
    ShardState,
    owned_shards,
    readable_shards,
    shard_lineage,
)
from tests.integration.aws.conftest import REGION, MotoServer
from tests.integration.aws.landed import assert_exactly_once, fleet_messages, raw
from tests.support import wait_until

pytestmark = pytest.mark.integration

SHARDS = 4


def _source(moto: MotoServer, stream: str, **kwargs: object) -> KinesisSource:
    return KinesisSource(
        stream, endpoint_url=moto.endpoint_url, region=REGION, poll_interval_s=0.05, **kwargs
    )


def _consumer(source: KinesisSource, lake: Lake, stop_when_idle_s: float | None = 1.0) -> Consumer:
    options = ConsumerOptions(
        batch=BatchLimits(max_records=250, max_age_s=0.3),
        stats_interval_s=60.0,
        stop_when_idle_s=stop_when_idle_s,
    )
    return Consumer(source, LandingWriter(lake, "test-consumer"), options, report=lambda _: None)


def _publish(moto: MotoServer, stream: str, messages: list[SimMessage]) -> None:
    assert put_messages(messages, stream, endpoint_url=moto.endpoint_url, region=REGION) == len(
        messages
    )


def _table_version(lake: Lake) -> int:
    table = lake.open(RAW_TELEMETRY)
    assert table is not None
    return table.version()


def _spoofed_key_messages() -> list[tuple[SimMessage, str]]:
    """Valid messages sent under another device's partition key."""
    spoofed = []
    for index in range(3):
        device = f"gw-spoof-{index}"
        body = {"device_id": device, "message_id": f"m{index}", "ts": 1_700_000_000_000 + index}
        body["metrics"] = {"temp_c": 20.5}
        message = SimMessage(
            topic_for("acme", device, "telemetry"), orjson.dumps(body), 0, "telemetry"
        )
        spoofed.append((message, f"gw-victim-{index}"))
    return spoofed


def test_every_record_of_every_shard_lands_once(
    aws_env: MotoServer, tmp_path: Path, unique_name: str
):
    create_stream(unique_name, SHARDS, endpoint_url=aws_env.endpoint_url, region=REGION)
    messages = fleet_messages(1200)
    spoofed = _spoofed_key_messages()
    started_us = time.time_ns() // 1000
    _publish(aws_env, unique_name, messages)
    aws_env.client("kinesis").put_records(
        StreamName=unique_name,
        Records=[{"Data": m.frame, "PartitionKey": key} for m, key in spoofed],
    )
    published_us = time.time_ns() // 1000
    lake = Lake(str(tmp_path / "lake"))
    source = _source(aws_env, unique_name)

    stats = _consumer(source, lake).run()

    rows = assert_exactly_once(lake, messages + [m for m, _ in spoofed])
    assert stats.messages == len(rows)
    # Every shard was read, and each checkpoint is that shard's last landed sequence number.
    rows = rows.with_columns(
        shard=rows["source_position"].str.split("/").list.first(),
        sequence=rows["source_position"].str.split("/").list.last().cast(int),
    )
    last_landed = dict(rows.group_by("shard").agg(pl.col("sequence").max()).iter_rows())
    assert len(last_landed) == SHARDS
    writer = LandingWriter(lake, "checker")
    for shard, last in last_landed.items():
        assert writer.committed_detail(source.app_id(shard)) == str(last)
        assert writer.committed_version(source.app_id(shard)) >= 1
    # Ingest time is when Kinesis accepted the record, not when the consumer read it.
    ingest_us = rows["ingest_time"].dt.epoch("us")
    assert ingest_us.min() >= started_us - 1000
    assert ingest_us.max() <= published_us + 1000
    # Contract 1 and 3: each message carries the error it must, the received topic is kept.
    expected = Counter((m.topic, m.payload.decode(), m.expected_error) for m in messages)
    expected.update((m.topic, m.payload.decode(), ErrorCode.IDENTITY_MISMATCH) for m, _ in spoofed)
    got = Counter(rows.select("topic", "payload", "error_code").iter_rows())
    assert got == expected
    mismatched = rows.filter(rows["topic"].str.contains("gw-spoof"))
    assert sorted(mismatched["error_detail"].to_list()) == [
        f"partition key: expected 'gw-spoof-{i}' (the topic's device), got 'gw-victim-{i}'"
        for i in range(3)
    ]


def test_restart_resumes_each_shard_after_its_checkpoint(
    aws_env: MotoServer, tmp_path: Path, unique_name: str
):
    create_stream(unique_name, SHARDS, endpoint_url=aws_env.endpoint_url, region=REGION)
    messages = fleet_messages(900, seed=11)
    first, second = messages[:500], messages[500:]
    lake = Lake(str(tmp_path / "lake"))
    _publish(aws_env, unique_name, first)
    assert _consumer(_source(aws_env, unique_name), lake).run().messages == len(first)

    _publish(aws_env, unique_name, second)
    restarted = _consumer(_source(aws_env, unique_name), lake).run()

    assert restarted.messages == len(second)
    assert_exactly_once(lake, messages)
    version = _table_version(lake)
    assert _consumer(_source(aws_env, unique_name), lake).run().commits == 0
    assert _table_version(lake) == version


def _reshard(moto: MotoServer, stream: str, how: str) -> None:
    """Split shard 0 in two, or merge the adjacent shards 2 and 3 into one."""
    kinesis = moto.client("kinesis")
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    if how == "split":
        hash_range = shards[0]["HashKeyRange"]
        middle = (int(hash_range["StartingHashKey"]) + int(hash_range["EndingHashKey"])) // 2
        kinesis.split_shard(
            StreamName=stream, ShardToSplit=shards[0]["ShardId"], NewStartingHashKey=str(middle)
        )
    else:
        kinesis.merge_shards(
            StreamName=stream,
            ShardToMerge=shards[2]["ShardId"],
            AdjacentShardToMerge=shards[3]["ShardId"],
        )


@pytest.mark.parametrize("how", ["split", "merge"])
def test_reshard_mid_stream_reads_parents_before_children(
    aws_env: MotoServer, tmp_path: Path, unique_name: str, how: str
):
    """Nothing lost or doubled across a split or merge made while the consumer runs.

    moto (5.2) is not AWS here: a closed parent keeps taking new records and never ends
    (GetRecords always returns a NextShardIterator), and a merge copies the parents'
    records into the child. So on moto the exactly-once check below fails if a child is
    read before its parents end, which is the rule this test guards.
    """
    create_stream(unique_name, SHARDS, endpoint_url=aws_env.endpoint_url, region=REGION)
    messages = fleet_messages(1200, seed=23)
    before, during, after = messages[:400], messages[400:800], messages[800:]
    lake = Lake(str(tmp_path / "lake"))
    source = _source(aws_env, unique_name, relist_interval_s=0.2)
    consumer = _consumer(source, lake, stop_when_idle_s=None)
    failures: list[BaseException] = []
    runner = threading.Thread(target=_run_recording_failure, args=(consumer, failures))
    runner.start()
    try:
        _publish(aws_env, unique_name, before)
        wait_until(
            lambda: failures or len(raw(lake)) > 0, 30, "the consumer to land the first records"
        )
        _reshard(aws_env, unique_name, how)
        _publish(aws_env, unique_name, during)
        children = wait_until(
            lambda: failures or [s for s in source.shard_states().values() if s.parents],
            30,
            "the consumer to find the child shards",
        )
        wait_until(
            lambda: failures or len(raw(lake)) >= 800, 30, "the consumer to land every record"
        )
    finally:
        consumer.stop_requested.set()
        runner.join(timeout=30)
    assert not failures, f"the consumer failed: {failures[0]!r}"
    assert not runner.is_alive()
    assert {len(child.parents) for child in children} == ({1} if how == "split" else {2})
    assert_exactly_once(lake, before + during)
    _assert_no_child_read_before_its_parents(lake, source.shard_states())

    _publish(aws_env, unique_name, after)
    resumed = _source(aws_env, unique_name)
    assert _consumer(resumed, lake).run().messages == len(after)
    assert_exactly_once(lake, messages)
    _assert_no_child_read_before_its_parents(lake, resumed.shard_states())


def _run_recording_failure(consumer: Consumer, failures: list[BaseException]) -> None:
    try:
        consumer.run()
    except BaseException as exc:
        failures.append(exc)
        raise


def _assert_no_child_read_before_its_parents(lake: Lake, states: dict[str, ShardState]) -> None:
    read = set(raw(lake)["source_position"].str.split("/").list.first().unique().to_list())
    for state in states.values():
        if state.shard_id in read:
            assert all(states[parent].finished for parent in state.parents if parent in states)


def test_shard_plan_follows_lineage_after_split_and_merge(aws_env: MotoServer, unique_name: str):
    create_stream(unique_name, SHARDS, endpoint_url=aws_env.endpoint_url, region=REGION)
    _reshard(aws_env, unique_name, "split")
    _reshard(aws_env, unique_name, "merge")
    listing = aws_env.client("kinesis").list_shards(StreamName=unique_name)["Shards"]
    lineage = shard_lineage(listing)
    s0, s1, s2, s3, left, right, merged = sorted(lineage)
    assert lineage[left] == lineage[right] == (s0,)
    assert lineage[merged] == (s2, s3)

    assert owned_shards(lineage, None) == sorted(lineage)
    assert owned_shards(lineage, [s0]) == [s0, left, right]
    assert owned_shards(lineage, [s2]) == [s2]  # the merge child needs both parents' owner
    assert owned_shards(lineage, [s2, s3]) == [s2, s3, merged]

    states = {shard: ShardState(shard, parents) for shard, parents in lineage.items()}
    assert [s.shard_id for s in readable_shards(states)] == [s0, s1, s2, s3]
    states[s0].finished = states[s2].finished = True
    assert [s.shard_id for s in readable_shards(states)] == [s1, s3, left, right]
    states[s3].finished = True
    assert [s.shard_id for s in readable_shards(states)] == [s1, left, right, merged]
