"""The command-line entry points: ``scaler_scheduler``, ``scaler_cluster`` and ``scaler_keygen``."""
