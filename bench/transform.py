"""Transformation benchmark: a simulated day of a fleet through silver and the rollups.

The figures answer issue 3: how long a day of N devices reporting every 10 s takes from raw
to rollup_1d, how much memory that needs, how the 1-minute rollup compares with one DuckDB
query, and what one new hour of data costs. Each figure is printed on its own stdout line as
`name: value unit`; context lines start with `#` and progress goes to stderr.

The day: N devices of the simulator's three types (4, 4 and 3 metrics) from midnight to
23:59:50 UTC, 8,640 telemetry messages and 1,440 heartbeats per device, built by
`streaming.simulator.bulk.BulkFleet` (the simulator's messages with faults off, column-wise:
the per-message `Fleet` would take over 40 minutes for 10,000 devices) and landed through
the real RawBatch checks and LandingWriter in 50,000-message commits (the consumer's default
batch), ingest time 200 ms after the device clock. Landing is not measured; the landed lake
is cached under bench/.data/ (git-ignored) by N and seed, its last hour committed separately.

- telemetry, device_events (msgs/s of the day's raw messages in), rollup_1m (rows/s of
  telemetry readings in), rollup_1h, rollup_1d (rows/s of the level below in): each asset's
  step in the run raw_landing_sensor requests for a day with new raw rows (event_day_job,
  its selection from the sensor's `day_selection`), executed in process by Dagster; a step
  reads Delta, computes and overwrites the day in one commit. Steps the run holds besides
  these (the late-data ledger) are listed on `#` lines.
- day_<N>_devices: that run's seconds; peak_rss: the high-water mark of the process that
  ran it (kernel VmHWM and outside sampling, whichever is higher; per step on `#` lines).
- duckdb_rollup_1m, rollup_1m_vs_duckdb: the same 1-minute rollup (count, sum, sum_sq, m2,
  min, max, first/last by event time) as one DuckDB query over the same telemetry Delta
  data, read through delta-rs' Arrow dataset and written back as a Delta day partition;
  the ratio is our rate over DuckDB's. The `_compute` ratio leaves the Delta write out.
- incremental_hour_<N>_devices: the last hour of the day (committed after the other 23)
  processed as production does: a raw_landing_sensor tick from the cursor before that
  hour, then the run it requests, which rebuilds the event hours the new rows touched
  (rollup_1d its whole day, from rollup_1h); `incremental_hour_vs_day` is its share of
  the day's cost. The day's run has built that hour already, so every run of it is the
  same work: it is run `--hour-runs` times (default 3), each in a fresh process, and the
  median is the figure, every run on a `#` line. On this shared machine one run of the
  same code (10,000 devices, one kept lake) took 19.4-22.0 s nine times and 30.1 s once.

Run: `.venv/bin/python bench/transform.py [--devices N] [--smoke] [--skip-duckdb]
[--data-dir DIR] [--keep] [--hour-runs K]`. The machine is shared: `# load` lines say how
busy it was.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import psutil
import pyarrow as pa
from report import at_least_one, figure, note, own_peak_rss, print_load, run_and_exit

from iot_lake.gold.rebuild import ROLLUP_SHARD_ROWS, rollup_shards
from iot_lake.lake.catalog import DEVICE_EVENTS, ROLLUP_1D, ROLLUP_1H, ROLLUP_1M, TELEMETRY
from iot_lake.lake.partitions import EventWindow
from iot_lake.lake.tables import Lake
from iot_lake.settings import BatchLimits
from iot_lake.silver.rebuild import SILVER_DECODERS
from streaming.batch import RawBatch
from streaming.consumer import ConsumerOptions
from streaming.landing import LandingWriter, Position
from streaming.simulator.bulk import BulkFleet
from streaming.simulator.fleet import FleetSpec

CACHE_DIR = Path(__file__).resolve().parent / ".data"
DEFAULT_DEVICES = 1_000
SMOKE_DEVICES = 12
SEED = 7
DAY = date(2026, 11, 1)
INTERVAL_S = 10.0
TICKS_PER_HOUR = 360
TICKS_PER_DAY = 24 * TICKS_PER_HOUR
INGEST_DELAY_US = 200_000
DUCKDB_MEMORY_LIMIT = "6GB"
RSS_SAMPLE_INTERVAL_S = 0.2
GB = 10**9
# Dagster's console logger at WARNING: its DEBUG lines would bury the bench's progress.
QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def scale_label(devices: int) -> str:
    """`10k` for 10,000 devices, `12` for 12: the suffix of the per-scale figure names."""
    return f"{devices // 1000}k" if devices % 1000 == 0 else str(devices)


# --- the landed day (cached) -------------------------------------------------------------


@dataclass(frozen=True)
class LandedDay:
    """A lake whose raw_telemetry holds the day; what is in it; where its last hour starts."""

    devices: int
    seed: int
    messages: int
    telemetry_messages: int
    readings: int
    last_hour_messages: int
    version_before_last_hour: int


def fleet_spec(devices: int, seed: int) -> FleetSpec:
    """A healthy fleet whose tick 1 is the day's midnight (tick 0 is its boot)."""
    start = datetime.combine(DAY, datetime.min.time(), UTC) - timedelta(seconds=INTERVAL_S)
    spec = FleetSpec(devices=devices, seed=seed, interval_s=INTERVAL_S, start=start)
    return replace(spec.without_faults(), crash_rate=0.0, bad_firmware_crash_rate=0.0)


