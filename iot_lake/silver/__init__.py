"""Silver: raw rows decoded, deduplicated and placed in event time, a window at a time."""
