"""`iot-lake simulate --to ...`: send a simulated fleet to a file, an MQTT broker or Kinesis."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from iot_lake.errors import InvalidInput
from streaming.simulator.fleet import Fleet, FleetSpec, SimMessage

DESTINATION_FORMS = "file:PATH, mqtt://HOST:PORT or kinesis://STREAM[?endpoint=URL&region=R]"


def fleet_spec(args: argparse.Namespace) -> FleetSpec:
    """The fleet the command-line options describe."""
    spec = FleetSpec(
        devices=args.devices, tenants=args.tenants, seed=args.seed, interval_s=args.interval_s
    )
    start = getattr(args, "start", None)
    return spec if start is None else replace(spec, start=start)


def paced(
    fleet: Fleet,
    speed: float | None,
    *,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    report: Callable[[str], None] = print,
) -> Iterator[list[SimMessage]]:
    """The fleet's ticks, each released when speed x real time reaches its simulated time.

    No speed: as fast as the consumer of the ticks takes them. Ends after `duration_s` of
    real time or when `stop` is set; says once if the receiver cannot keep the pace.
    """
    stop = stop or threading.Event()
    tick_real_s = 0.0 if speed is None else fleet.spec.interval_s / speed
    started = time.monotonic()
    behind_reported = False
    for index, tick in enumerate(fleet.ticks()):
        due = started + index * tick_real_s
        if duration_s is not None and due - started >= duration_s:
            return
        if stop.wait(max(due - time.monotonic(), 0)):
            return
        if speed is not None and time.monotonic() - due > tick_real_s and not behind_reported:
            behind_reported = True
            report(f"simulator is behind the pace at tick {index}: lower the speed or the fleet")
        yield tick


def limited(ticks: Iterable[list[SimMessage]], limit: int | None) -> Iterator[list[SimMessage]]:
    """Stop after `limit` messages in total (None: never)."""
    sent = 0
    for tick in ticks:
        if limit is not None and sent + len(tick) >= limit:
            yield tick[: limit - sent]
            return
        sent += len(tick)
        yield tick


def write_frames(messages: Iterable[SimMessage], path: Path) -> int:
    """Append messages to a framed JSONL file (`topic<TAB>payload` per line)."""
    count = 0
    with path.open("ab") as out:
        for message in messages:
            out.write(message.frame + b"\n")
            count += 1
    return count


def publish_to(args: argparse.Namespace) -> int:
    """Run the simulator into the destination `--to` names, until done or interrupted."""
    destination = urlsplit(args.to)
    fleet = Fleet(fleet_spec(args))
    if args.messages is None and args.speed is None:
        raise InvalidInput(
            "--messages", "a count when --speed is not given (else it never ends)", None
        )
    ticks = limited(paced(fleet, args.speed), args.messages)
    try:
        if destination.scheme == "file":
            path = Path(destination.netloc + destination.path)
            total = 0
            for tick in ticks:
                total += write_frames(tick, path)
            print(f"simulate: wrote {total} messages to {path}")
        elif destination.scheme == "mqtt":
            from streaming.simulator.mqtt_publisher import publish_ticks

            total = publish_ticks(
                ticks, destination.hostname or "127.0.0.1", destination.port or 1883
            )
            print(f"simulate: published {total} messages to {args.to}")
        elif destination.scheme == "kinesis":
            from streaming.simulator.kinesis_publisher import put_messages

            query = parse_qs(destination.query)
            total = 0
            for tick in ticks:
                total += put_messages(
                    tick,
                    destination.netloc,
                    endpoint_url=(query.get("endpoint") or [None])[-1],
                    region=(query.get("region") or [None])[-1],
                )
            print(f"simulate: put {total} records to {args.to}")
        else:
            raise InvalidInput("--to", DESTINATION_FORMS, args.to)
    except KeyboardInterrupt:
        print("simulate: interrupted")
    return 0
