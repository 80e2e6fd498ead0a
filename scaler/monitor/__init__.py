"""Watching a running cluster: the status feed's subscriber, ``scaler_top`` and the web dashboard (``scaler_ui``).

The scheduler publishes the feed; ``scaler.monitor.feed.StatusFeed`` reads it.
"""
