"""Bad command-line input fails fast, with a message naming what is wrong, and exit != 0.

"Fast" is behaviour, not speed: the command gives up at the first check that fails, before
it reads anything, rather than waiting or retrying. Each run is bounded by a deadline (the
subprocess timeout) only so that a command that hangs fails the test instead of stalling it.
"""

import subprocess
import sys

import pytest

from tests.support import free_port


def iot_lake(*args, timeout=60):
    """Run `iot-lake ARGS` to its end: its exit code and stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "iot_lake.app.entry", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["consume", "--source", "ftp://example/x"], "--source: expected one of file:PATH"),
        (["consume", "--source", "file:/no/such/file.jsonl"], "no such file"),
        (["consume", "--source", "file:x", "--max-records", "0"], "expected a positive integer"),
        (["consume", "--source", "simulator://?devices=many"], "?devices=: expected an integer"),
        (["simulate", "--to", "gopher://x", "--messages", "1"], "--to: expected file:PATH"),
        (["simulate", "--to", "file:/tmp/x.jsonl"], "--messages: expected a count"),
    ],
    ids=["unknown-scheme", "missing-file", "zero-batch", "bad-query-value", "bad-destination",
         "endless-simulation"],
)  # fmt: skip
def test_bad_input_is_refused_with_the_field_and_expected_form(args, message, tmp_path):
    code, stderr = (
        iot_lake(*args, "--lake-root", str(tmp_path / "lake"))
        if args[0] == "consume"
        else iot_lake(*args)
    )
    assert code != 0
    assert message in stderr


def test_unwritable_lake_root_fails_fast(tmp_path):
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    source = tmp_path / "in.jsonl"
    source.write_text("")
    target = "/proc/iot-lake" if _running_as_root() else str(readonly / "lake")
    # A followed file never ends: only a check before the first read lets the command exit.
    followed = f"file:{source}?follow=true"
    code, stderr = iot_lake("consume", "--source", followed, "--lake-root", target)
    assert code == 2
    assert "cannot be created" in stderr or "not writable" in stderr


@pytest.mark.integration
def test_unreachable_broker_fails_fast_naming_it():
    port = free_port()
    code, stderr = iot_lake("consume", "--source", f"mqtt://127.0.0.1:{port}")
    assert code == 2
    # Refused at the connection, not after waiting for a broker reply that cannot come.
    assert f"127.0.0.1:{port} is unreachable" in stderr


def _running_as_root():
    import os

    return os.geteuid() == 0


def test_bad_sql_is_refused_with_duckdbs_message_and_exit_2(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"tenant/t/devices/d/status\t{broken\n")
    lake_root = str(tmp_path / "lake")
    assert iot_lake("consume", "--source", f"file:{source}", "--lake-root", lake_root)[0] == 0
    code, stderr = iot_lake(
        "sql", "SELECT payload::JSON->>'ts' FROM raw_telemetry", "--lake-root", lake_root
    )
    assert code == 2
    assert "iot-lake sql: error:" in stderr
    assert "Malformed JSON" in stderr
