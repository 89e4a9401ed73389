"""Ingest benchmark: how fast one consumer process lands messages, and what bounds it.

The figures size the deployment (DESIGN.md, "Scale") and chose the default BatchLimits.
Each is printed on its own stdout line as `name: value unit`; context lines start with `#`
and progress goes to stderr.

- message_size: mean framed message (topic, tab, payload) of the generated file.
- landing, landing_cpu, commit_p50, commit_p95, landed_p95: FileSource -> Consumer ->
  LandingWriter on a fresh local lake with the default BatchLimits; messages per second of
  `Consumer.run` wall time (and per CPU-second of this process, which a busy machine
  disturbs less), every row verified in the table afterwards. A commit is writing a batch's
  files plus its Delta commit; `landed_p95` is from sealing a batch to its commit being
  done, waits in the consumer's pipeline included.
- limit, landing_vs_limit: the same bytes parsed by polars (keys decoded, payload text kept)
  and written as one Parquet file: no Delta, no validation, no Python per message. What one
  process could do at best, so `landing_vs_limit` says how much the consumer leaves behind.
  This machine's speed drifts by a third within an hour, so a ratio means something only
  between runs made back to back: the `--landing-runs` landings (default 5) alternate with
  limits, a limit before the first and after each, and each landing is compared with the
  mean of the limits on either side of it (a drift during the pair moves both). Each
  landing is printed on a `#` line with both limits and its ratio to each; the figures are
  the medians (the ratio the median of the landings' ratios, the limit the median of its
  runs, the commit percentiles over every commit of every landing).
  A landing and a limit run first as a warm-up, printed and not counted: the first of
  each in a process faults in its working set (in the first landing the kernel zeroing
  fresh pages took about 0.35 of 3.2 CPU-s under perf, against 0.02 in the next), which a
  consumer running for weeks pays once.
- landing_one_bad_line, landing_one_bad_line_cpu: one landing of the same file with one
  line of invalid UTF-8 in the middle (a broken firmware); compare with `landing`.
- naive_per_message: one Delta commit per message, the design micro-batching replaces.
- soak, soak_commits, soak_commit_p95, consumer_peak_rss, consumer_rss_growth: the consumer
  in its own process with 1,000-message batches (1,000 commits at the default volume, so 40
  log checkpoints at the default interval of 25, where delta-rs #2628 saw memory jump), its
  RSS sampled from outside.
- growth_commit_first, growth_commit_last, growth_commit_p95 (`--growth-commits N`, off by
  default): N landing commits of the same 1,000 messages into one lake that is never
  compacted, so each commit finds one more live file: the median commit of the first and
  of the last 50, and the p95 of all (a `#` line gives every window's median).
- mqtt_publish, mqtt_1_consumer, mqtt_2_consumers: through a real Mosquitto with the shipped
  config, one consumer process, then two in one shared-subscription group (see `run_mqtt`).

Run: `.venv/bin/python bench/ingest.py [--messages N] [--scale F] [--skip-mqtt]
[--data-dir DIR] [--profile] [--landing-runs K] [--growth-commits N]`; `--scale 0.005` is
a smoke run. The machine is shared: a `# load` line before and after says how busy it was.
"""

from __future__ import annotations

# Before polars: landing here runs with polars' allocator set up as in the consumer the CLI
# starts (iot_lake.app.allocator); the limit it is compared with runs under the same setting.
from iot_lake.app.allocator import keep_freed_pages

keep_freed_pages()

# isort: split
import argparse
import cProfile
import itertools
import json
import multiprocessing as mp
import os
import pstats
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier
from pathlib import Path
from statistics import fmean, median
from typing import Any

import polars as pl
import psutil
import pyarrow.compute as pc
from deltalake import write_deltalake
from report import at_least_one, figure, note, own_peak_rss, print_load, run_and_exit

