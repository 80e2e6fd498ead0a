"""The dashboard's tasks table: a bounded ring buffer of recent tasks, built from task events.

Each ``TaskEventRecord`` of the status feed updates one row (a task is created by its first
event, whichever it is: the dashboard may start after the task was submitted). When the table
holds ``ring_size`` tasks, the oldest submitted one is forgotten, so a million tasks cost the
dashboard no more memory than ``ring_size`` do. ``query`` filters, sorts and pages the rows for
the tasks view (server-side: the page only ever receives one page). No I/O here.
"""

from __future__ import annotations

import itertools
import operator
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from scaler.monitor.feed import readable_id
from scaler.protocol.messages import TaskEventKind, TaskEventRecord

QUEUED = "queued"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (QUEUED, RUNNING, FINISHED, FAILED, CANCELLED)

_STATE_OF_KIND = {
    TaskEventKind.SUBMITTED: QUEUED,
    TaskEventKind.STARTED: RUNNING,
    TaskEventKind.FINISHED: FINISHED,
    TaskEventKind.FAILED: FAILED,
    TaskEventKind.CANCELLED: CANCELLED,
    TaskEventKind.RETRIED: QUEUED,  # its worker died while running it: it waits to run again
}
_ENDED = (TaskEventKind.FINISHED, TaskEventKind.FAILED, TaskEventKind.CANCELLED)
_NAMES_LIMIT = 4096  # distinct client/worker/function names remembered; past it, the cache starts over


@dataclass(slots=True)
class TaskRow:
    """One task as the tasks view shows it; times are wall-clock epoch seconds, 0.0 where unknown."""

    task_id: bytes
    client: str
    function: str
    state: str
    worker: str
    attempt: int
    submitted: float
    started: float
    ended: float
    queue_wait_seconds: float
    run_seconds: float
    peak_memory_bytes: int
    detail: str

    def to_json(self) -> dict[str, Any]:
        """The row as the JSON API sends it."""
        return {
            "task_id": self.task_id.hex(),
            "client": self.client,
            "function": self.function,
            "state": self.state,
            "worker": self.worker,
            "attempt": self.attempt,
            "submitted": self.submitted,
            "started": self.started,
            "ended": self.ended,
            "queue_wait_seconds": self.queue_wait_seconds,
            "run_seconds": self.run_seconds,
            "peak_memory_bytes": self.peak_memory_bytes,
            "detail": self.detail,
        }


SORT_KEYS: dict[str, Callable[[TaskRow], Any]] = {
    name: operator.attrgetter(name)
    for name in (
        "submitted",
        "task_id",
        "client",
        "function",
        "state",
        "worker",
        "attempt",
        "started",
        "ended",
        "queue_wait_seconds",
        "run_seconds",
        "peak_memory_bytes",
    )
}


peer_name = readable_id  # one spelling of ids for the metrics, the model and the pages


@dataclass(frozen=True)
class TaskPage:
    """One page of the tasks view: the matching rows' count, and the rows of this page."""

    total: int  # rows that match the filter
    rows: list[TaskRow]


