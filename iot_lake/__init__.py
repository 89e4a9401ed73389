"""iot-lake core: settings, table catalog, lake I/O, wire format, CLI and Dagster definitions."""

from iot_lake.app.allocator import keep_freed_pages

# Before anything imports polars (the CLI, the Dagster code location and its run workers
# import this package first): see iot_lake.app.allocator.
keep_freed_pages()
