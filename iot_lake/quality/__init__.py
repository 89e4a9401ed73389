"""Data quality of telemetry and the rollups: what is checked, and the verdicts."""
