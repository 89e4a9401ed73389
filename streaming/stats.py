"""Running figures of a consumer, printed as one line every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from streaming.batch import RawBatch
from streaming.landing import CommitOutcome


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the values fall (nearest rank); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class ConsumerStats:
    """Totals since start and a window since the last report."""

    report: Callable[[str], None]
    messages: int = 0
    invalid: int = 0
    commits: int = 0
    skipped_batches: int = 0
    commit_seconds: list[float] = field(default_factory=list)
    # From sealing a batch to its commit being done: its commit plus any wait for its
    # checks and for the commit before it.
    landed_seconds: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    peak_rss_bytes: int = 0
    _window_start: float = field(default_factory=time.monotonic)
    _window_messages: int = 0
    _window_commit_seconds: list[float] = field(default_factory=list)
    _window_landed_seconds: list[float] = field(default_factory=list)

    def record(self, batch: RawBatch, outcome: CommitOutcome, landed_seconds: float) -> None:
        """Count one committed (or already landed) batch, sealed `landed_seconds` before."""
        if outcome.already_landed:
            self.skipped_batches += 1
            return
        self.messages += len(batch)
        self.invalid += batch.invalid
        self.commits += 1
        self.commit_seconds.append(outcome.seconds)
        self.landed_seconds.append(landed_seconds)
        self._window_messages += len(batch)
        self._window_commit_seconds.append(outcome.seconds)
        self._window_landed_seconds.append(landed_seconds)
        self.peak_rss_bytes = max(self.peak_rss_bytes, psutil.Process().memory_info().rss)

    def maybe_report(self, interval_s: float, lag: str | None) -> None:
        """Print the stats line when the interval has passed."""
        if time.monotonic() - self._window_start >= interval_s:
            self.report_now(lag)

    def report_now(self, lag: str | None) -> None:
        """Print the stats line for the window since the last one, and start a new window."""
        elapsed = max(time.monotonic() - self._window_start, 1e-9)
        window = self._window_commit_seconds
        invalid_rate = self.invalid / self.messages if self.messages else 0.0
        self.report(
            f"consumer: {self._window_messages / elapsed:,.0f} msgs/s, "
            f"{self.messages:,} landed in {self.commits:,} commits, "
            f"commit p50 {percentile(window, 0.5) * 1000:.0f} ms "
            f"p95 {percentile(window, 0.95) * 1000:.0f} ms, "
            f"landed p95 {percentile(self._window_landed_seconds, 0.95) * 1000:.0f} ms, "
            f"invalid {invalid_rate:.2%}, lag {lag or 'n/a'}, "
            f"rss {psutil.Process().memory_info().rss / 2**20:.0f} MB"
        )
        self._window_start = time.monotonic()
        self._window_messages = 0
        self._window_commit_seconds = []
        self._window_landed_seconds = []
