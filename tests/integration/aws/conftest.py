"""moto's standalone server on a free loopback port, used as a real AWS endpoint over HTTP.

One server serves the whole session (it starts in about a second); each test gets its own
bucket and stream names, so tests never see each other's data. The server's request log
is kept in a file: a test can read the status codes S3 answered (412 on a conditional PUT).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from iot_lake.settings import storage_options_from_env
from tests.support import free_port, wait_until

REGION = "us-east-1"
REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class MotoServer:
    """Where the server listens, how to reach it, and where it logs requests."""

    endpoint_url: str
    log_path: Path

    @property
    def env(self) -> dict[str, str]:
        """AWS variables for boto3 and delta-rs: endpoint, region, dummy credentials."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ALLOW_HTTP": "true",
        }

    @property
    def storage_options(self) -> dict[str, str]:
        """delta-rs storage options, built the way the settings build them in production."""
        return storage_options_from_env(self.env)

    def client(self, service: str):
        """A boto3 client for this server."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def subprocess_env(self) -> dict[str, str]:
        """The environment for a child process: ours without AWS settings, plus the server's."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return {**base, **self.env, "PYTHONPATH": str(REPO_ROOT)}

    def request_log(self) -> str:
        """Everything the server logged so far (one line per request)."""
        return self.log_path.read_text(errors="replace")


def _answers(client) -> bool:
    try:
        client.list_buckets()
    except (BotoCoreError, ClientError):
        return False
    return True


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server process for the session, stopped (by its pid) at the end."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = MotoServer(f"http://127.0.0.1:{port}", log_path)
    try:
        s3 = server.client("s3")
        wait_until(lambda: process.poll() is not None or _answers(s3), 30, "moto server to answer")
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited: {server.request_log()[-2000:]}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(autouse=True)
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Point every AWS client of the test (boto3, delta-rs) at moto, never at real AWS."""
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in moto_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    return moto_server


@pytest.fixture
def unique_name(request: pytest.FixtureRequest, worker_id: str) -> str:
    """A bucket- and stream-safe name unique to this test (and xdist worker)."""
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"{worker_id}-{test}"[:48].strip("-") + "-" + uuid.uuid4().hex[:8]
