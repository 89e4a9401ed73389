"""Dagster sensors: thin wrappers over iot_lake logic (filled by the lakehouse issue)."""
