"""iot-lake core, one subpackage per stage; importing it changes nothing in the process.

Stages, each importing only those below it (pyproject.toml's import-linter contracts):
app > (rollouts, commands, alerts: planned) > quality | state | gold > silver > ingest >
lake > settings > errors. definitions assembles the Dagster code location from all of
them. Process set-up (the allocator setting) is done by the entry points, iot_lake.app.entry.
"""
