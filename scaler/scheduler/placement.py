"""Placement: which worker gets each queued task, and which queued work moves between workers.

Both are pure planners. ``plan_assignments`` takes the queued task ids, best first, and returns
one step per id it took: ``Assign`` it to the least loaded worker with room that has the task's
capabilities; ``Reject`` it if its function and objects cannot fit one message; ``SetAside`` a
task that no worker with room can run (it goes back to the front of the queue); ``Drop`` a task
whose function is gone (its client left, so nobody waits for it). It reads the workers and
records and changes nothing: the scheduler applies the steps in order. ``plan_steal`` says which
busy workers to ask for which queued tasks when another worker sits idle
(``balancer.plan_balance``); the scheduler sends the ``BalanceRequest``s.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from scaler.protocol.codec import MAX_PAYLOAD_BYTES
from scaler.protocol.messages import ArgumentKind, ObjectContent, Task
from scaler.scheduler.balancer import plan_balance
from scaler.scheduler.functions import FunctionRegistry
from scaler.scheduler.object_store import ObjectStore
from scaler.scheduler.task_table import TaskRecord, TaskState
from scaler.scheduler.workers import WorkerRecord


@dataclass(frozen=True, slots=True)
class Assign:
    """Send the task to the worker, with what it lacks: the function's bytes (or ``b""``) and objects."""

    task_id: bytes
    worker_id: bytes
    function: bytes
    objects: list[ObjectContent]


@dataclass(frozen=True, slots=True)
class Reject:
    """End the task as one the scheduler cannot run, for ``reason``."""

    task_id: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class SetAside:
    """No worker with room can run the task now: back to the front of the queue, in plan order."""

    task_id: bytes


@dataclass(frozen=True, slots=True)
class Drop:
    """The task's function is gone with its client: end it without a word."""

    task_id: bytes


Step = Assign | Reject | SetAside | Drop

_NOTHING: AbstractSet[bytes] = frozenset()
TOO_BIG = "its function and object arguments together exceed the message size limit"


def lacking(
    task: Task,
    worker: WorkerRecord,
    functions: FunctionRegistry,
    objects: ObjectStore,
    planned_functions: AbstractSet[bytes] = _NOTHING,
    planned_objects: AbstractSet[bytes] = _NOTHING,
) -> tuple[bytes, list[ObjectContent], int]:
    """What the worker lacks of what the task needs, and the size of the message that carries it.

    Returns the function's bytes (``b""`` if the worker has them), each stored object argument it
    lacks (once), and the bytes of those plus the arguments. ``planned_*``: what an earlier step of
    the same plan sends it.
    """
    function_id = task.function_id
    has_function = function_id in worker.functions or function_id in planned_functions
    function = b"" if has_function else functions.get(function_id)
    contents: list[ObjectContent] = []
    size = len(function)
    for argument in task.args:
        object_id = argument.data
        size += len(object_id)
        if argument.kind is not ArgumentKind.OBJECT or object_id in worker.objects or object_id in planned_objects:
            continue
        data = objects.get(object_id)
        if data is not None and all(content.object_id != object_id for content in contents):
            contents.append(ObjectContent(object_id, data))
            size += len(data)
    return function, contents, size


def plan_assignments(
    queued: Iterator[bytes],
    workers: Mapping[bytes, WorkerRecord],
    tasks: Mapping[bytes, TaskRecord],
    functions: FunctionRegistry,
    objects: ObjectStore,
    per_worker_queue_size: int,
) -> list[Step]:
    """Plan where the queued tasks go; see the module docstring.

    ``queued`` yields task ids best first; it is read only while some worker has room, and every id
    read gets a step.
    """
    limit = per_worker_queue_size
    loads = {
        worker_id: len(worker.tasks)
        for worker_id, worker in workers.items()
        if not worker.leaving and not worker.retiring
    }
    orders = {worker_id: order for order, worker_id in enumerate(workers)}
    heap = [(load, orders[worker_id], worker_id) for worker_id, load in loads.items() if load < limit]
    heapq.heapify(heap)
    planned: dict[bytes, tuple[set[bytes], set[bytes]]] = {}  # worker -> functions, objects sent by this plan
    steps: list[Step] = []
    while heap:
        task_id = next(queued, None)
        if task_id is None:
            break
        task = tasks[task_id].task
        if task.function_id not in functions:
            steps.append(Drop(task_id))
            continue
        chosen: bytes | None = None
        if task.capabilities:
            candidates = [
                (load, orders[worker_id], worker_id)
                for worker_id, load in loads.items()
                if load < limit and workers[worker_id].can_run(task)
            ]
            if not candidates:
                steps.append(SetAside(task_id))
                continue
            chosen = min(candidates)[2]
        else:
            while heap:
                load, order, worker_id = heapq.heappop(heap)
                if loads[worker_id] == load:
                    chosen = worker_id
                    break
                if loads[worker_id] < limit:  # a capability task went there meanwhile: a stale entry
                    heapq.heappush(heap, (loads[worker_id], order, worker_id))
            if chosen is None:
                steps.append(SetAside(task_id))
                break
        sent = planned.get(chosen)
        if sent is None:
            sent = planned[chosen] = (set(), set())
        sent_functions, sent_objects = sent
        function, contents, size = lacking(task, workers[chosen], functions, objects, sent_functions, sent_objects)
        if size > MAX_PAYLOAD_BYTES:
            steps.append(Reject(task_id, TOO_BIG))
        else:
            steps.append(Assign(task_id, chosen, function, contents))
            loads[chosen] += 1
            if function:
                sent_functions.add(task.function_id)
            if contents:
                sent_objects.update(content.object_id for content in contents)
        if loads[chosen] < limit and not task.capabilities:
            heapq.heappush(heap, (loads[chosen], orders[chosen], chosen))
    return steps


def plan_steal(
    workers: Mapping[bytes, WorkerRecord], tasks: Mapping[bytes, TaskRecord], idle_workers_fed: bool
) -> dict[bytes, list[bytes]]:
    """Return ``{busy worker: task ids to ask back}`` when some worker holds nothing while others hold several.

    ``idle_workers_fed``: the queue holds tasks any worker can run, so idle workers get those anyway.
    A worker already asked, or leaving, is left alone; a task its worker refused before is never
    asked for again (asking would loop).
    """
    if len(workers) < 2 or idle_workers_fed:
        return {}
    if all(worker.tasks for worker in workers.values()):
        return {}
    loads: dict[bytes, list[bytes]] = {}
    for worker_id, worker in workers.items():
        if not worker.balancing and not worker.leaving and not worker.retiring:
            loads[worker_id] = [task_id for task_id in worker.tasks if tasks[task_id].state is TaskState.ASSIGNED]

    def can_run(worker_id: bytes, task_id: bytes) -> bool:
        record = tasks[task_id]
        holder = workers.get(record.worker) if record.worker is not None else None
        return (holder is None or task_id not in holder.kept) and workers[worker_id].can_run(record.task)

    return plan_balance(loads, can_run)