from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.lake.tables import Lake
from iot_lake.settings import BatchLimits, MqttSettings, load_settings
from streaming.batch import RawBatch, now_micros
from streaming.broker import Mosquitto
from streaming.consumer import Consumer, ConsumerOptions
from streaming.landing import CommitOutcome, LandingWriter, Position, PreparedBatch
from streaming.lean import keep_pandas_out
from streaming.simulator.fleet import Fleet, FleetSpec, SimMessage
from streaming.simulator.mqtt_publisher import publish
from streaming.sources.base import split_frame
from streaming.sources.file import FileSource
from streaming.sources.mqtt import MqttSource
from streaming.stats import percentile

CACHE_DIR = Path(__file__).resolve().parent / ".data"
DEFAULT_MESSAGES = 1_000_000
SEED = 7
MAX_DEVICES = 10_000
NAIVE_MESSAGES = 300
SOAK_BATCH_RECORDS = 1_000
GROWTH_BATCH_RECORDS = 1_000
GROWTH_WINDOW = 50
RSS_SAMPLE_INTERVAL_S = 0.1
# MQTT carries a tenth of the file's volume: QoS 1 publishing is the slow side (DESIGN.md).
MQTT_MIN_MESSAGES = 200
MQTT_PUBLISHERS = 4
MQTT_IDLE_S = 3.0
MQTT_TIMEOUT_S = 120.0
MIB = 2**20

# The keys the limit decodes. `ts` is read as text and cast leniently: json_decode fails the
# whole column on one value of the wrong type, and a malformed message may carry ts as text.
LIMIT_KEYS = pl.Struct({"device_id": pl.String, "message_id": pl.String, "ts": pl.String})


