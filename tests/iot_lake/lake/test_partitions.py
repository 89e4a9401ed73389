"""iot_lake.lake.partitions: event-time windows and the raw ingest span that feeds them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from iot_lake.lake.partitions import EventWindow

DAY = date(2026, 11, 5)
SKEW = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("max_lateness", "first", "last"),
    [
        (None, "2026-11-04", "2026-11-06"),
        (timedelta(days=7), "2026-11-04", "2026-11-12"),
        (timedelta(hours=23, minutes=59), "2026-11-04", "2026-11-06"),
        (timedelta(days=1), "2026-11-04", "2026-11-06"),
    ],
    ids=["symmetric", "week-late", "just-under-a-day", "exactly-a-day"],
)
def test_raw_ingest_days_cover_skew_ahead_and_lateness_behind(max_lateness, first, last):
    window = EventWindow.day(DAY)

    filters = window.raw_ingest_filter(SKEW, max_lateness)

    first_ingest, after_ingest = window.raw_ingest_span(SKEW, max_lateness)
    assert filters == [
        ("ingest_date", ">=", first),
        ("ingest_date", "<=", last),
        ("ingest_time", ">=", first_ingest),
        ("ingest_time", "<", after_ingest),
    ]


def test_raw_ingest_rows_keep_exactly_the_span():
    window = EventWindow.day(DAY)
    start = datetime(2026, 11, 5, tzinfo=UTC)
    ingest = [
        start - SKEW - timedelta(microseconds=1),
        start - SKEW,
        start + timedelta(days=2) - timedelta(microseconds=1),
        start + timedelta(days=2),
    ]
    frame = pl.DataFrame({"ingest_time": ingest})

    kept = frame.filter(window.raw_ingest_rows(SKEW, timedelta(days=1)))

    assert kept["ingest_time"].to_list() == ingest[1:3]


def test_a_dagster_time_window_becomes_whole_days():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    window = EventWindow.from_datetimes(start, start + timedelta(days=3))

    assert window.days() == [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]
    assert window.label == "2026-11-01..2026-11-04"
    assert window.predicate() == "event_date >= '2026-11-01' AND event_date < '2026-11-04'"
    assert EventWindow.day(DAY).label == "2026-11-05"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2026, 11, 1, 6, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)),
        (datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)),
    ],
    ids=["not-midnight", "empty"],
)
def test_windows_that_are_not_whole_days_are_refused(start, end):
    with pytest.raises(ValueError, match="event window"):
        EventWindow.from_datetimes(start, end)


def test_an_hour_window_reads_raw_from_its_first_hour_and_names_its_hours():
    window = EventWindow.hours_of(DAY, [23, 22, 23])
    late = timedelta(hours=2)

    assert window.hours == (22, 23)
    assert window.label == "2026-11-05 hours 22,23 UTC"
    assert window.raw_ingest_span(SKEW, late) == (
        datetime(2026, 11, 5, 21, 55, tzinfo=UTC),
        datetime(2026, 11, 6, 2, 0, tzinfo=UTC),
    )
    assert window.predicate("event_date", "event_hour") == (
        "event_date >= '2026-11-05' AND event_date < '2026-11-06' AND event_hour IN (22, 23)"
    )
    assert window.partition_filters("event_date", "event_hour")[-1] == (
        "event_hour",
        "in",
        ["22", "23"],
    )
    rows = pl.DataFrame(
        {"event_date": [DAY, DAY, DAY + timedelta(days=1)], "event_hour": [21, 22, 22]}
    )
    assert rows.filter(window.contains("event_date", "event_hour")).height == 1
    # A table rebuilt only by whole days has no hour column to pick hours by.
    with pytest.raises(ValueError, match="no hour column"):
        window.predicate("bucket_date")
    assert window.whole_days() == EventWindow.day(DAY)
    assert EventWindow.hours_of(DAY, range(24)) == EventWindow.day(DAY)


@pytest.mark.parametrize(
    ("end", "hours", "message"),
    [
        (DAY + timedelta(days=2), (1,), "one-day window"),
        (DAY + timedelta(days=1), (), "distinct and sorted"),
        (DAY + timedelta(days=1), (3, 2), "distinct and sorted"),
        (DAY + timedelta(days=1), (24,), "0 to 23"),
    ],
)
def test_bad_hours_are_refused(end, hours, message):
    with pytest.raises(ValueError, match=message):
        EventWindow(DAY, end, hours)
