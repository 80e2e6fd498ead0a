"""The scheduler's pure core: messages and clock ticks in, instructions out.

``SchedulerState`` owns every piece of scheduler bookkeeping (tasks, graphs, workers, clients,
functions and objects) and touches no socket and no clock: each handler takes ``now`` and
returns the ``Send``/``Stop`` instructions that the I/O shell in ``server.py`` carries out.

Data flow of one task::

    client --Task--> on_task --TaskQueue--> _dispatch --Send(worker, Task + missing objects)--> worker
    worker --TaskResult--> on_task_result --Send(client, TaskResult, or a reference to a kept object)--> client

Functions arrive once per client (``Task.function`` is filled only the first time) and are
forwarded once per worker; objects likewise. Results are accepted only from the worker holding
the task's current attempt, so a late answer from a worker declared dead never counts twice.
Graph nodes wait until the nodes they need are done; their results stay here as objects.
A task submitted from inside a task is linked to it (``task_tree.py``): when the parent is
stopped (cancelled, timed out, its processor or worker dead), its children are cancelled too.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from scaler.config.scheduler import SchedulerConfig as SchedulerConfig  # its settings live there
from scaler.io.output_limits import DEFAULT_OUTPUT_LIMITS, OutputThrottle
from scaler.io.rate_limited_log import RateLimitedLog
from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ArgumentKind,
    BalanceResponse,
    CancelConfirmType,
    ClientDisconnect,
    ClientDropped,
    ClientHeartbeat,
    ClientHeartbeatEcho,
    ClientShutdownResponse,
    DisconnectRequest,
    DisconnectResponse,
    DisconnectType,
    GraphTask,
    Message,
    ObjectInstruction,
    ObjectInstructionType,
    ObjectRequest,
    ObjectResponse,
    SchedulerShutdown,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskCredit,
    TaskLog,
    TaskResult,
    TaskStarted,
    TaskStatus,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
)
from scaler.scheduler.graph_table import GraphRecord, graph_problem
from scaler.scheduler.object_store import ObjectStore
from scaler.scheduler.placement import Placement, WorkerRecord
from scaler.scheduler.task_table import ON_A_WORKER, TaskEvent, TaskRecord, TaskState
from scaler.scheduler.task_tree import TaskTree
from scaler.utility.task_queue import TaskQueue

logger = logging.getLogger(__name__)

_DEPARTED_MEMORY = 10_000  # how many departed client identities to remember
# Outcomes that stop a task's code while its children may still run: they are cancelled with it.
_STOPPING_STATUSES = (TaskStatus.TIMEOUT, TaskStatus.PROCESSOR_DIED, TaskStatus.WORKER_DIED)


def _peer(identity: bytes) -> str:
    """A peer's identity for logs: readable for scaler peers, escaped for anything else."""
    return identity[:80].decode(errors="backslashreplace")


def _hex(identifier: bytes) -> str:
    """An id for logs and error texts: scaler's are 16 bytes; a longer one (a hostile peer's) is clipped."""
    if len(identifier) <= 32:
        return identifier.hex()
    return f"{identifier[:16].hex()}...({len(identifier)} bytes)"


@dataclass(frozen=True, slots=True)
class Send:
    """Instruction: send ``message`` to the peer whose socket identity is ``to``."""

    to: bytes
    message: Message


@dataclass(frozen=True, slots=True)
class Stop:
    """Instruction: the scheduler must stop."""

    reason: str


Instruction = Send | Stop


@dataclass(slots=True)
class ClientRecord:
    """A connected client: when it was last heard from, its live tasks and the functions it sent."""

    last_seen: float
    tasks: set[bytes] = field(default_factory=set)
    functions: set[bytes] = field(default_factory=set)
    waiting: int = 0  # its tasks holding a backpressure credit (queued since submission)
    credits_due: int = 0  # credits freed since it was last sent a TaskCredit
    output: OutputThrottle | None = None  # its tasks' output, bounded; made at its first TaskLog


_CLIENT_MESSAGES = (Task, GraphTask, TaskCancel, ClientHeartbeat, ClientDisconnect, ObjectInstruction, ObjectRequest)