class TaskTable:
    """The ring buffer of recent tasks; see the module docstring."""

    def __init__(self, ring_size: int):
        if ring_size < 1:
            raise ValueError(f"ring_size must be at least 1, got {ring_size}")
        self.ring_size = ring_size
        self._rows: OrderedDict[bytes, TaskRow] = OrderedDict()
        self._names: dict[bytes | str, str] = {}  # one str object per distinct name: rows share them
        self._names_complete = True  # every row's names are in ``_names``
        self.forgotten = 0  # rows dropped to stay within ring_size, since start
        self.counts = dict.fromkeys(STATES, 0)  # rows per state, kept as rows change

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, task_id: bytes) -> bool:
        return task_id in self._rows

    def get(self, task_id: bytes) -> TaskRow | None:
        """The row of ``task_id``, if the table still holds it."""
        return self._rows.get(task_id)

    def rows(self) -> Iterable[TaskRow]:
        """Every row, oldest first."""
        return self._rows.values()

    def _name(self, key: bytes | str) -> str:
        name = self._names.get(key)
        if name is None:
            if len(self._names) >= _NAMES_LIMIT:
                self._names.clear()
                self._names_complete = False  # older rows may hold names the cache no longer has
            name = peer_name(key) if isinstance(key, bytes) else key
            self._names[key] = name
        return name

    def apply(self, record: TaskEventRecord, wall: float) -> None:
        """Update the table with one task event that happened at ``wall`` (epoch seconds)."""
        state = _STATE_OF_KIND[record.kind]
        row = self._rows.get(record.task_id)
        if row is None:
            row = TaskRow(
                record.task_id,
                self._name(record.client_id),
                self._name(record.function_name),
                state,
                "",
                record.attempt,
                wall if record.kind == TaskEventKind.SUBMITTED else 0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0,
                "",
            )
            self._rows[record.task_id] = row
            self.counts[state] += 1
            if len(self._rows) > self.ring_size:
                _, oldest = self._rows.popitem(last=False)
                self.counts[oldest.state] -= 1
                self.forgotten += 1
        else:
            self.counts[row.state] -= 1
            self.counts[state] += 1
            row.state = state
            row.attempt = max(row.attempt, record.attempt)
            if record.function_name and not row.function:
                row.function = self._name(record.function_name)
        if record.worker_id:
            row.worker = self._name(record.worker_id)
        if record.queue_wait_seconds:
            row.queue_wait_seconds = record.queue_wait_seconds
        if record.kind == TaskEventKind.STARTED:
            row.started = wall
            row.ended = 0.0
            row.run_seconds = 0.0
        elif record.kind in _ENDED or record.kind == TaskEventKind.RETRIED:
            row.run_seconds = record.run_seconds
            if record.run_seconds and not row.started:
                row.started = wall - record.run_seconds
            if record.kind != TaskEventKind.RETRIED:
                row.ended = wall
        if record.peak_memory_bytes:
            row.peak_memory_bytes = record.peak_memory_bytes
        if record.detail:
            row.detail = record.detail
        if not row.submitted and row.started and row.queue_wait_seconds:
            row.submitted = row.started - row.queue_wait_seconds

    def query(
        self,
        text: str = "",
        state: str = "",
        sort: str = "submitted",
        descending: bool = True,
        offset: int = 0,
        limit: int = 50,
    ) -> TaskPage:
        """The rows matching ``text`` (a substring of any column, any case) and ``state``, sorted, one page.

        Raises ``ValueError`` for an unknown sort column or state.
        """
        if sort not in SORT_KEYS:
            raise ValueError(f"unknown sort column {sort!r}; one of {', '.join(SORT_KEYS)}")
        if state and state not in STATES:
            raise ValueError(f"unknown state {state!r}; one of {', '.join(STATES)}")
        offset, limit = max(0, offset), max(0, limit)
        needle = text.strip().lower()
        if not needle and not state and sort == "submitted":
            # The table is in submission order already: the page is a slice of it, no copy nor sort.
            total = len(self._rows)
            ordered = reversed(self._rows.values()) if descending else iter(self._rows.values())
            return TaskPage(total, list(itertools.islice(ordered, offset, offset + limit)))
        rows: Iterable[TaskRow] = self._rows.values()
        if state:
            rows = (row for row in rows if row.state == state)
        if needle:
            rows = filter(self._matcher(needle), rows)
        matching = list(rows)
        if sort == "submitted":
            if descending:
                matching.reverse()
        else:
            matching.sort(key=SORT_KEYS[sort], reverse=descending)
        return TaskPage(len(matching), matching[offset : offset + limit])

    def _matcher(self, needle: str) -> Callable[[TaskRow], bool]:
        """A test of whether ``needle`` (lower case) is in any of a row's columns.

        Rows share a few distinct names, so each name is looked at once per query, not once per row.
        """
        if not self._names_complete:
            return lambda row: needle in _haystack(row)
        names = {name for name in set(self._names.values()) if needle in name.lower()}
        states = {state for state in STATES if needle in state}
        hexadecimal = all(char in "0123456789abcdef" for char in needle)

        def matches(row: TaskRow) -> bool:
            return (
                row.function in names
                or row.worker in names
                or row.client in names
                or row.state in states
                or (hexadecimal and needle in row.task_id.hex())
                or (bool(row.detail) and needle in row.detail.lower())
            )

        return matches


def _haystack(row: TaskRow) -> str:
    return f"{row.task_id.hex()} {row.client} {row.function} {row.state} {row.worker} {row.detail}".lower()
