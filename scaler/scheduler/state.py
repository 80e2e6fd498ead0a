"""The scheduler's pure core: messages and clock ticks in, instructions out.

``SchedulerState`` owns every piece of scheduler bookkeeping (tasks, workers, clients and the
functions they share) and touches no socket and no clock: each handler takes ``now`` and
returns the ``Send``/``Stop`` instructions that the I/O shell in ``server.py`` carries out.

Data flow of one task::

    client --Task--> on_task --queue--> _dispatch --Send(worker, Task)--> worker
    worker --TaskResult--> on_task_result --Send(client, TaskResult)--> client

Functions arrive once per client (``Task.function`` is filled only the first time) and are
forwarded once per worker. Results are accepted only from the worker holding the task's
current attempt, so a late answer from a worker declared dead can never resolve a task twice.
"""

from __future__ import annotations

import heapq
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scaler.protocol.messages import (
    CancelConfirmType,
    ClientDisconnect,
    ClientDropped,
    ClientHeartbeat,
    ClientHeartbeatEcho,
    ClientShutdownResponse,
    DisconnectRequest,
    DisconnectResponse,
    DisconnectType,
    Message,
    SchedulerShutdown,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskResult,
    TaskStatus,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
)
from scaler.scheduler.task_table import TaskEvent, TaskRecord, TaskState

logger = logging.getLogger(__name__)

_DEPARTED_MEMORY = 10_000  # how many departed client identities to remember


def _peer(identity: bytes) -> str:
    """A peer's identity for logs: readable for scaler peers, escaped for anything else."""
    return identity[:80].decode(errors="backslashreplace")


@dataclass(frozen=True)
class SchedulerConfig:
    """The scheduler's tunables; the defaults suit one machine and scale to many."""

    per_worker_queue_size: int = 1000
    client_timeout_seconds: float = 60.0
    worker_timeout_seconds: float = 60.0
    max_task_retries: int = 3
    protected: bool = True


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


@dataclass(slots=True)
class WorkerRecord:
    """A connected worker: when it was last heard from, its tasks and the functions it holds."""

    last_seen: float
    tasks: set[bytes] = field(default_factory=set)
    functions: set[bytes] = field(default_factory=set)


_CLIENT_MESSAGES = (Task, TaskCancel, ClientHeartbeat, ClientDisconnect)


