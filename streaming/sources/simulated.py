"""The in-process simulator as a source: no broker, no file, the fleet straight into raw.

The fleet is deterministic, so its position is simply how many messages were landed: a
restarted consumer regenerates the sequence and skips what is already committed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from streaming.batch import RawBatch, now_micros
from streaming.landing import LandingWriter, Position
from streaming.simulator.fleet import Fleet, FleetSpec, SimMessage


class SimulatorSource:
    """Lands a simulated fleet; `speed` simulated seconds pass per real second (None: flat out)."""

    name = "simulator"
    max_batch_records: int | None = None
    commits_in_flight = 2

    def __init__(
        self,
        spec: FleetSpec,
        *,
        speed: float | None = None,
        max_messages: int | None = None,
        catch_up: bool = False,
    ) -> None:
        self.spec = spec
        self.speed = speed
        # With catch_up the simulated clock runs `speed` times faster only until it reaches
        # the wall clock, then in real time: device timestamps stay in the past, as a real
        # fleet's do, so event time (contract 4) trusts them.
        self.catch_up = catch_up
        self.max_messages = max_messages
        self.app_id = f"simulator:{spec.key}"
        self._landed = 0
        self._ticks: Iterator[list[SimMessage]] | None = None
        self._pending: list[SimMessage] = []
        self._started = 0.0
        self._sim_seconds_done = 0.0

    def resume(self, writer: LandingWriter) -> None:
        """Regenerate the fleet's sequence and skip what raw_telemetry already holds."""
        self._landed = writer.committed_version(self.app_id) or 0
        self._ticks = Fleet(self.spec).ticks()
        skip = self._landed
        while skip > 0:
            tick = next(self._ticks)
            if len(tick) > skip:
                self._pending = tick[skip:]
            skip -= len(tick)
        self._started = time.monotonic()

    def _due_sim_seconds(self) -> float:
        if self.speed is None:
            return float("inf")
        due = (time.monotonic() - self._started) * self.speed
        if self.catch_up:
            due = min(due, time.time() - self.spec.start.timestamp())
        return due

    def poll(self, batch: RawBatch, max_records: int, timeout_s: float) -> bool:
        """Add the messages the fleet has published by now (simulated clock)."""
        assert self._ticks is not None, "resume() first"
        deadline = time.monotonic() + timeout_s
        taken: list[SimMessage] = []
        limit = max_records
        if self.max_messages is not None:
            limit = min(limit, self.max_messages - self._landed)
        while len(taken) < limit:
            if not self._pending:
                if self._sim_seconds_done > self._due_sim_seconds():
                    if time.monotonic() >= deadline or taken:
                        break
                    time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))
                    continue
                self._pending = next(self._ticks)
                self._sim_seconds_done += self.spec.interval_s
            room = limit - len(taken)
            taken.extend(self._pending[:room])
            self._pending = self._pending[room:]
        if taken:
            first = self._landed
            self._landed += len(taken)
            batch.extend(
                [m.topic for m in taken],
                [m.payload for m in taken],
                [now_micros()] * len(taken),
                [str(index) for index in range(first, self._landed)],
            )
        return self.max_messages is None or self._landed < self.max_messages

    def positions(self) -> list[Position]:
        """How many of the fleet's messages have been handed to the batch."""
        return [Position(self.app_id, self._landed)]

    def committed(self) -> None:
        """Nothing to acknowledge."""

    def lag(self) -> str | None:
        """How far the simulated clock is behind where the speed says it should be."""
        if self.speed is None:
            return None
        behind = max(self._due_sim_seconds() - self._sim_seconds_done, 0.0)
        return f"{behind:.0f} sim-s"

    def close(self) -> None:
        """Nothing to release."""