def landed_day(devices: int, seed: int, data_dir: Path) -> tuple[Path, LandedDay]:
    """The cached lake of the day for this fleet, landing it first when it is not there.

    `landed.json` is written last, so a directory without it is an interrupted landing and
    is landed again from scratch.
    """
    cached = data_dir / f"transform-d{devices}-seed{seed}"
    manifest = cached / "landed.json"
    if manifest.is_file():
        return cached / "lake", LandedDay(**json.loads(manifest.read_text()))
    shutil.rmtree(cached, ignore_errors=True)
    started = time.perf_counter()
    day = land_day(fleet_spec(devices, seed), Lake(str(cached / "lake")))
    note(f"landed {day.messages:,} messages in {time.perf_counter() - started:.0f} s")
    manifest.write_text(json.dumps(asdict(day)))
    return cached / "lake", day


def land_day(spec: FleetSpec, lake: Lake) -> LandedDay:
    """Land ticks 1..8640 through the real checks and writer, the last hour's commits last."""
    fleet = BulkFleet(spec)
    writer = LandingWriter(lake, consumer_id="bench-transform")
    per_batch = max(1, BatchLimits().max_records // spec.devices)
    last_hour = TICKS_PER_DAY - TICKS_PER_HOUR + 1
    counts = {"messages": 0, "telemetry": 0, "last_hour": 0}
    version_before_last_hour = -1
    for batch_no, first in enumerate(batch_starts(per_batch, last_hour), start=1):
        if first == last_hour:
            version_before_last_hour = writer.table.version()
        end = last_hour - 1 if first < last_hour else TICKS_PER_DAY  # no commit spans both
        last = min(first + per_batch - 1, end)
        messages = fleet.ticks(first, last)
        batch = RawBatch("simulator", writer.consumer_id, ConsumerOptions().max_payload_bytes)
        positions = pa.array([f"{spec.key}@{first}+{i}" for i in range(len(messages))])
        ingest_micros = (messages.sim_ms * 1000 + INGEST_DELAY_US).tolist()
        batch.extend(messages.topics, messages.payloads, ingest_micros, positions)
        if batch.invalid:
            raise RuntimeError(f"{batch.invalid} generated messages failed the wire checks")
        writer.commit(batch, [Position(f"bench-transform-{spec.key}", batch_no)])
        counts["messages"] += len(messages)
        counts["telemetry"] += messages.kinds.count("telemetry")
        counts["last_hour"] += len(messages) * (first >= last_hour)
        note(f"landing: ticks {first}..{last}, {counts['messages']:,} messages")
    metrics_per_tick = sum(len(d.device_type.metrics) for d in fleet.devices)
    return LandedDay(
        devices=spec.devices,
        seed=spec.seed,
        messages=counts["messages"],
        telemetry_messages=counts["telemetry"],
        readings=metrics_per_tick * TICKS_PER_DAY,
        last_hour_messages=counts["last_hour"],
        version_before_last_hour=version_before_last_hour,
    )


def batch_starts(per_batch: int, last_hour: int) -> list[int]:
    """First tick of each commit: 23 hours in batches, then the last hour in batches."""
    return [
        *range(1, last_hour, per_batch),
        *range(last_hour, TICKS_PER_DAY + 1, per_batch),
    ]


# --- child processes ----------------------------------------------------------------------


def stdout_to_stderr() -> None:
    """Send a child's stdout to stderr: only the parent prints figures.

    DuckDB draws a progress bar on stdout for queries over ~2 s, silver's decode included.
    """
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def run_child(target: Callable[..., None], *args: object) -> dict[str, Any]:
    """Run `target(*args, result_path)` in a spawned process; its JSON result and peak RSS.

    Spawned, not forked: deltalake panics in a forked child (tokio). Each measurement gets a
    fresh process so its peak RSS is its own, sampled from outside as well as by the kernel.
    """
    with tempfile.TemporaryDirectory(prefix="bench-transform-") as tmp:
        result_path = Path(tmp) / "result.json"
        process = mp.get_context("spawn").Process(target=target, args=(*args, str(result_path)))
        process.start()
        samples = rss_until_exit(process)
        if process.exitcode != 0:
            peak = max((rss for _, rss in samples), default=0) / GB
            raise RuntimeError(
                f"{target.__name__} exited with {process.exitcode} (-9: killed, as by the "
                f"kernel's OOM killer) after an RSS of {peak:.1f} GB; see stderr"
            )
        result: dict[str, Any] = json.loads(result_path.read_text())
    result["peak_rss_bytes"] = max([result["max_rss_bytes"], *(rss for _, rss in samples)])
    result["rss_samples"] = samples
    return result


def rss_until_exit(process: BaseProcess) -> list[tuple[float, int]]:
    """The child's RSS (epoch seconds, bytes) every ~200 ms until it exits, read from outside."""
    assert process.pid is not None, "start() first"
    watched = psutil.Process(process.pid)
    samples = []
    while process.is_alive():
        try:
            samples.append((time.time(), watched.memory_info().rss))
        except psutil.NoSuchProcess:
            break
        process.join(RSS_SAMPLE_INTERVAL_S)
    process.join()
    return samples


def peak_between(samples: Sequence[Sequence[float]], start: float, end: float) -> int:
    """The largest RSS sampled in [start, end] (epoch seconds), 0 when none was."""
    return int(max((rss for at, rss in samples if start <= at <= end), default=0))


@dataclass(frozen=True)
class StageRun:
    """One asset's step in a run: its seconds (Dagster's step duration) and rows written."""

    name: str
    seconds: float
    rows: int
    started_at: float  # epoch seconds, to match RSS samples to the step


@dataclass(frozen=True)
class CodeLocation:
    """What the bench runs from the code location: the day's job, the sensor and its selection."""

    job: dg.JobDefinition
    sensor: dg.SensorDefinition
    day_selection: Callable[[set[str]], list[dg.AssetKey]]


def code_location(lake_root: str) -> CodeLocation:
    """iot_lake.definitions with the lake resource pointed at `lake_root`.

    Imported here, not at the top, so its beta and preview warnings can be silenced (the
    bench's stderr is for its progress) and the parent process never loads Dagster's assets.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        from iot_lake.definitions import defs, resources_with_lake
        from resources.lake import LakeResource
        from sensors.raw_landing import day_selection, raw_landing_sensor

    resources = resources_with_lake(LakeResource(root=lake_root))
    definitions = dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=resources)
    job = definitions.resolve_job_def(raw_landing_sensor.job_name or "event_day_job")
    return CodeLocation(job, raw_landing_sensor, day_selection)


def run_day(
    code: CodeLocation, day: date, silver_tables: set[str], tags: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Execute the run raw_landing_sensor requests for a day, as the daemon would.

    The selection comes from the sensor's own `day_selection`, the tags (the event hours to
    rebuild) from its request; Dagster runs it in process against an ephemeral instance;
    each step's duration and row count come from its events.
    """
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    run = code.job.execute_in_process(
        run_config=QUIET_RUN,
        instance=instance,
        partition_key=day.isoformat(),
        asset_selection=code.day_selection(silver_tables),
        tags=dict(tags or {}),
    )
    seconds = time.perf_counter() - started
    rows = {
        event.asset_key.path[-1]: row_count(event.materialization)
        for event in run.get_asset_materialization_events()
        if event.asset_key is not None
    }
    step_events = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    began: dict[str, float] = {}
    stages = []
    for entry in instance.all_logs(run.run_id, of_type=step_events):
        step = entry.step_key or ""
        if entry.dagster_event_type == dg.DagsterEventType.STEP_START:
            began[step] = entry.timestamp
        else:
            step_seconds = entry.timestamp - began[step]
            stages.append(StageRun(step, step_seconds, rows.get(step, 0), began[step]))
    return {"seconds": seconds, "stages": [asdict(stage) for stage in stages]}


def row_count(materialization: dg.AssetMaterialization) -> int:
    """The rows an asset wrote, from the `dagster/row_count` its result reports."""
    count = materialization.metadata.get("dagster/row_count")
    return int(count.value or 0) if isinstance(count, dg.IntMetadataValue) else 0


def day_child(lake_root: str, result_path: str) -> None:
    """The day's run, as raw_landing_sensor requests it for a day with new raw rows."""
    stdout_to_stderr()
    result = run_day(code_location(lake_root), DAY, set(SILVER_DECODERS))
    result["max_rss_bytes"] = own_peak_rss()
    Path(result_path).write_text(json.dumps(result))


def incremental_child(lake_root: str, cursor: int, result_path: str) -> None:
    """The last hour processed as production does: a sensor tick, then the runs it requests.

    The code location and the instance are made before the clock starts: a running
    daemon has both (as `run_day` makes its instance before its clock).
    """
    stdout_to_stderr()
    code = code_location(lake_root)
    lake_resource = code.job.resource_defs["lake"]
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    context = dg.build_sensor_context(
        instance=instance,
        cursor=str(cursor),
        resources={"lake": lake_resource},
    )
    tick = code.sensor(context)
    assert isinstance(tick, dg.SensorResult), f"the sensor skipped: {tick}"
    sensor_seconds = time.perf_counter() - started
    runs = []
    for request in tick.run_requests or []:
        assert request.partition_key is not None, "event_day_job is partitioned"
        assert request.asset_selection is not None, "the sensor selects the day's assets"
        tables = {key.path[-1] for key in request.asset_selection} & set(SILVER_DECODERS)
        day = date.fromisoformat(request.partition_key)
        run = run_day(code, day, tables, request.tags)
        runs.append({"day": request.partition_key, "tags": request.tags, **run})
    result = {
        "sensor_seconds": sensor_seconds,
        "seconds": time.perf_counter() - started,
        "runs": runs,
        "max_rss_bytes": own_peak_rss(),
    }
    Path(result_path).write_text(json.dumps(result))


# One query for the whole 1-minute rollup, in rollup_1m's column order. m2 = n * var_pop, 0 for
# a constant bucket (as ours); first/last by event time (ours break a tie by value: the
# simulated day has none). Times are cast to naive UTC: DuckDB's TIMESTAMPTZ functions need
# the ICU extension, which cannot be installed here.
DUCKDB_ROLLUP_1M = """
WITH readings AS (
    SELECT tenant_id, device_id, metric, unit, value, event_time::TIMESTAMP AS t
    FROM telemetry_day WHERE event_date = $day
), buckets AS (
    SELECT tenant_id, device_id, metric, min(unit) AS unit,
           time_bucket(INTERVAL 1 MINUTE, t) AS bucket_start,
           count(*) AS count, sum(value) AS sum, sum(value * value) AS sum_sq,
           CASE WHEN min(value) = max(value) THEN 0 ELSE var_pop(value) * count(*) END AS m2,
           min(value) AS min, max(value) AS max,
           arg_min(value, t) AS first_value, min(t) AS first_time,
           arg_max(value, t) AS last_value, max(t) AS last_time
    FROM readings
    GROUP BY tenant_id, device_id, metric, bucket_start
)
SELECT tenant_id, device_id, metric, unit, bucket_start,
       CAST(bucket_start AS DATE) AS bucket_date,
       CAST(hour(bucket_start) AS TINYINT) AS bucket_hour,
       count, sum, sum_sq, m2, min, max, first_value, first_time, last_value, last_time
FROM buckets
"""


def duckdb_child(lake_root: str, out_root: str, result_path: str) -> None:
    """The 1-minute rollup of the day as one DuckDB query, read from and written to Delta.

    Our compute alone (`rollup_shards`, as the asset runs it: read telemetry an hour at a
    time and aggregate it, no commit) is timed in the same process after it, for the compute-only
    comparison; DuckDB goes first so the RSS sampled while it runs is its own. Both read
    telemetry the day run just wrote.
    """
    stdout_to_stderr()
    lake, window = Lake(lake_root), EventWindow.day(DAY)
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": DUCKDB_MEMORY_LIMIT,
        "threads": os.cpu_count() or 1,
    }
    con = duckdb.connect(config=config)
    started, started_at = time.perf_counter(), time.time()
    table = lake.open(TELEMETRY)
    assert table is not None, "the day run writes telemetry first"
    day_filter = [("event_date", "=", DAY.isoformat())]
    con.register("telemetry_day", table.to_pyarrow_dataset(file_pruning_predicate=day_filter))
    rollup = con.sql(DUCKDB_ROLLUP_1M, params={"day": DAY}).to_arrow_table()
    compute_seconds = time.perf_counter() - started
    Lake(out_root).replace_partition(ROLLUP_1M, rollup, window.predicate("bucket_date"))
    seconds, ended_at = time.perf_counter() - started, time.time()
    con.close()
    readings = int(np.sum(rollup.column("count").to_numpy()))
    rows = rollup.num_rows
    del rollup
    started = time.perf_counter()
    our_rows = our_readings = 0
    with rollup_shards(lake, ROLLUP_1M, window, ROLLUP_SHARD_ROWS[ROLLUP_1M.name]) as shards:
        for shard in shards:
            our_rows += shard.height
            our_readings += int(shard.get_column("count").sum())
    result = {
        "seconds": seconds,
        "compute_seconds": compute_seconds,
        "started_at": started_at,
        "ended_at": ended_at,
        "our_compute_seconds": time.perf_counter() - started,
        "rows": rows,
        "readings": readings,
        "our_rows": our_rows,
        "our_readings": our_readings,
        "max_rss_bytes": own_peak_rss(),
    }
    Path(result_path).write_text(json.dumps(result))


