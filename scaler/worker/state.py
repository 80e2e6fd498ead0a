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
    KillProcessor(id) · ExitWorker                                   (instructions.py)

Each entry point builds its own list of instructions and returns it; nothing is kept between
calls, so a call that raises part-way leaks nothing into the next one. The agent then stops
(see docs/architecture.md, "Worker processors").

Processors. Each processor's lifecycle (starting, idle, running, parked) is one state in
``processor_table.py``, changed only through its transition table. A worker runs one task at a
time, but it may own several processors. When the processor running a task reports
``ProcessorBlocked(True)`` (the task waits on other tasks), it is *parked*: its task stays in
place and the next queued task runs on an idle processor, or on a new one. So a parent waiting
on its children never holds the worker's only slot. ``ProcessorBlocked(False)`` makes it
running again, even if another task runs meanwhile (a short over-subscription). The rule is: a
queued task starts only when no processor is running (parked ones do not count). Up to
``max_idle_processors`` idle processors are kept for reuse; more are killed. When no processor
is running and none is idle, one is started, so a spare is ready after a cancel, a crash or a
block.

Queue. Queued tasks wait in a ``TaskQueue`` (``scaler/utility/task_queue.py``, the scheduler's
own): highest priority first, then oldest.

Caches. Function and object bytes, and which processor holds which, are kept by ``WorkerCaches``
(``caches.py``): each crosses each pipe once.

