"""Bounds on streamed task output (``stream_output``), in one place, and the pure pieces that apply them.

Output may be dropped at three hops, each with its own byte budget (a token bucket), and is never
queued without bound anywhere::

    task's print() ──▶ processor: coalesced, TokenBucket per processor ──TaskLog──▶
    worker agent: OutputThrottle per worker ──TaskLog──▶ scheduler: OutputThrottle per client ──▶ client

What a hop drops is counted per task and stream, and the count rides the next ``TaskLog`` of that
task and stream (``dropped_bytes``) or a final text-less one when the task ends; the client then
prints how much was lost, where it was lost. Nothing here touches a clock, a thread or a socket:
callers pass ``now``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from scaler.protocol.messages import LogStream, TaskLog

_MIB = 1024 * 1024


@dataclass(frozen=True)
class OutputLimits:
    """How much task output may flow; a rate of 0 or less means no limit at that hop."""

    processor_bytes_per_second: int = 1 * _MIB  # what one processor's tasks may print
    worker_bytes_per_second: int = 2 * _MIB  # what a worker forwards, all its processors together
    client_bytes_per_second: int = 4 * _MIB  # what the scheduler relays to one client, all its tasks together
    burst_seconds: float = 1.0  # each bucket holds this many seconds of its rate: a short burst passes whole
    flush_seconds: float = 0.1  # a processor sends what its task printed at most this often...
    flush_bytes: int = 64 * 1024  # ...or when this much is waiting; also the largest text of one TaskLog
    max_buffered_bytes: int = 4 * _MIB  # a processor whose agent does not read drops output past this

    def burst(self, bytes_per_second: int) -> int:
        """The bucket size for a rate."""
        return max(1, int(bytes_per_second * self.burst_seconds))


DEFAULT_OUTPUT_LIMITS = OutputLimits()


def text_bytes(text: str) -> int:
    """The size of ``text`` in UTF-8 (cheap for ASCII, the usual case)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def clip_text(text: str, size: int) -> str:
    """The longest start of ``text`` that is at most ``size`` bytes in UTF-8."""
    if text.isascii():
        return text[:size]
    return text.encode("utf-8", "replace")[:size].decode("utf-8", "ignore")


class TokenBucket:
    """A byte budget: ``rate`` bytes per second, at most ``burst`` saved up.

    Once a request finds it short, it stays *dry* (grants nothing) until it has refilled to half
    its size. So what passes comes in long runs and each gap is one notice, instead of single lines
    sampled at random from a flood, each behind its own notice. ``rate`` <= 0: no limit.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._tokens = self.burst
        self._last: float | None = None
        self._dry = False

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now
        if self._dry and self._tokens >= self.burst / 2:
            self._dry = False

    def take(self, size: int, now: float) -> int:
        """Take up to ``size`` bytes; return how many were granted (a short grant makes it dry)."""
        if size <= 0 or self.rate <= 0:
            return max(0, size)
        self._refill(now)
        if self._dry:
            return 0
        granted = min(size, int(self._tokens))
        self._tokens -= granted
        if granted < size:
            self._dry = True
        return granted

    def take_all(self, size: int, now: float) -> bool:
        """Take ``size`` bytes whole or not at all (a refusal makes it dry).

        A size over the whole bucket passes when the bucket is full, and is paid off later.
        """
        if size <= 0 or self.rate <= 0:
            return True
        self._refill(now)
        if self._dry or self._tokens < min(size, self.burst):
            self._dry = True
            return False
        self._tokens -= size
        return True


class OutputThrottle:
    """One hop's bound on the ``TaskLog`` messages it relays: one bucket, drops counted per task and stream."""

    def __init__(self, bytes_per_second: int, limits: OutputLimits = DEFAULT_OUTPUT_LIMITS) -> None:
        self._bucket = TokenBucket(bytes_per_second, limits.burst(bytes_per_second))
        self._dropped: dict[tuple[bytes, LogStream], int] = {}  # held until the task's next log, or its end
        self.passed_bytes = 0
        self.dropped_bytes = 0

    def admit(self, log: TaskLog, now: float) -> TaskLog | None:
        """``log`` to relay (carrying what was dropped before it), or None if it is over the budget."""
        size = text_bytes(log.text)
        key = (log.task_id, log.stream)
        if not self._bucket.take_all(size, now):
            self._dropped[key] = self._dropped.get(key, 0) + size + log.dropped_bytes
            self.dropped_bytes += size
            return None
        self.passed_bytes += size
        earlier = self._dropped.pop(key, 0) if self._dropped else 0
        if earlier:
            log = dataclasses.replace(log, dropped_bytes=log.dropped_bytes + earlier)
        return log

    def finish(self, task_id: bytes) -> list[TaskLog]:
        """The task ended: text-less ``TaskLog`` notices for what was dropped since its last relayed log."""
        if not self._dropped:
            return []
        notices = []
        for stream in (LogStream.STDOUT, LogStream.STDERR):
            dropped = self._dropped.pop((task_id, stream), 0)
            if dropped:
                notices.append(TaskLog(task_id, stream, "", dropped))
        return notices

    def held_task_ids(self) -> set[bytes]:
        """The tasks with drop counts waiting for a log to ride on (for invariant checks)."""
        return {task_id for task_id, _ in self._dropped}

    def statistics(self) -> dict[str, int]:
        """Bytes relayed and dropped so far."""
        return {"output_passed_bytes": self.passed_bytes, "output_dropped_bytes": self.dropped_bytes}
