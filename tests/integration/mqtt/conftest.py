"""MQTT test fixtures: a real Mosquitto per test (free loopback port, data in tmp_path),
consumers in a thread or as killable processes, and raw-vs-published multiset helpers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.tables import Lake
from iot_lake.settings import BatchLimits, MqttSettings
from streaming.broker import Mosquitto
from streaming.consumer import Consumer, ConsumerOptions
from streaming.landing import LandingWriter
from streaming.simulator.fleet import SimMessage
from streaming.sources.mqtt import MqttSource
from tests.support import free_port, wait_until


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """Mosquitto with the shipped config; fails with install advice when it is missing."""
    with Mosquitto(free_port(), tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def mqtt_settings(mosquitto: Mosquitto, request: pytest.FixtureRequest) -> MqttSettings:
    """Settings pointing at the test's broker, with a client id of its own.

    The default MQTT protocol unless a test parametrizes this fixture with another.
    """
    protocol = getattr(request, "param", MqttSettings.protocol)
    return MqttSettings(
        host=mosquitto.host, port=mosquitto.port, client_id="test-consumer", protocol=protocol
    )


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"))


def published_multiset(messages: Iterable[SimMessage]) -> Counter[tuple[str, str]]:
    """(topic, payload text) of every message, counted: what raw must hold."""
    return Counter((m.topic, m.payload.decode()) for m in messages)


def landed_multiset(lake: Lake) -> Counter[tuple[str, str]]:
    """(topic, payload text) of every raw row, counted."""
    raw = lake.read(RAW_TELEMETRY).select("topic", "payload")
    return Counter(raw.iter_rows())


def missing_from_raw(lake: Lake, expected: Counter[tuple[str, str]]) -> int:
    """How many published messages raw does not hold (yet), duplicates aside."""
    landed = landed_multiset(lake)
    return sum(1 for key in expected if key not in landed)


REPO_ROOT = Path(__file__).resolve().parents[3]


class ConsumerProcesses:
    """Starts tests/integration/mqtt/consumer_process.py subprocesses; kills leftovers."""

    def __init__(self, tmp_path: Path, broker: Mosquitto, lake: Lake) -> None:
        self.tmp_path = tmp_path
        self.broker = broker
        self.lake = lake
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self, client_id: str, *, share_group: str | None = None, ready_file: Path | None = None
    ) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-m",
            "tests.integration.mqtt.consumer_process",
            "--port",
            str(self.broker.port),
            "--lake",
            self.lake.root,
            "--client-id",
            client_id,
            "--idle-s",
            "120",  # a safety net: tests stop it with SIGTERM or SIGKILL
        ]
        if share_group:
            command += ["--share-group", share_group]
        if ready_file:
            command += ["--ready-file", str(ready_file)]
        log = (self.tmp_path / f"consumer-{client_id}.log").open("ab")
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        log.close()
        self.started.append(process)
        return process

    def log(self, client_id: str) -> str:
        path = self.tmp_path / f"consumer-{client_id}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def stop(self, process: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
        """SIGTERM, as an operator would: the consumer commits what it holds and exits."""
        process.terminate()
        return process.wait(timeout_s)

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def consumer_processes(
    tmp_path: Path, mosquitto: Mosquitto, lake: Lake
) -> Iterator[ConsumerProcesses]:
    processes = ConsumerProcesses(tmp_path, mosquitto, lake)
    yield processes
    processes.kill_all()


class RunningConsumer:
    """A Consumer on an MqttSource in a background thread, stopped like SIGTERM would."""

    def __init__(self, settings: MqttSettings, lake: Lake) -> None:
        self.source = MqttSource(settings)
        self.consumer = Consumer(
            self.source,
            LandingWriter(lake, settings.client_id),
            ConsumerOptions(batch=BatchLimits(max_records=500, max_age_s=0.3), stop_when_idle_s=60),
            report=lambda line: None,
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.consumer.run()
        except BaseException as exc:
            self.error = exc
            raise

    def __enter__(self) -> RunningConsumer:
        self.thread.start()
        wait_until(lambda: self.source.ready or self.error, 10, "the consumer to subscribe")
        assert self.error is None
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.consumer.stop_requested.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "consumer thread did not stop"
        assert self.error is None
