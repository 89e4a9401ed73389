"""The fleet simulator: a seeded fleet stepping through simulated time, with faults.

Every message it yields is what a device would publish: a topic, the payload bytes, the
simulated time it was published at, and (for tests) the fault it carries and the error
the consumer must record for it, if any. The same spec and seed always yield the same
messages in the same order, so the in-process source can resume by message index.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import orjson

from iot_lake.ingest.wire import ErrorCode, topic_for
from streaming.simulator.devices import DEVICE_TYPES, REGIONS, TENANTS, Device


@dataclass(frozen=True)
class FaultRates:
    """How often each fault happens (per message, or per device where it says so)."""

    offline: float = 0.0005
    offline_min_s: float = 300.0
    offline_max_s: float = 4 * 3600.0
    duplicate: float = 0.005
    clock_skew_devices: float = 0.03
    malformed: float = 0.002
    spoof: float = 0.0005
    spike: float = 0.001
    drift_devices: float = 0.05
    fahrenheit_devices: float = 0.1

    def none(self) -> FaultRates:
        """The same fleet with every fault switched off."""
        return FaultRates(*(0.0 for _ in range(10)))


@dataclass(frozen=True)
class FleetSpec:
    """What to simulate: fleet size, cadence, start time, seed, faults, bad firmware."""

    devices: int = 100
    tenants: int = 2
    seed: int = 7
    interval_s: float = 10.0
    heartbeat_every: int = 6
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    bad_firmware: frozenset[str] = frozenset({"2.1.0"})
    crash_rate: float = 0.0002
    bad_firmware_crash_rate: float = 0.02
    faults: FaultRates = field(default_factory=FaultRates)

    def without_faults(self) -> FleetSpec:
        """The same fleet, every device healthy and well-behaved."""
        return replace(self, faults=FaultRates().none())

    @property
    def key(self) -> str:
        """Identifies the message sequence this spec produces (for checkpoints)."""
        start = f"{self.start:%Y%m%dT%H%M}"
        return f"seed{self.seed}-d{self.devices}-t{self.tenants}-i{self.interval_s:g}-{start}"


@dataclass(frozen=True)
class SimMessage:
    """One published message, with what a test needs to know about it."""

    topic: str
    payload: bytes
    sim_ms: int
    kind: str
    fault: str | None = None
    expected_error: str | None = None

    @property
    def frame(self) -> bytes:
        """The message as one line of a framed JSONL file or one Kinesis record."""
        return self.topic.encode() + b"\t" + self.payload

    @property
    def device_id(self) -> str:
        """The device the topic names."""
        return self.topic.split("/")[3]


def _dumps(body: dict[str, object]) -> bytes:
    return orjson.dumps(body)


class Fleet:
    """Steps a seeded fleet through simulated time, yielding what it publishes."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.start_ms = int(spec.start.timestamp() * 1000)
        self.devices = [self._make_device(index) for index in range(spec.devices)]
        self.tick = 0

    def _make_device(self, index: int) -> Device:
        rng, faults = self.rng, self.spec.faults
        device_type = DEVICE_TYPES[index % len(DEVICE_TYPES)]
        tenant = TENANTS[index % max(1, min(self.spec.tenants, len(TENANTS)))]
        skewed = rng.random() < faults.clock_skew_devices
        skew_ms = int(rng.choice((-1, 1)) * rng.uniform(120, 3 * 3600) * 1000) if skewed else 0
        return Device(
            device_id=f"{device_type.prefix}-{index:06d}",
            device_type=device_type,
            tenant_id=tenant,
            fleet=f"{tenant}-{REGIONS[index % len(REGIONS)]}",
            firmware=rng.choice(device_type.firmware),
            clock_skew_ms=skew_ms,
            fahrenheit=device_type.name == "env_sensor"
            and rng.random() < faults.fahrenheit_devices,
            drift_per_day=rng.uniform(0.5, 2.0) if rng.random() < faults.drift_devices else 0.0,
            phase=rng.random() * 0.1,
        )

    @property
    def sim_ms(self) -> int:
        """Simulated time of the current tick, epoch milliseconds."""
        return self.start_ms + int(self.tick * self.spec.interval_s * 1000)

    def messages(self, limit: int | None = None) -> Iterator[SimMessage]:
        """Everything the fleet publishes, tick after tick, forever or up to `limit`."""
        for produced, message in enumerate(self._forever(), start=1):
            yield message
            if limit is not None and produced >= limit:
                return

    def _forever(self) -> Iterator[SimMessage]:
        yield from self._boot_all()
        while True:
            self.tick += 1
            yield from self.step()

    def ticks(self) -> Iterator[list[SimMessage]]:
        """Messages grouped by tick, for publishers that pace by simulated time."""
        yield list(self._boot_all())
        while True:
            self.tick += 1
            yield list(self.step())

    def _boot_all(self) -> Iterator[SimMessage]:
        for device in self.devices:
            device.booted_at_ms = self.sim_ms
            yield from self._connect(device)

    def _connect(self, device: Device) -> Iterator[SimMessage]:
        yield self._message(device, "status", {"status": "online"})
        yield self._boot(device, "power_on")
        yield self._message(device, "events", {"event": "firmware", "version": device.firmware})

    def _boot(self, device: Device, reason: str) -> SimMessage:
        """A boot event; it also announces the fleet the device was provisioned into."""
        return self._message(
            device, "events", {"event": "boot", "reason": reason, "fleet": device.fleet}
        )

    def last_will(self, device: Device) -> SimMessage:
        """The offline status the broker publishes for a device that vanished."""
        return self._message(device, "status", {"status": "offline", "reason": "connection_lost"})

    def step(self) -> Iterator[SimMessage]:
        """One tick: every device reports, some misbehave."""
        rng, spec = self.rng, self.spec
        now = self.sim_ms
        for device in self.devices:
            if not device.online:
                yield from self._while_offline(device, now)
                continue
            if rng.random() < spec.faults.offline:
                device.online = False
                duration = rng.uniform(spec.faults.offline_min_s, spec.faults.offline_max_s)
                device.offline_until_ms = now + int(duration * 1000)
                yield replace(self.last_will(device), fault="offline")
                continue
            yield from self._publish(device, self._telemetry(device))
            if self.tick % spec.heartbeat_every == 0:
                uptime = (now - device.booted_at_ms) // 1000
                yield self._message(device, "events", {"event": "heartbeat", "uptime_s": uptime})
            crash_rate = (
                spec.bad_firmware_crash_rate
                if device.firmware in spec.bad_firmware
                else spec.crash_rate
            )
            if rng.random() < crash_rate:
                yield self._message(device, "events", {"event": "crash", "code": "watchdog_reset"})
                device.booted_at_ms = now
                yield self._boot(device, "crash")

    def _while_offline(self, device: Device, now: int) -> Iterator[SimMessage]:
        if now < device.offline_until_ms:
            device.buffered.append(("telemetry", self._telemetry(device)))
            return
        device.online = True
        yield from self._connect(device)
        for kind, payload in device.buffered:  # the device flushes its buffer, late
            yield SimMessage(
                topic_for(device.tenant_id, device.device_id, kind), payload, now, kind, "late"
            )
        device.buffered.clear()

    def _telemetry(self, device: Device) -> bytes:
        spike = self.rng.random() < self.spec.faults.spike
        body = {
            "device_id": device.device_id,
            "message_id": device.next_message_id(),
            "ts": self.sim_ms + device.clock_skew_ms,
            "type": device.device_type.name,
            "fw": device.firmware,
            "metrics": device.reading(self.rng, self.sim_ms, self.sim_ms - self.start_ms, spike),
            "units": device.units(),
        }
        return _dumps(body)

    def _publish(self, device: Device, payload: bytes) -> Iterator[SimMessage]:
        rng, faults = self.rng, self.spec.faults
        topic = topic_for(device.tenant_id, device.device_id, "telemetry")
        roll = rng.random()
        if roll < faults.malformed:
            yield self._malformed(device, topic, payload)
        elif roll < faults.malformed + faults.spoof:
            victim = rng.choice(self.devices)
            body = orjson.loads(payload)
            body["device_id"] = victim.device_id if victim is not device else device.device_id + "x"
            yield SimMessage(
                topic, _dumps(body), self.sim_ms, "telemetry", "spoof", ErrorCode.IDENTITY_MISMATCH
            )
        else:
            message = SimMessage(topic, payload, self.sim_ms, "telemetry")
            yield message
            if rng.random() < faults.duplicate:
                yield replace(message, fault="duplicate")

    def _malformed(self, device: Device, topic: str, payload: bytes) -> SimMessage:
        body = orjson.loads(payload)
        variant = self.rng.randrange(5)
        if variant == 0:
            broken, error = payload[: len(payload) // 2], ErrorCode.UNDECODABLE
        elif variant == 1:
            body["ts"] = str(body["ts"])
            broken, error = _dumps(body), ErrorCode.WRONG_TYPE
        elif variant == 2:
            name = next(iter(body["metrics"]))
            body["metrics"][name] = "NaN?"
            broken, error = _dumps(body), ErrorCode.WRONG_TYPE
        elif variant == 3:
            del body["message_id"]
            broken, error = _dumps(body), ErrorCode.MISSING_FIELD
        else:
            body["debug_dump"] = "x" * 100_000
            broken, error = _dumps(body), ErrorCode.OVERSIZED
        return SimMessage(topic, broken, self.sim_ms, "telemetry", "malformed", error)

    def _message(self, device: Device, kind: str, fields: dict[str, object]) -> SimMessage:
        body = {
            "device_id": device.device_id,
            "message_id": device.next_message_id(),
            "ts": self.sim_ms + device.clock_skew_ms,
            **fields,
        }
        topic = topic_for(device.tenant_id, device.device_id, kind)
        return SimMessage(topic, _dumps(body), self.sim_ms, kind)
