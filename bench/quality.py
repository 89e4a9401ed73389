"""Quality benchmark: how long the telemetry suite takes on N readings, and how much memory.

Builds N synthetic telemetry rows (devices x metrics of the catalog, values inside their
ranges, canonical units, unique keys), then runs `validate_frame` on them twice: the first
run includes GX's one-time warm-up, the second is what each further partition costs. Prints
`name: value unit` lines like bench/ingest.py:

- gx_import: seconds to import Great Expectations (paid once per validating process).
- frame_mb: Arrow size of the columns the suite reads.
- validate_first, validate: seconds for the whole suite (first run, warm run).
- validate_rate: rows per second of the warm run.
- peak_rss: the process's peak resident set size after both runs.

Run: `.venv/bin/python bench/quality.py [--rows N]` (default 1,000,000).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from datetime import date

import numpy as np
import polars as pl

from iot_lake.lake.catalog import TELEMETRY
from iot_lake.silver.metrics import METRICS

DAY = date(2026, 11, 1)


def synthetic_telemetry(rows: int, devices: int = 10_000, seed: int = 7) -> pl.DataFrame:
    """`rows` valid readings: each message carries one reading of every catalog metric."""
    rng = np.random.default_rng(seed)
    specs = list(METRICS.values())
    index = np.arange(rows)
    message = index // len(specs)
    metric = index % len(specs)
    low = np.array([spec.minimum for spec in specs])[metric]
    high = np.array([spec.maximum for spec in specs])[metric]
    return pl.DataFrame(
        {
            "device_id": [f"dev-{m % devices:06d}" for m in message],
            "message_id": [f"dev-{m % devices:06d}-{m // devices}" for m in message],
            "metric": [specs[i].name for i in metric],
            "unit": [specs[i].unit for i in metric],
            "value": rng.uniform(low, high),
        }
    )


def main() -> None:
    """Print the figures for one size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    print(f"# load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    started = time.perf_counter()
    from iot_lake.quality.expectations import validate_frame  # timed: the import is a figure

    print(f"gx_import: {time.perf_counter() - started:.1f} s")
    frame = synthetic_telemetry(rows)
    print(f"frame_mb: {frame.estimated_size('mb'):.0f} MB")
    first = validate_frame(TELEMETRY, frame, DAY)
    warm = validate_frame(TELEMETRY, frame, DAY)
    if not (first.passed and warm.passed):
        raise SystemExit(f"synthetic data failed: {[o for o in warm.outcomes if not o.passed]}")
    print(f"validate_first: {first.seconds:.1f} s")
    print(f"validate: {warm.seconds:.1f} s ({len(warm.outcomes)} expectations, {rows:,} rows)")
    print(f"validate_rate: {rows / warm.seconds:,.0f} rows/s")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak_rss: {peak_mb:.0f} MB")
    print(f"# load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
