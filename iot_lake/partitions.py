"""Event-time windows: which days a derived partition covers and which raw rows can feed it.

Derived tables are partitioned by event_date, raw_telemetry by ingest_date. Contract 4
bounds how far apart the two can be: a device clock is trusted up to `skew_tolerance`
ahead of ingest and up to `max(skew_tolerance, max_lateness)` behind it, otherwise ingest
time is the event time. So the messages whose event time falls in [start, end) were all
ingested in [start - skew_tolerance, end + behind): reading just those raw partitions is
enough to rebuild the window, and reading all of them is needed to be complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import polars as pl

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class EventWindow:
    """The event-time days [start, end) one derived partition, or a backfill range, covers."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"an event window needs end > start, got {self.start}..{self.end}")

    @classmethod
    def day(cls, day: date) -> EventWindow:
        """The window of one daily partition."""
        return cls(day, day + ONE_DAY)

    @classmethod
    def from_datetimes(cls, start: datetime, end: datetime) -> EventWindow:
        """The window of a Dagster time window; refuses bounds that are not UTC midnights."""
        bounds = [moment.astimezone(UTC) for moment in (start, end)]
        if any(moment.timetz().replace(tzinfo=None) != time(0) for moment in bounds):
            raise ValueError(f"event windows are whole UTC days, got {start}..{end}")
        return cls(bounds[0].date(), bounds[1].date())

    @property
    def start_time(self) -> datetime:
        """The window's first instant (UTC)."""
        return datetime.combine(self.start, time(0), UTC)

    @property
    def end_time(self) -> datetime:
        """The instant after the window (UTC)."""
        return datetime.combine(self.end, time(0), UTC)

    @property
    def label(self) -> str:
        """`2026-11-01` for one day, `2026-11-01..2026-11-03` (end exclusive) for a range."""
        if self.end - self.start == ONE_DAY:
            return self.start.isoformat()
        return f"{self.start.isoformat()}..{self.end.isoformat()}"

    def days(self) -> list[date]:
        """Every day of the window, in order."""
        return [self.start + ONE_DAY * i for i in range((self.end - self.start).days)]

    def predicate(self, column: str = "event_date") -> str:
        """The window as a Delta SQL predicate on a date column (for a partition overwrite)."""
        return f"{column} >= '{self.start.isoformat()}' AND {column} < '{self.end.isoformat()}'"

    def contains(self, column: str = "event_date") -> pl.Expr:
        """The window as a polars filter on a date column."""
        return pl.col(column).is_between(self.start, self.end, closed="left")

    def raw_ingest_span(
        self, skew_tolerance: timedelta, max_lateness: timedelta | None = None
    ) -> tuple[datetime, datetime]:
        """Ingest times [first, after) of every message whose event time is in the window.

        Mirrors `iot_lake.silver.with_event_time`: device time within `skew_tolerance` ahead
        of ingest or `max(skew_tolerance, max_lateness)` behind it, else ingest time.
        """
        behind = max(skew_tolerance, max_lateness or skew_tolerance)
        return self.start_time - skew_tolerance, self.end_time + behind

    def raw_ingest_filter(
        self, skew_tolerance: timedelta, max_lateness: timedelta | None = None
    ) -> list[tuple[str, str, str]]:
        """Delta partition filters on raw_telemetry.ingest_date covering `raw_ingest_span`.

        Partition pruning reads only those days of raw; the exact ingest span is applied
        as a row filter on top (`raw_ingest_rows`).
        """
        first, after = self.raw_ingest_span(skew_tolerance, max_lateness)
        last_day = (after - timedelta(microseconds=1)).date()
        return [
            ("ingest_date", ">=", first.date().isoformat()),
            ("ingest_date", "<=", last_day.isoformat()),
        ]

    def raw_ingest_rows(
        self, skew_tolerance: timedelta, max_lateness: timedelta | None = None
    ) -> pl.Expr:
        """A polars filter keeping the raw rows ingested within `raw_ingest_span`."""
        first, after = self.raw_ingest_span(skew_tolerance, max_lateness)
        return pl.col("ingest_time").is_between(first, after, closed="left")
