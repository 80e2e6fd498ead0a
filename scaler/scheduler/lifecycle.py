"""The scheduler core's stores in one place, and the few operations that move a task through its life.

``SchedulerBook`` holds the stores (``ClientTable``, ``WorkerTable``, the task records,
``GraphTable``, ``ObjectStore``, ``FunctionRegistry``, ``Credits``, ``TaskTree``, the queue) and
the operations every message handler shares. Each repeated sequence has one home here:

- ``_end``: the only way a task ends (its record moves to ``DONE`` first, so a second outcome is
  refused before anything changes), is forgotten, and its outcome goes to its client;
- ``_fail``: end a task with a failure and fail every graph node that needs it;
- ``_take_back``: a task left its worker unfinished: end it if it was being cancelled or its
  client is gone, else queue it again (charging a death if its worker died while running it);
- ``_dispatch``: apply the placement plans, and grant credits, once per turn.

Output goes to the current call's list (``_out``), which each entry point of ``SchedulerState``
makes afresh, so a call never sees another's instructions.
"""

from __future__ import annotations

import logging
import uuid

from scaler.config.scheduler import SchedulerConfig
from scaler.protocol.messages import (
    ArgumentKind,
    BalanceRequest,
    CancelConfirmType,
    DisconnectResponse,
    Message,
    ObjectInstruction,
    ObjectInstructionType,
    PeerEventKind,
    SchedulerShutdown,
    StatusSnapshot,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskCredit,
    TaskResult,
    TaskStatus,
)
from scaler.scheduler.clients import ClientRecord, ClientTable
from scaler.scheduler.credits import Credits
from scaler.scheduler.functions import FunctionRegistry
from scaler.scheduler.graph_table import GraphTable
from scaler.scheduler.instructions import Instruction, Send, Stop, id_text, peer_text
from scaler.scheduler.managers import ManagerTable
from scaler.scheduler.object_store import ObjectStore
from scaler.scheduler.placement import Assign, Reject, SetAside, Step, plan_assignments, plan_steal
from scaler.scheduler.status import ShellFigures, StatusRecorder, build_snapshot
from scaler.scheduler.task_table import ON_A_WORKER, TaskEvent, TaskRecord, TaskState
from scaler.scheduler.task_tree import TaskTree
from scaler.scheduler.workers import WorkerTable
from scaler.utility.invariants import require
from scaler.utility.rate_limited_log import RateLimitedLog
from scaler.utility.task_queue import TaskQueue

# One logger for the whole core, under the name it always had: logging settings and tests select it.
logger = logging.getLogger("scaler.scheduler.state")


