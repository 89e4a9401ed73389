from collections import Counter

import polars as pl
import pytest

from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.settings import BatchLimits
from streaming.consumer import Consumer, ConsumerOptions
from streaming.landing import LandingWriter
from streaming.simulator.fleet import Fleet, FleetSpec
from streaming.sources.file import FileSource, split_lines
from tests.conftest import framed_file


def consume_file(lake, path, follow=False, max_records=200, idle=None):
    options = ConsumerOptions(
        batch=BatchLimits(max_records=max_records, max_age_s=0.5),
        stats_interval_s=3600,
        stop_when_idle_s=idle,
    )
    source = FileSource(path, follow=follow, poll_interval_s=0.05)
    return Consumer(source, LandingWriter(lake, "test"), options, report=lambda _: None).run()


def test_every_line_lands_once_with_expected_errors(lake, tmp_path, noisy_fleet):
    messages = list(Fleet(noisy_fleet).messages(3000))
    path = framed_file(tmp_path / "fleet.jsonl", messages)
    stats = consume_file(lake, path)
    raw = lake.read(RAW_TELEMETRY)
    assert stats.messages == raw.height == len(messages)
    assert Counter(zip(raw["topic"], raw["payload"], strict=True)) == Counter(
        (m.topic, m.payload.decode()) for m in messages
    )
    expected_errors = Counter(m.expected_error for m in messages if m.expected_error)
    assert set(expected_errors) >= {"undecodable", "wrong_type", "identity_mismatch"}
    assert Counter(lake.quarantine()["error_code"].to_list()) == expected_errors


def test_restart_resumes_after_the_committed_offset(lake, tmp_path, noisy_fleet):
    messages = list(Fleet(noisy_fleet).messages(1000))
    path = framed_file(tmp_path / "fleet.jsonl", messages[:600])
    consume_file(lake, path)
    framed_file(path, messages[600:])
    second = consume_file(lake, path)
    raw = lake.read(RAW_TELEMETRY)
    assert second.messages == 400
    assert raw.height == 1000
    assert raw["source_position"].n_unique() == 1000


def test_follow_picks_up_appended_lines_and_a_last_line_without_newline(lake, tmp_path):
    path = tmp_path / "tail.jsonl"
    messages = list(Fleet(FleetSpec(devices=3)).messages(30))
    framed_file(path, messages[:20])
    with path.open("ab") as out:
        out.write(messages[20].frame)  # no newline yet: a writer mid-line
    consume_file(lake, path, follow=True, idle=0.3)
    assert lake.read(RAW_TELEMETRY).height == 20
    with path.open("ab") as out:
        out.write(b"\n")
    consume_file(lake, path, follow=False)
    raw = lake.read(RAW_TELEMETRY)
    assert raw.height == 21
    assert raw.filter(pl.col("payload") == messages[20].payload.decode()).height == 1


def test_line_without_topic_is_kept_as_invalid_topic(lake, tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_bytes(b'{"device_id":"x"}\n')
    consume_file(lake, path)
    raw = lake.read(RAW_TELEMETRY)
    assert raw["error_code"].to_list() == ["invalid_topic"]
    assert raw["payload"].to_list() == ['{"device_id":"x"}']


@pytest.mark.parametrize(
    "lines",
    [
        [b"t/a\t{}", b't/b\t{"x":1}'],  # one tab a line: the vectorised split
        [b't/a\t{\t"x":1}', b"t/b\t{}"],  # a tab inside a payload
        [b"no-topic-here", b"t/b\t{}"],  # a line without its tab
        [b"\t{}", b"t/b\t{}"],  # an empty topic
        [b"t/a\t{}\r", b"t/b\t{}\r"],  # CRLF line ends
        [b"", b"t/b\t{}"],  # an empty line
        [b"t/a\t\xff{}", b"t/b\t{}"],  # not UTF-8: split line by line in Python
        [b"tenant/acme/devices/d-1/status\t" + b"x" * 13, b"t\t123456789012"],  # 12+ bytes
    ],
    ids=[
        "plain",
        "tab-in-payload",
        "no-tab",
        "empty-topic",
        "crlf",
        "empty-line",
        "not-utf8",
        "views",
    ],
)
def test_split_lines_agrees_with_splitting_each_line(lines):
    frames = split_lines(b"".join(line + b"\n" for line in lines))

    expected = [line.removesuffix(b"\r").partition(b"\t") for line in lines]
    assert as_bytes(frames.topics) == [topic if tab else None for topic, tab, _ in expected]
    assert as_bytes(frames.payloads) == [
        payload if tab else topic for topic, tab, payload in expected
    ]
    assert frames.starts.tolist() == [
        sum(len(line) + 1 for line in lines[:i]) for i in range(len(lines))
    ]
    for column in (frames.topics, frames.payloads):
        if isinstance(column, pl.Series):  # views over the buffer: prefixes, offsets, lengths
            column.to_arrow(compat_level=pl.CompatLevel.newest()).validate(full=True)


def as_bytes(column: pl.Series | list[bytes | None]) -> list[bytes | None]:
    """A split column as bytes, whether polars made it (UTF-8) or Python did."""
    if isinstance(column, list):
        return column
    return [None if value is None else value.encode() for value in column.to_list()]
