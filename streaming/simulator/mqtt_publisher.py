"""Publish simulated fleet messages to an MQTT broker at QoS 1, as real devices would.

One paho QoS 1 publisher manages only 2-4k messages/s (DESIGN.md), so `publish` splits the
messages across several processes. Processes are spawned, never forked: a forked child of
a process that has used deltalake panics in tokio. Messages are split by device, so each
device's messages stay in order on one connection, as on a real device.

A device that vanishes (fault "offline") is not simulated by publishing its offline status:
a client connects with that status as its Last Will and drops its socket without a
DISCONNECT, and the broker itself publishes the will, exactly as for a device that lost
power.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from paho.mqtt.client import Client, ConnectFlags
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from streaming.simulator.fleet import Fleet, SimMessage
from streaming.simulator.publish import paced

log = logging.getLogger(__name__)

# Unacknowledged publishes per connection. Far below the 65,535 packet ids, so paho's
# wrapping id counter never meets an id still in flight; enough to keep the pipe full.
DEFAULT_WINDOW = 2_000
OFFLINE_FAULT = "offline"


class PublishError(RuntimeError):
    """The broker could not be reached, refused messages, or did not ack them in time."""


class _Publisher:
    """One QoS 1 connection with a bounded window of unacknowledged messages."""

    def __init__(self, host: str, port: int, client_id: str, window: int, timeout_s: float) -> None:
        self.address = f"{host}:{port}"
        self.timeout_s = timeout_s
        self._window = threading.BoundedSemaphore(window)
        self._acked = 0
        self._refused: list[str] = []
        self._sent = 0
        self._done = threading.Condition()
        self._connected = threading.Event()
        self.client = Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        # 0 = no paho-side limit: our window bounds it, and paho's own limit rescans every
        # queued message on each PUBACK (quadratic in the queue length).
        self.client.max_inflight_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        try:
            self.client.connect(host, port, keepalive=60)
        except OSError as exc:
            raise PublishError(f"MQTT broker at {self.address} is unreachable: {exc}") from exc
        self.client.loop_start()
        if not self._connected.wait(timeout_s):
            self.close()
            raise PublishError(f"MQTT broker at {self.address} sent no CONNACK in {timeout_s:g} s")

    def _on_connect(
        self,
        client: Client,
        userdata: Any,  # noqa: ANN401 - paho's signature
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.set()

    def _on_publish(
        self,
        client: Client,
        userdata: Any,  # noqa: ANN401 - paho's signature
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._done:
            if reason_code.is_failure:
                self._refused.append(f"mid {mid}: {reason_code}")
            else:
                self._acked += 1
            self._done.notify_all()
        self._window.release()

    def send(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 once the window has room."""
        if not self._window.acquire(timeout=self.timeout_s):
            raise PublishError(
                f"MQTT broker at {self.address} acked nothing for {self.timeout_s:g} s "
                f"({self._acked} of {self._sent} acked)"
            )
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._window.release()
            raise PublishError(f"publish to {topic} failed: {info.rc.name}")
        self._sent += 1

    def flush(self) -> int:
        """Wait until every sent message is acked; returns how many the broker accepted."""
        with self._done:
            finished = self._done.wait_for(
                lambda: self._acked + len(self._refused) >= self._sent, self.timeout_s
            )
        if not finished:
            raise PublishError(
                f"MQTT broker at {self.address} acked {self._acked} of {self._sent} messages "
                f"within {self.timeout_s:g} s"
            )
        if self._refused:
            raise PublishError(
                f"MQTT broker at {self.address} refused {len(self._refused)} messages, "
                f"first {self._refused[0]}"
            )
        return self._acked

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def publish_last_will(message: SimMessage, host: str, port: int, timeout_s: float = 10.0) -> None:
    """Make the broker publish `message` as the Last Will of a device that vanished.

    A client for the device connects with the message as its will, then closes its socket
    without sending DISCONNECT; the broker sees a lost connection and publishes the will.
    """
    client = Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"sim-{message.device_id}-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.will_set(message.topic, message.payload, qos=1)
    connected = threading.Event()

    def on_connect(*args: object) -> None:
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=60)
    except OSError as exc:
        raise PublishError(f"MQTT broker at {host}:{port} is unreachable: {exc}") from exc
    deadline = time.monotonic() + timeout_s
    try:
        while not connected.is_set():  # drive the loop by hand: no thread may send DISCONNECT
            if time.monotonic() >= deadline:
                raise PublishError(
                    f"MQTT broker at {host}:{port} sent no CONNACK in {timeout_s:g} s"
                )
            client.loop(timeout=0.1)
    finally:
        sock = client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):  # FIN without DISCONNECT: the will goes out
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _publish_chunk(
    messages: Sequence[tuple[str, bytes]],
    host: str,
    port: int,
    client_id: str,
    window: int,
    timeout_s: float,
) -> int:
    """Publish one process's share and wait for every PUBACK; runs in a spawned process."""
    publisher = _Publisher(host, port, client_id, window, timeout_s)
    try:
        for topic, payload in messages:
            publisher.send(topic, payload)
        return publisher.flush()
    finally:
        publisher.close()