# --- figures ------------------------------------------------------------------------------

# Each stage's input, whose rows per second its figure is: raw messages for silver (the
# day's raw rows: heartbeats are read and dropped by telemetry, telemetry by device_events),
# the level below for each rollup.
STAGE_INPUTS = {
    TELEMETRY.name: None,
    DEVICE_EVENTS.name: None,
    ROLLUP_1M.name: TELEMETRY.name,
    ROLLUP_1H.name: ROLLUP_1M.name,
    ROLLUP_1D.name: ROLLUP_1H.name,
}


def report_day(day: LandedDay, run: dict[str, Any]) -> dict[str, StageRun]:
    """Per-stage rates (input rows per second), the day's seconds and peak RSS."""
    stages = {stage["name"]: StageRun(**stage) for stage in run["stages"]}
    if stages[TELEMETRY.name].rows != day.readings:
        raise RuntimeError(
            f"telemetry has {stages[TELEMETRY.name].rows:,} rows, not {day.readings:,}"
        )
    for name, stage in stages.items():
        if name not in STAGE_INPUTS:
            print(f"# {name} (also in the day's run): {stage.seconds:.1f} s, {stage.rows:,} rows")
            continue
        lower = STAGE_INPUTS[name]
        rows_in = day.messages if lower is None else stages[lower].rows
        peak = peak_between(run["rss_samples"], stage.started_at, stage.started_at + stage.seconds)
        print(
            f"# {name}: {rows_in:,} rows in, {stage.rows:,} out, {stage.seconds:.1f} s, "
            f"peak RSS {peak / GB:.1f} GB"
        )
        figure(name, rows_in / stage.seconds, "msgs/s" if lower is None else "rows/s")
    steps = sum(stage.seconds for stage in stages.values())
    print(f"# the day's run: {run['seconds']:.1f} s, of which steps {steps:.1f} s")
    figure(f"day_{scale_label(day.devices)}_devices", run["seconds"], "s")
    figure("peak_rss", run["peak_rss_bytes"] / GB, "GB")
    return stages