class SchedulerState:
    """All scheduler bookkeeping as a plain object; see the module docstring."""

    def __init__(self, config: SchedulerConfig | None = None, scheduler_id: bytes | None = None) -> None:
        self.config = config or SchedulerConfig()
        # Echoed to every peer; a new id tells them the scheduler restarted and forgot their tasks.
        self.scheduler_id = scheduler_id if scheduler_id is not None else uuid.uuid4().bytes
        self.clients: dict[bytes, ClientRecord] = {}
        self.workers: dict[bytes, WorkerRecord] = {}
        self.tasks: dict[bytes, TaskRecord] = {}
        self.graphs: dict[bytes, GraphRecord] = {}
        self.objects = ObjectStore()
        self._tree = TaskTree(self.tasks)
        self._queue = TaskQueue()
        self._queued_with_capabilities: set[bytes] = set()
        self._functions: dict[bytes, bytes] = {}
        self._function_users: dict[bytes, int] = {}
        # Clients that left or timed out, and why: their late messages get a ClientDropped answer.
        self._departed: OrderedDict[bytes, str] = OrderedDict()
        self._out: list[Instruction] = []
        self._placement = Placement(
            self.config.per_worker_queue_size,
            self.workers,
            self.tasks,
            self._queue,
            self._queued_with_capabilities,
            self._functions,
            self.objects,
            self._send,
            self._forget,
            self._reject,
            self._return_credit,
        )
        self._handlers: dict[type[Message], Callable[[bytes, Any, float], None]] = {
            Task: self.on_task,
            GraphTask: self.on_graph_task,
            TaskCancel: self.on_task_cancel,
            ObjectInstruction: self.on_object_instruction,
            ObjectRequest: self.on_object_request,
            ClientHeartbeat: self.on_client_heartbeat,
            ClientDisconnect: self.on_client_disconnect,
            TaskResult: self.on_task_result,
            TaskCancelConfirm: self.on_task_cancel_confirm,
            TaskLog: self.on_task_log,
            BalanceResponse: self.on_balance_response,
            WorkerHeartbeat: self.on_worker_heartbeat,
            DisconnectRequest: self.on_disconnect_request,
            TaskStarted: self.on_task_started,
        }
        self._completed = 0
        self._stopped = False
        self._noisy: dict[str, RateLimitedLog] = {}
        self._credits_due: set[bytes] = set()  # clients owed a TaskCredit at the end of this turn

    # -- entry points -------------------------------------------------------------------------

    def handle(self, source: bytes, message: Message, now: float, dispatch: bool = True) -> list[Instruction]:
        """Apply one message from peer ``source``; return what must be sent.

        With ``dispatch=False`` queued tasks are not handed out yet: a shell that applies a
        burst of messages calls ``dispatch()`` once after them, which is cheaper.
        """
        handler = self._handlers.get(type(message))
        if source in self._departed and type(message) in _CLIENT_MESSAGES:
            if type(message) is not ClientDisconnect:
                self._send(source, ClientDropped(self._departed[source]))
        elif handler is None:
            kind = type(message).__name__
            self._noise("unaccepted").warning(
                "peer %s sent %s, which the scheduler does not accept", _peer(source), kind
            )
        else:
            handler(source, message, now)
            worker = self.workers.get(source)
            if worker is not None and worker.leaving and not worker.tasks:
                self._release(source)
        self._cancel_doomed()
        if dispatch:
            self._dispatch()
        return self._take_output()

    def shutdown(self, reason: str) -> list[Instruction]:
        """Stop: tell every client and worker, so none waits for a timeout to find out."""
        self._shutdown(reason)
        return self._take_output()

    def dispatch(self) -> list[Instruction]:
        """Hand queued tasks to workers with room; return what must be sent."""
        self._dispatch()
        return self._take_output()

    def tick(self, now: float) -> list[Instruction]:
        """Expire silent clients and workers, and tasks no worker can run; call it a few times a second."""
        for client_id, client in list(self.clients.items()):
            if now - client.last_seen > self.config.client_timeout_seconds:
                logger.warning("client %s timed out; cancelling its %d tasks", _peer(client_id), len(client.tasks))
                reason = f"the scheduler heard nothing from this client for {self.config.client_timeout_seconds:g}s"
                self._remove_client(client_id, reason + "; its tasks were cancelled")
        for worker_id, worker in list(self.workers.items()):
            if now - worker.last_seen > self.config.worker_timeout_seconds:
                logger.warning("worker %s timed out holding %d tasks", _peer(worker_id), len(worker.tasks))
                self._remove_worker(worker_id, died=True)
            elif worker.leaving and not worker.tasks:  # its last tasks were cancelled on their client's behalf
                self._release(worker_id)
        self._expire_unschedulable(now)
        self._dispatch()
        return self._take_output()

    def worker_disconnected(self, worker_id: bytes) -> list[Instruction]:
        """The transport saw a worker's connection close for good: treat it as dead."""
        if worker_id in self.workers:
            logger.warning("worker %s disconnected", _peer(worker_id))
            self._remove_worker(worker_id, died=True)
            self._dispatch()
        return self._take_output()

    def unreadable_frame(self, source: bytes, reason: str) -> list[Instruction]:
        """A frame from ``source`` could not be decoded, so whatever it held is lost.

        Never silently: a known client is dropped and told at once (its futures fail instead of
        waiting for answers to tasks that never arrived); a known worker is let go as if it had
        left, so the results it may have sent are not waited for and its tasks run elsewhere,
        uncharged. Unknown peers (strangers, attackers) are only logged by the shell.
        """
        if source in self.clients:
            text = f"the scheduler could not read a frame this client sent ({reason}); its tasks were cancelled"
            logger.error("client %s: %s", _peer(source), text)
            self._remove_client(source, text)
            self._send(source, ClientDropped(text))
        elif source in self.workers:
            logger.error("worker %s sent an unreadable frame (%s); its tasks go elsewhere", _peer(source), reason)
            self._remove_worker(source, died=False)
            self._dispatch()
        return self._take_output()

    # -- client messages ----------------------------------------------------------------------

    def on_task(self, source: bytes, task: Task, now: float) -> None:
        """Queue a task from a client, storing its function the first time it is seen."""
        client = self._touch_client(source, now)
        if task.task_id in self.tasks:
            self._noise("duplicate").warning("task %s: duplicate submission ignored", _hex(task.task_id))
            self._refund(source, client)
            return
        # The function first: were it dropped with a refused task, the client's later tasks, which
        # no longer carry its bytes, would all be refused too.
        status = TaskStatus.REJECTED
        problem: str | None = self._accept_function(client, task.function_id, task.function) or self._credit_problem(
            client
        )
        if not problem:
            status, problem = TaskStatus.MISSING_OBJECTS, self._object_problem(source, task.args, set())
        if problem:
            self._noise("rejected").error("task %s: rejected: %s", _hex(task.task_id), problem)
            self._send(source, TaskResult(task.task_id, status, problem.encode(), 0))
            self._refund(source, client)
            return
        parent = self._tree.parent_for(task.parent_task_id)
        if parent is None:
            self._noise("orphans").info(
                "task %s: its parent %s was stopped; cancelled", _hex(task.task_id), _hex(task.parent_task_id)
            )
            self._send(source, TaskCancelConfirm(task.task_id, CancelConfirmType.CANCELED))
            self._refund(source, client)
            return
        task.function = b""
        task.objects = []
        record = TaskRecord(task=task, client=source, parent=parent)
        if self.config.max_number_of_tasks_waiting > 0:
            record.holds_credit = True
            client.waiting += 1
        self._adopt(client, record)
        self._enqueue(record, front=False)

    def on_graph_task(self, source: bytes, graph: GraphTask, now: float) -> None:
        """Accept a whole graph: nodes without dependencies are queued, the others wait."""
        client = self._touch_client(source, now)
        node_ids = {node.task_id for node in graph.nodes}
        problem = graph_problem(graph, self.tasks) if graph.graph_id not in self.graphs else "graph id reused"
        for node in graph.nodes:
            problem = problem or self._accept_function(client, node.function_id, node.function)
        status = TaskStatus.REJECTED
        for node in graph.nodes:
            if not problem:
                status, problem = TaskStatus.MISSING_OBJECTS, self._object_problem(source, node.args, node_ids)
        if problem:
            self._noise("rejected").error("graph %s: rejected: %s", _hex(graph.graph_id), problem)
            for target in dict.fromkeys(graph.targets):
                self._send(source, TaskResult(target, status, problem.encode(), 0))
            return
        parent = self._tree.parent_for(graph.parent_task_id)
        if parent is None:
            self._noise("orphans").info(
                "graph %s: its parent %s was stopped; cancelled", _hex(graph.graph_id), _hex(graph.parent_task_id)
            )
            for target in dict.fromkeys(graph.targets):
                self._send(source, TaskCancelConfirm(target, CancelConfirmType.CANCELED))
            return
        targets = set(graph.targets)
        self.graphs[graph.graph_id] = record_of_graph = GraphRecord(nodes=set(node_ids))
        records: list[TaskRecord] = []
        for node in graph.nodes:
            task = Task(node.task_id, node.function_id, b"", node.args, 0)
            task.profiling, task.stream_output = graph.profiling, graph.stream_output
            record = TaskRecord(task=task, client=source, state=TaskState.WAITING, graph=graph.graph_id, parent=parent)
            record.is_target = node.task_id in targets
            record.dependencies = list(dict.fromkeys(node.dependencies))
            record.waiting_on = set(record.dependencies)
            records.append(record)
            self._adopt(client, record, graph_nodes=node_ids)
        for record in records:
            for dependency in record.dependencies:
                self.tasks[dependency].dependents.append(record.task.task_id)
                record_of_graph.holds[dependency] += 1
        for record in records:
            if not record.waiting_on:
                record.move(TaskEvent.READY)
                self._enqueue(record, front=False)

    def on_task_cancel(self, source: bytes, cancel: TaskCancel, now: float) -> None:
        """Cancel a queued task at once; ask the worker to cancel an assigned one; a graph goes whole."""
        self._touch_client(source, now)
        record = self.tasks.get(cancel.task_id)
        if record is None or record.client != source or not record.is_target:
            logger.debug("task %s: cancel of a task the scheduler no longer holds", _hex(cancel.task_id))
            self._send(source, TaskCancelConfirm(cancel.task_id, CancelConfirmType.CANCEL_NOT_FOUND))
        elif record.graph:
            logger.info("graph %s: cancelled through task %s", _hex(record.graph), _hex(cancel.task_id))
            for node_id in list(self.graphs[record.graph].nodes):
                self._cancel(self.tasks[node_id])  # no node is another's child: a graph's nodes share one parent
        else:
            self._cancel(record)

    def on_object_instruction(self, source: bytes, instruction: ObjectInstruction, now: float) -> None:
        """Store, release or clear a client's objects."""
        self._touch_client(source, now)
        freed: list[bytes] = []
        if instruction.kind is ObjectInstructionType.CREATE:
            if len(instruction.object_ids) != len(instruction.payloads):
                self._noise("objects").warning(
                    "client %s sent a CREATE with mismatched ids and payloads", _peer(source)
                )
                return
            for object_id, payload in zip(instruction.object_ids, instruction.payloads, strict=True):
                # An id is the hash of its bytes: a client cannot claim (and then read) an object
                # it does not have, nor plant other bytes under an id someone else will use.
                if content_id(payload) != object_id:
                    self._noise("objects").warning(
                        "client %s sent an object whose id is not its content hash", _peer(source)
                    )
                    continue
                self.objects.put(source, object_id, payload)
        elif instruction.kind is ObjectInstructionType.DELETE:
            for object_id in instruction.object_ids:
                freed += self.objects.release(source, object_id)
        elif instruction.kind is ObjectInstructionType.CLEAR:
            freed += self.objects.release_all(source)
        else:  # functions are freed when their last client leaves, not on a client's word
            self._noise("objects").warning(
                "client %s sent an ObjectInstruction of kind %s", _peer(source), instruction.kind.name
            )
        self._announce_freed(freed)

    def on_object_request(self, source: bytes, request: ObjectRequest, now: float) -> None:
        """Answer with the objects' bytes; a client may read only objects it holds."""
        self._touch_client(source, now)
        payloads: list[bytes] = []
        found: list[bool] = []
        for object_id in request.object_ids:
            data = self.objects.get(object_id) if self.objects.is_held_by(object_id, source) else None
            payloads.append(data if data is not None else b"")
            found.append(data is not None)
        self._send(source, ObjectResponse(list(request.object_ids), payloads, found))

    def on_client_heartbeat(self, source: bytes, heartbeat: ClientHeartbeat, now: float) -> None:
        """Note the client is alive and echo the heartbeat."""
        self._touch_client(source, now)
        self._send(source, ClientHeartbeatEcho(heartbeat.timestamp, self.scheduler_id))

    def on_client_disconnect(self, source: bytes, disconnect: ClientDisconnect, now: float) -> None:
        """A client leaves: cancel its tasks; with SHUTDOWN, stop the scheduler unless protected."""
        if disconnect.kind is DisconnectType.SHUTDOWN:
            if self.config.protected:
                reason = (
                    "the scheduler runs in protected mode, so clients cannot shut it down; "
                    "stop it from its host, or restart it with --no-protected (protected=False)"
                )
                self._touch_client(source, now)
                self._send(source, ClientShutdownResponse(False, reason))
                return
            self._send(source, ClientShutdownResponse(True, ""))
            self._remove_client(source, "this client shut the scheduler down")
            self._shutdown("a client asked the scheduler to shut down")
            return
        self._remove_client(source, "this client disconnected")

    # -- worker messages ----------------------------------------------------------------------

    def on_worker_heartbeat(self, source: bytes, heartbeat: WorkerHeartbeat, now: float) -> None:
        """Register or refresh a worker and echo the heartbeat."""
        worker = self.workers.get(source)
        if worker is None:
            logger.info("worker %s connected with capabilities %s", _peer(source), heartbeat.capabilities)
            worker = self.workers[source] = WorkerRecord(last_seen=now)
        worker.last_seen = now
        worker.capabilities = heartbeat.capabilities
        self._send(source, WorkerHeartbeatEcho(heartbeat.timestamp, self.scheduler_id))

    def on_task_result(self, source: bytes, result: TaskResult, now: float) -> None:
        """Route a result to its client if it comes from the worker holding the current attempt."""
        worker = self._touch_worker(source, now)
        record = self.tasks.get(result.task_id)
        if worker is None or record is None or record.worker != source or record.attempt != result.attempt:
            self._noise("stale").info(
                "task %s: dropped a result from %s that does not match the current attempt",
                _hex(result.task_id),
                _peer(source),
            )
            return
        task_id = result.task_id
        retry = record.state is not TaskState.CANCELING and record.client in self.clients
        if result.status is TaskStatus.PROCESSOR_DIED and retry:
            record.deaths += 1
            if record.deaths <= self.config.max_task_retries:
                logger.warning("task %s: its processor died; retrying (attempt %d)", _hex(task_id), record.attempt)
                self._requeue(record)
                return
            note = f"; its processor died {record.deaths} times, so it will not be retried again"
            result.payload += note.encode()
        self._completed += 1
        if not retry or result.status in _STOPPING_STATUSES:  # cancelled, its client gone, or stopped
            self._stop_children(record, ending=True)
        if result.status is TaskStatus.SUCCESS and record.graph and self.graphs[record.graph].holds[task_id] > 0:
            self.objects.put(record.graph, task_id, result.payload)  # live later nodes need it
        if record.is_target:
            big = result.status is TaskStatus.SUCCESS and len(result.payload) > self.config.inline_result_bytes
            if big and record.client in self.clients:
                self.objects.put(record.client, task_id, result.payload)
                result.result_object_id, result.payload = task_id, b""
            self._tell_dropped_output(record)
            self._send_to_client(record.client, result)
        dependents = record.dependents
        self._forget(record)
        if result.status is TaskStatus.SUCCESS:
            for dependent_id in dependents:
                dependent = self.tasks.get(dependent_id)
                if dependent is not None and dependent.state is TaskState.WAITING:
                    dependent.waiting_on.discard(task_id)
                    if not dependent.waiting_on:
                        dependent.move(TaskEvent.READY)
                        self._enqueue(dependent, front=False)
        else:
            self._fail_dependents(dependents, result)

    def on_task_started(self, source: bytes, started: TaskStarted, now: float) -> None:
        """A worker began running the current attempt: from now on its death counts against the task."""
        self._touch_worker(source, now)
        record = self.tasks.get(started.task_id)
        if record is not None and record.worker == source and record.attempt == started.attempt:
            record.started = True

    def on_task_cancel_confirm(self, source: bytes, confirm: TaskCancelConfirm, now: float) -> None:
        """A worker answered a cancel; pass the answer on to the task's client."""
        self._touch_worker(source, now)
        record = self.tasks.get(confirm.task_id)
        if record is None or record.worker != source or record.state is not TaskState.CANCELING:
            return  # its result already went to the client, which settles the future
        if confirm.confirm is CancelConfirmType.CANCEL_FAILED:
            record.move(TaskEvent.CANCEL_FAILED)
            if record.is_target:
                self._send_to_client(record.client, confirm)
            return
        # The worker no longer runs it (cancelled, or lost it): either way the task is over.
        self._end_cancelled(record)

    def on_task_log(self, source: bytes, log: TaskLog, now: float) -> None:
        """Pass a task's output on to its client, within the client's output budget (else count it)."""
        self._touch_worker(source, now)
        record = self.tasks.get(log.task_id)
        if record is None or record.worker != source or record.client not in self.clients:
            return
        client = self.clients[record.client]
        if client.output is None:
            client.output = OutputThrottle(self.config.output_bytes_per_second_per_client, DEFAULT_OUTPUT_LIMITS)
        admitted = client.output.admit(log, now)
        if admitted is not None:
            self._send(record.client, admitted)

    def on_balance_response(self, source: bytes, response: BalanceResponse, now: float) -> None:
        """A worker handed back some tasks: queue them again; it keeps the others."""
        worker = self._touch_worker(source, now)
        if worker is None:
            return
        worker.balancing = False
        for task_id in response.task_ids:
            record = self.tasks.get(task_id)
            if record is None or record.worker != source:
                continue
            if record.state is TaskState.CANCELING or record.client not in self.clients:
                self._end_cancelled(record)  # cancelled meanwhile, or its client left: it is off the worker now
            else:  # BALANCING, or ASSIGNED again after a refused cancel: the worker no longer has it
                self._requeue(record)
        for task_id in worker.tasks:
            record = self.tasks[task_id]
            if record.state is TaskState.BALANCING:
                record.move(TaskEvent.KEEP)
                worker.kept.add(task_id)

    def on_disconnect_request(self, source: bytes, request: DisconnectRequest, now: float) -> None:
        """A worker leaves on purpose: take its tasks back without counting it as a death.

        A draining worker keeps the tasks it has started until they end; the rest are requeued now.
        """
        worker = self.workers.get(source)
        if worker is None:
            self._send(source, DisconnectResponse())
            return
        if not request.drain:
            logger.info("worker %s is leaving", _peer(source))
            self._release(source)
            return
        logger.info("worker %s is draining: %d tasks held", _peer(source), len(worker.tasks))
        worker.leaving = True
        for task_id in list(worker.tasks):
            record = self.tasks[task_id]
            if record.started:
                continue  # it runs there: its result (or cancel confirm) still comes from that worker
            if record.state is TaskState.CANCELING or record.client not in self.clients:
                self._end_cancelled(record)  # the worker dropped it unstarted: nothing will confirm it
            else:
                self._requeue(record)

    # -- inspection ---------------------------------------------------------------------------

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
        """Raise ``AssertionError`` if any invariant is broken; tests call it after every step."""
        queued = {task_id for task_id, record in self.tasks.items() if record.state is TaskState.QUEUED}
        assert queued == set(self._queue.ids()), "queue out of sync"
        for task_id, record in self.tasks.items():
            if record.state in ON_A_WORKER:
                assert record.worker in self.workers, f"task {_hex(task_id)} on an unknown worker"
                assert task_id in self.workers[record.worker].tasks
            else:
                assert record.worker is None
            if record.state is TaskState.WAITING:
                assert record.waiting_on and record.graph
            if record.client in self.clients:
                assert task_id in self.clients[record.client].tasks
            if record.graph:
                assert task_id in self.graphs[record.graph].nodes
            for object_id in record.client_objects:
                assert object_id in self.objects, "a live task's argument object was freed"
        for worker_id, worker in self.workers.items():
            assert len(worker.tasks) <= self.config.per_worker_queue_size, "worker over-assigned"
            for task_id in worker.tasks:
                assert self.tasks[task_id].worker == worker_id
                assert self.tasks[task_id].started or not worker.leaving, "a draining worker holds an unstarted task"
        for client_id, client in self.clients.items():
            for task_id in client.tasks:
                assert task_id in self.tasks
            holding = [self.tasks[task_id] for task_id in client.tasks if self.tasks[task_id].holds_credit]
            assert client.waiting == len(holding), "a client's backpressure count is off"
            assert all(record.state in (TaskState.QUEUED, TaskState.WAITING) for record in holding)
            assert client.credits_due == 0 or client_id in self._credits_due
            if client.output is not None:
                assert client.output.held_task_ids() <= client.tasks, "drop counts are held only for live tasks"
        for graph in self.graphs.values():
            assert graph.nodes, "a finished graph was kept"
            for task_id in graph.nodes:
                assert task_id in self.tasks
        assert set(self._function_users) == set(self._functions)
        self._tree.validate()
        self.objects.validate()

    # -- internals ----------------------------------------------------------------------------

    def _noise(self, kind: str) -> RateLimitedLog:
        """The log for lines a peer can cause at will (bad or stale messages): at most 10 a second per kind."""
        log = self._noisy.get(kind)
        if log is None:
            log = self._noisy[kind] = RateLimitedLog(interval=1.0, logger=logger, burst=10)
        return log

    def _send(self, to: bytes, message: Message) -> None:
        self._out.append(Send(to, message))

    def _send_to_client(self, client_id: bytes, message: Message) -> None:
        if client_id in self.clients:
            self._send(client_id, message)

    def _take_output(self) -> list[Instruction]:
        out, self._out = self._out, []
        return out

    def _touch_client(self, source: bytes, now: float) -> ClientRecord:
        client = self.clients.get(source)
        if client is None:
            logger.info("client %s connected", _peer(source))
            client = self.clients[source] = ClientRecord(last_seen=now)
            if self.config.max_number_of_tasks_waiting > 0:
                self._send(source, TaskCredit(self.config.max_number_of_tasks_waiting))
        else:
            client.last_seen = now
        return client

    def _touch_worker(self, source: bytes, now: float) -> WorkerRecord | None:
        worker = self.workers.get(source)
        if worker is not None:
            worker.last_seen = now
        return worker

    def _accept_function(self, client: ClientRecord, function_id: bytes, function: bytes) -> str | None:
        """Store a function sent with a task; return why the task cannot run, if it cannot."""
        if function and content_id(function) != function_id:
            return "the function's id is not the hash of its bytes"
        if function and function_id not in self._functions:
            self._functions[function_id] = function
            self._function_users[function_id] = 0
        if function_id not in self._functions:
            return "the scheduler does not know this task's function; the client must resend it"
        if function_id not in client.functions:
            client.functions.add(function_id)
            self._function_users[function_id] += 1
        return None

    def _object_problem(self, client_id: bytes, args: Iterable[Any], graph_nodes: Collection[bytes]) -> str | None:
        for argument in args:
            is_client_object = argument.kind is ArgumentKind.OBJECT and argument.data not in graph_nodes
            if is_client_object and not self.objects.is_held_by(argument.data, client_id):
                return f"object {argument.data.hex()} is unknown: it was never sent, or was freed"
        return None

    def _adopt(self, client: ClientRecord, record: TaskRecord, graph_nodes: Collection[bytes] = ()) -> None:
        """Make a new task live: index it and take references on its argument objects."""
        task = record.task
        self.tasks[task.task_id] = record
        client.tasks.add(task.task_id)
        if record.parent:
            self._tree.link(record)
        for argument in task.args:
            if argument.kind is ArgumentKind.OBJECT and argument.data not in graph_nodes:
                record.client_objects.append(argument.data)
                self.objects.add_task_ref(argument.data)

    def _enqueue(self, record: TaskRecord, front: bool) -> None:
        self._queue.push(record.task.task_id, record.task.priority, front)
        if record.task.capabilities:
            self._queued_with_capabilities.add(record.task.task_id)

    def _cancel(self, record: TaskRecord) -> None:
        """Cancel one task: at once if it is not on a worker, else through its worker."""
        task_id = record.task.task_id
        if record.state in (TaskState.WAITING, TaskState.QUEUED):
            self._end_cancelled(record)
        elif record.state in (TaskState.ASSIGNED, TaskState.BALANCING):
            record.move(TaskEvent.CANCEL)
            assert record.worker is not None
            self._send(record.worker, TaskCancel(task_id))
            self._stop_children(record, ending=False)  # at once: the worker's answer may take a while
        # CANCELING: a cancel is already on its way to the worker; its answer will serve both.

    def _stop_children(self, record: TaskRecord, ending: bool) -> None:
        """The task was stopped (``ending``: for good, not retried): doom the tasks it submitted."""
        task_id = record.task.task_id
        count = self._tree.stop_children(task_id)
        if count:
            logger.info("task %s: stopped; cancelling the %d tasks it submitted", _hex(task_id), count)
        if ending and record.attempt:  # only a task that ran can have children that arrive late
            self._tree.remember_stopped(task_id)

    def _cancel_doomed(self) -> None:
        """Cancel the tasks whose parent was stopped in this turn, and theirs in turn."""
        while (task_id := self._tree.next_doomed()) is not None:
            record = self.tasks.get(task_id)
            if record is not None:
                logger.debug("task %s: cancelled with its parent", _hex(task_id))
                self._cancel(record)

    def _forget(self, record: TaskRecord) -> None:
        """Drop a task that reached its end, and whatever only it kept alive."""
        task_id = record.task.task_id
        del self.tasks[task_id]
        self._tree.unlink(record)
        if record.holds_credit:
            self._return_credit(record)
        if record.state is TaskState.QUEUED:
            self._queue.discard(task_id)
            self._queued_with_capabilities.discard(task_id)
        elif record.worker is not None and record.worker in self.workers:
            self.workers[record.worker].tasks.pop(task_id, None)
        client = self.clients.get(record.client)
        if client is not None:
            client.tasks.discard(task_id)
            self._tell_dropped_output(record)
        freed: list[bytes] = []
        for object_id in record.client_objects:
            freed += self.objects.remove_task_ref(object_id)
        if record.graph:
            graph = self.graphs[record.graph]
            graph.nodes.discard(task_id)
            for dependency in record.dependencies:
                graph.holds[dependency] -= 1
                if graph.holds[dependency] == 0:
                    freed += self.objects.release(record.graph, dependency)
            if not graph.nodes:
                del self.graphs[record.graph]
                freed += self.objects.release_all(record.graph)
        self._announce_freed(freed)

    def _tell_dropped_output(self, record: TaskRecord) -> None:
        """The task ended: tell its client how much of its output was dropped here since its last log."""
        client = self.clients.get(record.client)
        if client is not None and client.output is not None:
            for notice in client.output.finish(record.task.task_id):
                self._send(record.client, notice)

    def _requeue(self, record: TaskRecord) -> None:
        """Take a task back from its worker (if still connected) into the front of the queue."""
        record.move(TaskEvent.REQUEUE)
        self._stop_children(record, ending=False)  # its next run submits its own
        worker = self.workers.get(record.worker) if record.worker is not None else None
        if worker is not None:
            worker.tasks.pop(record.task.task_id, None)
        record.worker = None
        self._enqueue(record, front=True)

    def _end_cancelled(self, record: TaskRecord) -> None:
        """A task ends as cancelled: forget it and confirm to its client if it reports there."""
        self._stop_children(record, ending=True)
        self._forget(record)
        if record.is_target:
            self._send_to_client(record.client, TaskCancelConfirm(record.task.task_id, CancelConfirmType.CANCELED))

    def _reject(self, record: TaskRecord, reason: str, status: TaskStatus = TaskStatus.REJECTED) -> None:
        """End a task the scheduler cannot run, telling its client why (and failing what needs it)."""
        task_id = record.task.task_id
        text = f"task {_hex(task_id)}: {reason}"
        self._noise("rejected").error("%s", text)
        failure = TaskResult(task_id, status, text.encode(), 0)
        dependents = record.dependents
        self._forget(record)
        if record.is_target:
            self._send_to_client(record.client, failure)
        self._fail_dependents(dependents, failure)

    def _announce_freed(self, freed: list[bytes]) -> None:
        """Tell the workers holding freed objects to drop them."""
        if not freed:
            return
        gone = set(freed)
        for worker_id, worker in self.workers.items():
            dropped = [object_id for object_id in gone if object_id in worker.objects]
            if dropped:
                worker.objects.difference_update(dropped)
                self._send(worker_id, ObjectInstruction(ObjectInstructionType.DELETE, dropped, []))

    def _fail_dependents(self, dependents: list[bytes], failure: TaskResult) -> None:
        """A node failed: every node that needs it, directly or not, fails with the same error."""
        pending = list(dependents)
        while pending:
            record = self.tasks.get(pending.pop())
            if record is None or record.state is not TaskState.WAITING:
                continue
            pending += record.dependents
            self._forget(record)
            if record.is_target:
                task_id = record.task.task_id
                self._send_to_client(record.client, TaskResult(task_id, failure.status, failure.payload, 0))

    def _dispatch(self) -> None:
        """Give queued tasks, best priority first, to the least-loaded workers that can run them."""
        self._cancel_doomed()  # first: a doomed task must not be dispatched
        if self._queue and self.workers:
            self._placement.assign_queued()
        self._placement.balance()
        for client_id in self._credits_due:  # one TaskCredit per client per turn, not one per task
            client = self.clients.get(client_id)
            if client is not None and client.credits_due:
                self._send(client_id, TaskCredit(client.credits_due))
                client.credits_due = 0
        self._credits_due.clear()

    def _return_credit(self, record: TaskRecord) -> None:
        """The task left the queue (to a worker, or its end): its client may send one more."""
        record.holds_credit = False
        client = self.clients.get(record.client)
        if client is not None:
            client.waiting -= 1
            self._refund(record.client, client)

    def _refund(self, client_id: bytes, client: ClientRecord) -> None:
        """Give the client back a credit: its task left the queue, or was never queued."""
        if self.config.max_number_of_tasks_waiting > 0:
            client.credits_due += 1
            self._credits_due.add(client_id)

    def _credit_problem(self, client: ClientRecord) -> str:
        """Why a new task from this client cannot be queued now, or ``""``."""
        limit = self.config.max_number_of_tasks_waiting
        if limit > 0 and 2 * limit <= client.waiting:
            return (
                f"this client has {client.waiting} tasks waiting in the scheduler's queue, over twice "
                f"max_number_of_tasks_waiting ({limit}); scaler's Client waits for credits by itself"
            )
        return ""

    def _expire_unschedulable(self, now: float) -> None:
        """Fail queued tasks that no connected worker could ever run, after a grace period."""
        for task_id in list(self._queued_with_capabilities):
            record = self.tasks[task_id]
            if any(worker.can_run(record.task) for worker in self.workers.values()):
                record.unschedulable_since = None
                continue
            if record.unschedulable_since is None:
                record.unschedulable_since = now
            elif now - record.unschedulable_since > self.config.unschedulable_grace_seconds:
                wanted = ",".join(f"{name}={value}" for name, value in record.task.capabilities.items())
                self._reject(
                    record,
                    f"no connected worker has the capabilities {wanted} it needs "
                    f"(waited {self.config.unschedulable_grace_seconds:g}s); start workers with "
                    f"`scaler_cluster --per-worker-capabilities {wanted} ...`",
                    TaskStatus.NO_WORKER,
                )

    def _remove_client(self, client_id: bytes, reason: str) -> None:
        self._departed[client_id] = reason
        if len(self._departed) > _DEPARTED_MEMORY:
            self._departed.popitem(last=False)
        client = self.clients.pop(client_id, None)
        if client is None:
            return
        for task_id in list(client.tasks):
            record = self.tasks.get(task_id)
            if record is not None:
                self._cancel(record)
        self._announce_freed(self.objects.release_all(client_id))
        freed: list[bytes] = []
        for function_id in client.functions:
            self._function_users[function_id] -= 1
            if self._function_users[function_id] == 0:
                del self._function_users[function_id]
                del self._functions[function_id]
                freed.append(function_id)
        # Workers drop them too: a long-lived cluster serving clients that send many distinct
        # closures would otherwise keep every one of them, in every agent and processor, forever.
        for worker_id, worker in self.workers.items():
            dropped = [function_id for function_id in freed if function_id in worker.functions]
            if dropped:
                worker.functions.difference_update(dropped)
                self._send(worker_id, ObjectInstruction(ObjectInstructionType.DELETE_FUNCTIONS, dropped, []))

    def _release(self, worker_id: bytes) -> None:
        """Let a leaving worker go: requeue what it still holds, and tell it that it may exit."""
        self._remove_worker(worker_id, died=False)
        self._send(worker_id, DisconnectResponse())

    def _remove_worker(self, worker_id: bytes, died: bool) -> None:
        worker = self.workers.pop(worker_id)
        # Requeued at the front in reverse order, so the tasks keep their dispatch order.
        for task_id in reversed(list(worker.tasks)):
            record = self.tasks[task_id]
            if record.state is TaskState.CANCELING or record.client not in self.clients:
                self._end_cancelled(record)  # cancelled, or its client left: nobody wants it run again
                continue
            if died and record.started:  # a task only queued there is not to blame
                record.deaths += 1
                if record.deaths > self.config.max_task_retries:
                    text = (
                        f"task {_hex(task_id)}: its worker died while running it {record.deaths} times "
                        f"({record.attempt} attempts); giving up"
                    )
                    logger.error(text)
                    failure = TaskResult(task_id, TaskStatus.WORKER_DIED, text.encode(), record.attempt)
                    dependents = record.dependents
                    self._stop_children(record, ending=True)
                    self._forget(record)
                    if record.is_target:
                        self._send_to_client(record.client, failure)
                    self._fail_dependents(dependents, failure)
                    continue
            logger.info("task %s: requeued from worker %s", _hex(task_id), _peer(worker_id))
            self._requeue(record)

    def _shutdown(self, reason: str) -> None:
        if self._stopped:
            return
        self._stopped = True
        for peer in list(self.workers) + list(self.clients):
            self._send(peer, SchedulerShutdown(reason))
        self._out.append(Stop(reason))
