"""The worker agent's pure core: which processor runs what, what waits, and when to beat.

``WorkerState`` takes scheduler messages, processor events and clock ticks, and returns
instructions for the shell in ``agent.py``. It never touches a socket, a pipe or a clock.

::

    scheduler ──Task / TaskCancel / ObjectInstruction / BalanceRequest / echo──▶ on_*()
    processor ──TaskResult / TaskLog / ProcessorBlocked / started / died──────▶ on_processor_*()
    clock ──────────────────────────────────────────────────────────────────────▶ tick(now)
                                     │
                                     ▼
    SendToScheduler · StartProcessor(id) · RunTask(id, task) · SendToProcessor(id, message)
    KillProcessor(id) · ExitWorker

Processors. A worker runs one task at a time, but it may own several processors. When the
processor running a task reports ``ProcessorBlocked(True)`` (the task waits on other tasks), it is
*parked*: its task stays in place and the next queued task runs on an idle processor, or on a new
one. So a parent waiting on its children never holds the worker's only slot. ``ProcessorBlocked
(False)`` makes it count as running again, even if another task runs meanwhile (a short
over-subscription). The rule is: a queued task starts only when no processor runs an unblocked
task. Up to ``max_idle_processors`` idle processors are kept for reuse; more are killed. When no
processor runs an unblocked task and none is idle, one is started, so a spare is ready after a
cancel, a crash or a block.

Caches. The agent keeps each function's bytes and each object's bytes (from ``Task.objects``) and
attaches them to the task it hands a processor only if that processor has not had them yet. An
``ObjectInstruction(DELETE)`` drops objects here and, through ``SendToProcessor``, in every
processor holding them; a busy processor gets the delete when it next becomes idle, so the agent
never writes to a pipe that nobody reads.

The state takes ownership of the ``Task`` objects given to it: it sets their ``function`` and
``objects`` fields to what the chosen processor needs, instead of copying each task.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from scaler.io.output_limits import DEFAULT_OUTPUT_LIMITS, OutputLimits, OutputThrottle
from scaler.protocol.messages import (
    ArgumentKind,
    BalanceRequest,
    BalanceResponse,
    CancelConfirmType,
    DisconnectRequest,
    Message,
    ObjectContent,
    ObjectInstruction,
    ObjectInstructionType,
    ProcessorBlocked,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskLog,
    TaskResult,
    TaskStarted,
    TaskStatus,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_IDLE_PROCESSORS = 2


@dataclass(frozen=True, slots=True)
class SendToScheduler:
    """Instruction: send a message to the scheduler."""

    message: Message


@dataclass(frozen=True, slots=True)
class StartProcessor:
    """Instruction: start a processor under this id, then call ``on_processor_started(processor_id)``."""

    processor_id: int


@dataclass(frozen=True, slots=True)
class RunTask:
    """Instruction: give this task to this (idle) processor."""

    processor_id: int
    task: Task


@dataclass(frozen=True, slots=True)
class SendToProcessor:
    """Instruction: send a message (an ``ObjectInstruction``) to this idle processor."""

    processor_id: int
    message: Message


@dataclass(frozen=True, slots=True)
class KillProcessor:
    """Instruction: kill this processor; the state has already forgotten it."""

    processor_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class ExitWorker:
    """Instruction: the worker must exit."""

    reason: str


WorkerInstruction = SendToScheduler | StartProcessor | RunTask | SendToProcessor | KillProcessor | ExitWorker


@dataclass(slots=True)
class _Processor:
    """What the agent knows of one processor."""

    processor_id: int
    ready: bool = False  # started; False while it boots
    task: Task | None = None  # the task it runs (parked or not)
    started_at: float = 0.0
    timeout: float = 0.0  # seconds the task may run; 0 means no limit
    blocked: bool = False  # its task waits on other tasks
    functions: set[bytes] = field(default_factory=set)
    objects: set[bytes] = field(default_factory=set)
    stale_objects: list[bytes] = field(default_factory=list)  # deleted here; to delete there when idle
    stale_functions: list[bytes] = field(default_factory=list)  # likewise, for functions


class WorkerState:
    """All of one worker agent's bookkeeping; see the module docstring."""

    def __init__(
        self,
        now: float,
        heartbeat_interval_seconds: float,
        death_timeout_seconds: float,
        task_timeout_seconds: float = 0.0,
        capabilities: dict[str, int] | None = None,
        max_idle_processors: int = DEFAULT_MAX_IDLE_PROCESSORS,
        output_limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
    ) -> None:
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.death_timeout_seconds = death_timeout_seconds
        self.task_timeout_seconds = task_timeout_seconds
        self.capabilities: dict[str, int] = dict(capabilities or {})
        self.max_idle_processors = max(1, max_idle_processors)
        # Queued tasks by priority (higher first), each in arrival order; priority 0 always has a queue.
        self._queues: dict[int, OrderedDict[bytes, Task]] = {0: OrderedDict()}
        self._queued = 0  # tasks in all queues
        self._processors: dict[int, _Processor] = {}
        self._idle: list[int] = []  # idle processor ids, most recently idle last
        self._starting: int | None = None  # at most one processor boots at a time
        self._running: dict[bytes, int] = {}  # task id -> id of the processor running it
        self._unblocked = 0  # processors running a task that is not blocked
        self._next_processor_id = 1
        self._functions: dict[bytes, bytes] = {}
        self._objects: dict[bytes, bytes] = {}
        self._last_scheduler_contact = now
        self._last_heartbeat = float("-inf")
        self._scheduler_id: bytes | None = None
        self._out: list[WorkerInstruction] = []
        self._done = 0
        self._drain_deadline: float | None = None  # set by drain(): when the running tasks are cut short
        # All processors' output together: what is over the worker's budget is dropped and counted here.
        self._output = OutputThrottle(output_limits.worker_bytes_per_second, output_limits)

    def start(self, now: float) -> list[WorkerInstruction]:
        """The agent is up: start the first processor."""
        self._schedule(now)
        return self._take_output()

    def drain(self, now: float, grace_seconds: float) -> list[WorkerInstruction]:
        """Stop gracefully: hand back the queued tasks, and let the running ones finish within the grace period.

        The scheduler sends no more tasks and requeues every task that has not started here. The
        worker exits (``ExitWorker``) once its started tasks have ended and their results are out;
        past ``grace_seconds`` it exits anyway, and the tasks still running are requeued elsewhere.
        """
        if self._drain_deadline is not None:
            return self._take_output()
        self._drain_deadline = now + grace_seconds
        logger.info(
            "worker draining: %d queued tasks handed back, %d running get %gs to finish",
            self._queued,
            len(self._running),
            grace_seconds,
        )
        self._queues = {0: OrderedDict()}
        self._queued = 0
        self._out.append(SendToScheduler(DisconnectRequest(drain=True)))
        self._schedule(now)
        return self._take_output()

    def draining(self) -> bool:
        """True once ``drain`` was called."""
        return self._drain_deadline is not None

    # -- events from the scheduler -----------------------------------------------------------

    def on_task(self, task: Task, now: float) -> list[WorkerInstruction]:
        """Queue a task from the scheduler and run it if no processor runs an unblocked task."""
        self._last_scheduler_contact = now
        if self._drain_deadline is not None:  # sent before the scheduler read our DisconnectRequest
            self._out.append(SendToScheduler(BalanceResponse([task.task_id])))
            return self._take_output()
        if task.function:
            self._functions[task.function_id] = task.function
        if task.objects:
            for content in task.objects:
                self._objects[content.object_id] = content.data
        task_id = task.task_id
        queues = self._queues
        queue = queues.get(task.priority)
        if queue is None:
            queue = queues[task.priority] = OrderedDict()
        if task_id in queue:
            self._queued -= 1  # sent again: it keeps its place
        elif len(queues) > 1 and self._dequeue(task_id) is not None:
            pass  # sent again with another priority: it moves to that priority's queue
        elif task_id in self._running:
            # A new attempt of a task whose old attempt still runs here: the scheduler now wants only the new one.
            self._kill(self._processors[self._running[task_id]], f"task {task_id.hex()} was sent again")
        queue[task_id] = task
        self._queued += 1
        self._schedule(now)
        return self._take_output()

    def on_task_cancel(self, cancel: TaskCancel, now: float) -> list[WorkerInstruction]:
        """Drop a queued task, or kill the processor running it (parked or not); confirm either way."""
        self._last_scheduler_contact = now
        task_id = cancel.task_id
        if self._dequeue(task_id) is not None:
            confirm = CancelConfirmType.CANCELED
        elif task_id in self._running:
            logger.info("task %s: cancelled while running; killing its processor", task_id.hex())
            self._kill(self._processors[self._running[task_id]], f"task {task_id.hex()} was cancelled")
            self._schedule(now)
            confirm = CancelConfirmType.CANCELED
        else:
            confirm = CancelConfirmType.CANCEL_NOT_FOUND  # its result already left
        self._out.append(SendToScheduler(TaskCancelConfirm(task_id, confirm)))
        return self._take_output()

    def on_object_instruction(self, instruction: ObjectInstruction, now: float) -> list[WorkerInstruction]:
        """DELETE drops objects here and in the processors holding them; CREATE caches them.

        DELETE_FUNCTIONS drops functions no client uses any more, here and in the processors.
        """
        self._last_scheduler_contact = now
        kind = instruction.kind
        if kind in (ObjectInstructionType.DELETE, ObjectInstructionType.DELETE_FUNCTIONS):
            functions = kind == ObjectInstructionType.DELETE_FUNCTIONS
            ids = instruction.object_ids
            cache = self._functions if functions else self._objects
            for dropped_id in ids:
                cache.pop(dropped_id, None)
            for processor in self._processors.values():
                holds = processor.functions if functions else processor.objects
                held = [dropped_id for dropped_id in ids if dropped_id in holds]
                if not held:
                    continue
                holds.difference_update(held)
                stale = processor.stale_functions if functions else processor.stale_objects
                if processor.task is None:
                    self._out.append(SendToProcessor(processor.processor_id, _delete(held, functions)))
                else:
                    stale += held
        elif kind == ObjectInstructionType.CREATE:
            for object_id, payload in zip(instruction.object_ids, instruction.payloads, strict=False):
                self._objects[object_id] = payload
        else:
            logger.warning("worker ignored an ObjectInstruction of kind %s", instruction.kind.name)
        return self._take_output()

    def on_balance_request(self, request: BalanceRequest, now: float) -> list[WorkerInstruction]:
        """Hand back those of the asked tasks that are still queued (never a running or parked one)."""
        self._last_scheduler_contact = now
        removed = [task_id for task_id in request.task_ids if self._dequeue(task_id) is not None]
        if removed:
            logger.debug("worker handed back %d of %d tasks for balancing", len(removed), len(request.task_ids))
        self._out.append(SendToScheduler(BalanceResponse(removed)))
        return self._take_output()

    def on_scheduler_contact(self, now: float) -> list[WorkerInstruction]:
        """Any message from the scheduler proves it is alive."""
        self._last_scheduler_contact = now
        return self._take_output()

    def on_heartbeat_echo(self, echo: WorkerHeartbeatEcho, now: float) -> list[WorkerInstruction]:
        """Note the scheduler is alive; if it restarted, drop everything the old one gave us."""
        self._last_scheduler_contact = now
        if self._scheduler_id is None:
            self._scheduler_id = echo.scheduler_id
        elif echo.scheduler_id != self._scheduler_id:
            self._scheduler_id = echo.scheduler_id
            logger.warning("the scheduler restarted; dropping %d tasks it no longer knows", self.queued_count())
            self._queues = {0: OrderedDict()}
            self._queued = 0
            # The new scheduler sends functions and objects afresh: start from clean processors too.
            self._functions.clear()
            self._objects.clear()
            for processor in list(self._processors.values()):
                if processor.ready:
                    self._kill(processor, "the scheduler restarted")
            self._schedule(now)
        return self._take_output()

    # -- events from the processors ----------------------------------------------------------

    def on_processor_started(self, processor_id: int, now: float) -> list[WorkerInstruction]:
        """A fresh processor is ready; it holds no function or object yet."""
        processor = self._processors.get(processor_id)
        if processor is None or processor.ready:
            logger.warning("processor %d: started but not expected; killing it", processor_id)
            self._out.append(KillProcessor(processor_id, "not expected"))
            return self._take_output()
        processor.ready = True
        self._starting = None
        self._idle.append(processor_id)
        self._schedule(now)
        return self._take_output()

    def on_processor_result(self, processor_id: int, result: TaskResult, now: float) -> list[WorkerInstruction]:
        """A processor finished its task: report it, and run the next task if the worker is free."""
        processor = self._processors.get(processor_id)
        task = None if processor is None else processor.task
        if task is None or task.task_id != result.task_id:
            logger.warning("task %s: processor %d was not running it", result.task_id.hex(), processor_id)
            return self._take_output()
        assert processor is not None
        processor.task = None
        del self._running[result.task_id]
        if processor.blocked:
            processor.blocked = False
        else:
            self._unblocked -= 1
        self._done += 1
        self._report(result)
        if processor.stale_objects:
            self._out.append(SendToProcessor(processor_id, _delete(processor.stale_objects)))
            processor.stale_objects = []
        if processor.stale_functions:
            self._out.append(SendToProcessor(processor_id, _delete(processor.stale_functions, functions=True)))
            processor.stale_functions = []
        self._idle.append(processor_id)
        self._schedule(now)
        return self._take_output()

    def on_processor_log(self, processor_id: int, log: TaskLog, now: float) -> list[WorkerInstruction]:
        """Forward what a task wrote, if that processor still runs that task and the worker's budget allows."""
        processor = self._processors.get(processor_id)
        if processor is not None and processor.task is not None and processor.task.task_id == log.task_id:
            admitted = self._output.admit(log, now)
            if admitted is not None:
                self._out.append(SendToScheduler(admitted))
        return self._take_output()

    def on_processor_blocked(self, processor_id: int, notice: ProcessorBlocked, now: float) -> list[WorkerInstruction]:
        """The processor's task waits on other tasks (park it, run the next task) or goes on."""
        blocked = notice.blocked
        processor = self._processors.get(processor_id)
        if processor is None or processor.task is None or processor.blocked == blocked:
            return self._take_output()
        processor.blocked = blocked
        if blocked:
            logger.debug("task %s: blocked; parking processor %d", processor.task.task_id.hex(), processor_id)
            self._unblocked -= 1
            self._schedule(now)
        else:
            logger.debug("task %s: unblocked on processor %d", processor.task.task_id.hex(), processor_id)
            self._unblocked += 1
        return self._take_output()

    def on_processor_died(self, processor_id: int, now: float) -> list[WorkerInstruction]:
        """A processor died on its own: fail only its own task with PROCESSOR_DIED."""
        processor = self._processors.get(processor_id)
        if processor is None:
            return self._take_output()  # killed by us: already forgotten
        task = processor.task
        if task is not None:
            text = f"the processor running task {task.task_id.hex()} died (crash, os._exit, segfault or OOM kill)"
            logger.error(text)
            self._report(TaskResult(task.task_id, TaskStatus.PROCESSOR_DIED, text.encode(), task.attempt))
        self._forget(processor)
        self._schedule(now)
        return self._take_output()

    # -- time ---------------------------------------------------------------------------------

    def tick(self, now: float, cpu_percent: float = 0.0, rss_bytes: int = 0) -> list[WorkerInstruction]:
        """Send heartbeats, enforce task timeouts, and give up on a silent scheduler."""
        if now - self._last_scheduler_contact > self.death_timeout_seconds:
            self._out.append(ExitWorker(f"no word from the scheduler for {self.death_timeout_seconds:g}s"))
            return self._take_output()
        if self._drain_deadline is not None and now >= self._drain_deadline:
            text = f"the grace period ended with {len(self._running)} tasks still running; they will run elsewhere"
            self._out.append(ExitWorker(text))
            return self._take_output()
        if self._running:
            self._enforce_timeouts(now)
        if now - self._last_heartbeat >= self.heartbeat_interval_seconds:
            self._last_heartbeat = now
            heartbeat = WorkerHeartbeat(now, self.queued_count(), cpu_percent, rss_bytes, self.capabilities)
            self._out.append(SendToScheduler(heartbeat))
        return self._take_output()

    # -- inspection ---------------------------------------------------------------------------

    def queued_count(self) -> int:
        """Tasks held by this worker, the running and parked ones included."""
        return self._queued + len(self._running)

    def running(self) -> dict[bytes, int]:
        """Task id -> id of the processor running it (parked ones included)."""
        return dict(self._running)

    def blocked_task_ids(self) -> list[bytes]:
        """Ids of the tasks whose processor is parked."""
        return [p.task.task_id for p in self._processors.values() if p.blocked and p.task is not None]

    def queued_task_ids(self) -> list[bytes]:
        """Queued task ids in the order they would run."""
        return [task_id for priority in sorted(self._queues, reverse=True) for task_id in self._queues[priority]]

    def processor_ids(self) -> list[int]:
        """Ids of every processor alive or starting."""
        return list(self._processors)

    def idle_processor_ids(self) -> list[int]:
        """Ids of the idle processors, most recently idle last."""
        return list(self._idle)

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring and tests."""
        return {
            "queued": self._queued,
            "running": len(self._running),
            "blocked": len(self._running) - self._unblocked,
            "done": self._done,
            "processors": len(self._processors),
            "idle_processors": len(self._idle),
            "functions": len(self._functions),
            "objects": len(self._objects),
            **self._output.statistics(),
        }

    def validate(self) -> None:
        """Check every invariant; raise AssertionError on the first broken one (for tests)."""
        queued = {task_id for queue in self._queues.values() for task_id in queue}
        assert len(queued) == self._queued == sum(map(len, self._queues.values())), "the queued count is right"
        assert all(queue for priority, queue in self._queues.items() if priority != 0), "no empty extra queue"
        assert not queued & set(self._running), "no task is both queued and running"
        assert len(self._idle) == len(set(self._idle)), "no processor is idle twice"
        assert len(self._idle) <= self.max_idle_processors, "the idle pool is trimmed"
        unblocked = 0
        for processor_id, processor in self._processors.items():
            assert processor.processor_id == processor_id
            if not processor.ready:
                assert self._starting == processor_id, "only the starting processor is not ready"
                assert processor.task is None and not processor.functions and not processor.objects
            if processor.task is None:
                assert not processor.blocked and not processor.stale_objects and not processor.stale_functions
                assert processor_id in self._idle or not processor.ready, "a ready processor without a task is idle"
            else:
                assert self._running.get(processor.task.task_id) == processor_id
                assert processor_id not in self._idle
                unblocked += not processor.blocked
            assert processor.functions <= set(self._functions), "processors hold only functions the agent holds"
            assert processor.objects <= set(self._objects), "processors hold only objects the agent holds"
        assert len(self._running) == sum(p.task is not None for p in self._processors.values())
        assert set(self._idle) <= set(self._processors)
        assert self._output.held_task_ids() <= set(self._running), "drop counts are held only for running tasks"
        assert unblocked == self._unblocked, "the unblocked count is right"
        if self._starting is not None:
            assert self._starting in self._processors
        if not self._unblocked and self._next_processor_id > 1 and self._drain_deadline is None:  # once started
            assert not (self._queued and self._idle), "a free worker with an idle processor leaves no task queued"
            assert self._idle or self._starting is not None, "a free worker always has a processor on its way"

    # -- internals ----------------------------------------------------------------------------

    def _report(self, result: TaskResult) -> None:
        """Send a task's result, after the notices of its output that this worker dropped."""
        self._out.extend(SendToScheduler(notice) for notice in self._output.finish(result.task_id))
        self._out.append(SendToScheduler(result))

    def _take_output(self) -> list[WorkerInstruction]:
        out, self._out = self._out, []
        return out

    def _dequeue(self, task_id: bytes) -> Task | None:
        for priority, queue in self._queues.items():  # one queue per priority in use: few
            task = queue.pop(task_id, None)
            if task is not None:
                self._queued -= 1
                if not queue and priority != 0:
                    del self._queues[priority]
                return task
        return None

    def _pop_next(self) -> Task:
        queues = self._queues
        if len(queues) == 1:
            priority = 0
            queue = queues[0]
        else:
            priority = max(priority for priority, queue in queues.items() if queue)
            queue = queues[priority]
        _, task = queue.popitem(last=False)
        self._queued -= 1
        if not queue and priority != 0:
            del queues[priority]
        return task

    def _schedule(self, now: float) -> None:
        """Run the next task if no processor runs an unblocked one; keep a processor on its way."""
        if self._drain_deadline is not None:
            if not self._running:  # drained: what the scheduler sent meanwhile was handed back
                self._out.append(ExitWorker("drained: every started task has ended"))
            return
        if not self._unblocked:
            if self._idle:
                if self._queued:
                    self._run(self._processors[self._idle.pop()], self._pop_next(), now)
            elif self._starting is None:
                processor_id = self._next_processor_id
                self._next_processor_id += 1
                self._processors[processor_id] = _Processor(processor_id)
                self._starting = processor_id
                self._out.append(StartProcessor(processor_id))
        while len(self._idle) > self.max_idle_processors:
            self._kill(self._processors[self._idle[0]], "more idle processors than needed")

    def _run(self, processor: _Processor, task: Task, now: float) -> None:
        function_id = task.function_id
        if function_id in processor.functions:
            task.function = b""
        else:
            task.function = self._functions.get(function_id, b"")
            processor.functions.add(function_id)
        if self._objects:
            task.objects = self._objects_for(processor, task)
        elif task.objects:
            task.objects = []
        processor.task = task
        processor.started_at = now
        processor.timeout = task.timeout_seconds if task.timeout_seconds > 0 else self.task_timeout_seconds
        self._running[task.task_id] = processor.processor_id
        self._unblocked += 1
        # Before the task itself, so the scheduler learns it started even if the task kills this worker.
        self._out.append(SendToScheduler(TaskStarted(task.task_id, task.attempt)))
        self._out.append(RunTask(processor.processor_id, task))

    def _objects_for(self, processor: _Processor, task: Task) -> list[ObjectContent]:
        """The bytes of the task's OBJECT arguments that this processor does not hold yet."""
        attached = []
        for argument in task.args:
            if argument.kind == ArgumentKind.OBJECT:
                object_id = argument.data
                if object_id not in processor.objects:
                    data = self._objects.get(object_id)
                    if data is None:
                        continue  # the processor reports the missing object as the task's failure
                    processor.objects.add(object_id)
                    attached.append(ObjectContent(object_id, data))
        return attached

    def _enforce_timeouts(self, now: float) -> None:
        expired = [
            processor
            for processor in self._processors.values()
            if processor.task is not None and processor.timeout and now - processor.started_at > processor.timeout
        ]
        for processor in expired:
            task = processor.task
            assert task is not None
            text = f"task {task.task_id.hex()} ran past its timeout of {processor.timeout:g}s and was stopped"
            logger.warning(text)
            self._report(TaskResult(task.task_id, TaskStatus.TIMEOUT, text.encode(), task.attempt))
            self._kill(processor, "task timeout")
        if expired:
            self._schedule(now)

    def _kill(self, processor: _Processor, reason: str) -> None:
        assert processor.ready, "a processor is never killed while it starts"
        self._forget(processor)
        self._out.append(KillProcessor(processor.processor_id, reason))

    def _forget(self, processor: _Processor) -> None:
        processor_id = processor.processor_id
        del self._processors[processor_id]
        if processor.task is not None:
            del self._running[processor.task.task_id]
            self._output.finish(processor.task.task_id)  # killed: no result goes out, nor do its notices
            if not processor.blocked:
                self._unblocked -= 1
        elif processor_id in self._idle:
            self._idle.remove(processor_id)
        if self._starting == processor_id:
            self._starting = None


def _delete(ids: list[bytes], functions: bool = False) -> ObjectInstruction:
    kind = ObjectInstructionType.DELETE_FUNCTIONS if functions else ObjectInstructionType.DELETE
    return ObjectInstruction(kind, list(ids), [])