class SchedulerBook:
    """The scheduler's bookkeeping and the task operations its handlers share; see the module docstring."""

    def __init__(self, config: SchedulerConfig | None = None, scheduler_id: bytes | None = None) -> None:
        self.config = config or SchedulerConfig()
        # Echoed to every peer; a new id tells them the scheduler restarted and forgot their tasks.
        self.scheduler_id = scheduler_id if scheduler_id is not None else uuid.uuid4().bytes
        self.clients = ClientTable()
        self.workers = WorkerTable()
        self.managers = ManagerTable()
        self.tasks: dict[bytes, TaskRecord] = {}
        self.graphs = GraphTable()
        self.objects = ObjectStore()
        self._functions = FunctionRegistry()
        self._credits = Credits(self.config.max_number_of_tasks_waiting)
        self._tree = TaskTree(self.tasks)
        self._queue = TaskQueue()
        self._queued_with_capabilities: set[bytes] = set()
        self._out: list[Instruction] = []  # the current call's output: each entry point makes a new one
        self._sent_to: set[bytes] = set()  # peers sent anything since the last dispatch: credits ride along
        self._now = float("-inf")  # the latest time a caller gave: the core reads no clock
        self._noisy: dict[str, RateLimitedLog] = {}
        self._completed = 0
        self._stopped = False
        self._status = StatusRecorder()  # the status feed's totals and events (status.py)
        self._shell = ShellFigures()  # the shell's latest figures about its process, for snapshots

    # -- output and logs ------------------------------------------------------------------------

    def _send(self, to: bytes, message: Message) -> None:
        self._out.append(Send(to, message))
        self._sent_to.add(to)

    def _send_to_client(self, client_id: bytes, message: Message) -> None:
        if client_id in self.clients:
            self._send(client_id, message)

    def _noise(self, kind: str) -> RateLimitedLog:
        """The log for lines a peer can cause at will (bad or stale messages): at most 10 a second per kind."""
        log = self._noisy.get(kind)
        if log is None:
            log = self._noisy[kind] = RateLimitedLog(interval=1.0, logger=logger, burst=10)
        return log

    # -- a task's life ----------------------------------------------------------------------------

    def _adopt(self, client: ClientRecord, record: TaskRecord, graph_nodes: frozenset[bytes] = frozenset()) -> None:
        """Make a new task live: index it and take references on its argument objects."""
        task = record.task
        self.tasks[task.task_id] = record
        client.tasks.add(task.task_id)
        if record.parent:
            self._tree.link(record)
        objects = tuple(a.data for a in task.args if a.kind is ArgumentKind.OBJECT and a.data not in graph_nodes)
        if objects:
            record.client_objects = objects
            for object_id in objects:
                self.objects.add_task_ref(object_id)

    def _enqueue(self, record: TaskRecord, front: bool) -> None:
        self._queue.push(record.task.task_id, record.task.priority, front)
        if record.task.capabilities:
            self._queued_with_capabilities.add(record.task.task_id)

    def _end(self, record: TaskRecord, outcome: Message | None) -> None:
        """End a task: the one way any task ends. Its client (if the task reports there) gets ``outcome``.

        The record moves to ``DONE`` first: a second end of the same task raises there, before
        anything else changes. Then the task is forgotten, with whatever only it kept alive.
        """
        was = record.state
        record.move(TaskEvent.FINISH)
        task_id = record.task.task_id
        del self.tasks[task_id]
        self._tree.unlink(record)
        client = self.clients.get(record.client)
        self._status.ended_task(record, outcome, client, self._now)
        if record.holds_credit:
            self._credits.give_back(record, client)
        if was is TaskState.QUEUED:
            self._queue.discard(task_id)
            self._queued_with_capabilities.discard(task_id)
        elif record.worker is not None:
            self.workers.unassign(record.worker, task_id)
        if client is not None:
            client.tasks.discard(task_id)
            self._tell_dropped_output(record)
        freed: list[bytes] = []
        for object_id in record.client_objects:
            freed += self.objects.remove_task_ref(object_id)
        if record.graph:
            released, graph_over = self.graphs.remove(task_id)
            for node_id in released:
                freed += self.objects.release(record.graph, node_id)
            if graph_over:
                freed += self.objects.release_all(record.graph)
        self._announce_freed(freed)
        if outcome is not None and record.is_target and client is not None:
            self._send(record.client, outcome)

    def _end_cancelled(self, record: TaskRecord) -> None:
        """A task ends as cancelled: the tasks it submitted are cancelled too; its client gets the confirmation."""
        self._stop_children(record, ending=True)
        self._end(record, TaskCancelConfirm(record.task.task_id, CancelConfirmType.CANCELED))

    def _fail(self, record: TaskRecord, failure: TaskResult, stopped: bool = False) -> None:
        """End a task with ``failure``, and every graph node that needs its result with the same error.

        ``stopped``: its code was stopped (timed out, its processor or worker dead), so the tasks it
        submitted are cancelled.
        """
        if stopped:
            self._stop_children(record, ending=True)
        failed = self.graphs.node_done(record.task.task_id, ok=False)[1] if record.graph else []
        self._end(record, failure)
        for node_id in failed:
            self._end(self.tasks[node_id], TaskResult(node_id, failure.status, failure.payload, 0))

    def _reject(self, record: TaskRecord, reason: str, status: TaskStatus = TaskStatus.REJECTED) -> None:
        """End a task the scheduler cannot run, telling its client why (and failing what needs it)."""
        text = f"task {id_text(record.task.task_id)}: {reason}"
        self._noise("rejected").error(self._now, "%s", text)
        self._fail(record, TaskResult(record.task.task_id, status, text.encode(), 0))

    def _requeue(self, record: TaskRecord) -> None:
        """Take a task back from its worker (if still connected) into the front of the queue."""
        record.move(TaskEvent.REQUEUE)
        self._stop_children(record, ending=False)  # its next run submits its own
        if record.worker is not None:
            self.workers.unassign(record.worker, record.task.task_id)
        record.worker = None
        record.started_at = None
        self._enqueue(record, front=True)

    def _take_back(self, record: TaskRecord, worker_died: bool = False) -> None:
        """The task left its worker unfinished: end it if nobody wants it run again, else queue it again.

        Nobody wants it if it was being cancelled or its client is gone. If its worker died
        (``worker_died``) while it ran there, that counts against its retries; past them it fails.
        """
        if record.state is TaskState.CANCELING or record.client not in self.clients:
            self._end_cancelled(record)
            return
        if worker_died and record.started:  # a task only queued there is not to blame
            record.deaths += 1
            if record.deaths > self.config.max_task_retries:
                task_id = record.task.task_id
                text = (
                    f"task {id_text(task_id)}: its worker died while running it {record.deaths} times "
                    f"({record.attempt} attempts); giving up"
                )
                logger.error(text)
                self._fail(record, TaskResult(task_id, TaskStatus.WORKER_DIED, text.encode(), record.attempt), True)
                return
            self._status.retried_task(record, self._now, "its worker died")
        self._requeue(record)

    def _cancel(self, record: TaskRecord) -> None:
        """Cancel one task: at once if it is not on a worker, else through its worker."""
        if record.state in (TaskState.WAITING, TaskState.QUEUED):
            self._end_cancelled(record)
        elif record.state in (TaskState.ASSIGNED, TaskState.BALANCING) and record.worker is not None:
            record.move(TaskEvent.CANCEL)
            self._send(record.worker, TaskCancel(record.task.task_id))
            self._stop_children(record, ending=False)  # at once: the worker's answer may take a while
        # CANCELING: a cancel is already on its way to the worker; its answer will serve both.

    def _stop_children(self, record: TaskRecord, ending: bool) -> None:
        """The task was stopped (``ending``: for good, not retried): doom the tasks it submitted."""
        task_id = record.task.task_id
        count = self._tree.stop_children(task_id)
        if count:
            logger.info("task %s: stopped; cancelling the %d tasks it submitted", id_text(task_id), count)
        if ending and record.attempt:  # only a task that ran can have children that arrive late
            self._tree.remember_stopped(task_id)

    def _cancel_doomed(self) -> None:
        """Cancel the tasks whose parent was stopped in this turn, and theirs in turn."""
        while (task_id := self._tree.next_doomed()) is not None:
            record = self.tasks.get(task_id)
            if record is not None:
                logger.debug("task %s: cancelled with its parent", id_text(task_id))
                self._cancel(record)

    def _tell_dropped_output(self, record: TaskRecord) -> None:
        """The task ended: tell its client how much of its output was dropped here since its last log."""
        client = self.clients.get(record.client)
        if client is not None and client.output is not None:
            for notice in client.output.finish(record.task.task_id):
                self._send(record.client, notice)

    def _announce_freed(self, freed: list[bytes]) -> None:
        """Tell the workers holding freed objects to drop them."""
        if freed:
            for worker_id, dropped in self.workers.drop_objects(set(freed)):
                self._send(worker_id, ObjectInstruction(ObjectInstructionType.DELETE, dropped, []))

    # -- dispatch -------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Give queued tasks to workers, ask busy workers for work for idle ones, and grant credits."""
        self._cancel_doomed()  # first: a doomed task must not be dispatched
        if self._queue and self.workers:
            queued = iter(self._queue.pop, None)
            limit = self.config.per_worker_queue_size
            self._apply(plan_assignments(queued, self.workers, self.tasks, self._functions, self.objects, limit))
        idle_workers_fed = bool(self._queue) and not self._queued_with_capabilities
        for worker_id, task_ids in plan_steal(self.workers, self.tasks, idle_workers_fed).items():
            for task_id in task_ids:
                self.tasks[task_id].move(TaskEvent.BALANCE)
            self.workers[worker_id].balancing = True
            self._send(worker_id, BalanceRequest(task_ids))
        # At most one TaskCredit per client per turn, and mostly in a frame the client gets anyway.
        for client_id, count in self._credits.grants(self.clients, self._sent_to):
            self._send(client_id, TaskCredit(count))
        self._sent_to.clear()

    def _apply(self, steps: list[Step]) -> None:
        set_aside: list[TaskRecord] = []
        for step in steps:
            record = self.tasks[step.task_id]
            if isinstance(step, Assign):
                self._assign(record, step)
            elif isinstance(step, SetAside):
                set_aside.append(record)
            elif isinstance(step, Reject):
                self._reject(record, step.reason)
            else:  # Drop: its client left and took the function along; nobody waits for it
                self._end(record, None)
        for record in reversed(set_aside):
            self._queue.push(record.task.task_id, record.task.priority, front=True)

    def _assign(self, record: TaskRecord, step: Assign) -> None:
        """Send the task to the worker, with the function and objects it lacks (as planned)."""
        worker_id, function, contents = step.worker_id, step.function, step.objects
        worker = self.workers[worker_id]
        task = record.task
        record.move(TaskEvent.ASSIGN)
        if record.holds_credit:
            self._credits.give_back(record, self.clients.get(record.client))
        if task.capabilities:
            self._queued_with_capabilities.discard(task.task_id)
        record.unschedulable_since = None
        record.worker = worker_id
        record.attempt += 1
        record.sent_at = self._now
        record.started_at = None
        worker.tasks[task.task_id] = None
        worker.busy_at = self._now
        if function:
            worker.functions.add(task.function_id)
        if contents:
            worker.objects.update(content.object_id for content in contents)
        self._send(
            worker_id,
            Task(
                task.task_id,
                task.function_id,
                function,
                task.args,
                record.attempt,
                task.priority,
                task.capabilities,
                task.timeout_seconds,
                task.profiling,
                task.stream_output,
                contents,
            ),
        )

    # -- clients and workers that go --------------------------------------------------------------

    def _remove_client(self, client_id: bytes, reason: str) -> None:
        """The client left (for ``reason``): cancel its tasks, free its objects and the functions only it used."""
        client = self.clients.remove(client_id, reason)
        if client is None:
            return
        self._status.peer(PeerEventKind.CLIENT_LEFT, self._now, client_id, reason)
        for task_id in list(client.tasks):
            record = self.tasks.get(task_id)
            if record is not None:
                self._cancel(record)
        self._announce_freed(self.objects.release_all(client_id))
        dropped = self._functions.remove_user(client.functions)
        for worker_id, held in self.workers.drop_functions(dropped):
            self._send(worker_id, ObjectInstruction(ObjectInstructionType.DELETE_FUNCTIONS, held, []))

    def _remove_worker(self, worker_id: bytes, died: bool) -> None:
        """The worker is gone: each task it held is requeued, or ends (see ``_take_back``)."""
        worker = self.workers.remove(worker_id)
        self._status.peer(PeerEventKind.WORKER_DIED if died else PeerEventKind.WORKER_LEFT, self._now, worker_id)
        # Requeued at the front in reverse order, so the tasks keep their dispatch order.
        for task_id in reversed(list(worker.tasks)):
            record = self.tasks[task_id]
            self._take_back(record, worker_died=died)
            if record.state is TaskState.QUEUED:
                logger.info("task %s: requeued from worker %s", id_text(task_id), peer_text(worker_id))

    # -- inspection ---------------------------------------------------------------------------

    def _snapshot(self, now: float, request_id: int = 0) -> StatusSnapshot:
        """The status feed's snapshot at ``now`` (``status.py``), with the shell's latest figures."""
        return build_snapshot(
            now,
            self._shell,
            self.scheduler_id,
            self.clients,
            self.workers,
            self.tasks,
            self.objects,
            self._status,
            request_id,
        )

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring and tests."""
        return {
            "clients": len(self.clients),
            "workers": len(self.workers),
            "tasks": len(self.tasks),
            "queued": len(self._queue),
            "assigned": sum(record.state in ON_A_WORKER for record in self.tasks.values()),
            "functions": len(self._functions),
            "objects": len(self.objects),
            "graphs": len(self.graphs),
            "completed": self._completed,
            "linked_children": self._tree.statistics()["children"],
        }

    def validate(self) -> None:
        """Raise ``InvariantError`` if any invariant is broken; tests call it after every step.

        Each store checks its own; this checks how they agree with the task records.
        """
        queued = {task_id for task_id, record in self.tasks.items() if record.state is TaskState.QUEUED}
        require(queued == set(self._queue.ids()), "queue out of sync")
        require(self._queued_with_capabilities <= queued, "an index of queued tasks lists one that is not queued")
        for task_id, record in self.tasks.items():
            require(record.state is not TaskState.DONE, f"task {id_text(task_id)} ended but was kept")
            if record.state in ON_A_WORKER:
                worker = self.workers.get(record.worker) if record.worker is not None else None
                require(worker is not None, f"task {id_text(task_id)} on an unknown worker")
                require(worker is not None and task_id in worker.tasks, "a task's worker does not list it")
            else:
                require(record.worker is None and not record.started, "a task off any worker keeps a worker")
            require(
                (record.state is TaskState.WAITING) == self.graphs.awaits_inputs(task_id),
                "a graph node waits without missing inputs, or misses inputs without waiting",
            )
            if record.client in self.clients:
                require(task_id in self.clients[record.client].tasks, "a client does not list its task")
            if record.graph:
                require(task_id in self.graphs.get(record.graph, ()), "a graph does not list its node")
            for object_id in record.client_objects:
                require(object_id in self.objects, "a live task's argument object was freed")
        for worker_id, worker in self.workers.items():
            for task_id in worker.tasks:
                require(self.tasks[task_id].worker == worker_id, "a worker lists a task held elsewhere")
                require(self.tasks[task_id].started or not worker.leaving, "a draining worker holds an unstarted task")
        for client in self.clients.values():
            require(all(task_id in self.tasks for task_id in client.tasks), "a client lists a task that ended")
            if client.output is not None:
                require(client.output.held_task_ids() <= client.tasks, "drop counts are held only for live tasks")
        for graph_id, nodes in self.graphs.items():
            require(all(self.tasks[node].graph == graph_id for node in nodes), "a graph lists a node that ended")
        self.clients.validate()
        self.workers.validate(self.config.per_worker_queue_size)
        self._functions.validate(client.functions for client in self.clients.values())
        self._credits.validate(self.clients, self.tasks)
        self.graphs.validate()
        self._tree.validate()
        self.objects.validate()

    def _make_ready(self, record: TaskRecord) -> None:
        """A graph node's inputs are all in: queue it."""
        record.move(TaskEvent.READY)
        self._enqueue(record, front=False)

    def _release(self, worker_id: bytes) -> None:
        """Let a leaving worker go: requeue what it still holds, and tell it that it may exit."""
        self._remove_worker(worker_id, died=False)
        self.workers.mark_released(worker_id, self._now)
        self._send(worker_id, DisconnectResponse())

    def _shutdown(self, reason: str) -> None:
        if self._stopped:
            return
        self._stopped = True
        for peer in list(self.workers) + list(self.clients):
            self._send(peer, SchedulerShutdown(reason))
        self._out.append(Stop(reason))
