"""The streaming consumer service: sources, micro-batches, landing writer; the fleet simulator."""
