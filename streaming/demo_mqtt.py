"""`iot-lake run --via mqtt`: Mosquitto, a paced fleet publishing to it, a consumer landing it."""

from __future__ import annotations

import multiprocessing
import signal
from dataclasses import replace
from pathlib import Path

from iot_lake.lake.tables import Lake
from iot_lake.settings import Settings
from streaming.broker import Mosquitto
from streaming.consumer import Consumer, ConsumerOptions
from streaming.landing import LandingWriter
from streaming.simulator.fleet import Fleet, FleetSpec
from streaming.simulator.mqtt_publisher import publish_paced
from streaming.sources.mqtt import MqttSource

RUN_DIR = Path(".run")


def _publish_forever(spec: FleetSpec, host: str, port: int, speed: float) -> None:
    # Ctrl-C reaches the whole process group: the parent stops this process itself, after
    # the consumer has committed, so the publisher ignores SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    publish_paced(Fleet(spec), host, port, speed)


def run_via_mqtt(settings: Settings, spec: FleetSpec, speed: float, lake: Lake) -> int:
    """Start the broker and the publisher, consume until Ctrl-C, then stop all of them."""
    port = settings.mqtt.port
    with Mosquitto(port, RUN_DIR / "mosquitto"):
        print(f"iot-lake run: Mosquitto on 127.0.0.1:{port} (data in {RUN_DIR}/mosquitto)")
        publisher = multiprocessing.get_context("spawn").Process(
            target=_publish_forever, args=(spec, "127.0.0.1", port, speed), daemon=True
        )
        source = MqttSource(replace(settings.mqtt, host="127.0.0.1", port=port))
        consumer = Consumer(
            source,
            LandingWriter(lake, "demo-mqtt"),
            ConsumerOptions(batch=settings.batch, stats_interval_s=5.0),
            report=lambda line: print(line, flush=True),
        )
        consumer.install_signal_handlers()
        publisher.start()
        try:
            stats = consumer.run()
        finally:
            publisher.terminate()
            publisher.join(timeout=10)
    print(f"iot-lake run: stopped cleanly, {stats.messages:,} messages landed this run")
    return 0
