"""A healthy fleet's telemetry and heartbeats for whole ticks at once, built column-wise.

`Fleet` yields one message at a time in Python, about 25 s per million messages: a
simulated day of a 10,000-device fleet every 10 s (101M messages with heartbeats) would take
over 40 minutes to generate. `BulkFleet` builds the messages `Fleet` yields after its boot
tick for the same spec without faults or crashes, with polars string expressions over a
range of ticks: the same topics, message ids, device clocks, JSON keys in the same order,
units and heartbeats, in the same order. Only the metric values differ: they follow the
same models (base, daily cycle, Gaussian noise, rounding), drawn by numpy instead of the
Fleet's `random.Random`. tests/streaming/test_bulk.py holds the two side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson
import polars as pl

from iot_lake.ingest.wire import topic_for
from streaming.simulator.devices import Device, DeviceType
from streaming.simulator.fleet import FaultRates, Fleet, FleetSpec

DAY_MS = 86_400_000
# Fleet connects each device with three messages (status, boot, firmware) at tick 0.
BOOT_MESSAGES = 3


@dataclass(frozen=True)
class BulkMessages:
    """Messages in publishing order: topic, payload bytes and simulated publish time (ms)."""

    topics: list[str]
    payloads: list[bytes]
    sim_ms: npt.NDArray[np.int64]
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.payloads)


class BulkFleet:
    """The ticks of a healthy fleet, many at a time; refuses a spec with faults or crashes."""

    def __init__(self, spec: FleetSpec) -> None:
        if spec.faults != FaultRates().none() or spec.crash_rate or spec.bad_firmware_crash_rate:
            raise ValueError(
                "BulkFleet builds a healthy fleet only: pass spec.without_faults() with "
                "crash_rate=0 and bad_firmware_crash_rate=0"
            )
        self.spec = spec
        fleet = Fleet(spec)  # the same devices (ids, tenants, firmware, phases) from the seed
        self.devices = fleet.devices
        self.start_ms = fleet.start_ms

    def tick_ms(self, tick: int) -> int:
        """Simulated time of a tick, epoch milliseconds (as `Fleet.sim_ms`)."""
        return self.start_ms + int(tick * self.spec.interval_s * 1000)

    def ticks(self, first: int, last: int) -> BulkMessages:
        """Every message of ticks first..last (inclusive, first >= 1), in Fleet's order."""
        if not 1 <= first <= last:
            raise ValueError(f"ticks must satisfy 1 <= first <= last, got {first}..{last}")
        rng = np.random.default_rng([self.spec.seed, first])
        ticks = np.arange(first, last + 1, dtype=np.int64)
        parts = [
            self._telemetry(device_type, ticks, rng)
            for device_type in {d.device_type.name: d.device_type for d in self.devices}.values()
        ]
        parts.append(self._heartbeats(ticks))
        frame = pl.concat([part for part in parts if part.height]).sort(
            "tick", "device", "order", maintain_order=True
        )
        return BulkMessages(
            topics=frame.get_column("topic").to_list(),
            payloads=frame.get_column("payload").cast(pl.Binary).to_list(),
            sim_ms=frame.get_column("sim_ms").to_numpy(),
            kinds=frame.get_column("kind").to_list(),
        )

    def _grid(self, devices: list[int], ticks: npt.NDArray[np.int64]) -> pl.DataFrame:
        """One row per tick x device, with the device's message sequence number at the tick.

        A device's messages are its boot messages, one telemetry message per tick and a
        heartbeat after every `heartbeat_every`-th, so the sequence is arithmetic.
        """
        every = self.spec.heartbeat_every
        tick = np.repeat(ticks, len(devices))
        sim_ms = self.start_ms + (tick * self.spec.interval_s * 1000).astype(np.int64)
        return pl.DataFrame(
            {
                "tick": tick,
                "device": np.tile(np.asarray(devices, dtype=np.int64), len(ticks)),
                "sim_ms": sim_ms,
                "seq": BOOT_MESSAGES + tick + (tick - 1) // every,
            }
        )

    def _telemetry(
        self, device_type: DeviceType, ticks: npt.NDArray[np.int64], rng: np.random.Generator
    ) -> pl.DataFrame:
        """The telemetry messages of one device type's devices (their metric set is shared)."""
        indices = [i for i, d in enumerate(self.devices) if d.device_type is device_type]
        grid = self._grid(indices, ticks)
        phase = np.array([self.devices[i].phase for i in indices])[
            np.tile(np.arange(len(indices)), len(ticks))
        ]
        day_fraction = (grid.get_column("sim_ms").to_numpy() / DAY_MS) % 1.0
        cycle = np.sin(2 * math.pi * (day_fraction + phase))
        values = {}
        for name, model in device_type.metrics.items():
            value = (
                model.base + model.daily_amplitude * cycle + rng.normal(0, model.noise, len(cycle))
            )
            # rint then divide: the double nearest the rounded decimal, as Python's round().
            values[name] = np.rint(value * 10**model.decimals) / 10**model.decimals
        metrics = []
        for position, name in enumerate(device_type.metrics):
            separator = "" if position == 0 else ","
            metrics += [pl.lit(f"{separator}{orjson.dumps(name).decode()}:"), pl.col(name)]
        return (
            grid.with_columns(**{name: pl.Series(v) for name, v in values.items()})
            .join(self._identities(indices, "telemetry"), on="device")
            .select(
                "tick",
                "device",
                "sim_ms",
                order=pl.lit(0),
                kind=pl.lit("telemetry"),
                topic="topic",
                payload=pl.concat_str(
                    "head", "seq", pl.lit('","ts":'), "sim_ms", "type_fw", *metrics, "units"
                ),
            )
        )

    def _heartbeats(self, ticks: npt.NDArray[np.int64]) -> pl.DataFrame:
        """The heartbeat events of every device on the ticks that have one."""
        beats = ticks[ticks % self.spec.heartbeat_every == 0]
        indices = list(range(len(self.devices)))
        uptime_s = (pl.col("sim_ms") - self.start_ms) // 1000  # booted at tick 0
        return (
            self._grid(indices, beats)
            .join(self._identities(indices, "events"), on="device")
            .select(
                "tick",
                "device",
                "sim_ms",
                order=pl.lit(1),
                kind=pl.lit("events"),
                topic="topic",
                payload=pl.concat_str(
                    "head",
                    pl.col("seq") + 1,  # right after the tick's telemetry message
                    pl.lit('","ts":'),
                    "sim_ms",
                    pl.lit(',"event":"heartbeat","uptime_s":'),
                    uptime_s,
                    pl.lit("}"),
                ),
            )
        )

    def _identities(self, indices: list[int], kind: str) -> pl.DataFrame:
        """Per device: its topic and the constant JSON around the per-message fields."""
        devices: list[Device] = [self.devices[i] for i in indices]
        return pl.DataFrame(
            {
                "device": indices,
                "topic": [topic_for(d.tenant_id, d.device_id, kind) for d in devices],
                "head": [
                    f'{{"device_id":{_json(d.device_id)},"message_id":"{d.device_id}-'
                    for d in devices
                ],
                "type_fw": [
                    f',"type":{_json(d.device_type.name)},"fw":{_json(d.firmware)},"metrics":{{'
                    for d in devices
                ],
                "units": [f'}},"units":{_json(d.units())}}}' for d in devices],
            },
            schema_overrides={"device": pl.Int64},
        )


def _json(value: object) -> str:
    return orjson.dumps(value).decode()