class SchedulerState:
    """All scheduler bookkeeping as a plain object; see the module docstring."""

    def __init__(self, config: SchedulerConfig | None = None, scheduler_id: bytes | None = None) -> None:
        self.config = config or SchedulerConfig()
        # Echoed to every peer; a new id tells them the scheduler restarted and forgot their tasks.
        self.scheduler_id = scheduler_id if scheduler_id is not None else uuid.uuid4().bytes
        # Clients that left or timed out, and why: their late messages get a ClientDropped answer.
        self._departed: OrderedDict[bytes, str] = OrderedDict()
        self.clients: dict[bytes, ClientRecord] = {}
        self.workers: dict[bytes, WorkerRecord] = {}
        self.tasks: dict[bytes, TaskRecord] = {}
        self._queue: deque[bytes] = deque()  # may hold ids of cancelled tasks; skipped on pop
        self._queued_count = 0
        self._functions: dict[bytes, bytes] = {}
        self._function_users: dict[bytes, int] = {}
        self._out: list[Instruction] = []
        self._handlers: dict[type[Message], Callable[[bytes, Any, float], None]] = {
            Task: self.on_task,
            TaskCancel: self.on_task_cancel,
            TaskResult: self.on_task_result,
            TaskCancelConfirm: self.on_task_cancel_confirm,
            ClientHeartbeat: self.on_client_heartbeat,
            ClientDisconnect: self.on_client_disconnect,
            WorkerHeartbeat: self.on_worker_heartbeat,
            DisconnectRequest: self.on_disconnect_request,
        }
        self._completed = 0
        self._stopped = False

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
            logger.warning("peer %s sent %s, which the scheduler does not accept", _peer(source), kind)
        else:
            handler(source, message, now)
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
        """Expire silent clients and workers; call this a few times per second."""
        for client_id, client in list(self.clients.items()):
            if now - client.last_seen > self.config.client_timeout_seconds:
                logger.warning("client %s timed out; cancelling its %d tasks", _peer(client_id), len(client.tasks))
                reason = f"the scheduler heard nothing from this client for {self.config.client_timeout_seconds:g}s"
                self._remove_client(client_id, reason + "; its tasks were cancelled")
        for worker_id, worker in list(self.workers.items()):
            if now - worker.last_seen > self.config.worker_timeout_seconds:
                logger.warning("worker %s timed out holding %d tasks", _peer(worker_id), len(worker.tasks))
                self._remove_worker(worker_id, died=True)
        self._dispatch()
        return self._take_output()

    def worker_disconnected(self, worker_id: bytes) -> list[Instruction]:
        """The transport saw a worker's connection close for good: treat it as dead."""
        if worker_id in self.workers:
            logger.warning("worker %s disconnected", _peer(worker_id))
            self._remove_worker(worker_id, died=True)
            self._dispatch()
        return self._take_output()

    # -- client messages ----------------------------------------------------------------------

    def on_task(self, source: bytes, task: Task, now: float) -> None:
        """Queue a task from a client, storing its function the first time it is seen."""
        client = self._touch_client(source, now)
        if task.task_id in self.tasks:
            logger.warning("task %s: duplicate submission ignored", task.task_id.hex())
            return
        if task.function:
            self._add_function(client, task.function_id, task.function)
            task.function = b""
        elif task.function_id not in self._functions:
            logger.error("task %s: names function %s that was never sent", task.task_id.hex(), task.function_id.hex())
            reason = "the scheduler does not know this task's function; the client must resend it"
            self._send(source, TaskResult(task.task_id, TaskStatus.REJECTED, reason.encode(), 0))
            return
        elif task.function_id not in client.functions:
            self._add_function(client, task.function_id, None)
        self.tasks[task.task_id] = TaskRecord(task=task, client=source)
        client.tasks.add(task.task_id)
        self._enqueue(task.task_id, front=False)

    def on_task_cancel(self, source: bytes, cancel: TaskCancel, now: float) -> None:
        """Cancel a queued task at once; ask the worker to cancel an assigned one."""
        self._touch_client(source, now)
        record = self.tasks.get(cancel.task_id)
        if record is None or record.client != source:
            logger.debug("task %s: cancel of a task the scheduler no longer holds", cancel.task_id.hex())
            self._send(source, TaskCancelConfirm(cancel.task_id, CancelConfirmType.CANCEL_NOT_FOUND))
        elif record.state is TaskState.QUEUED:
            self._forget(record)
            self._send(source, TaskCancelConfirm(cancel.task_id, CancelConfirmType.CANCELED))
        elif record.state is TaskState.ASSIGNED:
            record.move(TaskEvent.CANCEL)
            assert record.worker is not None
            self._send(record.worker, TaskCancel(cancel.task_id))
        # CANCELING: a cancel is already on its way to the worker; its answer will serve both.

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
            logger.info("worker %s connected", _peer(source))
            self.workers[source] = WorkerRecord(last_seen=now)
        else:
            worker.last_seen = now
        self._send(source, WorkerHeartbeatEcho(heartbeat.timestamp, self.scheduler_id))

    def on_task_result(self, source: bytes, result: TaskResult, now: float) -> None:
        """Route a result to its client if it comes from the worker holding the current attempt."""
        worker = self._touch_worker(source, now)
        record = self.tasks.get(result.task_id)
        if worker is None or record is None or record.worker != source or record.attempt != result.attempt:
            logger.info(
                "task %s: dropped a result from %s that does not match the current attempt",
                result.task_id.hex(),
                _peer(source),
            )
            return
        self._forget(record)
        self._completed += 1
        self._send_to_client(record.client, result)

    def on_task_cancel_confirm(self, source: bytes, confirm: TaskCancelConfirm, now: float) -> None:
        """A worker answered a cancel; pass the answer on to the task's client."""
        self._touch_worker(source, now)
        record = self.tasks.get(confirm.task_id)
        if record is None or record.worker != source or record.state is not TaskState.CANCELING:
            return  # its result already went to the client, which settles the future
        if confirm.confirm is CancelConfirmType.CANCEL_FAILED:
            record.move(TaskEvent.CANCEL_FAILED)
            self._send_to_client(record.client, confirm)
            return
        # The worker no longer runs it (cancelled, or lost it): either way the task is over.
        self._forget(record)
        self._send_to_client(record.client, TaskCancelConfirm(confirm.task_id, CancelConfirmType.CANCELED))

    def on_disconnect_request(self, source: bytes, request: DisconnectRequest, now: float) -> None:
        """A worker leaves on purpose: take its tasks back without counting it as a death."""
        if source in self.workers:
            logger.info("worker %s is leaving", _peer(source))
            self._remove_worker(source, died=False)
        self._send(source, DisconnectResponse())

    # -- inspection ---------------------------------------------------------------------------

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring and tests."""
        return {
            "clients": len(self.clients),
            "workers": len(self.workers),
            "tasks": len(self.tasks),
            "queued": self._queued_count,
            "assigned": len(self.tasks) - self._queued_count,
            "functions": len(self._functions),
            "completed": self._completed,
        }

    def validate(self) -> None:
        """Raise ``AssertionError`` if any invariant is broken; tests call it after every step."""
        queued = [record for record in self.tasks.values() if record.state is TaskState.QUEUED]
        assert len(queued) == self._queued_count, "queued count out of sync"
        live_in_queue = [tid for tid in self._queue if tid in self.tasks and self.tasks[tid].state is TaskState.QUEUED]
        assert sorted(live_in_queue) == sorted(record.task.task_id for record in queued), "queue out of sync"
        for task_id, record in self.tasks.items():
            if record.state is TaskState.QUEUED:
                assert record.worker is None
            else:
                assert record.worker in self.workers, f"task {task_id.hex()} on an unknown worker"
                assert task_id in self.workers[record.worker].tasks
            if record.client in self.clients:
                assert task_id in self.clients[record.client].tasks
        for worker_id, worker in self.workers.items():
            assert len(worker.tasks) <= self.config.per_worker_queue_size, "worker over-assigned"
            for task_id in worker.tasks:
                assert self.tasks[task_id].worker == worker_id
        for client in self.clients.values():
            for task_id in client.tasks:
                assert task_id in self.tasks
        assert set(self._function_users) == set(self._functions)

    # -- internals ----------------------------------------------------------------------------

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
        else:
            client.last_seen = now
        return client

    def _touch_worker(self, source: bytes, now: float) -> WorkerRecord | None:
        worker = self.workers.get(source)
        if worker is not None:
            worker.last_seen = now
        return worker

    def _add_function(self, client: ClientRecord, function_id: bytes, function: bytes | None) -> None:
        if function is not None and function_id not in self._functions:
            self._functions[function_id] = function
            self._function_users[function_id] = 0
        if function_id not in client.functions:
            client.functions.add(function_id)
            self._function_users[function_id] += 1

    def _enqueue(self, task_id: bytes, front: bool) -> None:
        if front:
            self._queue.appendleft(task_id)
        else:
            self._queue.append(task_id)
        self._queued_count += 1

    def _forget(self, record: TaskRecord) -> None:
        """Drop a task that reached its end."""
        task_id = record.task.task_id
        del self.tasks[task_id]
        if record.state is TaskState.QUEUED:
            self._queued_count -= 1
        elif record.worker is not None and record.worker in self.workers:
            self.workers[record.worker].tasks.discard(task_id)
        client = self.clients.get(record.client)
        if client is not None:
            client.tasks.discard(task_id)

    def _dispatch(self) -> None:
        """Give queued tasks to the least-loaded workers that have room."""
        if not self._queued_count or not self.workers:
            return
        limit = self.config.per_worker_queue_size
        heap = [(len(worker.tasks), order, worker_id) for order, (worker_id, worker) in enumerate(self.workers.items())]
        heap = [entry for entry in heap if entry[0] < limit]
        heapq.heapify(heap)
        while heap and self._queued_count:
            task_id = self._queue.popleft()
            record = self.tasks.get(task_id)
            if record is None or record.state is not TaskState.QUEUED:
                continue  # cancelled while queued
            if record.task.function_id not in self._functions:
                self._forget(record)  # its client left and freed the function: nobody waits for it
                continue
            load, order, worker_id = heapq.heappop(heap)
            worker = self.workers[worker_id]
            record.move(TaskEvent.ASSIGN)
            self._queued_count -= 1
            record.worker = worker_id
            record.attempt += 1
            worker.tasks.add(task_id)
            task = record.task
            function = b""
            if task.function_id not in worker.functions:
                worker.functions.add(task.function_id)
                function = self._functions[task.function_id]
            self._send(worker_id, Task(task.task_id, task.function_id, function, task.args, record.attempt))
            if load + 1 < limit:
                heapq.heappush(heap, (load + 1, order, worker_id))

    def _remove_client(self, client_id: bytes, reason: str) -> None:
        self._departed[client_id] = reason
        if len(self._departed) > _DEPARTED_MEMORY:
            self._departed.popitem(last=False)
        client = self.clients.pop(client_id, None)
        if client is None:
            return
        for task_id in list(client.tasks):
            record = self.tasks[task_id]
            if record.state is TaskState.QUEUED:
                self._forget(record)
            elif record.state is TaskState.ASSIGNED:
                record.move(TaskEvent.CANCEL)
                assert record.worker is not None
                self._send(record.worker, TaskCancel(task_id))
        for function_id in client.functions:
            self._function_users[function_id] -= 1
            if self._function_users[function_id] == 0:
                del self._function_users[function_id]
                del self._functions[function_id]
                for worker in self.workers.values():
                    worker.functions.discard(function_id)

    def _remove_worker(self, worker_id: bytes, died: bool) -> None:
        worker = self.workers.pop(worker_id)
        # Requeued at the front in reverse id order, so each client's tasks keep their submission order.
        for task_id in sorted(worker.tasks, reverse=True):
            record = self.tasks[task_id]
            if record.state is TaskState.CANCELING or record.client not in self.clients:
                self._forget(record)  # cancelled, or its client left: nobody wants it run again
                self._send_to_client(record.client, TaskCancelConfirm(task_id, CancelConfirmType.CANCELED))
                continue
            if died:
                record.deaths += 1
                if record.deaths > self.config.max_task_retries:
                    self._forget(record)
                    text = (
                        f"task {task_id.hex()}: a worker died while holding it {record.deaths} times "
                        f"({record.attempt} attempts); giving up"
                    )
                    logger.error(text)
                    failure = TaskResult(task_id, TaskStatus.WORKER_DIED, text.encode(), record.attempt)
                    self._send_to_client(record.client, failure)
                    continue
            logger.info("task %s: requeued from worker %s", task_id.hex(), _peer(worker_id))
            record.move(TaskEvent.REQUEUE)
            record.worker = None
            self._enqueue(task_id, front=True)

    def _shutdown(self, reason: str) -> None:
        if self._stopped:
            return
        self._stopped = True
        for peer in list(self.workers) + list(self.clients):
            self._send(peer, SchedulerShutdown(reason))
        self._out.append(Stop(reason))