def fleet_devices(count: int) -> int:
    """Fleet size for `count` messages: 10,000 devices, fewer for a smoke run.

    Every device publishes three boot messages first, so a small run from a 10,000-device
    fleet would be boot messages only; one device per 100 messages keeps telemetry dominant.
    """
    return max(10, min(MAX_DEVICES, count // 100))


def generated_messages(count: int, devices: int, seed: int) -> Path:
    """The framed-JSONL file of `count` simulator messages (faults on), generated once.

    Generation (about 25 s per million) is not part of any figure, and the same size and seed
    always give the same bytes, so the file is cached under bench/.data/ (git-ignored).
    """
    path = CACHE_DIR / f"fleet-n{count}-d{devices}-seed{seed}.jsonl"
    if path.is_file():
        return path
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # concurrent runs race safely
    note(f"generating {count:,} messages from {devices:,} devices into {path}")
    with partial.open("wb") as out:
        for message in Fleet(FleetSpec(devices=devices, seed=seed)).messages(count):
            out.write(message.frame + b"\n")
    partial.replace(path)
    return path


# A telemetry payload that is not UTF-8: its chunk goes through the consumer's slow path.
INVALID_UTF8_LINE = b"tenant/bench/devices/broken-1/telemetry\t\xff\xfe\xfd\n"


def with_one_invalid_utf8_line(path: Path, copy: Path) -> Path:
    """A copy of the file with one line of invalid UTF-8 in the middle (landing_one_bad_line).

    One device with a broken firmware must not slow the fleet's ingest: only the chunk that
    holds the line is split and decoded line by line.
    """
    data = path.read_bytes()
    middle = data.index(b"\n", len(data) // 2) + 1
    copy.write_bytes(data[:middle] + INVALID_UTF8_LINE + data[middle:])
    return copy


def read_frames(path: Path, count: int) -> list[bytes]:
    """The first `count` framed lines of the file, without their newlines."""
    with path.open("rb") as lines:
        return [line.rstrip(b"\n") for line in itertools.islice(lines, count)]


def count_rows(lake: Lake, distinct_column: str | None = None) -> tuple[int, int]:
    """Rows in raw_telemetry's data files, and distinct values of a column (or the rows).

    Counted from the Parquet files the table references, not from commit metadata, so a
    figure is only printed for data that is really there.
    """
    table = lake.open(RAW_TELEMETRY)
    if table is None:
        return 0, 0
    dataset = table.to_pyarrow_dataset()
    if distinct_column is None:
        rows = dataset.count_rows()
        return rows, rows
    column = dataset.to_table(columns=[distinct_column]).column(distinct_column)
    return len(column), pc.count_distinct(column).as_py()


def verify_landed(lake: Lake, expected: int) -> None:
    """Fail unless raw_telemetry holds each of the `expected` file lines exactly once."""
    rows, distinct = count_rows(lake, "source_position")
    if rows != expected or distinct != expected:
        raise RuntimeError(
            f"raw_telemetry at {lake.root} has {rows:,} rows ({distinct:,} distinct positions); "
            f"expected {expected:,}: the rate would be meaningless"
        )


@dataclass(frozen=True)
class ConsumerRun:
    """What one consumer run landed, how long it took, and its per-commit seconds."""

    messages: int
    seconds: float
    commit_seconds: list[float]
    cpu_seconds: float = 0.0
    landed_seconds: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Messages committed per second of wall time."""
        return self.messages / self.seconds


def run_landing(path: Path, lake_root: Path, expected: int, limits: BatchLimits) -> ConsumerRun:
    """Land the file with the production consumer, timing `Consumer.run` only.

    Creating the table is outside the timing (it happens once per deployment); reading the
    file, checking every message, building Arrow and committing are inside.
    """
    lake = Lake(str(lake_root))
    writer = LandingWriter(lake, consumer_id="bench-landing")
    consumer = Consumer(FileSource(path), writer, ConsumerOptions(batch=limits), report=note)
    started, cpu_started = time.perf_counter(), time.process_time()
    stats = consumer.run()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    verify_landed(lake, expected)
    return ConsumerRun(
        stats.messages, seconds, stats.commit_seconds, cpu_seconds, stats.landed_seconds
    )


def profile_landing(path: Path, lake_root: Path, limits: BatchLimits) -> None:
    """An extra landing run under cProfile, printed to stderr: where the time goes.

    Separate from the measured run because the profiler slows Python code (the per-message
    checks) far more than native code (Arrow, Parquet, Delta), which would skew the figure.
    """
    profiler = cProfile.Profile()
    writer = LandingWriter(Lake(str(lake_root)), consumer_id="bench-profile")
    consumer = Consumer(FileSource(path), writer, ConsumerOptions(batch=limits), report=note)
    profiler.runcall(consumer.run)
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(25)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(15)


def run_limit(path: Path, out_dir: Path, expected: int) -> float:
    """Seconds for polars to turn the file into one Parquet file: the single-process ceiling.

    The same bytes as the landing run, the topic split off, device_id, message_id and ts
    decoded, the payload text kept; no validation, no Delta commit, no Python per message.
    json_decode fails the whole column on one invalid document, so only payloads ending in
    '}' are decoded; a truncated one keeps null keys, as the consumer keeps it with an error.
    """
    started = time.perf_counter()
    lines = pl.read_csv(
        path,
        has_header=False,
        separator="\x01",  # never in a frame (JSON escapes control characters): one column
        quote_char=None,
        new_columns=["line"],
        schema_overrides={"line": pl.String},
        encoding="utf8-lossy",
    )
    frame = lines.select(
        pl.col("line").str.splitn("\t", 2).struct.rename_fields(["topic", "payload"])
    ).unnest("line")
    payload = pl.col("payload")
    frame = (
        frame.with_columns(
            keys=pl.when(payload.str.ends_with("}")).then(payload).str.json_decode(LIMIT_KEYS)
        )
        .unnest("keys")
        .with_columns(pl.col("ts").cast(pl.Int64, strict=False))
    )
    frame.write_parquet(out_dir / "limit.parquet", compression="snappy")
    seconds = time.perf_counter() - started
    if frame.height != expected:
        raise RuntimeError(f"the limit run parsed {frame.height:,} lines, expected {expected:,}")
    return seconds


def run_naive(path: Path, lake_root: Path, count: int) -> float:
    """Messages per second when every message is its own Delta commit.

    What a consumer without micro-batching would do: the same checks and Arrow conversion,
    then one `write_deltalake` append of a 1-row table per message. Each commit costs tens
    of milliseconds and adds a small file, so this is the figure batching exists to beat.
    """
    lake = Lake(str(lake_root))
    table = lake.ensure_table(RAW_TELEMETRY)
    frames = read_frames(path, count)
    max_payload_bytes = ConsumerOptions().max_payload_bytes
    started = time.perf_counter()
    for index, frame in enumerate(frames):
        topic, payload = split_frame(frame)
        batch = RawBatch("file", "bench-naive", max_payload_bytes)
        batch.add(topic, payload, now_micros(), f"naive@{index}")
        write_deltalake(table, batch.to_arrow(), mode="append")
    seconds = time.perf_counter() - started
    verify_landed(lake, len(frames))
    return len(frames) / seconds


def run_commit_growth(path: Path, lake_root: Path, commits: int) -> list[float]:
    """Seconds of each of `commits` landing commits of the same messages, never compacted.

    Each commit adds a live file, as between two of the consumer's compactions (up to 250
    small files in today's partition, beside the compacted files and the closed days that
    stay live): what a commit costs as the table grows. Only the positions change, so
    every commit lands rows of its own; building the batch is outside the timing.
    """
    lake = Lake(str(lake_root))
    writer = LandingWriter(lake, consumer_id="bench-growth")
    frames = [split_frame(frame) for frame in read_frames(path, GROWTH_BATCH_RECORDS)]
    topics, payloads = [topic for topic, _ in frames], [payload for _, payload in frames]
    max_payload_bytes = ConsumerOptions().max_payload_bytes
    seconds = []
    for number in range(1, commits + 1):
        batch = RawBatch("file", "bench-growth", max_payload_bytes)
        positions = [f"growth-{number}@{index}" for index in range(len(frames))]
        batch.extend(topics, payloads, now_micros(), positions)
        started = time.perf_counter()
        writer.commit(batch, [Position("bench-growth", number)])
        seconds.append(time.perf_counter() - started)
    verify_landed(lake, commits * len(frames))
    return seconds


def bench_commit_growth(path: Path, work: Path, commits: int) -> None:
    """The growth figures: first and last window's median commit, and the p95 of all."""
    note(f"growth: {commits} commits of {GROWTH_BATCH_RECORDS:,} messages, no compaction")
    seconds = run_commit_growth(path, work / "growth-lake", commits)
    window = min(GROWTH_WINDOW, commits)
    medians = [median(seconds[start : start + window]) for start in range(0, commits, window)]
    print(
        f"# growth: median commit per {window} commits (ms): "
        + " ".join(f"{value * 1000:.0f}" for value in medians),
        flush=True,
    )
    figure("growth_commit_first", median(seconds[:window]) * 1000, "ms")
    figure("growth_commit_last", median(seconds[-window:]) * 1000, "ms")
    figure("growth_commit_p95", percentile(seconds, 0.95) * 1000, "ms")


@dataclass(frozen=True)
class SoakRun:
    """The soak consumer's own figures plus the RSS samples taken from outside."""

    run: ConsumerRun
    commits: int
    peak_rss_bytes: int
    rss_samples: list[int]


def soak_child(path: str, lake_root: str, max_records: int, result_path: str) -> None:
    """The soak consumer, in a spawned process: deltalake panics in a forked child (tokio).

    Writes its figures as JSON for the parent, with the kernel's high-water mark of its RSS,
    which catches a checkpoint spike shorter than the parent's sampling interval. Pandas is
    kept out, as in the consumer `iot-lake consume` runs (streaming/lean.py).
    """
    if not keep_pandas_out():
        raise RuntimeError("pandas was imported before the soak consumer could keep it out")
    writer = LandingWriter(Lake(lake_root), consumer_id="bench-soak")
    options = ConsumerOptions(batch=BatchLimits(max_records=max_records))
    consumer = Consumer(FileSource(path), writer, options, report=note)
    started = time.perf_counter()
    stats = consumer.run()
    result = {
        "messages": stats.messages,
        "seconds": time.perf_counter() - started,
        "commits": stats.commits,
        "commit_seconds": stats.commit_seconds,
        "max_rss_bytes": own_peak_rss(),
    }
    Path(result_path).write_text(json.dumps(result))


def sample_rss(process: BaseProcess) -> list[int]:
    """The child's RSS every ~100 ms until it exits, read from outside so it costs it nothing."""
    assert process.pid is not None, "start() first"
    watched = psutil.Process(process.pid)
    samples: list[int] = []
    while process.is_alive():
        try:
            samples.append(watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        process.join(RSS_SAMPLE_INTERVAL_S)
    process.join()
    return samples


def run_soak(path: Path, work: Path, expected: int, max_records: int) -> SoakRun:
    """Run the consumer in its own process with small batches, sampling its memory."""
    lake_root = work / "soak-lake"
    result_path = work / "soak-result.json"
    process = mp.get_context("spawn").Process(
        target=soak_child,
        args=(str(path), str(lake_root), max_records, str(result_path)),
        name="bench-soak-consumer",
    )
    process.start()
    samples = sample_rss(process)
    if process.exitcode != 0:
        raise RuntimeError(f"the soak consumer exited with {process.exitcode}; see stderr")
    result = json.loads(result_path.read_text())
    verify_landed(Lake(str(lake_root)), expected)
    run = ConsumerRun(result["messages"], result["seconds"], result["commit_seconds"])
    peak = max([result["max_rss_bytes"], *samples])
    return SoakRun(run, result["commits"], peak, samples)


def rss_growth(samples: Sequence[int]) -> float:
    """Bytes the RSS grew over a run: what a leak would look like, not a spike.

    The first 10% of samples are warm-up (imports, first batches, allocator arenas filling);
    of the rest, the mean of the last 10% minus the mean of the first 10%, so a single
    checkpoint spike near either end does not read as growth.
    """
    steady = samples[len(samples) // 10 :]
    if not steady:
        return 0.0
    window = max(1, len(steady) // 10)
    return fmean(steady[-window:]) - fmean(steady[:window])


def free_port() -> int:
    """A loopback TCP port nothing listens on now, for this run's own broker."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TimedWriter(LandingWriter):
    """A LandingWriter that remembers when its last commit finished (wall clock).

    The MQTT drain ends at the last commit of whichever consumer finishes last; only the
    wall clock is comparable across processes.
    """

    last_commit_at: float = 0.0

    def commit_prepared(
        self, prepared: PreparedBatch, positions: Sequence[Position]
    ) -> CommitOutcome:
        """Commit as usual, then note the time."""
        outcome = super().commit_prepared(prepared, positions)
        self.last_commit_at = time.time()
        return outcome


def mqtt_child(
    settings: MqttSettings, lake_root: str, start_line: Barrier, result_path: str
) -> None:
    """One MQTT consumer process, spawned (deltalake must not run in a forked child).

    Everything slow (imports, opening the table) happens before the start line, so the
    drain timing starts with all consumers ready; the consumer stops once idle.
    """
    writer = TimedWriter(Lake(lake_root), consumer_id=settings.client_id)
    options = ConsumerOptions(stop_when_idle_s=MQTT_IDLE_S)
    consumer = Consumer(MqttSource(settings), writer, options, report=note)
    start_line.wait(MQTT_TIMEOUT_S)
    started = time.time()
    stats = consumer.run()
    result = {
        "messages": stats.messages,
        "commits": stats.commits,
        "started": started,
        "last_commit_at": writer.last_commit_at,
    }
    Path(result_path).write_text(json.dumps(result))


def prime_session(settings: MqttSettings, writer: LandingWriter) -> None:
    """Create the consumer's persistent session and subscription, then go offline.

    From here the broker queues every matching message for the session (the shipped config
    lifts Mosquitto's 1,000-message queue limit), as for a consumer that is restarting.
    """
    source = MqttSource(settings)
    source.resume(writer)
    source.close()


def drain(settings: Sequence[MqttSettings], lake_root: Path, work: Path) -> list[dict[str, Any]]:
    """Run one consumer process per settings until the queues are empty; their results."""
    context = mp.get_context("spawn")
    start_line = context.Barrier(len(settings) + 1)
    processes = []
    for index, client in enumerate(settings):
        result_path = work / f"{client.client_id}.json"
        process = context.Process(
            target=mqtt_child,
            args=(client, str(lake_root), start_line, str(result_path)),
            name=f"bench-{client.client_id}",
        )
        process.start()
        processes.append((process, result_path))
        note(f"mqtt: consumer {index + 1} of {len(settings)} started ({client.client_id})")
    start_line.wait(MQTT_TIMEOUT_S)  # BrokenBarrierError if a consumer died getting ready
    for process, _ in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"{process.name} exited with {process.exitcode}; see stderr")
    return [json.loads(path.read_text()) for _, path in processes]


@dataclass(frozen=True)
class MqttRun:
    """Messages published and landed through the broker, and how long each side took."""

    published: int
    publish_seconds: float
    drain_seconds: float


def run_mqtt(messages: Sequence[SimMessage], work: Path, consumers: int) -> MqttRun:
    """Publish with the consumers offline, then time them draining the broker into Delta.

    Pre-publishing (rather than publishing while consuming) measures the consumer side
    alone: several paho publisher processes manage only a few thousand QoS 1 messages/s
    each on these two cores, below what a consumer drains, and they would compete with the
    consumers for CPU. The sessions exist before the first publish, so the broker queues
    every message for them, split between the group's members when the subscription is
    shared. The drain runs from the start line to the last commit, messages acknowledged
    after each commit; it includes the last, partial batch waiting up to max_age_s.
    """
    port = free_port()
    lake = Lake(str(work / f"mqtt-{consumers}-lake"))
    group = "bench" if consumers > 1 else None
    clients = [
        MqttSettings(
            host=Mosquitto.host,
            port=port,
            client_id=f"bench-{consumers}-{index}",
            share_group=group,
        )
        for index in range(consumers)
    ]
    with Mosquitto(port, work / f"mqtt-{consumers}-broker") as broker:
        writer = LandingWriter(lake, consumer_id="bench-setup")  # the table exists before the race
        for client in clients:
            prime_session(client, writer)
        started = time.perf_counter()
        published = publish(messages, broker.host, port, processes=MQTT_PUBLISHERS)
        publish_seconds = time.perf_counter() - started
        note(f"mqtt: published {published:,} in {publish_seconds:.1f} s; draining")
        results = drain(clients, Path(lake.root), work)
    verify_mqtt_landed(lake, messages, published)
    drain_seconds = max(r["last_commit_at"] for r in results) - min(r["started"] for r in results)
    shares = ", ".join(f"{r['messages']:,} in {r['commits']} commits" for r in results)
    note(f"mqtt: {consumers} consumer(s) landed {shares}")
    return MqttRun(published, publish_seconds, drain_seconds)


def verify_mqtt_landed(lake: Lake, messages: Sequence[SimMessage], published: int) -> None:
    """Fail unless every published (topic, payload) is in raw at least as often as sent.

    MQTT is at-least-once: more rows than published (redeliveries) is allowed and reported;
    fewer, or a message missing, means the run lost data and its rate is meaningless.
    """
    sent = Counter((m.topic, m.payload.decode(errors="replace")) for m in messages)
    raw = lake.read(RAW_TELEMETRY).select("topic", "payload")
    landed = Counter(raw.iter_rows())
    missing = sent - landed
    if published != len(messages) or missing:
        raise RuntimeError(
            f"MQTT run lost data: {len(messages):,} sent, broker acked {published:,}, raw has "
            f"{raw.height:,} rows and lacks {sum(missing.values()):,} of the messages sent"
        )
    if raw.height > published:
        note(f"mqtt: {raw.height - published:,} redelivered messages landed twice (allowed)")


def rss_profile(samples: Sequence[int]) -> str:
    """Mean RSS of each tenth of the run in MB: tells steady growth from a spike or a step."""
    if not samples:
        return "no samples"
    tenths = [samples[i * len(samples) // 10 : (i + 1) * len(samples) // 10] for i in range(10)]
    return " ".join(f"{fmean(tenth) / MIB:.0f}" for tenth in tenths if tenth)


@contextmanager
def work_dir(parent: Path | None) -> Iterator[Path]:
    """A fresh directory for this run's lakes and brokers.

    A temp dir removed afterwards, or a new one kept under `--data-dir` for inspection.
    """
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
        yield Path(tempfile.mkdtemp(prefix="ingest-", dir=parent))
        return
    with tempfile.TemporaryDirectory(prefix="iot-lake-bench-") as tmp:
        yield Path(tmp)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The bench's flags; volumes are `--messages` times `--scale`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every volume")
    parser.add_argument("--skip-mqtt", action="store_true", help="no Mosquitto figures")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the lakes here")
    parser.add_argument("--profile", action="store_true", help="profile landing to stderr")
    parser.add_argument(
        "--landing-runs",
        type=at_least_one,
        default=5,
        help="landings, each between two limits (the medians are reported)",
    )
    parser.add_argument(
        "--growth-commits",
        type=int,
        default=0,
        help="also commit this many 1,000-message batches to one uncompacted lake",
    )
    return parser.parse_args(argv)


def scaled(base: int, scale: float, floor: int) -> int:
    """A volume times the scale, never below what makes the figure meaningful."""
    return max(floor, round(base * scale))


def bench_file_path(path: Path, work: Path, count: int, profile: bool, pairs: int) -> None:
    """Landing, limit, naive and soak figures for the generated file.

    Landing uses the consumer's batch limits as configured (IOT_LAKE_BATCH_MAX_RECORDS and
    friends), so `IOT_LAKE_BATCH_MAX_RECORDS=10000 make bench` measures the trade-off.
    """
    limits = load_settings().batch
    print(
        f"# landing batch limits: max_records={limits.max_records} "
        f"max_bytes={limits.max_bytes} max_age_s={limits.max_age_s:g}",
        flush=True,
    )
    runs, limit_rates = run_pairs(path, work, count, limits, pairs)
    commits = [seconds for run in runs for seconds in run.landing.commit_seconds]
    figure("landing", median(run.landing.rate for run in runs), "msgs/s")
    landing_cpu = median(run.landing.messages / run.landing.cpu_seconds for run in runs)
    figure("landing_cpu", landing_cpu, "msgs/cpu-s")
    figure("commit_p50", percentile(commits, 0.50) * 1000, "ms")
    figure("commit_p95", percentile(commits, 0.95) * 1000, "ms")
    landed = [seconds for run in runs for seconds in run.landing.landed_seconds]
    figure("landed_p95", percentile(landed, 0.95) * 1000, "ms")
    figure("limit", median(limit_rates), "msgs/s")
    figure("landing_vs_limit", median(run.ratio for run in runs), "x")
    with_bad_line = with_one_invalid_utf8_line(path, work / "one-bad-line.jsonl")
    bad = run_landing(with_bad_line, work / "bad-line-lake", count + 1, limits)
    figure("landing_one_bad_line", bad.rate, "msgs/s")
    figure("landing_one_bad_line_cpu", bad.messages / bad.cpu_seconds, "msgs/cpu-s")
    if profile:
        profile_landing(path, work / "profile-lake", limits)

    naive_count = min(count, scaled(NAIVE_MESSAGES, count / DEFAULT_MESSAGES, 20))
    note(f"naive: {naive_count} one-message commits")
    figure("naive_per_message", run_naive(path, work / "naive-lake", naive_count), "msgs/s")

    note(f"soak: {count:,} messages in batches of {SOAK_BATCH_RECORDS:,}, consumer in a child")
    soak = run_soak(path, work, count, SOAK_BATCH_RECORDS)
    figure("soak", soak.run.rate, "msgs/s")
    figure("soak_commits", soak.commits, "commits")
    figure("soak_commit_p95", percentile(soak.run.commit_seconds, 0.95) * 1000, "ms")
    figure("consumer_peak_rss", soak.peak_rss_bytes / MIB, "MB")
    figure("consumer_rss_growth", rss_growth(soak.rss_samples) / MIB, "MB")
    note(f"soak: RSS by tenth of the run (MB): {rss_profile(soak.rss_samples)}")


@dataclass(frozen=True)
class LandingPair:
    """A landing run and the limit runs made just before and just after it."""

    landing: ConsumerRun
    limit_before: float
    limit_after: float

    @property
    def ratio(self) -> float:
        """Landing's rate over the mean of the two limits' rates."""
        return self.landing.rate / fmean((self.limit_before, self.limit_after))


def limit_rate(path: Path, work: Path, count: int) -> float:
    """Messages per second of one limit run."""
    return count / run_limit(path, work, count)


def run_pairs(
    path: Path, work: Path, count: int, limits: BatchLimits, pairs: int
) -> tuple[list[LandingPair], list[float]]:
    """A warm-up, then `pairs` landings between limits; each printed on a `#` line.

    Every landing goes into a fresh lake. Returns the landings and every counted limit.
    """
    note("warm-up: a landing and a limit, not counted")
    warm_up = run_landing(path, work / "landing-lake-warm-up", count, limits)
    print(
        f"# warm-up (not counted): landing {warm_up.rate:.0f} msgs/s, "
        f"limit {limit_rate(path, work, count):.0f} msgs/s",
        flush=True,
    )
    rates = [limit_rate(path, work, count)]
    landings = []
    for number in range(1, pairs + 1):
        note(f"landing {number}/{pairs}: {count:,} messages, then the limit")
        landing = run_landing(path, work / f"landing-lake-{number}", count, limits)
        rates.append(limit_rate(path, work, count))
        pair = LandingPair(landing, rates[-2], rates[-1])
        print(
            f"# landing {number}/{pairs}: {landing.rate:.0f} msgs/s, limit before "
            f"{pair.limit_before:.0f} and after {pair.limit_after:.0f} msgs/s, ratio "
            f"{pair.ratio:.3f} (to the limit after alone "
            f"{landing.rate / pair.limit_after:.3f})",
            flush=True,
        )
        landings.append(pair)
    return landings, rates


def bench_mqtt(count: int, work: Path) -> None:
    """MQTT figures: publish rate, then one consumer and two in a shared group."""
    devices = fleet_devices(count)
    messages = list(Fleet(FleetSpec(devices=devices, seed=SEED)).messages(count))
    for consumers, name in ((1, "mqtt_1_consumer"), (2, "mqtt_2_consumers")):
        note(f"mqtt: {count:,} messages through {consumers} consumer(s)")
        run = run_mqtt(messages, work, consumers)
        if consumers == 1:
            figure("mqtt_publish", run.published / run.publish_seconds, "msgs/s")
        figure(name, run.published / run.drain_seconds, "msgs/s")


def main(argv: Sequence[str] | None = None) -> int:
    """Generate (or reuse) the messages, then print every figure."""
    args = parse_args(argv)
    count = scaled(args.messages, args.scale, 1)
    path = generated_messages(count, fleet_devices(count), SEED)
    print_load("at start")
    figure("message_size", (path.stat().st_size - count) / count, "bytes")
    with work_dir(args.data_dir) as work:
        bench_file_path(path, work, count, args.profile, args.landing_runs)
        if args.growth_commits > 0:
            bench_commit_growth(path, work, args.growth_commits)
        if not args.skip_mqtt:
            bench_mqtt(scaled(count // 10, 1.0, MQTT_MIN_MESSAGES), work)
    print_load("at end")
    return 0


if __name__ == "__main__":
    run_and_exit(main)
