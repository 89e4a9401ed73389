"""Run Eclipse Mosquitto with the configuration iot-lake ships, for tests and the demo.

Mosquitto's defaults lose data (1,000 queued messages per client, no persistence), so the
project never runs a bare `mosquitto`: it renders `mosquitto.conf.template` for a loopback
port and a data directory and starts the broker on that file. The broker is a subprocess
of whoever needs it (there is no systemd here), stopped with SIGTERM so it saves its
database on the way out.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import string
import subprocess
import time
from importlib import resources
from pathlib import Path
from types import TracebackType

TEMPLATE_NAME = "mosquitto.conf.template"
# Debian installs the broker in /usr/sbin, which is not on a normal user's PATH.
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin")


class MosquittoError(RuntimeError):
    """The broker is missing, would not start, or would not stop; the message says which."""


def find_mosquitto(search_path: str | None = None) -> str:
    """The mosquitto executable on `search_path` (default: PATH and the sbin directories).

    Raises:
        MosquittoError: it is not installed; the message says how to install it.
    """
    if search_path is None:
        search_path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    found = shutil.which("mosquitto", path=search_path)
    if found:
        return found
    raise MosquittoError(
        f"mosquitto is not installed (looked in {search_path}): install the Debian package "
        "mosquitto (apt-get install mosquitto), or run `make test`, which checks for it"
    )


def render_config(port: int, data_dir: Path) -> str:
    """The shipped configuration filled in for one loopback port and data directory."""
    template = resources.files("streaming").joinpath(TEMPLATE_NAME).read_text()
    return string.Template(template).substitute(
        port=port,
        data_dir=f"{data_dir.absolute()}/",  # Mosquitto appends file names to it verbatim
        user=getpass.getuser(),
    )


def port_accepts(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class Mosquitto:
    """One Mosquitto process on 127.0.0.1:port with its database and log in `data_dir`.

    Use as a context manager (`with Mosquitto(port, tmp) as broker:`) or call `start` and
    `stop`. A broker started again on the same data directory reloads its persisted
    sessions and queues, which is how tests check that a broker restart loses nothing.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        port: int,
        data_dir: str | Path,
        *,
        startup_timeout_s: float = 10.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.port = port
        self.data_dir = Path(data_dir).absolute()
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.config_path = self.data_dir / "mosquitto.conf"
        self.log_path = self.data_dir / "mosquitto.log"
        self.stderr_path = self.data_dir / "mosquitto.stderr"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0  # where this start's log lines begin (restarts append)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> Mosquitto:
        """Write the config, start the broker and wait until its port accepts connections."""
        if self.running:
            return self
        executable = find_mosquitto()
        if port_accepts(self.host, self.port):
            raise MosquittoError(f"cannot start mosquitto: {self.host}:{self.port} is in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.is_file() else 0
        self.config_path.write_text(render_config(self.port, self.data_dir))
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [executable, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                # Its own session: a Ctrl-C meant for `iot-lake run` must not stop the broker
                # before the consumer's last commit is acknowledged; stop() ends it.
                start_new_session=True,
            )
        self._wait_until_listening()
        return self

    def _wait_until_listening(self) -> None:
        """Wait for our own process to log that it runs and for the port to answer.

        The port alone is not proof: another broker may hold it while ours exits.
        """
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while not (self._log_says_running() and port_accepts(self.host, self.port)):
            if self.process.poll() is not None:
                raise MosquittoError(
                    f"mosquitto exited with code {self.process.returncode} on start "
                    f"(port {self.port} in use? bad config?):\n{self.diagnostics()}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise MosquittoError(
                    f"mosquitto did not accept connections on {self.host}:{self.port} within "
                    f"{self.startup_timeout_s:.0f} s:\n{self.diagnostics()}"
                )
            time.sleep(0.02)

    def _log_says_running(self) -> bool:
        if not self.log_path.is_file():
            return False
        return any(line.endswith(" running") for line in self._new_log_lines())

    def _new_log_lines(self) -> list[str]:
        with self.log_path.open("rb") as log_file:
            log_file.seek(self._log_offset)
            return log_file.read().decode(errors="replace").splitlines()

    def stop(self) -> None:
        """SIGTERM (the broker saves its database), wait, and SIGKILL only if it hangs."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(self.stop_timeout_s)
                self.process = None
                raise MosquittoError(
                    f"mosquitto did not stop within {self.stop_timeout_s:.0f} s of SIGTERM and "
                    "was killed; its last autosave is what persisted"
                ) from None
        self.process = None

    def diagnostics(self, lines: int = 20) -> str:
        """The last lines of the broker's stderr and log, for error messages."""
        parts = []
        for path in (self.stderr_path, self.log_path):
            if path.is_file():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts) or "(no output)"
