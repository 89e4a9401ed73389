"""`dagster dev` beside the demo: the Dagster UI, the daemon and the code server, as one subprocess.

Dagster is started, never imported, so the core and the streaming package stay free of it.
The process gets its own session (like the Mosquitto broker), so a Ctrl-C meant for
`iot-lake run` reaches the consumer first and the consumer's last commit is in before the
UI goes; `stop` then sends the group SIGINT, as a terminal would (`dagster dev` needs it to
stop the webserver, the daemon and the code server), waits a bounded time and only then
escalates to SIGTERM and SIGKILL of the whole process group.

Its instance lives in `home` (DAGSTER_HOME): a dagster.yaml written at every start keeps
run, event and schedule storage there in SQLite, runs one at a time and turns off telemetry
and the first-visit dialog. The sensors and automation conditions run in the daemon that
`dagster dev` starts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psutil

from iot_lake.app.allocator import freed_pages_setting
from iot_lake.settings import Settings, absolute_root

DEFAULT_HOME = Path(".run") / "dagster"  # beside .run/mosquitto (streaming/demo_mqtt.py)
CODE_LOCATION_MODULE = "iot_lake.definitions"  # what workspace.yaml loads
LOG_NAME = "dagster-dev.log"
GROUP_NAME = "dagster-dev.pgid"  # the process group of the dagster dev started last on a home

# One run at a time: the machine has 2 cores, a multiprocess run already takes both while
# its steps start, and one run per table at a time keeps to one Delta writer per table.
# Runs wait in the queue (QueuedRunCoordinator, dagster's default) rather than fail.
#
# A run cut short (Ctrl-C stopping `dagster dev` mid-run: its worker gets the SIGINT too)
# fails as an UNEXPECTED_TERMINATION. The sensor's cursor is already past the raw commits
# that run was to rebuild, so its hours would stay stale until new data touched them again:
# the daemon re-executes it from where it stopped, up to 2 times (`run_retries`), also once
# it has been started again after the Ctrl-C. A run its own step failed (a blocking quality
# check) would fail again the same way and is not retried. A run whose worker died with no
# word (power loss, SIGKILL) is failed at the next start (iot_lake/app/interrupted_runs.py) and
# so retried the same way.
INSTANCE_YAML = """\
# Written by `iot-lake run` at every start (iot_lake/app/dagster_ui.py): edit it there.
storage:
  sqlite:
    base_dir: {storage}
concurrency:
  runs:
    max_concurrent_runs: 1
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false
telemetry:
  enabled: false
nux:
  enabled: false
