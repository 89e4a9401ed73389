"""MQTT source: a persistent MQTT session whose messages are acknowledged after commit.

MQTT is not replayable, so there is no checkpoint in the lake (`positions()` is empty; it
only seals the batch). Instead the broker keeps every QoS 1 message of the session until it
is acknowledged, and this source acknowledges a sealed batch only in `committed()`, after
the Delta commit that holds it (contract 2). A kill -9 before the commit leaves the messages
unacknowledged in the session, and the broker delivers them again when the same client id
reconnects: at least once, deduplicated downstream by (device_id, message_id).

paho runs the network loop in its own thread (`loop_start`); `on_message` only appends to a
deque, and `poll` drains it into the batch on the consumer's thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from iot_lake.settings import MqttSettings
from streaming.batch import RawBatch, now_micros
from streaming.landing import LandingWriter, Position
from streaming.sources.mqtt_client import BufferedClient

log = logging.getLogger(__name__)

# MQTT packet identifiers are 16-bit: a session cannot hold more unacknowledged messages.
RECEIVE_MAXIMUM = 65_535
# The consumer commits one batch while the next fills and acks a batch only once the next
# is sealed, so two batches are unacknowledged at once: each must fit in half the window,
# or the broker stops sending until the open batch ages out.
MAX_BATCH_RECORDS = RECEIVE_MAXIMUM // 2 - 500
KEEPALIVE_S = 30
# poll() hands over messages in chunks of at least this many, or after this long.
MIN_CHUNK = 1_000
LINGER_S = 0.02


class MqttUnavailable(ConnectionError):
    """The broker cannot be reached or refused us; the message names host, port and reason."""


# What on_message keeps of one message: topic, payload, ingest time (epoch us), position,
# packet id, QoS, connection generation. A plain tuple: this runs on paho's thread for every
# message, and a NamedTuple costs a Python-level __new__ call each time.
_Received = tuple[str | bytes | None, bytes, int, str, int, int, int]


class MqttSource:
    """Lands one MQTT subscription (optionally a shared one) with ack-after-commit."""

    name = "mqtt"

    def __init__(
        self,
        settings: MqttSettings,
        *,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.connect_timeout_s = connect_timeout_s
        self.max_batch_records: int | None = MAX_BATCH_RECORDS
        self.commits_in_flight = 1
        self.subscription = (
            f"$share/{settings.share_group}/{settings.topic_filter}"
            if settings.share_group
            else settings.topic_filter
        )
        self._queue: collections.deque[_Received] = collections.deque()
        self._arrived = threading.Event()
        self._closed = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._disconnected = threading.Event()
        self._refusal: str | None = None
        self._session_present = False
        self._received_total = 0
        # (mid, qos, generation) of messages polled into the open batch, then per sealed batch
        self._polled: list[tuple[int, int, int]] = []
        self._sealed: collections.deque[list[tuple[int, int, int]]] = collections.deque()
        self._ack_lock = threading.Lock()
        self._generation = 0
        self._client: Client | None = None

    @property
    def address(self) -> str:
        """host:port of the broker, for messages."""
        return f"{self.settings.host}:{self.settings.port}"

    @property
    def ready(self) -> bool:
        """True once the broker accepted the session and the subscription: health checks."""
        return self._subscribed.is_set() and self._refusal is None and not self._closed.is_set()

    @property
    def session_present(self) -> bool:
        """True when the broker resumed an existing session (with its unacked messages)."""
        return self._session_present

    def resume(self, writer: LandingWriter) -> None:
        """Connect to the persistent session and subscribe; fail fast if the broker is away.

        There is nothing to read from the lake: the broker holds what is not acknowledged.
        """
        client = self._make_client()
        self._client = client
        try:
            if self._is_v5:
                client.connect(
                    self.settings.host,
                    self.settings.port,
                    keepalive=KEEPALIVE_S,
                    clean_start=False,
                    properties=self._connect_properties(),
                )
            else:
                client.connect(self.settings.host, self.settings.port, keepalive=KEEPALIVE_S)
        except OSError as exc:
            raise MqttUnavailable(
                f"MQTT broker at {self.address} is unreachable: {exc}. Is it running? Point "
                "IOT_LAKE_MQTT_HOST / IOT_LAKE_MQTT_PORT at one that is"
            ) from exc
        client.loop_start()
        self._await(self._connected, "a CONNACK")
        if not self._session_present:
            self._await(self._subscribed, f"a SUBACK for {self.subscription}")
        # A resumed session already holds the subscription, and its backlog (up to 65,535
        # messages) arrives before the SUBACK: start batching now; poll() reports a refusal.

    @property
    def _is_v5(self) -> bool:
        return self.settings.protocol == "5"

    def _make_client(self) -> Client:
        settings = self.settings
        if self._is_v5:  # session expiry, Receive Maximum
            client = BufferedClient(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=settings.client_id,
                protocol=MQTTProtocolVersion.MQTTv5,
                manual_ack=True,
            )
        else:  # a persistent session is clean_session=False
            client = BufferedClient(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=settings.client_id,
                protocol=MQTTProtocolVersion.MQTTv311,
                clean_session=False,
                manual_ack=True,
            )
        client.connect_timeout = self.connect_timeout_s
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties:
        properties = Properties(PacketTypes.CONNECT)
        # Without an expiry > 0 the broker drops the session, and its unacked messages, on
        # the first disconnect; a restarted consumer would then miss them.
        properties.SessionExpiryInterval = self.settings.session_expiry_s
        # The broker sends at most this many unacknowledged messages; we ack once a batch is
        # committed, so a small value would cap every batch at that size.
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        return properties

    def _await(self, event: threading.Event, what: str) -> None:
        """Wait for a broker reply; a resumed session's backlog arrives first and counts as life."""
        seen = self._received_total
        while not event.wait(self.connect_timeout_s) and self._refusal is None:
            if self._received_total > seen:  # busy delivering the backlog, not unreachable
                seen = self._received_total
                continue
            self.close()
            raise MqttUnavailable(
                f"MQTT broker at {self.address} sent no {what} within "
                f"{self.connect_timeout_s:g} s (client id {self.settings.client_id!r})"
            )
        if self._refusal is not None:
            refusal = self._refusal
            self.close()
            raise MqttUnavailable(f"MQTT broker at {self.address} refused us: {refusal}")

    # -- callbacks, on paho's network thread ------------------------------------------------

    def _on_connect(
        self,
        client: Client,
        userdata: Any,  # noqa: ANN401 - paho's signature
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._refusal = f"CONNACK {reason_code} (client id {self.settings.client_id!r})"
            self._connected.set()
            return
        self._session_present = flags.session_present
        if self._connected.is_set() and not flags.session_present:
            log.warning(
                "MQTT broker %s had no session for %s on reconnect: messages it held "
                "unacknowledged are gone (session expired or broker lost its database)",
                self.address,
                self.settings.client_id,
            )
        # Subscribe on every connect: a resumed session keeps it, an expired one does not.
        if self._is_v5:
            client.subscribe(self.subscription, options=SubscribeOptions(qos=1))
        else:
            client.subscribe(self.subscription, qos=1)
        self._connected.set()

    def _on_disconnect(
        self,
        client: Client,
        userdata: Any,  # noqa: ANN401 - paho's signature
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # Packet ids polled before the disconnect belong to the old connection: the broker
        # redelivers those messages with the same ids, and an ack sent for the old copy could
        # later hit a different message that reused the id. Acks of this generation are void.
        with self._ack_lock:
            self._generation += 1
        self._disconnected.set()
        if not self._closed.is_set():
            log.warning("MQTT connection to %s lost (%s); reconnecting", self.address, reason_code)

    def _on_subscribe(
        self,
        client: Client,
        userdata: Any,  # noqa: ANN401 - paho's signature
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failed = [code for code in reason_codes if code.is_failure]
        if failed:
            self._refusal = f"SUBSCRIBE {self.subscription}: {failed[0]}"
        self._subscribed.set()

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:  # noqa: ANN401
        try:
            topic: str | bytes | None = message.topic
        except UnicodeDecodeError:
            # Brokers refuse such topics, but if one gets through its bytes are kept (the
            # checks store them base64-encoded): paho holds them only in `_topic`.
            topic = message._topic
        mid = message.mid
        position = f"{self.settings.client_id}:{mid}{':dup' if message.dup else ''}"
        self._queue.append(
            (topic, message.payload, now_micros(), position, mid, message.qos, self._generation)
        )
        self._received_total += 1
        if not self._arrived.is_set():
            self._arrived.set()

    # -- the Source protocol, on the consumer's thread ------------------------------------

    def poll(self, batch: RawBatch, max_records: int, timeout_s: float) -> bool:
        """Move up to `max_records` received messages into the batch, waiting for the first.

        Never reports exhaustion: a subscription has no end. A batch holds at most
        `max_batch_records` (see MAX_BATCH_RECORDS); a full one only waits out its age.
        """
        if self._refusal is not None:
            raise MqttUnavailable(f"MQTT broker at {self.address} refused us: {self._refusal}")
        room = min(max_records, MAX_BATCH_RECORDS - len(batch))
        if room <= 0:
            self._closed.wait(timeout_s)
            return True
        deadline = time.monotonic() + timeout_s
        if not self._queue:
            self._arrived.clear()
            if not self._queue and not self._arrived.wait(timeout_s):
                return True
        if len(self._queue) < min(room, MIN_CHUNK):
            # Let a chunk gather: waking up per message would take the GIL from paho's
            # network thread, which is the bottleneck of the whole consumer.
            self._closed.wait(min(LINGER_S, max(deadline - time.monotonic(), 0)))
        popleft = self._queue.popleft
        taken = [popleft() for _ in range(min(room, len(self._queue)))]
        if not taken:
            return True
        topics, payloads, ingest, positions, mids, qoss, generations = zip(*taken, strict=True)
        batch.extend(topics, payloads, ingest, positions)
        self._polled.extend(zip(mids, qoss, generations, strict=True))
        return True

    def positions(self) -> list[Position]:
        """Seal the batch; no checkpoint: MQTT is not replayable, the broker's session is."""
        self._sealed.append(self._polled)
        self._polled = []
        return []

    def committed(self) -> None:
        """The oldest sealed batch is in the lake: ack its messages so the broker forgets them."""
        if not self._sealed:
            return
        sealed = self._sealed.popleft()
        client = self._client
        if client is None or not sealed:
            return
        with self._ack_lock:  # a disconnect now voids this generation's ids (see _on_disconnect)
            generation = self._generation
            ack = client.ack
            void = 0
            for mid, qos, received_in in sealed:
                if received_in == generation:
                    ack(mid, qos)
                else:
                    void += 1
        if void:
            log.info("%d acks skipped: the broker redelivers them after the reconnect", void)

    def lag(self) -> str | None:
        """Messages received from the broker and not yet in a batch."""
        return f"{len(self._queue)} queued"

    def close(self) -> None:
        """Disconnect cleanly; unacknowledged messages stay in the session for next time."""
        self._closed.set()
        client, self._client = self._client, None
        if client is None:
            return
        if client.is_connected():
            self._disconnected.clear()
            client.disconnect()
            self._disconnected.wait(self.connect_timeout_s)  # the DISCONNECT is on the wire
        client.loop_stop()
        self._polled.clear()
        self._sealed.clear()
