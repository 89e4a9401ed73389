"""Contract 2 under kill -9: a Kinesis consumer lands every record exactly once across crashes.

The consumer is the real `iot-lake consume` process reading moto's Kinesis over HTTP; it is
killed at random instants (starting up, resuming, polling, mid-commit) at least 20 times
while new records keep arriving, and restarted each time.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.tables import Lake
from streaming.simulator.kinesis_publisher import create_stream, put_messages
from tests.integration.aws.conftest import REGION, REPO_ROOT, MotoServer
from tests.integration.aws.landed import assert_exactly_once, fleet_messages
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = 20
CHUNK = 120


def _start_consumer(moto: MotoServer, stream: str, lake: Lake, log: Path, *extra: str):
    source = f"kinesis://{stream}?endpoint={moto.endpoint_url}&region={REGION}"
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [
                sys.executable, "-m", "iot_lake.app.entry", "consume", "--source", source,
                "--lake-root", lake.root, "--consumer-id", "crashy",
                "--max-records", "50", "--max-age-s", "0.2", "--stats-interval-s", "3600",
                *extra,
            ],
            cwd=REPO_ROOT,
            env=moto.subprocess_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )  # fmt: skip


def _table_version(lake: Lake) -> int:
    table = lake.open(RAW_TELEMETRY)
    return -1 if table is None else table.version()


def test_kill_9_at_random_points_lands_every_record_exactly_once(
    aws_env: MotoServer, tmp_path: Path, unique_name: str
):
    rng = random.Random(9)
    create_stream(unique_name, 4, endpoint_url=aws_env.endpoint_url, region=REGION)
    messages = fleet_messages(CHUNK * (KILLS + 2), seed=31)
    chunks = [messages[i : i + CHUNK] for i in range(0, len(messages), CHUNK)]
    lake = Lake(str(tmp_path / "lake"))
    log = tmp_path / "consumer.log"
    kills = 0
    for chunk in chunks[:-1]:
        put_messages(chunk, unique_name, endpoint_url=aws_env.endpoint_url, region=REGION)
        before = _table_version(lake)
        process = _start_consumer(aws_env, unique_name, lake, log)
        if rng.random() < 0.3:
            # Anywhere in its first second and a half: imports, resume, first poll or commit.
            delay = rng.uniform(0.0, 1.5)
        else:
            # Once it has landed something new: a random instant of its next read or commit.
            wait_until(
                lambda b=before, p=process: _table_version(lake) > b or p.poll() is not None,
                60,
                "the consumer's next commit",
            )
            delay = rng.uniform(0.0, 0.3)
        try:
            process.wait(timeout=delay)  # the kill instant; returns early only if it died
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            kills += 1
        assert process.returncode == -9, log.read_text()[-3000:]

    put_messages(chunks[-1], unique_name, endpoint_url=aws_env.endpoint_url, region=REGION)
    final = _start_consumer(aws_env, unique_name, lake, log, "--stop-when-idle-s", "2")
    assert final.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert kills >= KILLS
    assert_exactly_once(lake, messages)
