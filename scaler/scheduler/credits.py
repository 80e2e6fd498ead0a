"""Backpressure credits: how many tasks each client may have waiting in the scheduler's queue.

With ``max_number_of_tasks_waiting = N > 0``, a client gets N credits when it connects. Each task
it submits takes one, and holds it while the task waits in the queue; the credit comes back when
the task leaves the queue (to a worker, or to its end), or at once when the task is never queued
(refused, a duplicate, cancelled on arrival). Credits come back in one ``TaskCredit`` per client
per turn, not one per task, and only when they are worth a message: when the client is sent
something else that turn anyway (the credit rides in the same frame), or when it may be running
short (its queued tasks and the credits owed to it are half its limit or more). Otherwise they stay
owed: a client with at least half its credits left needs none, and waking it for each task that
leaves the queue (a message per task, in the middle of every task's trip) costs more than the
credit is worth. A client that has run out is always told: all its credits are then queued or
owed. The client waits for a credit before it submits, so a client that ignores its credits and
sends over twice N waiting tasks is refused.

The counts live in each client's ``ClientRecord`` (``credits_held``, ``credits_due``) and the task's
``TaskRecord.holds_credit``; this class is the only code that changes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set

from scaler.scheduler.clients import ClientRecord
from scaler.scheduler.task_table import TaskRecord, TaskState
from scaler.utility.invariants import require


class Credits:
    """Backpressure bookkeeping; see the module docstring. ``limit`` 0 turns it off."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._owed: set[bytes] = set()  # clients owed a TaskCredit, at the end of this turn or later

    @property
    def enabled(self) -> bool:
        """True if clients are held to a number of waiting tasks."""
        return self.limit > 0

    def problem(self, client: ClientRecord) -> str:
        """Why a new task from this client cannot be queued now, or ``""``."""
        if self.limit > 0 and 2 * self.limit <= client.credits_held:
            return (
                f"this client has {client.credits_held} tasks waiting in the scheduler's queue, over twice "
                f"max_number_of_tasks_waiting ({self.limit}); scaler's Client waits for credits by itself"
            )
        return ""

    def take(self, client: ClientRecord, record: TaskRecord) -> None:
        """A new task of this client waits in the queue: it holds a credit until it leaves."""
        if self.limit > 0:
            record.holds_credit = True
            client.credits_held += 1

    def give_back(self, record: TaskRecord, client: ClientRecord | None) -> None:
        """The task left the queue (to a worker, or its end): its client (if connected) may send one more."""
        record.holds_credit = False
        if client is not None:
            client.credits_held -= 1
            self.refund(record.client, client)

    def refund(self, client_id: bytes, client: ClientRecord) -> None:
        """Give the client back a credit: its task left the queue, or was never queued."""
        if self.limit > 0:
            client.credits_due += 1
            self._owed.add(client_id)

    def grants(
        self, clients: Mapping[bytes, ClientRecord], sent_to: Set[bytes] = frozenset()
    ) -> list[tuple[bytes, int]]:
        """End of turn: the ``(client, credits)`` to send now, one per client; they are due no more.

        ``sent_to``: the peers sent something else this turn. Credits of a client that is neither
        among them nor running short stay owed (see the module docstring).
        """
        granted: list[tuple[bytes, int]] = []
        kept: set[bytes] = set()
        for client_id in self._owed:
            client = clients.get(client_id)
            if client is None or not client.credits_due:
                continue
            if client_id in sent_to or 2 * (client.credits_held + client.credits_due) >= self.limit:
                granted.append((client_id, client.credits_due))
                client.credits_due = 0
            else:
                kept.add(client_id)
        self._owed = kept
        return granted

    def validate(self, clients: Mapping[bytes, ClientRecord], tasks: Mapping[bytes, TaskRecord]) -> None:
        """Raise ``InvariantError`` if a client's count disagrees with its tasks, or a credit is lost."""
        holders: Iterable[TaskRecord]
        for client_id, client in clients.items():
            holders = [tasks[task_id] for task_id in client.tasks if tasks[task_id].holds_credit]
            require(client.credits_held == len(holders), "a client's backpressure count is off")
            require(
                all(record.state in (TaskState.QUEUED, TaskState.WAITING) for record in holders),
                "a task holds a credit after it left the queue",
            )
            require(client.credits_due == 0 or client_id in self._owed, "freed credits that no TaskCredit will carry")
            require(self.limit > 0 or client.credits_held == client.credits_due == 0, "credits counted while off")
