"""The shipped Mosquitto: it runs, it refuses a taken port, it keeps queues over a restart."""

from __future__ import annotations

import pytest

from streaming.broker import Mosquitto, MosquittoError, find_mosquitto
from streaming.landing import LandingWriter
from streaming.simulator.fleet import Fleet, FleetSpec
from streaming.simulator.mqtt_publisher import publish
from streaming.sources.mqtt import MqttSource
from tests.integration.mqtt.conftest import (
    RunningConsumer,
    landed_multiset,
    missing_from_raw,
    published_multiset,
)
from tests.support import wait_until

pytestmark = pytest.mark.integration


def test_broker_restart_keeps_an_offline_consumers_queue(mosquitto, mqtt_settings, lake):
    messages = list(Fleet(FleetSpec(devices=20, seed=3).without_faults()).messages(2000))
    session = MqttSource(mqtt_settings)
    session.resume(LandingWriter(lake, mqtt_settings.client_id))  # create the session...
    session.close()  # ...and go away: the broker must queue for us, beyond 1,000 messages
    publish(messages, mosquitto.host, mosquitto.port)
    mosquitto.stop()  # SIGTERM: the broker saves sessions and queues
    mosquitto.start()

    with RunningConsumer(mqtt_settings, lake):
        expected = published_multiset(messages)
        wait_until(lambda: missing_from_raw(lake, expected) == 0, 60, "the queued messages")
    assert landed_multiset(lake) == expected


def test_a_taken_port_is_refused_not_shared(mosquitto, tmp_path):
    with pytest.raises(MosquittoError, match=f"{mosquitto.port} is in use"):
        Mosquitto(mosquitto.port, tmp_path / "second").start()
    assert mosquitto.running


def test_missing_mosquitto_says_how_to_install(tmp_path):
    with pytest.raises(MosquittoError, match="Debian package mosquitto"):
        find_mosquitto(search_path=str(tmp_path))
