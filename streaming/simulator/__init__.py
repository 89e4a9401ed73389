"""A deterministic, seeded fleet of devices with realistic faults, for demos and tests."""
