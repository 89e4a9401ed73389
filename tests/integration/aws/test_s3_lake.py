"""The lake on `s3://bucket/prefix`, served by moto over HTTP: safe concurrent commits.

delta-rs (>= 1.6) commits a Delta log entry on S3 with a conditional PUT (If-None-Match:
*), so two writers racing for the same version cannot overwrite each other: the loser gets
412 and retries on the next version. These tests check that moto honours the condition,
that delta-rs really sends it (moto logs 412 answers to log PUTs under contention), and
that two consumer processes landing into one raw_telemetry lose no commit and double no
message. Storage options are exactly what production reads from the environment: endpoint,
region, credentials and AWS_ALLOW_HTTP; never AWS_S3_ALLOW_UNSAFE_RENAME.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.tables import Lake
from streaming.batch import RawBatch
from streaming.landing import POSITIONS_KEY, LandingWriter, Position
from streaming.simulator.kinesis_publisher import create_stream, put_messages
from tests.integration.aws.conftest import REGION, REPO_ROOT, MotoServer
from tests.integration.aws.landed import assert_exactly_once, fleet_messages
from tests.support import compact_raw_from_two_threads, raw_rows

pytestmark = pytest.mark.integration

LOG_ENTRY = re.compile(r"_delta_log/(\d{20})\.json$")


def _s3_lake(moto: MotoServer, bucket: str) -> Lake:
    moto.client("s3").create_bucket(Bucket=bucket)
    options = moto.storage_options
    assert "AWS_S3_ALLOW_UNSAFE_RENAME" not in options
    return Lake(f"s3://{bucket}/lake", options)


def _log_versions(moto: MotoServer, bucket: str) -> list[int]:
    """Versions of the raw_telemetry commit files in the bucket, from S3's own listing."""
    paginator = moto.client("s3").get_paginator("list_objects_v2")
    prefix = "lake/raw_telemetry/_delta_log/"
    versions = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            match = LOG_ENTRY.search(item["Key"])
            if match:
                versions.append(int(match.group(1)))
    return sorted(versions)


def _refused_log_puts(moto: MotoServer, bucket: str) -> int:
    """How many PUTs of a raw_telemetry log entry moto refused with 412 Precondition Failed."""
    pattern = re.compile(
        rf'"PUT /{re.escape(bucket)}/lake/raw_telemetry/_delta_log/\d{{20}}\.json HTTP/1\.1" 412 '
    )
    return len(pattern.findall(moto.request_log()))


def test_moto_refuses_a_second_conditional_put(aws_env: MotoServer, unique_name: str):
    s3 = aws_env.client("s3")
    s3.create_bucket(Bucket=unique_name)
    s3.put_object(Bucket=unique_name, Key="entry.json", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=unique_name, Key="entry.json", Body=b"second", IfNoneMatch="*")
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=unique_name, Key="entry.json")["Body"].read() == b"first"


