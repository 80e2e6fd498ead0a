"""Placement: which worker gets each queued task, and when queued work moves between workers.

It shares the scheduler's tables (wired in by ``SchedulerState``) and only decides: the least
loaded worker with room that has a task's capabilities, best priority first; and, when a
worker sits idle while another holds several queued tasks, which of them to ask back
(``balancer.plan_balance``). Everything it sends goes out through the scheduler's outbox.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from scaler.protocol.codec import MAX_PAYLOAD_BYTES
from scaler.protocol.messages import ArgumentKind, BalanceRequest, Message, ObjectContent, Task
from scaler.scheduler.balancer import plan_balance
from scaler.scheduler.object_store import ObjectStore
from scaler.scheduler.task_table import TaskEvent, TaskRecord, TaskState
from scaler.utility.task_queue import TaskQueue


@dataclass(slots=True)
class WorkerRecord:
    """A connected worker: when it was last heard from, what it holds, and what it can run."""

    last_seen: float
    tasks: dict[bytes, None] = field(default_factory=dict)  # in dispatch order
    functions: set[bytes] = field(default_factory=set)
    objects: set[bytes] = field(default_factory=set)
    capabilities: dict[str, int] = field(default_factory=dict)
    balancing: bool = False  # a BalanceRequest to it awaits its answer
    kept: set[bytes] = field(default_factory=set)  # tasks it refused to hand back: running, or parked
    leaving: bool = False  # draining before a graceful stop: it finishes what it started and gets nothing new

    def can_run(self, task: Task) -> bool:
        """True if this worker has every capability the task asks for."""
        return all(name in self.capabilities for name in task.capabilities)


class Placement:
    """Assigns queued tasks to workers and plans work stealing; see the module docstring."""

    def __init__(
        self,
        per_worker_queue_size: int,
        workers: dict[bytes, WorkerRecord],
        tasks: dict[bytes, TaskRecord],
        queue: TaskQueue,
        queued_with_capabilities: set[bytes],
        functions: dict[bytes, bytes],
        objects: ObjectStore,
        send: Callable[[bytes, Message], None],
        forget: Callable[[TaskRecord], None],
        reject: Callable[[TaskRecord, str], None],
        return_credit: Callable[[TaskRecord], None],
    ) -> None:
        self.per_worker_queue_size = per_worker_queue_size
        self.workers = workers
        self.tasks = tasks
        self._queue = queue
        self._queued_with_capabilities = queued_with_capabilities
        self._functions = functions
        self.objects = objects
        self._send = send
        self._forget = forget
        self._reject = reject
        self._return_credit = return_credit

    def assign_queued(self) -> None:
        """Give queued tasks, best priority first, to the least-loaded workers that can run them."""
        limit = self.per_worker_queue_size
        heap = [
            (len(worker.tasks), order, worker_id)
            for order, (worker_id, worker) in enumerate(self.workers.items())
            if len(worker.tasks) < limit and not worker.leaving
        ]
        heapq.heapify(heap)
        orders = {worker_id: order for order, worker_id in enumerate(self.workers)}
        set_aside: list[TaskRecord] = []
        while heap and self._queue:
            task_id = self._queue.pop()
            assert task_id is not None
            record = self.tasks[task_id]
            task = record.task
            if task.function_id not in self._functions:
                self._forget(record)  # its client left and freed the function: nobody waits for it
                continue
            if task.capabilities:
                candidates = [
                    (len(worker.tasks), orders[worker_id], worker_id)
                    for worker_id, worker in self.workers.items()
                    if len(worker.tasks) < limit and not worker.leaving and worker.can_run(task)
                ]
                if not candidates:
                    set_aside.append(record)
                    continue
                worker_id = min(candidates)[2]
            else:
                load, order, worker_id = heapq.heappop(heap)
                current = len(self.workers[worker_id].tasks)
                if current != load:  # a capability task went there meanwhile: a stale entry
                    if current < limit:
                        heapq.heappush(heap, (current, order, worker_id))
                    self._queue.push(task_id, task.priority, front=True)
                    continue
            if not self._assign(record, worker_id):
                self._reject(record, "its function and object arguments together exceed the message size limit")
            load = len(self.workers[worker_id].tasks)
            if load < limit and not task.capabilities:
                heapq.heappush(heap, (load, orders[worker_id], worker_id))
        for record in reversed(set_aside):
            self._queue.push(record.task.task_id, record.task.priority, front=True)

    def _assign(self, record: TaskRecord, worker_id: bytes) -> bool:
        """Send the task to the worker with what it lacks; False (nothing changed) if that cannot fit a frame."""
        worker = self.workers[worker_id]
        task = record.task
        function = b"" if task.function_id in worker.functions else self._functions[task.function_id]
        objects: list[ObjectContent] = []
        size = len(function)
        for argument in task.args:
            size += len(argument.data)
            if argument.kind is ArgumentKind.OBJECT and argument.data not in worker.objects:
                data = self.objects.get(argument.data)
                if data is not None and all(content.object_id != argument.data for content in objects):
                    objects.append(ObjectContent(argument.data, data))
                    size += len(data)
        if size > MAX_PAYLOAD_BYTES:
            return False
        record.move(TaskEvent.ASSIGN)
        if record.holds_credit:
            self._return_credit(record)
        self._queued_with_capabilities.discard(task.task_id)
        record.unschedulable_since = None
        record.worker = worker_id
        record.attempt += 1
        record.started = False
        worker.tasks[task.task_id] = None
        if function:
            worker.functions.add(task.function_id)
        worker.objects.update(content.object_id for content in objects)
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
                objects,
            ),
        )
        return True

    def balance(self) -> None:
        """Ask busy workers to hand back queued tasks when another worker sits idle."""
        if len(self.workers) < 2 or self._queue and not self._queued_with_capabilities:
            return  # nothing to balance, or idle workers will take queued tasks anyway
        if all(worker.tasks for worker in self.workers.values()):
            return
        loads: dict[bytes, list[bytes]] = {}
        for worker_id, worker in self.workers.items():
            if worker.balancing or worker.leaving:
                continue
            worker.kept.intersection_update(worker.tasks)  # forget the refusals of tasks that left
            loads[worker_id] = [task_id for task_id in worker.tasks if self.tasks[task_id].state is TaskState.ASSIGNED]

        def can_run(worker_id: bytes, task_id: bytes) -> bool:
            # Never ask again for a task its worker refused (it runs there): asking would loop.
            record = self.tasks[task_id]
            holder = self.workers[record.worker] if record.worker is not None else None
            return (holder is None or task_id not in holder.kept) and self.workers[worker_id].can_run(record.task)

        for worker_id, task_ids in plan_balance(loads, can_run).items():
            for task_id in task_ids:
                self.tasks[task_id].move(TaskEvent.BALANCE)
            self.workers[worker_id].balancing = True
            self._send(worker_id, BalanceRequest(task_ids))
