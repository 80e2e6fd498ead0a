"""The multi-host suite: scaler across simulated hosts (Linux network namespaces)."""