The state takes ownership of the ``Task`` objects given to it: it sets their ``function`` and
``objects`` fields to what the chosen processor needs, instead of copying each task.
"""

from __future__ import annotations

import logging

from scaler.io.output_limits import DEFAULT_OUTPUT_LIMITS, OutputLimits, OutputThrottle
from scaler.protocol.messages import (
    BalanceRequest,
    BalanceResponse,
    CancelConfirmType,
    DisconnectRequest,
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
from scaler.utility.task_queue import TaskQueue
from scaler.worker.caches import WorkerCaches
from scaler.worker.instructions import (
    ExitWorker,
    KillProcessor,
    RunTask,
    SendToProcessor,
    SendToScheduler,
    StartProcessor,
    WorkerInstruction,
)
from scaler.worker.processor_table import (
    ProcessorEvent,
    ProcessorRecord,
    ProcessorState,
    ProcessorTable,
    WorkerInvariantError,
    check,
)

__all__ = [
    "DEFAULT_MAX_IDLE_PROCESSORS",
    "ExitWorker",
    "KillProcessor",
    "RunTask",
    "SendToProcessor",
    "SendToScheduler",
    "StartProcessor",
    "WorkerInstruction",
    "WorkerInvariantError",
    "WorkerState",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_IDLE_PROCESSORS = 2

_Out = list[WorkerInstruction]
_RUN, _FINISH = ProcessorEvent.RUN, ProcessorEvent.FINISH  # every task makes both: read the enum once


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
        self._queue = TaskQueue()  # ids of the queued tasks, in the order they run
        self._queued: dict[bytes, Task] = {}  # the queued tasks by id
        self._processors = ProcessorTable()
        self._caches = WorkerCaches()
        self._last_scheduler_contact = now
        self._last_heartbeat = float("-inf")
        # The first heartbeat, which makes the scheduler count this worker, waits for the first
        # processor (or one heartbeat interval at most; ``start`` sets it): a task sent earlier
        # would wait here while another worker that is ready sits idle.
        self._announce_at = float("-inf")
        self._scheduler_id: bytes | None = None
        self._done = 0
        self._drain_deadline: float | None = None  # set by drain(): when the running tasks are cut short
        # All processors' output together: what is over the worker's budget is dropped and counted here.
        self._output = OutputThrottle(output_limits.worker_bytes_per_second, output_limits)

    def start(self, now: float) -> list[WorkerInstruction]:
        """The agent is up: start the first processor; the first heartbeat waits for it."""
        out: _Out = []
        self._announce_at = now + self.heartbeat_interval_seconds
        self._schedule(now, out)
        return out

    def drain(self, now: float, grace_seconds: float) -> list[WorkerInstruction]:
        """Stop gracefully: hand back the queued tasks, and let the running ones finish within the grace period.

        The scheduler sends no more tasks and requeues every task that has not started here. The
        worker exits (``ExitWorker``) once its started tasks have ended and their results are out;
        past ``grace_seconds`` it exits anyway, and the tasks still running are requeued elsewhere.
        """
        out: _Out = []
        if self._drain_deadline is not None:
            return out
        self._drain_deadline = now + grace_seconds
        logger.info(
            "worker draining: %d queued tasks handed back, %d running get %gs to finish",
            len(self._queued),
            len(self._processors.by_task),
            grace_seconds,
        )
        self._clear_queue()
        out.append(SendToScheduler(DisconnectRequest(drain=True)))
        self._schedule(now, out)
        return out

    def draining(self) -> bool:
        """True once ``drain`` was called."""
        return self._drain_deadline is not None

    # -- events from the scheduler -----------------------------------------------------------

    def on_task(self, task: Task, now: float) -> list[WorkerInstruction]:
        """Queue a task from the scheduler and run it if no processor is running."""
        self._last_scheduler_contact = now
        out: _Out = []
        if self._drain_deadline is not None:  # sent before the scheduler read our DisconnectRequest
            out.append(SendToScheduler(BalanceResponse([task.task_id])))
            return out
        if task.function or task.objects:
            self._caches.keep(task)
        task_id = task.task_id
        queued = self._queued.get(task_id)
        if queued is None:
            if task_id in self._processors.by_task:
                # A new attempt of a task whose old attempt still runs here: the scheduler now wants only the new one.
                running = self._processors.running_task(task_id)
                assert running is not None  # by_task names it
                self._kill(running, f"task {task_id.hex()} was sent again", out)
            self._queue.push(task_id, task.priority)
        elif queued.priority != task.priority:
            self._queue.push(task_id, task.priority)  # sent again with another priority: it moves there
        # (sent again with the same priority: it keeps its place)
        self._queued[task_id] = task
        self._schedule(now, out)
        return out

    def on_task_cancel(self, cancel: TaskCancel, now: float) -> list[WorkerInstruction]:
        """Drop a queued task, or kill the processor running it (parked or not); confirm either way."""
        self._last_scheduler_contact = now
        out: _Out = []
        task_id = cancel.task_id
        running = None
        if self._dequeue(task_id) is not None:
            confirm = CancelConfirmType.CANCELED
        elif (running := self._processors.running_task(task_id)) is not None:
            logger.info("task %s: cancelled while running; killing its processor", task_id.hex())
            self._kill(running, f"task {task_id.hex()} was cancelled", out)
            self._schedule(now, out)
            confirm = CancelConfirmType.CANCELED
        else:
            confirm = CancelConfirmType.CANCEL_NOT_FOUND  # its result already left
        out.append(SendToScheduler(TaskCancelConfirm(task_id, confirm)))
        return out

    def on_object_instruction(self, instruction: ObjectInstruction, now: float) -> list[WorkerInstruction]:
        """DELETE drops objects here and in the processors holding them; CREATE caches them.

        DELETE_FUNCTIONS drops functions no client uses any more, here and in the processors.
        """
        self._last_scheduler_contact = now
        out: _Out = []
        kind = instruction.kind
        if kind in (ObjectInstructionType.DELETE, ObjectInstructionType.DELETE_FUNCTIONS):
            functions = kind == ObjectInstructionType.DELETE_FUNCTIONS
            for processor_id, delete in self._caches.drop(instruction.object_ids, functions, list(self._processors)):
                out.append(SendToProcessor(processor_id, delete))
        elif kind == ObjectInstructionType.CREATE:
            self._caches.create(instruction.object_ids, instruction.payloads)
        else:
            logger.warning("worker ignored an ObjectInstruction of kind %s", instruction.kind.name)
        return out

    def on_balance_request(self, request: BalanceRequest, now: float) -> list[WorkerInstruction]:
        """Hand back those of the asked tasks that are still queued (never a running or parked one)."""
        self._last_scheduler_contact = now
        removed = [task_id for task_id in request.task_ids if self._dequeue(task_id) is not None]
        if removed:
            logger.debug("worker handed back %d of %d tasks for balancing", len(removed), len(request.task_ids))
        return [SendToScheduler(BalanceResponse(removed))]

    def on_scheduler_contact(self, now: float) -> list[WorkerInstruction]:
        """Any message from the scheduler proves it is alive."""
        self._last_scheduler_contact = now
        return []

    def on_heartbeat_echo(self, echo: WorkerHeartbeatEcho, now: float) -> list[WorkerInstruction]:
        """Note the scheduler is alive; if it restarted, drop everything the old one gave us."""
        self._last_scheduler_contact = now
        out: _Out = []
        if self._scheduler_id is None:
            self._scheduler_id = echo.scheduler_id
        elif echo.scheduler_id != self._scheduler_id:
            self._scheduler_id = echo.scheduler_id
            logger.warning("the scheduler restarted; dropping %d tasks it no longer knows", self.held_count())
            self._clear_queue()
            # The new scheduler sends functions and objects afresh: start from clean processors too.
            self._caches.clear()
            for processor in self._processors:
                if processor.state is not ProcessorState.STARTING:
                    self._kill(processor, "the scheduler restarted", out)
            self._schedule(now, out)
        return out

    # -- events from the processors ----------------------------------------------------------

    def on_processor_started(self, processor_id: int, now: float) -> list[WorkerInstruction]:
        """A fresh processor is ready; it holds no function or object yet."""
        out: _Out = []
        processor = self._processors.get(processor_id)
        if processor is None or processor.state is not ProcessorState.STARTING:
            logger.warning("processor %d: started but not expected; killing it", processor_id)
            out.append(KillProcessor(processor_id, "not expected"))
            return out
        self._processors.move(processor, ProcessorEvent.STARTED)
        self._announce_at = min(self._announce_at, now)
        self._schedule(now, out)
        return out

    def on_processor_result(self, processor_id: int, result: TaskResult, now: float) -> list[WorkerInstruction]:
        """A processor finished its task: report it, and run the next task if the worker is free."""
        out: _Out = []
        processor = self._processors.get(processor_id)
        task = None if processor is None else processor.task
        if processor is None or task is None or task.task_id != result.task_id:
            logger.warning("task %s: processor %d was not running it", result.task_id.hex(), processor_id)
            return out
        self._processors.move(processor, _FINISH)
        self._done += 1
        self._report(result, out)
        if processor.stale_objects or processor.stale_functions:
            for delete in self._caches.stale_deletes(processor):
                out.append(SendToProcessor(processor_id, delete))
        self._schedule(now, out)
        return out

    def on_processor_log(self, processor_id: int, log: TaskLog, now: float) -> list[WorkerInstruction]:
        """Forward what a task wrote, if that processor still runs that task and the worker's budget allows."""
        processor = self._processors.get(processor_id)
        if processor is not None and processor.task is not None and processor.task.task_id == log.task_id:
            admitted = self._output.admit(log, now)
            if admitted is not None:
                return [SendToScheduler(admitted)]
        return []

    def on_processor_blocked(self, processor_id: int, notice: ProcessorBlocked, now: float) -> list[WorkerInstruction]:
        """The processor's task waits on other tasks (park it, run the next task) or goes on."""
        out: _Out = []
        processor = self._processors.get(processor_id)
        if processor is None or processor.task is None or (processor.state is ProcessorState.PARKED) == notice.blocked:
            return out
        if notice.blocked:
            logger.debug("task %s: blocked; parking processor %d", processor.task.task_id.hex(), processor_id)
            self._processors.move(processor, ProcessorEvent.BLOCK)
            self._schedule(now, out)
        else:
            logger.debug("task %s: unblocked on processor %d", processor.task.task_id.hex(), processor_id)
            self._processors.move(processor, ProcessorEvent.UNBLOCK)
        return out

    def on_processor_died(self, processor_id: int, now: float) -> list[WorkerInstruction]:
        """A processor died on its own: fail only its own task with PROCESSOR_DIED."""
        out: _Out = []
        processor = self._processors.get(processor_id)
        if processor is None:
            return out  # killed by us: already forgotten
        task = processor.task
        if task is not None:
            text = f"the processor running task {task.task_id.hex()} died (crash, os._exit, segfault or OOM kill)"
            logger.error(text)
            self._report(TaskResult(task.task_id, TaskStatus.PROCESSOR_DIED, text.encode(), task.attempt), out)
        self._end(processor, ProcessorEvent.DIE)
        self._schedule(now, out)
        return out

    # -- time ---------------------------------------------------------------------------------

    def tick(self, now: float, cpu_percent: float = 0.0, rss_bytes: int = 0) -> list[WorkerInstruction]:
        """Send heartbeats, enforce task timeouts, and give up on a silent scheduler."""
        out: _Out = []
        if now - self._last_scheduler_contact > self.death_timeout_seconds:
            out.append(ExitWorker(f"no word from the scheduler for {self.death_timeout_seconds:g}s"))
            return out
        if self._drain_deadline is not None and now >= self._drain_deadline:
            text = f"the grace period ended with {len(self._processors.by_task)} tasks still running"
            out.append(ExitWorker(f"{text}; they will run elsewhere"))
            return out
        if len(self._processors.by_task):
            self._enforce_timeouts(now, out)
        if now - self._last_heartbeat >= self.heartbeat_interval_seconds and now >= self._announce_at:
            self._last_heartbeat = now
            processors = self._processors
            busy = len(processors.by_task)
            heartbeat = WorkerHeartbeat(
                now,
                self.held_count(),
                cpu_percent,
                rss_bytes,
                self.capabilities,
                processors_running=processors.unblocked,
                processors_parked=busy - processors.unblocked,
                processors_idle=len(processors.idle),
            )
            out.append(SendToScheduler(heartbeat))
        return out

    # -- inspection ---------------------------------------------------------------------------

    def held_count(self) -> int:
        """Tasks this worker holds: queued, running and parked (what its heartbeat reports)."""
        return len(self._queued) + len(self._processors.by_task)

    def running(self) -> dict[bytes, int]:
        """Task id -> id of the processor running it (parked ones included)."""
        return self._processors.running()

    def blocked_task_ids(self) -> list[bytes]:
        """Ids of the tasks whose processor is parked."""
        return [p.task.task_id for p in self._processors if p.state is ProcessorState.PARKED and p.task is not None]

    def queued_task_ids(self) -> list[bytes]:
        """Queued task ids in the order they would run."""
        return self._queue.ordered_ids()

    def processor_ids(self) -> list[int]:
        """Ids of every processor alive or starting."""
        return [processor.processor_id for processor in self._processors]

    def idle_processor_ids(self) -> list[int]:
        """Ids of the idle processors, most recently idle last."""
        return list(self._processors.idle)

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring and tests."""
        running = len(self._processors.by_task)
        return {
            "queued": len(self._queued),
            "running": running,
            "blocked": running - self._processors.unblocked,
            "done": self._done,
            "processors": len(self._processors),
            "idle_processors": len(self._processors.idle),
            **self._caches.statistics(),
            **self._output.statistics(),
        }

    def validate(self) -> None:
        """Check every invariant; raise ``WorkerInvariantError`` (an ``AssertionError``) on the first broken one."""
        processors = self._processors
        processors.validate()
        check(len(self._queue) == len(self._queued), "the queue and the queued tasks agree in number")
        check(set(self._queue.ids()) == set(self._queued), "the queue holds exactly the queued tasks")
        check(all(task.task_id == task_id for task_id, task in self._queued.items()), "queued tasks are filed by id")
        running = processors.running()
        check(not set(self._queued) & set(running), "no task is both queued and running")
        check(len(processors.idle) <= self.max_idle_processors, "the idle pool is trimmed")
        self._caches.validate(list(processors))
        check(self._output.held_task_ids() <= set(running), "drop counts are held only for running tasks")
        if not processors.unblocked and processors.ever_started() and self._drain_deadline is None:
            idle = len(processors.idle)
            check(not (self._queued and idle), "a free worker with an idle processor leaves no task queued")
            check(idle or processors.starting is not None, "a free worker always has a processor on its way")

    # -- internals ----------------------------------------------------------------------------

    def _report(self, result: TaskResult, out: _Out) -> None:
        """Send a task's result, after the notices of its output that this worker dropped."""
        out.extend(SendToScheduler(notice) for notice in self._output.finish(result.task_id))
        out.append(SendToScheduler(result))

    def _dequeue(self, task_id: bytes) -> Task | None:
        task = self._queued.pop(task_id, None)
        if task is not None:
            self._queue.discard(task_id)
        return task

    def _clear_queue(self) -> None:
        self._queue.clear()
        self._queued.clear()

    def _schedule(self, now: float, out: _Out) -> None:
        """Run the next task if no processor is running; keep a processor on its way."""
        processors = self._processors
        if self._drain_deadline is not None:
            if not len(processors.by_task):  # drained: what the scheduler sent meanwhile was handed back
                out.append(ExitWorker("drained: every started task has ended"))
            return
        if not processors.unblocked:
            if len(processors.idle):
                if self._queued:
                    task_id = self._queue.pop()
                    assert task_id is not None  # the queue and the dict agree (validate() checks it)
                    self._run(processors.most_recently_idle(), self._queued.pop(task_id), now, out)
            elif processors.starting is None:
                out.append(StartProcessor(processors.add().processor_id))
        while len(processors.idle) > self.max_idle_processors:
            self._kill(processors.longest_idle(), "more idle processors than needed", out)

    def _run(self, processor: ProcessorRecord, task: Task, now: float, out: _Out) -> None:
        self._caches.attach(processor, task)
        self._processors.move(processor, _RUN, task)
        processor.started_at = now
        processor.timeout = task.timeout_seconds if task.timeout_seconds > 0 else self.task_timeout_seconds
        # Before the task itself, so the scheduler learns it started even if the task kills this worker.
        out.append(SendToScheduler(TaskStarted(task.task_id, task.attempt)))
        out.append(RunTask(processor.processor_id, task))

    def _enforce_timeouts(self, now: float, out: _Out) -> None:
        expired = [
            processor
            for processor in self._processors
            if processor.task is not None and processor.timeout and now - processor.started_at > processor.timeout
        ]
        for processor in expired:
            task = processor.task
            assert task is not None  # busy: filtered above
            text = f"task {task.task_id.hex()} ran past its timeout of {processor.timeout:g}s and was stopped"
            logger.warning(text)
            self._report(TaskResult(task.task_id, TaskStatus.TIMEOUT, text.encode(), task.attempt), out)
            self._kill(processor, "task timeout", out)
        if expired:
            self._schedule(now, out)

    def _kill(self, processor: ProcessorRecord, reason: str, out: _Out) -> None:
        """Forget the processor (never one still starting: the table refuses) and have the agent kill it."""
        self._end(processor, ProcessorEvent.KILL)
        out.append(KillProcessor(processor.processor_id, reason))

    def _end(self, processor: ProcessorRecord, event: ProcessorEvent) -> None:
        task = processor.task
        self._processors.move(processor, event)
        if task is not None:
            self._output.finish(task.task_id)  # ended without a result: none goes out, nor do its notices
