"""Every partitions definition of the asset graph, defined once.

Derived tables are partitioned by UTC event day. The first day fits the simulator's
default start; `end_offset=1` makes today a partition, so late-evening data and the
current day can be materialized before midnight.
"""

from __future__ import annotations

import dagster as dg

EVENT_DATE_START = "2026-11-01"

event_date_partitions = dg.DailyPartitionsDefinition(
    start_date=EVENT_DATE_START, timezone="UTC", end_offset=1
)

# A backfill covers up to a week per run: raw is read once for the whole range (a
# partition needs raw from the day before to max_lateness after), while memory stays
# bounded by a week of data rather than the whole backfill.
event_date_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=7)