def _split_by_device(messages: Iterable[SimMessage], parts: int) -> list[list[tuple[str, bytes]]]:
    """Regular messages in `parts` lists, each device in exactly one, order kept."""
    chunks: list[list[tuple[str, bytes]]] = [[] for _ in range(parts)]
    for message in messages:
        chunks[zlib.crc32(message.device_id.encode()) % parts].append(
            (message.topic, message.payload)
        )
    return chunks


def publish(
    messages: Iterable[SimMessage],
    host: str,
    port: int,
    *,
    processes: int = 1,
    window: int = DEFAULT_WINDOW,
    timeout_s: float = 60.0,
) -> int:
    """Publish messages at QoS 1 and return how many the broker acknowledged (wills included).

    With `processes` > 1 the regular messages are published from that many spawned
    processes in parallel; offline faults are published as Last Wills from this process.
    Spawned children import the caller's main module again: a script calling this needs
    the `if __name__ == "__main__":` guard.
    """
    all_messages = list(messages)
    wills = [m for m in all_messages if m.fault == OFFLINE_FAULT]
    regular = [m for m in all_messages if m.fault != OFFLINE_FAULT]
    processes = max(1, min(processes, len(regular)))
    chunks = _split_by_device(regular, processes)
    prefix = f"sim-pub-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    args = [
        (chunk, host, port, f"{prefix}-{i}", window, timeout_s) for i, chunk in enumerate(chunks)
    ]
    if processes == 1:
        published = _publish_chunk(*args[0])
    else:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=processes, mp_context=spawn) as pool:
            published = sum(pool.map(_publish_chunk, *zip(*args, strict=True)))
    for will in wills:
        publish_last_will(will, host, port, timeout_s)
    return published + len(wills)


def publish_ticks(
    ticks: Iterable[Sequence[SimMessage]],
    host: str,
    port: int,
    *,
    report: Callable[[str], None] | None = None,
) -> int:
    """Publish ticks as they come, on one connection; returns how many the broker acked.

    For paced and endless streams (the caller paces the iterable): messages go out as soon
    as a tick is yielded, offline faults as Last Wills, and the acks are awaited at the end.
    """
    publisher = _Publisher(host, port, f"sim-ticks-{uuid.uuid4().hex[:8]}", DEFAULT_WINDOW, 60.0)
    wills = 0
    try:
        for tick in ticks:
            for message in tick:
                if message.fault == OFFLINE_FAULT:
                    publish_last_will(message, host, port)
                    wills += 1
                else:
                    publisher.send(message.topic, message.payload)
        published = publisher.flush() + wills
    finally:
        publisher.close()
    if report is not None:
        report(f"published {published} messages to {host}:{port}")
    return published


def publish_paced(
    fleet: Fleet,
    host: str,
    port: int,
    speed: float,
    *,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    report: Callable[[str], None] | None = None,
) -> int:
    """Publish the fleet tick by tick so a simulated day passes in about 24 h / `speed`.

    For the demo: runs until `duration_s` of real time passed or `stop` is set, and
    returns how many messages the broker acknowledged. When one connection cannot keep up
    with the pace, it publishes as fast as it can and says so once.
    """
    if speed <= 0:
        raise ValueError(f"speed: expected a positive number, got {speed!r}")
    ticks = paced(fleet, speed, duration_s=duration_s, stop=stop, report=report or log.warning)
    return publish_ticks(ticks, host, port)
