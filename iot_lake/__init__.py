"""iot-lake core: settings, table catalog, lake I/O, wire format, CLI and Dagster definitions."""
