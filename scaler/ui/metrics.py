"""Placeholder for the metrics branch's ``ClusterMetrics`` (issue 12 section 4), with its interface only.

The metrics branch owns this module; merging it replaces this file. The dashboard calls
``update`` for every feed message and serves the registry at ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from scaler.protocol.messages import StatusEvents, StatusSnapshot


class ClusterMetrics:
    """Prometheus metrics of the cluster, updated from the status feed."""

    def __init__(self, registry: CollectorRegistry):
        self._workers = Gauge("scaler_workers_connected", "workers in the last snapshot", registry=registry)

    def update(self, message: StatusSnapshot | StatusEvents) -> None:
        """Take one feed message into the metrics."""
        if isinstance(message, StatusSnapshot):
            self._workers.set(len(message.workers))
