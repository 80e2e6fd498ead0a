"""The status feed's socket: an XPUB the scheduler's shell publishes snapshots and events on.

An XPUB rather than a PUB because it reports subscriptions: the shell reads them
(``subscribed()``) and tells the core to record events only while someone listens, so a
scheduler nobody watches pays nothing per task. ``XPUB_NODROP`` makes a send to a full queue
raise ``zmq.Again`` instead of dropping silently; each send is ``NOBLOCK``, so that is counted
(``dropped``, reported in every snapshot as ``feed_dropped``) and never waited for. A slow or dead
subscriber therefore costs the scheduler one failed send per message, nothing more. With
scheduler keys, the socket is a CURVE server behind the same ZAP allow-list as the scheduler's
ROUTER (it must live in the same context): a ``monitor`` key pair from ``scaler_keygen`` gets in.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from scaler.io.security import ZAP_SERVED, SchedulerKeys
from scaler.io.sockets import validate_address
from scaler.monitor.feed import monitor_address_for

logger = logging.getLogger(__name__)

OFF = "none"
# Frames queued per subscriber before sends fail (and are counted as dropped). A frame is a
# snapshot or one turn's events (at most ``status.MAX_EVENTS_PER_TURN`` of them).
SEND_HIGH_WATER_MARK = 50


class MonitorBindError(RuntimeError):
    """The monitor address the scheduler was given cannot be bound."""


def resolve_monitor_address(scheduler_address: str, monitor_address: str | None) -> str | None:
    """Where the feed goes: ``monitor_address`` itself, None for ``"none"``, else beside the scheduler.

    Beside means the scheduler's port + 2 on the same host for tcp (as in Scaler), and the
    scheduler's path + ``.monitor`` for ipc. An inproc scheduler has no default.
    """
    if monitor_address == OFF:
        return None
    if monitor_address:
        return validate_address(monitor_address)
    if scheduler_address.startswith("tcp://"):
        return monitor_address_for(scheduler_address)
    if scheduler_address.startswith("ipc://"):
        return scheduler_address + ".monitor"
    return None


class StatusPublisher:
    """The bound XPUB socket; see the module docstring. Raises ``zmq.ZMQError`` if it cannot bind."""

    def __init__(self, context: zmq.Context[Any], address: str, keys: SchedulerKeys | None = None) -> None:
        if keys is not None and context not in ZAP_SERVED:  # libzmq would let every key in
            raise RuntimeError("a CURVE monitor socket needs the scheduler's allow-list on its context")
        self.address = address
        self.socket: zmq.Socket[Any] = context.socket(zmq.XPUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, SEND_HIGH_WATER_MARK)
        self.socket.setsockopt(zmq.XPUB_NODROP, 1)
        self.socket.setsockopt(zmq.RCVHWM, 1000)
        self.socket.setsockopt(zmq.MAXMSGSIZE, 4096)  # subscriptions only: nothing big comes this way
        if keys is not None:
            keys.configure(self.socket)
        try:
            self.socket.bind(address)
        except zmq.ZMQError:
            self.socket.close(linger=0)
            raise
        self._topics: set[bytes] = set()
        self.dropped = 0  # messages a full subscriber queue refused
        self.sent = 0

    def subscribed(self) -> bool:
        """Read the subscription changes that arrived; True while anyone subscribes.

        XPUB passes on the first subscription to a topic and the last unsubscription (a
        subscriber that goes away unsubscribes), so the set of topics is empty exactly when
        nobody listens.
        """
        while True:
            try:
                change = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not change:
                continue
            if change[0] == 1:
                self._topics.add(change[1:])
            elif change[0] == 0:
                self._topics.discard(change[1:])
        return bool(self._topics)

    def publish(self, frame: bytes) -> bool:
        """Send one encoded frame without waiting; False (counted in ``dropped``) if a subscriber's queue is full."""
        try:
            self.socket.send(frame, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        """Close the socket (before its context is terminated)."""
        self.socket.close(linger=0)
