"""Publish simulated device messages to a Kinesis stream, as devices behind a gateway would.

Each message is one record: Data is the framed message `topic<TAB>payload`, PartitionKey is
the device id, so one device's messages stay in one shard and in order.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import boto3
from botocore.config import Config

from streaming.simulator.fleet import SimMessage

# PutRecords takes at most 500 records and 5 MiB (data plus partition keys) per call.
MAX_RECORDS_PER_PUT = 500
MAX_BYTES_PER_PUT = 5 * 1024 * 1024
_MAX_ATTEMPTS = 10


def kinesis_client(endpoint_url: str | None, region: str | None) -> Any:  # noqa: ANN401
    """A boto3 Kinesis client; endpoint and region default to the AWS environment."""
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(retries={"mode": "standard", "max_attempts": _MAX_ATTEMPTS}),
    )


def create_stream(
    stream_name: str,
    shard_count: int,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    timeout_s: float = 60.0,
) -> None:
    """Create a provisioned stream and wait until it is ACTIVE (it can take a minute on AWS).

    Raises:
        TimeoutError: The stream did not become ACTIVE within `timeout_s`.
    """
    client = kinesis_client(endpoint_url, region)
    try:
        client.create_stream(StreamName=stream_name, ShardCount=shard_count)
        deadline = time.monotonic() + timeout_s
        while True:
            summary = client.describe_stream_summary(StreamName=stream_name)
            status = summary["StreamDescriptionSummary"]["StreamStatus"]
            if status == "ACTIVE":
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Kinesis stream {stream_name} is {status}, not ACTIVE, after {timeout_s:.0f} s"
                )
            time.sleep(0.5)
    finally:
        client.close()


def _chunks(records: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Records grouped within PutRecords' count and size limits."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for record in records:
        record_size = len(record["Data"]) + len(record["PartitionKey"].encode())
        if chunk and (len(chunk) >= MAX_RECORDS_PER_PUT or size + record_size > MAX_BYTES_PER_PUT):
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += record_size
    if chunk:
        yield chunk


def _put_chunk(client: Any, stream_name: str, chunk: list[dict[str, Any]]) -> None:  # noqa: ANN401
    """Put one chunk, sending again only the records Kinesis refused (throttled, internal)."""
    pending = chunk
    for attempt in range(_MAX_ATTEMPTS):
        response = client.put_records(StreamName=stream_name, Records=pending)
        if not response.get("FailedRecordCount"):
            return
        pending = [
            record
            for record, result in zip(pending, response["Records"], strict=True)
            if "ErrorCode" in result
        ]
        time.sleep(min(0.1 * 2**attempt, 2.0))
    raise RuntimeError(
        f"Kinesis stream {stream_name} refused {len(pending)} records {_MAX_ATTEMPTS} times; "
        "raise its shard count or slow the publisher"
    )


def put_messages(
    messages: Iterable[SimMessage],
    stream_name: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> int:
    """Publish messages (PartitionKey = device id, Data = frame); returns how many were put.

    A record refused inside a PutRecords call is sent again, so on return every message is
    in the stream at least once (a retried call may, as on AWS, store a record twice).
    """
    client = kinesis_client(endpoint_url, region)
    records = ({"Data": m.frame, "PartitionKey": m.device_id} for m in messages)
    published = 0
    try:
        for chunk in _chunks(records):
            _put_chunk(client, stream_name, chunk)
            published += len(chunk)
    finally:
        client.close()
    return published
