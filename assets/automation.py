"""Named automation conditions of the asset graph, defined once."""

from __future__ import annotations

import dagster as dg

_condition = dg.AutomationCondition

# For an unpartitioned table merged from partitioned silver (device_registry, device_state):
# request it after any partition of a parent is rebuilt, old days included. `eager()` does
# not fit: it waits while any parent partition is missing, and a daily-partitioned parent
# always has days never materialized. Pending from a parent's rebuild until this asset is
# requested, and only then: a parent rebuilt while a run of this asset is going (its cursor
# may predate that commit) is requested again once the run ends, never left behind.
after_any_parent_partition = (
    _condition.any_deps_updated().since(_condition.newly_requested())
    & ~_condition.any_deps_in_progress()
    & ~_condition.in_progress()
).with_label("after_any_parent_partition")

# For device_baselines: the baseline as of D reads rollup_1h of D-6..D (its partition mapping
# says so), so a rebuilt rollup_1h day must recompute the baselines of that day and the six
# after it, old days included. Built from the parts rather than `eager()`, which cannot:
# `in_latest_time_window()` would drop every day but today (late data lands in old days), and
# `~any_deps_missing()` blocks every day whose window holds a day never materialized (a
# late day 1 with data on days 1-2 only: eager() without the latest-window part requested
# days 1-2 of the 7). Pending from a parent's rebuild until this asset is requested,
# and only then: a baseline run that read a window rewritten while it ran (or a manual
# materialization) does not count as handling that rewrite, so it is requested again and
# never left stale. Waits while a parent day or the baseline itself is being written.
after_window_rebuilt = (
    _condition.any_deps_match(_condition.newly_updated())
    .with_label("any_window_day_rebuilt")
    .since(_condition.newly_requested())
    & ~_condition.any_deps_in_progress()
    & ~_condition.in_progress()
).with_label("after_window_rebuilt")
