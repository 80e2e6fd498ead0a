"""Package version, kept apart so that pyproject.toml can read it without importing scaler."""

__version__ = "0.1.0"
