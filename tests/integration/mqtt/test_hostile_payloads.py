"""Any bytes a device publishes through a real Mosquitto land in raw, and the consumer goes on.

MQTT topics are UTF-8 without NUL, control characters, non-characters or wildcards (the
broker drops a client that publishes another), so the topics here are any such text;
payloads are any bytes (issue 29).
"""

from __future__ import annotations

import base64
import itertools
from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion

from iot_lake.lake.catalog import RAW_TELEMETRY
from tests.integration.mqtt.conftest import RunningConsumer
from tests.iot_lake.ingest.test_hostile_input import payloads
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# One topic level: any text a broker passes, without a level separator.
level = st.text(
    st.characters(exclude_categories=("Cc", "Cs", "Cn"), exclude_characters="+#/"),
    min_size=0,
    max_size=12,
)
# Topics the consumer's subscription (tenant/+/devices/+/+) delivers: of the wire format or
# not (an unknown kind, an id outside the id rule, an empty level).
mqtt_topics = st.one_of(
    st.sampled_from(["tenant/t1/devices/d-1/telemetry", "tenant/t1/devices/d-2/events"]),
    st.tuples(level, level, level).map(lambda parts: "tenant/{}/devices/{}/{}".format(*parts)),
)


def test_any_payload_bytes_through_mosquitto_land_exactly_as_sent(mqtt_settings, lake):
    sent: Counter[tuple[str, bytes]] = Counter()
    publisher = Client(CallbackAPIVersion.VERSION2, client_id="hostile-device")
    publisher.connect(mqtt_settings.host, mqtt_settings.port)
    publisher.loop_start()
    wait_until(publisher.is_connected, 10, "the device to connect")
    serial = itertools.count()
    with RunningConsumer(mqtt_settings, lake):

        @settings(
            max_examples=5,
            deadline=None,
            phases=(
                Phase.explicit,
                Phase.reuse,
                Phase.generate,
            ),  # a broker run is no place to shrink
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(batch=st.lists(st.tuples(mqtt_topics, payloads()), min_size=1, max_size=40))
        def publish_and_wait(batch):
            for topic, payload in batch:
                # A serial in the payload's tail makes every message of the run distinct.
                payload += b" #%d" % next(serial)
                publisher.publish(topic, payload, qos=1).wait_for_publish(10)
                sent[(topic, payload)] += 1
            wanted = sent.total()
            wait_until(
                lambda: (
                    lake.open(RAW_TELEMETRY) is not None
                    and lake.read(RAW_TELEMETRY).height >= wanted
                ),
                60,
                f"{wanted} messages in raw",
            )

        publish_and_wait()
    publisher.loop_stop()
    publisher.disconnect()
    raw = lake.read(RAW_TELEMETRY)
    landed = Counter(
        (row["topic"], _received(row["payload"], row["payload_encoding"]))
        for row in raw.iter_rows(named=True)
    )
    assert landed == sent


def _received(payload: str, encoding: str) -> bytes:
    return base64.b64decode(payload) if encoding == "base64" else payload.encode()
