"""Random interleavings of client, worker and clock events against ``SchedulerState``.

The machine models the peers minimally:

* clients remember what they submitted and every ``TaskResult`` / ``TaskCancelConfirm`` they get;
* workers remember which task attempts they hold and which ``TaskCancel`` they still must answer;
* a client that leaves (or times out) never speaks again under that identity: its slot comes back
  under a fresh identity, as a new ``Client`` object would;
* a task may name any task ever submitted as its parent (as a client inside that task's processor
  would), and workers may report failures (an exception, a timeout, a dead processor).

Invariants checked after every step: ``validate()``; no task gets two terminal messages at its client;
no task of a connected client is lost; no worker holds more than ``per_worker_queue_size`` tasks, and the
scheduler's view of each worker matches what the worker holds; function bytes reach each worker before a
task that omits them; a child unlinked from its parent is being cancelled, unless the parent ended on
its own (a result or an exception). At teardown every worker answers everything, and then every task of a connected
client must have exactly one terminal outcome and nothing may be left behind.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    BalanceRequest,
    BalanceResponse,
    CancelConfirmType,
    ClientDisconnect,
    ClientHeartbeat,
    ClientHeartbeatEcho,
    DisconnectRequest,
    DisconnectResponse,
    DisconnectType,
    Message,
    ObjectInstruction,
    ObjectInstructionType,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskCredit,
    TaskEventKind,
    TaskResult,
    TaskStatus,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
)
from scaler.scheduler.state import Instruction, SchedulerConfig, SchedulerState, Send
from scaler.scheduler.task_table import TaskState

LIMIT = 2
TIMEOUT = 10.0
CONFIG = SchedulerConfig(
    per_worker_queue_size=LIMIT,
    client_timeout_seconds=TIMEOUT,
    worker_timeout_seconds=TIMEOUT,
    max_task_retries=1,
    protected=True,
    max_number_of_tasks_waiting=1000,  # credits flow (validate() checks their counts), no task is rejected
)
WORKERS = [b"worker-0", b"worker-1", b"worker-2"]
FUNCTIONS = {content_id(payload): payload for payload in (b"pickled-f0", b"pickled-f1")}
FUNCTION_IDS = sorted(FUNCTIONS)
CLIENT_SLOTS = 2
TERMINAL_CONFIRMS = (CancelConfirmType.CANCELED, CancelConfirmType.CANCEL_NOT_FOUND)
FAILURES = (TaskStatus.FAILED, TaskStatus.TIMEOUT, TaskStatus.PROCESSOR_DIED)
_TERMINAL_EVENTS = (TaskEventKind.FINISHED, TaskEventKind.FAILED, TaskEventKind.CANCELLED)


def payload(task_id: bytes, attempt: int) -> bytes:
    return b"result-%s-%d" % (task_id, attempt)


def pick(items: list[bytes], index: int) -> bytes:
    return items[index % len(items)]


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = SchedulerState(CONFIG)
        self.state.record_events(True)  # the status feed's events, checked against the tasks' lives
        self.task_events: dict[bytes, list[TaskEventKind]] = {}  # task id -> its events, in order
        self.now = 0.0
        self.task_counter = 0
        # clients
        self.generation = [0] * CLIENT_SLOTS
        self.connected: set[bytes] = set()  # identities the scheduler knows
        self.gone: set[bytes] = set()  # identities that left; never used again
        self.sent_functions: dict[bytes, set[bytes]] = {}  # identity -> function ids it sent bytes of
        self.submitted: dict[bytes, list[bytes]] = {}  # identity -> its task ids
        self.owner: dict[bytes, bytes] = {}  # task id -> identity
        self.terminal: dict[bytes, list[Message]] = {}  # task id -> terminal messages its client got
        self.cancel_asked: set[bytes] = set()
        self.parent_of: dict[bytes, bytes] = {}  # task id -> the parent it named
        self.linked: set[bytes] = set()  # tasks linked to their parent on arrival
        self.ended_on_own: set[bytes] = set()  # tasks whose client got their result or exception
        self.refused: set[bytes] = set()  # tasks whose worker answered a cancel with CANCEL_FAILED
        # workers
        self.held: dict[bytes, dict[bytes, int]] = {}  # live worker -> task id -> attempt
        self.to_answer: dict[bytes, set[bytes]] = {}  # live worker -> task ids it must answer a cancel for
        self.worker_functions: dict[bytes, set[bytes]] = {}  # live worker -> function ids it received
        self.balance_asked: dict[bytes, list[bytes]] = {}  # live worker -> task ids it is asked to hand back
        self.history: list[tuple[bytes, bytes, int]] = []  # every (worker, task id, attempt) dispatched
        self.last_attempt: dict[bytes, int] = {}

    # -- plumbing ------------------------------------------------------------------------------

    def client_id(self, slot: int) -> bytes:
        return b"client-%d-%d" % (slot, self.generation[slot])

    def handle(self, source: bytes, message: Message) -> None:
        self.apply(self.state.handle(source, message, self.now))

    def apply(self, out: list[Instruction]) -> None:
        for instruction in out:
            assert isinstance(instruction, Send), f"unexpected {instruction!r}"
            if instruction.to in WORKERS:
                self.deliver_to_worker(instruction.to, instruction.message)
            else:
                self.deliver_to_client(instruction.to, instruction.message)
        self.sync_liveness()

    def deliver_to_worker(self, worker: bytes, message: Message) -> None:
        if isinstance(message, DisconnectResponse):
            assert worker not in self.state.workers
            return
        if worker not in self.state.workers:
            # The worker was dropped later in the same step (a tick that expires a client, then the
            # worker): only a cancel or a function drop may have been addressed to it, and both are moot.
            moot = isinstance(message, TaskCancel | ObjectInstruction)
            assert worker in self.held and moot, f"sent {message!r} to unknown {worker!r}"
            return
        held = self.held[worker]
        if isinstance(message, Task):
            assert message.task_id not in held, "task dispatched twice to the same worker"
            assert message.attempt > self.last_attempt.get(message.task_id, 0), "attempt did not grow"
            self.last_attempt[message.task_id] = message.attempt
            if message.function:
                assert message.function == FUNCTIONS[message.function_id]
                self.worker_functions[worker].add(message.function_id)
            else:
                assert message.function_id in self.worker_functions[worker], "task without its function"
            held[message.task_id] = message.attempt
            self.history.append((worker, message.task_id, message.attempt))
        elif isinstance(message, ObjectInstruction):
            assert message.kind is ObjectInstructionType.DELETE_FUNCTIONS, message
            for function_id in message.object_ids:
                assert function_id in self.worker_functions[worker], "told to drop a function it was never sent"
                self.worker_functions[worker].discard(function_id)
        elif isinstance(message, TaskCancel):
            assert message.task_id in held, "cancel sent to a worker that does not hold the task"
            self.to_answer[worker].add(message.task_id)
        elif isinstance(message, BalanceRequest):
            assert worker not in self.balance_asked, "a second balance request before the first was answered"
            assert set(message.task_ids) <= set(held), "asked to hand back tasks it does not hold"
            self.balance_asked[worker] = list(message.task_ids)
        else:
            assert isinstance(message, WorkerHeartbeatEcho), f"unexpected {message!r}"

    def deliver_to_client(self, client: bytes, message: Message) -> None:
        assert client not in self.gone, f"sent {message!r} to departed client {client!r}"
        if isinstance(message, TaskCredit):  # backpressure: the limit is high enough never to reject here
            assert message.count > 0
            return
        assert client in self.connected or isinstance(message, ClientHeartbeatEcho)
        if isinstance(message, ClientHeartbeatEcho):
            return
        if isinstance(message, TaskResult):
            assert self.owner[message.task_id] == client, "result sent to the wrong client"
            assert message.status in (TaskStatus.SUCCESS, TaskStatus.WORKER_DIED, *FAILURES), message
            if message.status is TaskStatus.SUCCESS:
                assert message.payload == payload(message.task_id, message.attempt)
            if message.status in (TaskStatus.SUCCESS, TaskStatus.FAILED):
                self.ended_on_own.add(message.task_id)
            self.add_terminal(message.task_id, message)
        elif isinstance(message, TaskCancelConfirm):
            assert self.owner[message.task_id] == client, "cancel confirmation sent to the wrong client"
            cascaded = message.task_id in self.parent_of  # cancelled with its parent
            assert message.task_id in self.cancel_asked or cascaded, "cancel confirmation of a task never cancelled"
            if message.confirm in TERMINAL_CONFIRMS:
                self.add_terminal(message.task_id, message)
            else:
                assert not self.terminal[message.task_id], "CANCEL_FAILED after the task ended"
        else:
            raise AssertionError(f"unexpected {message!r} to a client")

    def add_terminal(self, task_id: bytes, message: Message) -> None:
        outcomes = self.terminal[task_id]
        outcomes.append(message)
        assert len(outcomes) == 1, f"task {task_id!r} ended twice: {outcomes!r}"

    def sync_liveness(self) -> None:
        """Mirror what the scheduler decided: workers it dropped lose everything they held."""
        for worker in list(self.held):
            if worker not in self.state.workers:
                del self.held[worker], self.to_answer[worker], self.worker_functions[worker]
                self.balance_asked.pop(worker, None)
        for client in list(self.connected):
            if client not in self.state.clients:
                self.connected.remove(client)
                self.gone.add(client)
                slot = int(client.split(b"-")[1])
                if self.client_id(slot) == client:
                    self.generation[slot] += 1

    def send_result(self, worker: bytes, task_id: bytes, attempt: int) -> None:
        if self.held.get(worker, {}).get(task_id) == attempt:
            del self.held[worker][task_id]
        self.handle(worker, TaskResult(task_id, TaskStatus.SUCCESS, payload(task_id, attempt), attempt))

    def send_failure(self, worker: bytes, task_id: bytes, attempt: int, status: TaskStatus) -> None:
        if self.held.get(worker, {}).get(task_id) == attempt:
            del self.held[worker][task_id]
            self.to_answer[worker].discard(task_id)  # its processor is gone: a cancel on its way finds nothing
        self.handle(worker, TaskResult(task_id, status, b"failure", attempt))

    def send_confirm(self, worker: bytes, task_id: bytes, kind: CancelConfirmType) -> None:
        if kind is CancelConfirmType.CANCEL_FAILED:
            self.refused.add(task_id)
        self.to_answer[worker].discard(task_id)
        if kind in TERMINAL_CONFIRMS:
            self.held[worker].pop(task_id, None)
        self.handle(worker, TaskCancelConfirm(task_id, kind))

    def live_workers(self) -> list[bytes]:
        return sorted(self.held)

    def pending_tasks(self, client: bytes) -> list[bytes]:
        return [task_id for task_id in self.submitted.get(client, []) if not self.terminal[task_id]]

    # -- rules ---------------------------------------------------------------------------------

    @rule(index=st.integers(0, len(WORKERS) - 1))
    def worker_heartbeat(self, index: int) -> None:
        worker = WORKERS[index]
        if self.state.workers.was_released(worker):
            # A heartbeat still in flight from a worker the scheduler just let go: ignored, not a new worker.
            self.handle(worker, WorkerHeartbeat(self.now, 0, 0.0, 0))
            assert worker not in self.state.workers
            return
        if worker not in self.held:
            self.held[worker], self.to_answer[worker], self.worker_functions[worker] = {}, set(), set()
        self.handle(worker, WorkerHeartbeat(self.now, len(self.held[worker]), 0.0, 0))
        assert worker in self.state.workers

    def new_task(self, slot: int, function: bytes) -> tuple[bytes, bytes, bytes]:
        """Book a task about to be submitted by client ``slot``; return (client, task id, function bytes to send)."""
        client = self.client_id(slot)
        self.task_counter += 1
        task_id = b"task-%d" % self.task_counter
        functions = self.sent_functions.setdefault(client, set())
        function_bytes = b"" if function in functions else FUNCTIONS[function]
        functions.add(function)
        self.connected.add(client)
        self.submitted.setdefault(client, []).append(task_id)
        self.owner[task_id] = client
        self.terminal[task_id] = []
        return client, task_id, function_bytes

    @rule(slot=st.integers(0, CLIENT_SLOTS - 1), function=st.sampled_from(FUNCTION_IDS))
    def submit(self, slot: int, function: bytes) -> None:
        client, task_id, function_bytes = self.new_task(slot, function)
        self.handle(client, Task(task_id, function, function_bytes, [], 0))
        assert task_id in self.state.tasks

    @precondition(lambda self: self.owner)
    @rule(
        slot=st.integers(0, CLIENT_SLOTS - 1),
        index=st.integers(0, 1000),
        function=st.sampled_from(FUNCTION_IDS),
        on_a_worker=st.booleans(),
    )
    def submit_child(self, slot: int, index: int, function: bytes, on_a_worker: bool) -> None:
        """A client inside a task's processor submits a task naming it as parent (it may be long gone)."""
        held = sorted(task_id for tasks in self.held.values() for task_id in tasks)
        parent = pick(held if on_a_worker and held else sorted(self.owner), index)
        client, task_id, function_bytes = self.new_task(slot, function)
        self.parent_of[task_id] = parent
        self.handle(client, Task(task_id, function, function_bytes, [], 0, parent_task_id=parent))
        record = self.state.tasks.get(task_id)
        if record is None:  # its parent was stopped, or is not running: cancelled on arrival
            assert [type(message) for message in self.terminal[task_id]] == [TaskCancelConfirm]
        elif record.parent == parent:
            self.linked.add(task_id)

    @rule(slot=st.integers(0, CLIENT_SLOTS - 1))
    def client_heartbeat(self, slot: int) -> None:
        client = self.client_id(slot)
        self.connected.add(client)
        self.handle(client, ClientHeartbeat(self.now))

    @rule(slot=st.integers(0, CLIENT_SLOTS - 1), index=st.integers(0, 1000))
    def cancel(self, slot: int, index: int) -> None:
        client = self.client_id(slot)
        pending = self.pending_tasks(client)
        if not pending:
            return
        task_id = pick(pending, index)
        self.cancel_asked.add(task_id)
        self.handle(client, TaskCancel(task_id))

    @precondition(lambda self: any(self.held.values()))
    @rule(index=st.integers(0, 1000), task_index=st.integers(0, 1000))
    def worker_returns_result(self, index: int, task_index: int) -> None:
        worker = pick([w for w in self.live_workers() if self.held[w]], index)
        task_id = pick(sorted(self.held[worker]), task_index)
        self.send_result(worker, task_id, self.held[worker][task_id])

    @precondition(lambda self: any(self.held.values()))
    @rule(index=st.integers(0, 1000), task_index=st.integers(0, 1000), status=st.sampled_from(FAILURES))
    def worker_reports_a_failure(self, index: int, task_index: int, status: TaskStatus) -> None:
        worker = pick([w for w in self.live_workers() if self.held[w]], index)
        task_id = pick(sorted(self.held[worker]), task_index)
        self.send_failure(worker, task_id, self.held[worker][task_id], status)

    @precondition(lambda self: self.history)
    @rule(index=st.integers(0, 1000))
    def any_worker_replays_a_past_attempt(self, index: int) -> None:
        """A (possibly stale, possibly dead) worker reports a result of an attempt it was once given."""
        worker, task_id, attempt = self.history[index % len(self.history)]
        self.send_result(worker, task_id, attempt)

    def stale_attempts(self) -> list[tuple[bytes, bytes, int]]:
        """Past attempts of a task whose worker now holds a newer attempt of the same task."""
        return [
            (worker, task_id, attempt)
            for worker, task_id, attempt in self.history
            if self.held.get(worker, {}).get(task_id, attempt) != attempt
        ]

    @precondition(lambda self: self.stale_attempts())
    @rule(index=st.integers(0, 1000))
    def worker_reports_an_older_attempt_of_a_task_it_holds(self, index: int) -> None:
        stale = self.stale_attempts()
        worker, task_id, attempt = stale[index % len(stale)]
        self.send_result(worker, task_id, attempt)
        assert self.held[worker][task_id] != attempt

    @precondition(lambda self: any(self.to_answer.values()))
    @rule(index=st.integers(0, 1000), task_index=st.integers(0, 1000), kind=st.sampled_from(CancelConfirmType))
    def worker_confirms_cancel(self, index: int, task_index: int, kind: CancelConfirmType) -> None:
        worker = pick([w for w in self.live_workers() if self.to_answer[w]], index)
        task_id = pick(sorted(self.to_answer[worker]), task_index)
        self.send_confirm(worker, task_id, kind)

    @precondition(lambda self: self.balance_asked)
    @rule(index=st.integers(0, 1000), keep=st.sets(st.integers(0, 20)))
    def worker_answers_balance(self, index: int, keep: set[int]) -> None:
        """The worker hands back the asked tasks it still has queued; ``keep`` ones were running or done."""
        worker = pick(sorted(self.balance_asked), index)
        self.answer_balance(worker, keep)

    def answer_balance(self, worker: bytes, keep: set[int]) -> None:
        asked = self.balance_asked.pop(worker)
        handed = [task_id for i, task_id in enumerate(asked) if i not in keep and task_id in self.held[worker]]
        for task_id in handed:
            del self.held[worker][task_id]
            self.to_answer[worker].discard(task_id)  # off the worker: a cancel on its way finds nothing
        self.handle(worker, BalanceResponse(handed))

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 1000), how=st.sampled_from(["timeout", "disconnected", "leaves"]))
    def worker_goes_away(self, index: int, how: str) -> None:
        worker = pick(self.live_workers(), index)
        if how == "timeout":
            # Every other peer speaks at the new time, so only this worker is past its timeout.
            self.now += TIMEOUT + 1.0
            for other in self.live_workers():
                if other != worker:
                    self.handle(other, WorkerHeartbeat(self.now, len(self.held[other]), 0.0, 0))
            for client in sorted(self.connected):
                self.handle(client, ClientHeartbeat(self.now))
            self.apply(self.state.tick(self.now))
        elif how == "disconnected":
            self.apply(self.state.worker_disconnected(worker))
        else:
            self.handle(worker, DisconnectRequest())
        assert worker not in self.state.workers
        assert worker not in self.held

    @rule(slot=st.integers(0, CLIENT_SLOTS - 1))
    def client_disconnects(self, slot: int) -> None:
        client = self.client_id(slot)
        if client not in self.connected:
            return
        self.handle(client, ClientDisconnect(DisconnectType.DISCONNECT))
        assert client in self.gone

    @rule(seconds=st.sampled_from([0.0, 1.0, 4.0, 6.0, 10.0, 10.5]))
    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.apply(self.state.tick(self.now))

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def scheduler_is_valid(self) -> None:
        self.state.validate()

    @invariant()
    def no_worker_is_over_assigned(self) -> None:
        assert set(self.held) == set(self.state.workers)
        for worker, record in self.state.workers.items():
            assert len(record.tasks) <= LIMIT
            assert len(self.held[worker]) <= LIMIT
            assert set(record.tasks) == set(self.held[worker]), "scheduler and worker disagree on its tasks"

    @invariant()
    def no_task_of_a_connected_client_is_lost(self) -> None:
        for client in self.connected:
            for task_id in self.pending_tasks(client):
                assert task_id in self.state.tasks, f"task {task_id!r} vanished without an answer"
                assert self.state.tasks[task_id].client == client

    @invariant()
    def every_canceling_task_has_a_cancel_on_its_way(self) -> None:
        for task_id, record in self.state.tasks.items():
            if record.state is TaskState.CANCELING:
                assert record.worker is not None
                assert task_id in self.to_answer[record.worker], f"task {task_id!r} waits for a cancel never sent"

    @invariant()
    def children_of_a_stopped_parent_are_being_cancelled(self) -> None:
        for task_id in self.linked:
            record = self.state.tasks.get(task_id)
            if record is None or record.parent:
                continue  # ended, or still linked (validate() checks its parent runs)
            parent = self.parent_of[task_id]
            if parent in self.ended_on_own or task_id in self.refused:
                continue  # fire-and-forget, or its worker refused the cancel
            assert record.state is TaskState.CANCELING, f"task {task_id!r} outlives its stopped parent {parent!r}"

    @invariant()
    def departed_clients_leave_nothing_queued(self) -> None:
        for record in self.state.tasks.values():
            if record.client not in self.connected:
                assert record.state is not TaskState.QUEUED

    @invariant()
    def the_status_feed_agrees_with_the_state(self) -> None:
        snapshot = self.state.status(self.now)
        tasks = self.state.tasks
        assert sum(snapshot.scheduler.tasks_by_state.values()) == len(tasks)
        totals = snapshot.scheduler.tasks_total
        assert totals["submitted"] == totals["finished"] + totals["failed"] + totals["cancelled"] + len(tasks)
        for client in snapshot.clients:
            assert client.queued + client.running == len(self.state.clients[client.client_id].tasks)
        for worker in snapshot.workers:
            assert worker.queued + len(worker.running) == len(self.state.workers[worker.worker_id].tasks)
        events = self.state.take_events(self.now, 0.0)
        for event in events.tasks if events is not None else []:
            kind, task_id = TaskEventKind(event[0]), event[2]  # type: ignore[index]
            self.task_events.setdefault(task_id, []).append(kind)
            if kind is TaskEventKind.STARTED:  # sent only for an attempt still running when taken
                record = tasks[task_id]
                assert record.started and record.attempt == event[6], f"task {task_id!r}: a stale start"  # type: ignore[index]
        for task_id, kinds in self.task_events.items():
            assert kinds[0] is TaskEventKind.SUBMITTED and kinds.count(TaskEventKind.SUBMITTED) == 1
            ends = [kind for kind in kinds if kind in _TERMINAL_EVENTS]
            assert len(ends) == (0 if task_id in tasks else 1), f"task {task_id!r}: events {kinds}"
            assert not ends or kinds[-1] is ends[0], "an event after the task ended"

    @invariant()
    def functions_belong_to_connected_clients(self) -> None:
        used = set().union(*(client.functions for client in self.state.clients.values()))
        assert self.state.statistics()["functions"] == len(used)

    # -- teardown: drain -----------------------------------------------------------------------

    def teardown(self) -> None:
        if sys.exc_info()[1] is not None:
            return  # a step already failed; draining would only bury its report
        if not self.held:
            fresh = [i for i, w in enumerate(WORKERS) if not self.state.workers.was_released(w)]
            if not fresh:  # every identity was just let go: wait out the memory of it, clients kept alive
                self.now += TIMEOUT + 1.0
                for client in sorted(self.connected):
                    self.handle(client, ClientHeartbeat(self.now))
                self.apply(self.state.tick(self.now))
                fresh = [0]
            self.worker_heartbeat(fresh[0])
        for _ in range(1000):
            if not self.state.tasks:
                break
            for worker in self.live_workers():
                if worker in self.balance_asked:
                    self.answer_balance(worker, set())
                for task_id in sorted(self.to_answer[worker]):
                    self.send_confirm(worker, task_id, CancelConfirmType.CANCELED)
                for task_id, attempt in sorted(self.held[worker].items()):
                    self.send_result(worker, task_id, attempt)
            self.state.validate()
        assert self.state.tasks == {}, "tasks left after every worker answered everything"
        assert self.state.statistics()["queued"] == 0
        assert not any(self.held.values())
        for client in self.connected:
            for task_id in self.submitted.get(client, []):
                assert len(self.terminal[task_id]) == 1, f"task {task_id!r}: {self.terminal[task_id]!r}"
        # Once every client leaves, nothing of theirs remains.
        for client in sorted(self.connected):
            self.handle(client, ClientDisconnect(DisconnectType.DISCONNECT))
        self.state.validate()
        assert self.state.statistics()["functions"] == 0
        assert all(not worker.functions for worker in self.state.workers.values())


SchedulerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)
# 300 examples: about 25 s on a quiet 2-core machine, so a busy one needs more than the default 60 s.
test_scheduler_state_machine = pytest.mark.timeout(240)(SchedulerMachine.TestCase)
