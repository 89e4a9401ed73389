"""Any bytes in a Kinesis record, and any partition key, land in raw through moto's server.

A record's Data is a frame `topic<TAB>payload` of any bytes (no broker checks them, unlike
MQTT); its partition key is any text of 1 to 256 characters (issue 29).
"""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from iot_lake.ingest.wire import NOT_UTF8_TOPIC_PREFIX
from iot_lake.lake.tables import Lake
from iot_lake.settings import BatchLimits
from streaming.consumer import Consumer, ConsumerOptions
from streaming.landing import LandingWriter
from streaming.simulator.kinesis_publisher import create_stream
from streaming.sources.kinesis import KinesisSource
from tests.integration.aws.conftest import REGION, MotoServer
from tests.integration.aws.landed import raw
from tests.iot_lake.ingest.test_hostile_input import payloads, topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

partition_keys = st.one_of(
    st.sampled_from(["d-1", "d-2"]),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20),
)


def test_any_record_bytes_and_partition_keys_land_exactly_as_sent(
    aws_env: MotoServer, tmp_path: Path, unique_name: str
):
    create_stream(unique_name, 2, endpoint_url=aws_env.endpoint_url, region=REGION)
    kinesis = aws_env.client("kinesis")
    sent: Counter[bytes] = Counter()

    @settings(
        max_examples=5,
        deadline=None,
        # A failure is reported as found: shrinking it through a server takes many minutes.
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        records=st.lists(st.tuples(topics(), payloads(), partition_keys), min_size=1, max_size=30)
    )
    def put(records):
        entries = []
        for topic, payload, key in records:
            data = payload if topic is None else topic + b"\t" + payload
            entries.append({"Data": data, "PartitionKey": key})
            sent[data] += 1
        answer = kinesis.put_records(StreamName=unique_name, Records=entries)
        assert answer["FailedRecordCount"] == 0

    put()
    lake = Lake(str(tmp_path / "lake"))
    source = KinesisSource(
        unique_name, endpoint_url=aws_env.endpoint_url, region=REGION, poll_interval_s=0.05
    )
    options = ConsumerOptions(
        batch=BatchLimits(max_records=50, max_age_s=0.3), stop_when_idle_s=1.0
    )
    stats = Consumer(source, LandingWriter(lake, "test"), options, report=lambda _: None).run()
    rows = raw(lake)
    assert stats.messages == rows.height == sent.total()
    assert Counter(_frame_of(row) for row in rows.iter_rows(named=True)) == sent


def _frame_of(row: dict[str, object]) -> bytes:
    """The record Data a raw row was landed from."""
    encoding = row["payload_encoding"]
    text = str(row["payload"])
    payload = base64.b64decode(text) if encoding == "base64" else text.encode()
    topic = row["topic"]
    if topic is None:
        return payload
    assert isinstance(topic, str)
    if str(row["error_detail"] or "").startswith("topic: expected UTF-8 text"):
        return base64.b64decode(topic.removeprefix(NOT_UTF8_TOPIC_PREFIX)) + b"\t" + payload
    return topic.encode() + b"\t" + payload
