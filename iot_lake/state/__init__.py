"""Device state: the reported shadow (registry and state) and connectivity."""
