"""The lake: table catalog, Delta table I/O and commits, retention and maintenance."""
