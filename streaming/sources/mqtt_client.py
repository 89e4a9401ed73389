"""A paho-mqtt client that reads the socket in 64 KiB chunks instead of a packet at a time.

paho 2.x reads each packet with a one-byte `recv` for the command, one per remaining-length
byte, then one for the body, and its network loop handles one packet per `select` wake-up.
For a subscriber draining small QoS 1 messages that is four system calls and a loop turn per
message, and it bounded the consumer: a bare paho subscriber received and acknowledged 4.7k
msgs/s (MQTT v5) and 9.1k (3.1.1) here, 7.9k and 16.7k with this buffer (drain of a
pre-filled persistent session, /tmp experiment recorded in docs/performance.md).

The buffer sits under paho's own packet parser (`_sock_recv`), and `loop_read` keeps parsing
while it holds bytes, so a packet that arrived with the previous read is handled at once
rather than when the socket next becomes readable. Both are private paho methods: the
paho-mqtt version is pinned below the next minor release in pyproject.toml, and the MQTT
tests exercise this class end to end.
"""

from __future__ import annotations

from typing import Any

from paho.mqtt.client import Client, MQTTErrorCode

READ_BYTES = 64 * 1024


class BufferedClient(Client):
    """paho's Client with buffered socket reads; everything else is paho's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - paho's signature
        super().__init__(*args, **kwargs)
        self._read_buffer = b""

    def _sock_recv(self, bufsize: int) -> bytes:
        """Up to `bufsize` bytes, from the buffer, refilled by one large read when empty."""
        if not self._read_buffer:
            self._read_buffer = super()._sock_recv(READ_BYTES)  # b"" when the peer closed
        taken, self._read_buffer = self._read_buffer[:bufsize], self._read_buffer[bufsize:]
        return taken

    def _sock_close(self) -> None:
        """Forget buffered bytes with the connection they came from."""
        self._read_buffer = b""
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Handle every packet already buffered, not just the first."""
        result = super().loop_read(max_packets)
        while result == MQTTErrorCode.MQTT_ERR_SUCCESS and self._read_buffer:
            result = super().loop_read(max_packets)
        return result
