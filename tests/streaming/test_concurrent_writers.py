"""Two consumers appending to one local table at once: no commit lost, nothing doubled."""

import threading
from collections import Counter

from iot_lake.lake.catalog import RAW_TELEMETRY
from iot_lake.settings import BatchLimits
from streaming.consumer import Consumer, ConsumerOptions
from streaming.landing import POSITIONS_KEY, LandingWriter
from streaming.simulator.fleet import Fleet, FleetSpec
from streaming.sources.file import FileSource
from tests.conftest import framed_file


def test_two_consumers_on_one_local_table_lose_no_commit(lake, tmp_path):
    lake.ensure_table(RAW_TELEMETRY)
    files = {
        name: framed_file(
            tmp_path / f"{name}.jsonl", list(Fleet(FleetSpec(devices=15, seed=seed)).messages(4000))
        )
        for name, seed in (("left", 1), ("right", 2))
    }
    options = ConsumerOptions(batch=BatchLimits(max_records=100), stats_interval_s=3600)
    results = {}

    def run(name):
        consumer = Consumer(
            FileSource(files[name]), LandingWriter(lake, name), options, report=lambda _: None
        )
        results[name] = consumer.run()

    threads = [threading.Thread(target=run, args=(name,)) for name in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    raw = lake.read(RAW_TELEMETRY)
    assert Counter(raw["consumer_id"].to_list()) == {"left": 4000, "right": 4000}
    assert raw.select("consumer_id", "source_position").n_unique() == 8000
    table = lake.open(RAW_TELEMETRY)
    data_commits = [c for c in table.history() if POSITIONS_KEY in c]
    assert len(data_commits) == results["left"].commits + results["right"].commits
    assert table.version() == len(table.history()) - 1  # a gapless log