def report_duckdb(run: dict[str, Any], ours: StageRun) -> None:
    """DuckDB's rate for the same rollup, and ours relative to it (end to end, compute only)."""
    if (run["rows"], run["readings"]) != (run["our_rows"], run["our_readings"]):
        raise RuntimeError(f"DuckDB's rollup differs from ours: {run}")
    print(
        f"# duckdb: {run['seconds']:.1f} s ({run['compute_seconds']:.1f} s to Arrow); ours "
        f"{ours.seconds:.1f} s ({run['our_compute_seconds']:.1f} s without the commit)"
    )
    figure("duckdb_rollup_1m", run["readings"] / run["seconds"], "rows/s")
    figure("rollup_1m_vs_duckdb", run["seconds"] / ours.seconds, "x")
    figure("rollup_1m_compute_vs_duckdb", run["compute_seconds"] / run["our_compute_seconds"], "x")
    duckdb_peak = peak_between(run["rss_samples"], run["started_at"], run["ended_at"])
    figure("duckdb_peak_rss", duckdb_peak / GB, "GB")


def report_incremental(day: LandedDay, runs: Sequence[dict[str, Any]], day_seconds: float) -> None:
    """The new hour's seconds, the median of its runs: each run's tick and steps on # lines."""
    for number, run in enumerate(runs, start=1):
        print(
            f"# incremental {number}/{len(runs)}: {run['seconds']:.1f} s; "
            f"{day.last_hour_messages:,} new raw messages; sensor tick "
            f"{run['sensor_seconds']:.1f} s; runs for {[r['day'] for r in run['runs']]}"
        )
        for day_run in run["runs"]:
            steps = ", ".join(f"{s['name']} {s['seconds']:.1f} s" for s in day_run["stages"])
            hours = day_run["tags"].get("iot_lake/event_hours", "all")
            print(f"#   run {day_run['day']} hours {hours}: {day_run['seconds']:.1f} s ({steps})")
    seconds = statistics.median(run["seconds"] for run in runs)
    figure(f"incremental_hour_{scale_label(day.devices)}_devices", seconds, "s")
    figure("incremental_hour_vs_day", seconds / day_seconds, "x")
    figure("incremental_peak_rss", max(run["peak_rss_bytes"] for run in runs) / GB, "GB")


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The bench's flags."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=DEFAULT_DEVICES, help="fleet size")
    parser.add_argument(
        "--smoke", action="store_true", help=f"{SMOKE_DEVICES} devices: seconds, for the test"
    )
    parser.add_argument("--skip-duckdb", action="store_true", help="no DuckDB comparison")
    parser.add_argument(
        "--data-dir", type=Path, default=CACHE_DIR, help="landed days (cached) and the work lake"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work lake for inspection")
    parser.add_argument(
        "--hour-runs",
        type=at_least_one,
        default=3,
        help="runs of the new hour (the median is reported)",
    )
    return parser.parse_args(argv)


def work_lake(cached: Path, data_dir: Path) -> Path:
    """A fresh lake whose raw_telemetry is the cached one, hard-linked.

    Delta files are never modified and raw is only read here, so links are safe and cost
    nothing; files are copied where links are not possible (another file system).
    """
    work = Path(tempfile.mkdtemp(prefix="transform-work-", dir=data_dir))

    def link(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    shutil.copytree(cached, work / "lake", copy_function=link)
    return work


def main(argv: Sequence[str] | None = None) -> int:
    """Land (or reuse) the day, then run and report each measurement in its own process."""
    args = parse_args(argv)
    devices = SMOKE_DEVICES if args.smoke else args.devices
    args.data_dir.mkdir(parents=True, exist_ok=True)
    cached, day = landed_day(devices, SEED, args.data_dir)
    work = work_lake(cached, args.data_dir)
    print_load("at start")
    print(f"# day {DAY}: {devices:,} devices every {INTERVAL_S:g} s, seed {SEED}")
    figure("day_messages", day.messages, "msgs")
    figure("day_readings", day.readings, "rows")
    try:
        lake_root = str(work / "lake")
        note("day: the run of the day's assets, in a child process")
        day_run = run_child(day_child, lake_root)
        stages = report_day(day, day_run)
        if not args.skip_duckdb:
            note("duckdb: the 1-minute rollup as one query, in a child process")
            run = run_child(duckdb_child, lake_root, str(work / "duckdb-lake"))
            report_duckdb(run, stages[ROLLUP_1M.name])
        incremental = []
        for number in range(1, args.hour_runs + 1):
            note(f"incremental {number}/{args.hour_runs}: the last hour from the cursor before it")
            incremental.append(
                run_child(incremental_child, lake_root, day.version_before_last_hour)
            )
        report_incremental(day, incremental, day_run["seconds"])
    finally:
        if args.keep:
            note(f"work lake kept at {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_load("at end")
    return 0


if __name__ == "__main__":
    run_and_exit(main)
