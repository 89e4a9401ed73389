"""An MQTT consumer as its own process, so tests can kill -9 it or run two side by side.

Run with `python -m tests.integration.mqtt.consumer_process --port P --lake DIR ...` from
the repository root. It touches `--ready-file` once the broker accepted its session and
subscription, and stops on SIGTERM (committing what it holds) or after `--idle-s`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from iot_lake.lake.tables import Lake
from iot_lake.settings import BatchLimits, MqttSettings
from streaming.consumer import Consumer, ConsumerOptions
from streaming.landing import LandingWriter
from streaming.sources.mqtt import MqttSource


class _AnnouncingSource(MqttSource):
    """MqttSource that tells the test, through a file, when it is subscribed."""

    def __init__(self, settings: MqttSettings, ready_file: Path | None) -> None:
        super().__init__(settings)
        self.ready_file = ready_file

    def resume(self, writer: LandingWriter) -> None:
        super().resume(writer)
        if self.ready_file is not None:
            self.ready_file.touch()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--share-group")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--max-records", type=int, default=200)
    parser.add_argument("--max-age-s", type=float, default=0.3)
    parser.add_argument("--idle-s", type=float, default=None)
    args = parser.parse_args()
    settings = MqttSettings(
        host="127.0.0.1", port=args.port, client_id=args.client_id, share_group=args.share_group
    )
    consumer = Consumer(
        _AnnouncingSource(settings, args.ready_file),
        LandingWriter(Lake(args.lake), args.client_id),
        ConsumerOptions(
            batch=BatchLimits(max_records=args.max_records, max_age_s=args.max_age_s),
            stats_interval_s=5.0,
            stop_when_idle_s=args.idle_s,
        ),
        report=lambda line: print(line, flush=True),
    )
    consumer.install_signal_handlers()
    consumer.run()


if __name__ == "__main__":
    main()
