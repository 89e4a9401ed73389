"""Consumers as separate processes: kill -9 at random points, and shared subscriptions."""

from __future__ import annotations

import contextlib
import random
import threading

import pytest

from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.tables import Lake
from streaming.landing import LandingWriter
from streaming.simulator.fleet import Fleet, FleetSpec
from streaming.simulator.mqtt_publisher import publish
from streaming.sources.mqtt import MqttSource
from tests.integration.mqtt.conftest import landed_multiset, missing_from_raw, published_multiset
from tests.support import wait_until

pytestmark = pytest.mark.integration

KILLS = 20


def table_version(lake: Lake) -> int:
    table = lake.open(RAW_TELEMETRY)
    return -1 if table is None else table.version()


@pytest.mark.slow
def test_kill_9_at_random_points_loses_nothing(
    mosquitto, mqtt_settings, lake, consumer_processes, tmp_path, capsys
):
    rng = random.Random(20261101)
    messages = list(Fleet(FleetSpec(devices=60, seed=21)).messages(3000))
    expected = published_multiset(messages)
    client_id = mqtt_settings.client_id
    # The broker queues only for a session it knows: create it before the first publish.
    session = MqttSource(mqtt_settings)
    session.resume(LandingWriter(lake, client_id))
    session.close()

    kill_points = []
    for round_ in range(KILLS):
        version_before = table_version(lake)
        ready = tmp_path / f"ready-{round_}"
        process = consumer_processes.start(client_id, ready_file=ready)
        chunk = messages[round_ * len(messages) // KILLS : (round_ + 1) * len(messages) // KILLS]
        publish(chunk, mosquitto.host, mosquitto.port)  # lands in the session, dead or alive
        point = rng.choices(("starting", "subscribed", "after a commit"), (2, 3, 5))[0]
        if point == "subscribed":
            wait_until(ready.exists, 30, f"consumer {round_} to subscribe")
        elif point == "after a commit":
            wait_until(
                lambda before=version_before: table_version(lake) > before, 30, f"commit {round_}"
            )
        # Then a random instant inside the next batch (polling, committing or acking): this
        # wait is the random crash point itself, not a synchronisation.
        threading.Event().wait(rng.uniform(0, 0.3))
        process.kill()
        process.wait()
        kill_points.append(point)

    # Ready first: the last killed consumer may have landed everything already, and a
    # SIGTERM before the survivor installed its handlers would kill it outright.
    ready = tmp_path / "ready-survivor"
    survivor = consumer_processes.start(client_id, ready_file=ready)
    wait_until(ready.exists, 30, "the surviving consumer to subscribe")
    with contextlib.suppress(TimeoutError):  # if some never arrive, the asserts below say which
        wait_until(lambda: missing_from_raw(lake, expected) == 0, 60, "every message")
    assert consumer_processes.stop(survivor) == 0, consumer_processes.log(client_id)

    landed = landed_multiset(lake)
    lost = expected - landed  # each published copy must be there at least once
    duplicates = sum(landed.values()) - sum(expected.values())
    with capsys.disabled():  # shown in every run, not only on failure
        print(
            f"\n{len(messages)} messages, {len(kill_points)} kill -9s "
            f"({', '.join(f'{kill_points.count(p)} {p}' for p in sorted(set(kill_points)))}): "
            f"{sum(lost.values())} lost, {duplicates} duplicates (silver deduplicates them)"
        )
    assert not lost, f"lost after kill -9: {sorted(lost)[:5]}"
    assert len(kill_points) >= 20
    assert kill_points.count("after a commit") >= 5  # kills while batches were in flight


@pytest.mark.slow
def test_shared_subscription_splits_the_stream(
    mosquitto, lake, consumer_processes, tmp_path, capsys
):
    messages = list(Fleet(FleetSpec(devices=50, seed=31)).messages(3000))
    expected = published_multiset(messages)
    members = ["member-a", "member-b"]
    processes = [
        consumer_processes.start(member, share_group="lake", ready_file=tmp_path / member)
        for member in members
    ]
    wait_until(lambda: all((tmp_path / m).exists() for m in members), 30, "both to subscribe")

    publish(messages, mosquitto.host, mosquitto.port, processes=2)
    wait_until(lambda: missing_from_raw(lake, expected) == 0, 60, "every message from both")
    for member, process in zip(members, processes, strict=True):
        assert consumer_processes.stop(process) == 0, consumer_processes.log(member)

    assert landed_multiset(lake) == expected
    per_member = dict(lake.read(RAW_TELEMETRY).group_by("consumer_id").len().iter_rows())
    with capsys.disabled():
        print(f"\nshared subscription split: {per_member}")
    assert set(per_member) == set(members)
    assert min(per_member.values()) > len(messages) // 4  # round-robin: roughly half each
