"""`iot-lake run`: the embedded demo, a simulated fleet landing in a local lake until Ctrl-C.

In-process by default (simulator -> consumer, no broker); `--via mqtt` starts Mosquitto
with the project's config, publishes the fleet to it and consumes from it, as a fleet would.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from iot_lake.lake.tables import Lake
from iot_lake.settings import Settings
from streaming.consumer import Consumer, ConsumerOptions
from streaming.landing import LandingWriter
from streaming.simulator.publish import fleet_spec
from streaming.sources.simulated import SimulatorSource


def _say(line: str) -> None:
    print(line, flush=True)


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Run the simulator into the lake until interrupted; print progress and how to look."""
    lake = Lake.from_settings(settings)
    if args.start is None:  # two days of history at `speed`, then real time
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        args.start = now - timedelta(days=2)
    spec = fleet_spec(args)
    _say(
        f"iot-lake run: {spec.devices} simulated devices, one reading every {spec.interval_s:g} "
        f"simulated s, {args.speed:g}x real time (a simulated day in "
        f"{86400 / args.speed / 60:.1f} min) from {spec.start:%Y-%m-%d %H:%M} UTC until it "
        f"reaches the present, then real time; lake at {lake.root}"
    )
    _say(
        "  look at it meanwhile:  .venv/bin/iot-lake tables   |   .venv/bin/iot-lake sql "
        '"SELECT message_kind, count(*) FROM raw_telemetry GROUP BY 1"'
    )
    if args.via == "mqtt":
        from streaming.demo_mqtt import run_via_mqtt

        return run_via_mqtt(settings, spec, args.speed, lake)
    source = SimulatorSource(spec, speed=args.speed, catch_up=True)
    consumer = Consumer(
        source,
        LandingWriter(lake, "demo"),
        ConsumerOptions(batch=settings.batch, stats_interval_s=5.0),
        report=_say,
    )
    consumer.install_signal_handlers()
    stats = consumer.run()
    _say(f"iot-lake run: stopped cleanly, {stats.messages:,} messages landed this run")
    return 0