def test_racing_writers_never_overwrite_a_commit(aws_env: MotoServer, unique_name: str):
    """Four landing writers, each with its own table handle, commit at once: all land."""
    lake = _s3_lake(aws_env, unique_name)
    lake.ensure_table(RAW_TELEMETRY)
    writers, batches = 4, 3
    failures: list[BaseException] = []
    start_line = threading.Barrier(writers, timeout=60)  # every round, all commit at once

    def land(index: int) -> None:
        try:
            writer = LandingWriter(lake, f"racer-{index}")
            for version in range(1, batches + 1):
                batch = RawBatch("race", writer.consumer_id, 64 * 1024)
                batch.add(f"tenant/t/devices/d{index}/status", b"{}", 0, f"{index}/{version}")
                start_line.wait()
                writer.commit(batch, [Position(f"race:{index}", version)])
        except BaseException as exc:
            failures.append(exc)
            start_line.abort()
            raise

    threads = [threading.Thread(target=land, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, repr(failures[0])

    rows = lake.read(RAW_TELEMETRY)
    assert sorted(rows["source_position"].to_list()) == sorted(
        f"{i}/{v}" for i in range(writers) for v in range(1, batches + 1)
    )
    assert _log_versions(aws_env, unique_name) == list(range(writers * batches + 1))
    table = lake.open(RAW_TELEMETRY)
    assert table is not None
    assert {table.transaction_version(f"race:{i}") for i in range(writers)} == {batches}
    # The losers of each race were told so by S3 itself: delta-rs sent If-None-Match.
    assert _refused_log_puts(aws_env, unique_name) > 0


def _start_consumer(
    moto: MotoServer, stream: str, lake: Lake, name: str, shards: list[str], log: Path
):
    source = f"kinesis://{stream}?shards={','.join(shards)}"
    with log.open("wb") as output:
        return subprocess.Popen(
            [
                sys.executable, "-m", "iot_lake.app.entry", "consume", "--source", source,
                "--lake-root", lake.root, "--consumer-id", name,
                "--max-records", "50", "--max-age-s", "0.2", "--stop-when-idle-s", "2",
                "--stats-interval-s", "3600",
            ],
            cwd=REPO_ROOT,
            env=moto.subprocess_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.mark.slow
def test_two_consumers_land_into_one_s3_table_concurrently(
    aws_env: MotoServer, tmp_path: Path, unique_name: str
):
    lake = _s3_lake(aws_env, unique_name)
    # Created up front: two writers creating the table at the same instant can fail (see
    # the report on Lake.ensure_table); the race under test is the one between appends.
    lake.ensure_table(RAW_TELEMETRY)
    create_stream(unique_name, 4, endpoint_url=aws_env.endpoint_url, region=REGION)
    messages = fleet_messages(2000, seed=41)
    put_messages(messages, unique_name, endpoint_url=aws_env.endpoint_url, region=REGION)
    shards = [
        s["ShardId"]
        for s in aws_env.client("kinesis").list_shards(StreamName=unique_name)["Shards"]
    ]
    logs = {name: tmp_path / f"{name}.log" for name in ("left", "right")}
    processes = {
        "left": _start_consumer(aws_env, unique_name, lake, "left", shards[:2], logs["left"]),
        "right": _start_consumer(aws_env, unique_name, lake, "right", shards[2:], logs["right"]),
    }
    for name, process in processes.items():
        assert process.wait(timeout=120) == 0, logs[name].read_text()[-3000:]

    rows = assert_exactly_once(lake, messages)
    reported = {}
    for name, log in logs.items():
        done = re.findall(r"([\d,]+) landed in ([\d,]+) commits", log.read_text())
        assert done, log.read_text()[-3000:]
        messages_landed, commits = (int(n.replace(",", "")) for n in done[-1])
        reported[name] = (messages_landed, commits)
    assert dict(rows.group_by("consumer_id").len().iter_rows()) == {
        name: count for name, (count, _) in reported.items()
    }
    # No commit lost: the log is gapless and holds exactly the commits each process made.
    versions = _log_versions(aws_env, unique_name)
    assert versions == list(range(len(versions)))
    table = lake.open(RAW_TELEMETRY)
    assert table is not None
    data_commits = [c for c in table.history() if POSITIONS_KEY in c]
    assert len(data_commits) == sum(commits for _, commits in reported.values())
    assert sum(int(c["iot_lake.rows"]) for c in data_commits) == len(messages)


def test_two_writers_compacting_one_s3_partition_keep_each_row_once(
    aws_env: MotoServer, unique_name: str
):
    lake = _s3_lake(aws_env, unique_name)
    for first in range(0, 600, 100):
        lake.append(RAW_TELEMETRY, raw_rows(first, 100))
    outcomes = compact_raw_from_two_threads(lake)

    assert sorted(outcomes) == [False, True]
    positions = lake.read(RAW_TELEMETRY).get_column("source_position").to_list()
    assert sorted(positions, key=int) == [str(i) for i in range(600)]
    objects = aws_env.client("s3").list_objects_v2(
        Bucket=unique_name, Prefix="lake/raw_telemetry/ingest_date="
    )
    files = [item["Key"] for item in objects["Contents"] if item["Key"].endswith(".parquet")]
    assert len(files) == 7  # the six merged and the winner's; the loser's was deleted
