"""Gold: mergeable rollups and per-device baselines, rebuilt from the level below."""
