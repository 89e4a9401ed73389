"""Device types, their metrics, and how a reading evolves over simulated time."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MetricModel:
    """A metric's unit, typical level, daily swing and noise."""

    unit: str
    base: float
    daily_amplitude: float
    noise: float
    decimals: int = 2


@dataclass(frozen=True)
class DeviceType:
    """A kind of device: its id prefix and the metrics it reports."""

    name: str
    prefix: str
    metrics: dict[str, MetricModel]
    firmware: tuple[str, ...]


DEVICE_TYPES: tuple[DeviceType, ...] = (
    DeviceType(
        "env_sensor",
        "env",
        {
            "temperature": MetricModel("degC", 21.0, 4.0, 0.3),
            "humidity": MetricModel("pct", 45.0, 10.0, 1.0),
            "pressure": MetricModel("hPa", 1013.0, 2.0, 0.5, 1),
            "battery": MetricModel("V", 3.9, 0.0, 0.01, 3),
        },
        ("1.4.2", "1.5.0", "2.1.0"),
    ),
    DeviceType(
        "vehicle_tracker",
        "trk",
        {
            "speed": MetricModel("km/h", 45.0, 25.0, 8.0, 1),
            "latitude": MetricModel("deg", 52.37, 0.0, 0.002, 5),
            "longitude": MetricModel("deg", 4.89, 0.0, 0.002, 5),
            "battery": MetricModel("V", 12.6, 0.2, 0.05, 2),
        },
        ("3.0.0", "3.1.2", "3.2.0"),
    ),
    DeviceType(
        "power_meter",
        "pwr",
        {
            "voltage": MetricModel("V", 230.0, 3.0, 0.8, 1),
            "current": MetricModel("A", 8.0, 5.0, 0.4),
            "power": MetricModel("W", 1800.0, 1100.0, 60.0, 1),
        },
        ("5.0.1", "5.1.0"),
    ),
)
TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "stark")
REGIONS = ("eu-west", "us-east", "ap-south")
FAHRENHEIT = "degF"


@dataclass
class Device:
    """One simulated device and its evolving state."""

    device_id: str
    device_type: DeviceType
    tenant_id: str
    fleet: str
    firmware: str
    clock_skew_ms: int
    fahrenheit: bool
    drift_per_day: float
    phase: float
    seq: int = 0
    online: bool = True
    offline_until_ms: int = 0
    buffered: list[tuple[str, bytes]] = field(default_factory=list)
    booted_at_ms: int = 0

    def next_message_id(self) -> str:
        """A message id unique for this device: its id and a sequence number."""
        self.seq += 1
        return f"{self.device_id}-{self.seq}"

    def reading(
        self, rng: random.Random, sim_ms: int, elapsed_ms: int, spike: bool
    ) -> dict[str, float]:
        """Metric values at a simulated time: daily cycle, noise, slow drift, rare spikes.

        Drift grows with `elapsed_ms`, the simulated time since the fleet started.
        """
        day_fraction = (sim_ms / 86_400_000.0) % 1.0
        days = elapsed_ms / 86_400_000.0
        values: dict[str, float] = {}
        for name, model in self.device_type.metrics.items():
            cycle = math.sin(2 * math.pi * (day_fraction + self.phase))
            value = model.base + model.daily_amplitude * cycle + rng.gauss(0.0, model.noise)
            value += self.drift_per_day * days * max(abs(model.base), 1.0) * 0.01
            if spike:
                value += 10 * (model.daily_amplitude + model.noise * 5) * rng.choice((-1, 1))
            if name == "temperature" and self.fahrenheit:
                value = value * 9 / 5 + 32
            values[name] = round(value, model.decimals)
        return values

    def units(self) -> dict[str, str]:
        """The unit of every metric as this device reports it."""
        units = {name: model.unit for name, model in self.device_type.metrics.items()}
        if self.fahrenheit and "temperature" in units:
            units["temperature"] = FAHRENHEIT
        return units
