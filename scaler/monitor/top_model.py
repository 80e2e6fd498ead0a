"""What ``scaler_top`` shows, as plain text: the header, the clients' and workers' rows, their order, the events.

No terminal here: ``TopModel`` takes the feed's messages and key presses, and gives back lines and
rows of strings that ``scaler.monitor.top`` puts on screen. Tests drive it with hand-made
snapshots.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from scaler.protocol.messages import (
    PeerEventKind,
    PeerEventRecord,
    StatusEvents,
    StatusSnapshot,
    TaskEventKind,
    WorkerState,
    WorkerStatus,
)

# Live task states in the order a task moves through them; a state the scheduler adds later is shown after these.
TASK_STATES = ("waiting", "queued", "assigned", "balancing", "running", "canceling")
TASK_TOTALS = ("submitted", "finished", "failed", "cancelled", "retried")
EVENT_LINES = 200  # the events kept for the events pane; older ones are forgotten

CLIENT_COLUMNS = ("client", "queued", "running", "done", "failed", "cancelled", "credits", "connected")
WORKER_COLUMNS = (
    "worker",
    "state",
    "queued",
    "task",
    "running for",
    "procs run/park/idle",
    "CPU",
    "RSS",
    "heartbeat",
    "done",
)


@dataclasses.dataclass(frozen=True)
class SortKey:
    """One way to order the workers table: the key that picks it, its column, and the value sorted on."""

    key: str
    name: str  # as in TopConfig.sort_by
    column: str  # the header of the column it sorts
    descending: bool  # the first press's direction: biggest first, except for names
    value: Callable[[WorkerStatus], Any]


def _longest_task(worker: WorkerStatus) -> float:
    return max((task.running_seconds for task in worker.running), default=-1.0)


# "q" quits, as in htop, so queued is "u" (q*u*eued).
SORT_KEYS: tuple[SortKey, ...] = (
    SortKey("n", "name", "worker", False, lambda worker: peer_name(worker.worker_id)),
    SortKey("u", "queued", "queued", True, lambda worker: worker.queued),
    SortKey("c", "cpu", "CPU", True, lambda worker: worker.cpu_percent),
    SortKey("m", "rss", "RSS", True, lambda worker: worker.rss_bytes),
    SortKey("t", "task", "running for", True, _longest_task),
    SortKey("d", "done", "done", True, lambda worker: worker.done),
)


def sort_key(key_or_name: str) -> SortKey:
    """The ``SortKey`` a key press or a ``sort_by`` name picks; ``KeyError`` for neither."""
    for entry in SORT_KEYS:
        if key_or_name in (entry.key, entry.name):
            return entry
    raise KeyError(key_or_name)


# -- formatting --------------------------------------------------------------------------------


def peer_name(peer_id: bytes) -> str:
    """A peer's identity without its kind: ``worker|host|pid|tag`` -> ``host|pid|tag``; hex if it is not text."""
    try:
        text = peer_id.decode()
    except UnicodeDecodeError:
        text = ""
    if not text or not text.isprintable():
        return peer_id.hex()[:16]  # a random binary id: a short, stable handle for it
    kind, separator, rest = text.partition("|")
    return rest if separator and kind in ("worker", "client", "scheduler") else text


