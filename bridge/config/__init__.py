"""Settings and receivers: the configuration read, checked, reloaded."""
