"""The `iot-lake` command: simulate a fleet, consume a source, run the demo, query the lake.

Options resolve flag -> environment variable -> default (iot_lake.settings). Like
iot_lake/definitions.py, this module is an assembly point: it imports the streaming
package inside the commands that need it, so the core stays free of it.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from iot_lake.app.dagster_ui import DEFAULT_HOME, DagsterDev, DagsterUiError, lake_environment
from iot_lake.errors import InvalidInput
from iot_lake.lake.tables import Lake, LakeUnavailable
from iot_lake.settings import BatchLimits, Settings, load_settings

N = TypeVar("N", int, float)


def _positive(cast: Callable[[str], N], expected: str) -> Callable[[str], N]:
    """An argparse type: `cast` the text and refuse anything not above zero."""

    def parse(text: str) -> N:
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _positive(int, "a positive integer")
_positive_float = _positive(float, "a positive number")


def _utc_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 date or time such as 2026-11-01T00:00, got {text!r}"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _add_lake_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lake-root",
        help="lake root: a directory or s3://bucket/prefix (env IOT_LAKE_ROOT, default .lake)",
    )


def _add_fleet_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=_positive_int, default=100, help="fleet size")
    parser.add_argument("--tenants", type=_positive_int, default=2, help="number of tenants")
    parser.add_argument("--seed", type=int, default=7, help="random seed (same seed, same fleet)")
    parser.add_argument(
        "--interval-s",
        type=_positive_float,
        default=10.0,
        help="simulated seconds between readings",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="iot-lake", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    consume = commands.add_parser("consume", help="land a source's messages in raw_telemetry")
    consume.add_argument("--source", required=True, help="where to read: " + _source_forms())
    consume.add_argument("--consumer-id", help="names this consumer in raw rows and commits")
    consume.add_argument("--max-records", type=_positive_int, help="flush after this many messages")
    consume.add_argument(
        "--max-bytes", type=_positive_int, help="flush after this many payload bytes"
    )
    consume.add_argument("--max-age-s", type=_positive_float, help="flush after this many seconds")
    consume.add_argument(
        "--stop-when-idle-s", type=_positive_float, help="exit after this long with nothing new"
    )
    consume.add_argument("--stats-interval-s", type=_positive_float, default=10.0)
    _add_lake_option(consume)

    simulate = commands.add_parser("simulate", help="publish a simulated fleet")
    simulate.add_argument(
        "--to", required=True, help="file:PATH, mqtt://HOST:PORT or kinesis://STREAM[?endpoint=URL]"
    )
    simulate.add_argument("--messages", type=_positive_int, help="stop after this many messages")
    simulate.add_argument(
        "--speed",
        type=_positive_float,
        help="simulated seconds per real second (1440: a day a minute)",
    )
    _add_fleet_options(simulate)

    run = commands.add_parser("run", help="the demo: simulator -> consumer -> local lake")
    run.add_argument("--via", choices=("inprocess", "mqtt"), default="inprocess")
    run.add_argument(
        "--speed", type=_positive_float, default=1440.0, help="until the fleet reaches the present"
    )
    run.add_argument(
        "--start",
        type=_utc_datetime,
        default=None,
        help="simulated start, ISO 8601 UTC (default: 2 days ago); then real time",
    )
    run.add_argument(
        "--ui-port",
        type=_positive_int,
        help="port of the Dagster UI on 127.0.0.1 (env IOT_LAKE_UI_PORT, default 3000)",
    )
    run.add_argument(
        "--no-ui", action="store_true", help="without the Dagster UI (dagster dev): headless"
    )
    _add_fleet_options(run)
    run.set_defaults(devices=50)
    _add_lake_option(run)

    sql = commands.add_parser("sql", help="query the lake with DuckDB SQL")
    sql.add_argument("query", help='e.g. "SELECT count(*) FROM raw_telemetry"')
    _add_lake_option(sql)

    tables = commands.add_parser("tables", help="row counts of every lake table")
    _add_lake_option(tables)

    maintain = commands.add_parser(
        "maintain", help="compact, vacuum, trim logs and expire raw (what the nightly job does)"
    )
    maintain.add_argument(
        "--table", action="append", help="a catalog table (repeatable; default: every table)"
    )
    maintain.add_argument("--dry-run", action="store_true", help="report only, change nothing")
    _add_lake_option(maintain)
    return parser


def _source_forms() -> str:
    from streaming.sources.registry import SOURCE_FORMS

    return ", ".join(SOURCE_FORMS)


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings()
    batch = settings.batch
    batch = BatchLimits(
        max_records=getattr(args, "max_records", None) or batch.max_records,
        max_bytes=getattr(args, "max_bytes", None) or batch.max_bytes,
        max_age_s=getattr(args, "max_age_s", None) or batch.max_age_s,
    )
    return settings.with_overrides(lake_root=getattr(args, "lake_root", None), batch=batch)


def _consume(args: argparse.Namespace) -> int:
    from streaming.lean import keep_pandas_out

    keep_pandas_out()  # before the first Arrow conversion would import it
    from streaming.consumer import Consumer, ConsumerOptions
    from streaming.landing import LandingWriter
    from streaming.sources.registry import open_source

    settings = _settings(args)
    source = open_source(args.source, settings)
    consumer_id = args.consumer_id or f"{socket.gethostname()}-{os.getpid()}"
    writer = LandingWriter(Lake.from_settings(settings), consumer_id)
    options = ConsumerOptions(
        batch=settings.batch,
        max_payload_bytes=settings.max_payload_bytes,
        identity=settings.identity,
        stats_interval_s=args.stats_interval_s,
        stop_when_idle_s=args.stop_when_idle_s,
    )
    consumer = Consumer(source, writer, options, report=lambda line: print(line, flush=True))
    consumer.install_signal_handlers()
    consumer.run()
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from streaming.simulator.publish import publish_to

    return publish_to(args)


def _run(args: argparse.Namespace) -> int:
    from streaming.demo import run_demo

    settings = _settings(args).with_overrides(ui_port=args.ui_port)
    if args.no_ui:
        return run_demo(settings, args)
    # The UI starts first (it takes seconds) and stops last: Ctrl-C reaches the consumer,
    # which commits what it holds, and only then does dagster dev get its SIGINT.
    ui = DagsterDev(DEFAULT_HOME, settings.ui_port, lake_environment(settings)).start()
    try:
        for line in ui.interrupted_runs:
            print(f"iot-lake run: left running by the last dagster dev, failed to retry: {line}")
        print(f"iot-lake run: starting the Dagster UI at {ui.url} (log: {ui.log_path})")
        ui.announce_when_ready(lambda line: print(line, flush=True))
        return run_demo(settings, args)
    finally:
        print("iot-lake run: stopping the Dagster UI (dagster dev) ...", flush=True)
        print(f"iot-lake run: Dagster UI stopped in {ui.stop():.1f} s", flush=True)


def _sql(args: argparse.Namespace) -> int:
    import duckdb

    from iot_lake.app.sql import connect

    settings = _settings(args)
    timeout = timedelta(seconds=settings.heartbeat_timeout_s)
    con = connect(Lake.from_settings(settings), heartbeat_timeout=timeout)
    try:
        con.sql(args.query).show(max_rows=50, max_width=200)
    except duckdb.Error as exc:
        print(f"iot-lake sql: error: {exc}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # A query that fails mid-scan leaves DuckDB's scan threads inside the Delta dataset's
        # Python callbacks; a normal interpreter exit then hangs or aborts. Nothing is left to
        # clean up (the connection is in memory, the lake is only read), so leave at once.
        os._exit(2)
    con.close()
    return 0


def _tables(args: argparse.Namespace) -> int:
    from iot_lake.app.sql import table_counts

    for name, count in table_counts(Lake.from_settings(_settings(args))).items():
        print(f"{name}: {count} rows")
    return 0


def _maintain(args: argparse.Namespace) -> int:
    from iot_lake.lake.catalog import CATALOG
    from iot_lake.lake.maintenance import maintain_lake
    from iot_lake.lake.retention import RetentionPolicy

    unknown = [name for name in args.table or () if name not in CATALOG]
    if unknown:
        raise InvalidInput("--table", "one of " + ", ".join(CATALOG), unknown[0])
    specs = [CATALOG[name] for name in args.table] if args.table else None
    settings = _settings(args)
    policy = RetentionPolicy.from_settings(settings)
    for report in maintain_lake(Lake.from_settings(settings), policy, specs, dry_run=args.dry_run):
        print(report.summary(), flush=True)
    return 0


COMMANDS = {
    "consume": _consume,
    "simulate": _simulate,
    "run": _run,
    "sql": _sql,
    "tables": _tables,
    "maintain": _maintain,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; errors become one line on stderr and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (
        InvalidInput,
        LakeUnavailable,
        FileNotFoundError,
        ConnectionError,
        DagsterUiError,
    ) as exc:
        print(f"iot-lake {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