def format_bytes(count: float) -> str:
    """``1536`` -> ``1.5K``: binary units, three significant figures at most, as top does."""
    value = float(count)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(value) < 1024 or unit == "T":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.1f}{unit}" if abs(value) < 100 else f"{value:.0f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_seconds(seconds: float) -> str:
    """A duration in its two biggest units: ``4.2s``, ``3m05s``, ``2h07m``, ``3d04h``."""
    if seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _counts(values: dict[str, int], known: Sequence[str]) -> str:
    names = [name for name in known if name in values] + sorted(set(values) - set(known))
    return "  ".join(f"{name} {values[name]}" for name in names)


# -- rows --------------------------------------------------------------------------------------


def client_rows(snapshot: StatusSnapshot) -> list[tuple[str, ...]]:
    """One row per client, by name."""
    rows: list[tuple[str, ...]] = []
    for client in sorted(snapshot.clients, key=lambda client: peer_name(client.client_id)):
        rows.append(
            (
                peer_name(client.client_id),
                str(client.queued),
                str(client.running),
                str(client.done),
                str(client.failed),
                str(client.cancelled),
                str(client.credits_in_use),
                format_seconds(client.connected_seconds),
            )
        )
    return rows


def sort_workers(workers: Iterable[WorkerStatus], key: SortKey, descending: bool) -> list[WorkerStatus]:
    """``workers`` ordered by ``key``; ties by name, always ascending, so the order never flickers."""
    by_name = sorted(workers, key=lambda worker: peer_name(worker.worker_id))
    return sorted(by_name, key=key.value, reverse=descending)


def worker_row(worker: WorkerStatus) -> tuple[str, ...]:
    """The cells of one worker's row, in ``WORKER_COLUMNS`` order."""
    if worker.running:
        longest = max(worker.running, key=lambda task: task.running_seconds)
        task = longest.function_name or "?"
        if len(worker.running) > 1:  # a parent parked on its children, and a child running
            task += f" (+{len(worker.running) - 1})"
        running_for = format_seconds(longest.running_seconds)
    else:
        task, running_for = "", ""
    return (
        peer_name(worker.worker_id),
        worker.state.name.lower(),
        str(worker.queued),
        task,
        running_for,
        f"{worker.processors_running}/{worker.processors_parked}/{worker.processors_idle}",
        f"{worker.cpu_percent:.1f}%",
        format_bytes(worker.rss_bytes),
        format_seconds(worker.heartbeat_age_seconds),
        str(worker.done),
    )


def header_lines(snapshot: StatusSnapshot, finished_per_second: float | None) -> list[str]:
    """The scheduler's figures, on three lines."""
    scheduler = snapshot.scheduler
    states = collections.Counter(worker.state for worker in snapshot.workers)
    worker_states = ", ".join(f"{state.name.lower()} {states[state]}" for state in WorkerState if states[state])
    rate = "-" if finished_per_second is None else f"{finished_per_second:.1f}"
    return [
        f"scheduler {peer_name(scheduler.scheduler_id)} v{scheduler.version}"
        f"  up {format_seconds(scheduler.uptime_seconds)}"
        f"  CPU {scheduler.cpu_percent:.1f}%  RSS {format_bytes(scheduler.rss_bytes)}"
        f"  msgs/s in {scheduler.messages_in_per_second:.0f} out {scheduler.messages_out_per_second:.0f}"
        f"  objects {scheduler.objects} ({format_bytes(scheduler.object_bytes)})  dropped {scheduler.feed_dropped}",
        f"workers {len(snapshot.workers)}"
        + (f" ({worker_states})" if worker_states else "")
        + f"  clients {len(snapshot.clients)}  tasks: {_counts(scheduler.tasks_by_state, TASK_STATES) or 'none'}",
        f"totals: {_counts(scheduler.tasks_total, TASK_TOTALS)}  finished/s {rate}",
    ]


# -- the model ---------------------------------------------------------------------------------


class TopModel:
    """The latest snapshot, the workers' order, a finished-per-second rate and the recent events.

    ``take(messages)`` takes what the feed received; ``press(key)`` a sort key. Everything else
    reads: ``header()``, ``clients()``, ``workers()``, ``events()`` and ``status(...)``.
    """

    def __init__(self, address: str, sort_by: str = "name") -> None:
        self.address = address
        self.snapshot: StatusSnapshot | None = None
        self.sort = sort_key(sort_by)
        self.descending = self.sort.descending
        self._finished_per_second: float | None = None
        self._events: collections.deque[str] = collections.deque(maxlen=EVENT_LINES)
        self._events_dropped = 0

    # -- input ---------------------------------------------------------------------------------

    def take(self, messages: Iterable[StatusSnapshot | StatusEvents]) -> bool:
        """Take the feed's messages; True if a new snapshot came (the tables need redrawing)."""
        changed = False
        for message in messages:
            if isinstance(message, StatusSnapshot):
                self._rate(message)
                self.snapshot = message
                changed = True
            else:
                self._take_events(message)
        return changed

    def note(self, line: str, wall_time: float | None = None) -> None:
        """Add a line of our own to the events pane (a warning, say)."""
        stamp = time.strftime("%H:%M:%S", time.localtime(time.time() if wall_time is None else wall_time))
        self._events.append(f"{stamp} {line}")

    def press(self, key: str) -> bool:
        """A key press: a sort key orders by its column, or, pressed again, flips the order. True if it was one."""
        try:
            chosen = sort_key(key)
        except KeyError:
            return False
        if chosen == self.sort:
            self.descending = not self.descending
        else:
            self.sort, self.descending = chosen, chosen.descending
        return True

    def _rate(self, snapshot: StatusSnapshot) -> None:
        previous = self.snapshot
        if previous is None or previous.scheduler.scheduler_id != snapshot.scheduler.scheduler_id:
            self._finished_per_second = None  # a restarted scheduler counts from zero again
            return
        elapsed = snapshot.now - previous.now
        if elapsed <= 0:
            return
        done = snapshot.scheduler.tasks_total.get("finished", 0) - previous.scheduler.tasks_total.get("finished", 0)
        self._finished_per_second = max(0, done) / elapsed

    def _take_events(self, events: StatusEvents) -> None:
        def wall(at: float) -> float:
            return events.wall_time - (events.now - at)

        for peer in events.peers:
            self.note(_peer_event_text(peer), wall(peer.time))
        for task in events.tasks:
            if task.kind in (TaskEventKind.FAILED, TaskEventKind.RETRIED):
                what = "failed" if task.kind == TaskEventKind.FAILED else "retried"
                detail = f" ({task.detail})" if task.detail else ""
                where = f" on {peer_name(task.worker_id)}" if task.worker_id else ""
                self.note(f"task {task.function_name or task.task_id.hex()} {what}{where}{detail}", wall(task.time))
        if events.dropped:
            self._events_dropped += events.dropped

    # -- output --------------------------------------------------------------------------------

    def header(self) -> list[str]:
        """The header's lines; a placeholder until the first snapshot."""
        if self.snapshot is None:
            return [f"waiting for the first snapshot from {self.address}", "", ""]
        return header_lines(self.snapshot, self._finished_per_second)

    def clients(self) -> list[tuple[str, ...]]:
        """The clients table's rows."""
        return [] if self.snapshot is None else client_rows(self.snapshot)

    def workers(self) -> list[tuple[str, ...]]:
        """The workers table's rows, in the chosen order."""
        if self.snapshot is None:
            return []
        return [worker_row(worker) for worker in sort_workers(self.snapshot.workers, self.sort, self.descending)]

    def worker_columns(self) -> tuple[str, ...]:
        """The workers table's headers, the sorted one marked with its direction."""
        mark = " ▼" if self.descending else " ▲"
        return tuple(column + mark if column == self.sort.column else column for column in WORKER_COLUMNS)

    def events(self, count: int) -> list[str]:
        """The last ``count`` lines of the events pane, oldest first."""
        lines = list(self._events)
        if self._events_dropped:
            lines.append(f"({self._events_dropped} events dropped by the scheduler's bounded feed)")
        return lines[-count:] if count > 0 else []

    def status(self, silent_seconds: float, heard_any: bool, silent_after_seconds: float) -> tuple[str, bool]:
        """The status line, and whether it is a warning (the scheduler is silent)."""
        if silent_seconds < silent_after_seconds:
            if not heard_any:
                return f"connecting to {self.address}", False
            return f"live: {self.address}", False
        text = f"scheduler at {self.address} silent for {silent_seconds:.0f} s — reconnecting"
        if not heard_any:
            text += " (nothing heard yet: is this the monitor address, the scheduler's port + 2? does it need keys?)"
        elif self.snapshot is not None:
            text += "; the tables show its last snapshot"
        return text, True


def _peer_event_text(peer: PeerEventRecord) -> str:
    kind = {
        PeerEventKind.WORKER_JOINED: "worker joined",
        PeerEventKind.WORKER_LEFT: "worker left",
        PeerEventKind.WORKER_DIED: "worker died",
        PeerEventKind.WORKER_DRAINING: "worker draining",
        PeerEventKind.CLIENT_JOINED: "client joined",
        PeerEventKind.CLIENT_LEFT: "client left",
    }.get(peer.kind, peer.kind.name.lower())
    detail = f" ({peer.detail})" if peer.detail else ""
    return f"{kind} {peer_name(peer.peer_id)}{detail}"
