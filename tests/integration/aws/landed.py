"""What the tests compare: the messages published against the rows raw_telemetry holds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import polars as pl

from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.tables import Lake
from streaming.simulator.fleet import Fleet, FleetSpec, SimMessage


def fleet_messages(count: int, *, seed: int = 7, devices: int = 40) -> list[SimMessage]:
    """A seeded fleet's first `count` messages, faults included (malformed, spoofed, ...)."""
    return list(Fleet(FleetSpec(devices=devices, seed=seed)).messages(count))


def raw(lake: Lake) -> pl.DataFrame:
    """raw_telemetry as it is now."""
    return lake.read(RAW_TELEMETRY)


def published(messages: Iterable[SimMessage]) -> Counter[tuple[str, str]]:
    """The multiset of (topic, payload text) the devices sent."""
    return Counter((m.topic, m.payload.decode()) for m in messages)


def landed(rows: pl.DataFrame) -> Counter[tuple[str, str]]:
    """The multiset of (topic, payload text) raw_telemetry holds."""
    return Counter(zip(rows["topic"].to_list(), rows["payload"].to_list(), strict=True))


def assert_exactly_once(lake: Lake, messages: Iterable[SimMessage]) -> pl.DataFrame:
    """Every published message is in raw exactly once, and each record landed once."""
    rows = raw(lake)
    expected, got = published(messages), landed(rows)
    missing, extra = expected - got, got - expected
    summary = f"{sum(missing.values())} missing, {sum(extra.values())} extra"
    assert not missing, f"{summary}; e.g. missing {list(missing)[:2]}"
    assert not extra, f"{summary}; e.g. extra {list(extra)[:2]}"
    assert rows["source_position"].is_unique().all(), "a Kinesis record landed twice"
    return rows
