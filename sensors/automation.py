"""automation_condition_sensor: evaluates the assets' automation conditions, on by default.

Dagster adds a `default_automation_condition_sensor` for assets with an automation condition
when no sensor targets them, but that one starts stopped (dagster 1.13: its default status
is STOPPED and the asset daemon skips sensors that are not running), so on a fresh
`dagster dev` nothing would follow late data into device_baselines until someone switched it
on in the UI. This sensor targets every asset, so it replaces the default one, and starts
running; the conditions themselves live in assets/automation.py.
"""

from __future__ import annotations

import dagster as dg

automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    "automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=(
        "Requests the asset partitions whose automation conditions hold, e.g. the baselines "
        "of D..D+6 after rollup_1h of D was rebuilt."
    ),
)