"""


class DagsterUiError(RuntimeError):
    """`dagster dev` could not start or did not stop; the message says why and where to look."""


def lake_environment(settings: Settings) -> dict[str, str]:
    """The variables that give the code location the same lake as the consumer.

    Only the root can differ from the environment (`--lake-root`); every other IOT_LAKE_*
    and AWS_* setting was read from the environment the child inherits. A local root is made
    absolute so that runs find it whatever their working directory.
    """
    return {"IOT_LAKE_ROOT": absolute_root(settings.lake_root)}


def live_group_members(pgid: int) -> list[psutil.Process]:
    """The processes of group `pgid` that still run (zombies, already dead, are left out)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def _is_dagster(process: psutil.Process) -> bool:
    try:
        return any("dagster" in part for part in process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def _stop_signals_not_ignored() -> Iterator[None]:
    """Let the child see SIGINT and SIGTERM even where this process was started ignoring them.

    An ignored signal stays ignored across exec (a job started with `&` by a script ignores
    SIGINT), and `dagster dev` then never hears the SIGINT that stops it cleanly. A handled
    signal is reset to its default at exec, so the child starts with the defaults.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal() needs it
    ignored = [
        sig
        for sig in (signal.SIGINT, signal.SIGTERM)
        if in_main_thread and signal.getsignal(sig) is signal.SIG_IGN
    ]
    for sig in ignored:
        signal.signal(sig, signal.SIG_DFL)
    try:
        yield
    finally:
        for sig in ignored:
            signal.signal(sig, signal.SIG_IGN)


class DagsterDev:
    """One `dagster dev` process group serving the UI on host:port, with its instance in `home`.

    `start` returns at once (the UI answers 15-40 s later on 2 cores); `stop` ends the group.
    """

    def __init__(
        self,
        home: Path,
        port: int,
        environment: Mapping[str, str],
        *,
        host: str = "127.0.0.1",
        stop_timeout_s: float = 60.0,
    ) -> None:
        self.home = home.absolute()
        self.port = port
        self.host = host
        self.environment = dict(environment)
        self.stop_timeout_s = stop_timeout_s
        self.log_path = self.home / LOG_NAME
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.interrupted_runs: list[str] = []  # what start() found left in progress, ended
        self._stopping = threading.Event()  # quiets the readiness announcement on the way out

    @property
    def url(self) -> str:
        """Where the UI answers."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> DagsterDev:
        """Write the instance config and start `dagster dev`; it answers some seconds later.

        Runs an earlier `dagster dev` left in progress are ended first, so they run again
        (`interrupted_runs` lists them).

        Raises:
            DagsterUiError: the port is taken (another UI?), or the dagster dev started last
                on this home still runs, or the runs it left could not be ended.
        """
        if _port_accepts(self.host, self.port):
            raise DagsterUiError(
                f"{self.host}:{self.port} is already in use (another dagster dev?): "
                "choose another port with --ui-port or IOT_LAKE_UI_PORT, or pass --no-ui"
            )
        self._refuse_beside_an_earlier_group()
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(INSTANCE_YAML.format(storage=self.home / "storage"))
        env = self.child_environment()
        self.interrupted_runs = self._end_runs_left_in_progress(env)
        command = [sys.executable, "-m", "dagster", "dev", "-m", CODE_LOCATION_MODULE]
        command += ["--host", self.host, "--port", str(self.port)]
        with self.log_path.open("ab") as log, _stop_signals_not_ignored():
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,  # its own group: stop() signals all of it at once
            )
        (self.home / GROUP_NAME).write_text(str(self.process.pid))
        self.started_at = time.monotonic()
        return self

    def child_environment(self) -> dict[str, str]:
        """The environment of `dagster dev`: ours, the lake's variables and DAGSTER_HOME.

        Plus polars' allocator keeping freed pages (iot_lake.app.allocator), whoever started
        this process: the run workers decode and roll up what the setting was measured on.
        """
        env = {**os.environ, **self.environment, "DAGSTER_HOME": str(self.home)}
        return env | freed_pages_setting(env)

    def _refuse_beside_an_earlier_group(self) -> None:
        """Refuse to start while the dagster dev started last on this home still runs.

        It survives an `iot-lake run` killed outright (its own session). Its run workers may
        be running: ending their runs, or a second daemon on the same instance, would run
        the same hours twice.
        """
        try:
            pgid = int((self.home / GROUP_NAME).read_text())
        except (FileNotFoundError, ValueError):
            return
        if any(_is_dagster(process) for process in live_group_members(pgid)):
            raise DagsterUiError(
                f"the dagster dev started earlier on {self.home} still runs (process group "
                f"{pgid}): stop it with `kill -INT -{pgid}`, then start again"
            )

    def _end_runs_left_in_progress(self, env: Mapping[str, str]) -> list[str]:
        """Fail the runs an earlier dagster dev left in progress; their '<id> <job> ...' lines."""
        if not (self.home / "storage").is_dir():  # a new instance: no run yet
            return []
        command = [sys.executable, "-m", "iot_lake.app.interrupted_runs", str(self.home)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise DagsterUiError(
                f"could not end the runs an earlier dagster dev left in progress:\n{done.stderr}"
            )
        return done.stdout.splitlines()

    def answers(self) -> bool:
        """True once the webserver serves requests (its /server_info endpoint)."""
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_until_ready(self, timeout_s: float = 120.0) -> float:
        """Wait until the UI answers; return the seconds since start.

        Raises:
            DagsterUiError: `dagster dev` exited or did not answer in time; the log's tail says why.
        """
        process = self._running_process()
        deadline = self.started_at + timeout_s
        while not self.answers():
            if process.poll() is not None:
                raise DagsterUiError(
                    f"dagster dev exited with code {process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise DagsterUiError(
                    f"the Dagster UI did not answer on {self.url} within {timeout_s:.0f} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.25)
        return time.monotonic() - self.started_at

    def announce_when_ready(self, say: Callable[[str], None], timeout_s: float = 120.0) -> None:
        """Print the URL once the UI answers, or why it will not, without holding up the caller."""

        def watch() -> None:
            try:
                took = self.wait_until_ready(timeout_s)
            except DagsterUiError as exc:
                if not self._stopping.is_set():
                    say(f"iot-lake run: no Dagster UI: {exc}")
                return
            if not self._stopping.is_set():
                say(f"iot-lake run: Dagster UI ready at {self.url} (started in {took:.1f} s)")

        threading.Thread(target=watch, name="dagster-ui-ready", daemon=True).start()

    def stop(self) -> float:
        """SIGINT to the process group, then SIGTERM, then SIGKILL; return the seconds it took.

        Each step waits until no process of the group runs (the code server and run workers
        included), the SIGINT step up to `stop_timeout_s`.

        Raises:
            DagsterUiError: something of the group survived SIGKILL.
        """
        process = self.process
        if process is None:
            return 0.0
        self._stopping.set()
        started = time.monotonic()
        pgid = process.pid  # the session leader's pid is its group id
        for sig, wait_s in (
            (signal.SIGINT, self.stop_timeout_s),
            (signal.SIGTERM, 10.0),
            (signal.SIGKILL, 10.0),
        ):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            if self._group_ends(pgid, process, wait_s):
                break
        process.wait()  # reaps the leader (already gone, or killed above)
        self.process = None
        if survivors := live_group_members(pgid):
            raise DagsterUiError(f"dagster dev left processes running: {survivors}")
        return time.monotonic() - started

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of dagster dev's log, for error messages."""
        if not self.log_path.is_file():
            return "(no output)"
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.log_path}\n" + "\n".join(tail)

    def _running_process(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise DagsterUiError("dagster dev is not started")
        return self.process

    @staticmethod
    def _group_ends(pgid: int, leader: subprocess.Popen[bytes], wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            leader.poll()  # reap the leader as soon as it exits, so it counts as gone
            if not live_group_members(pgid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
