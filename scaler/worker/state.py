"""The worker agent's pure core: which task its processor runs, what waits, and when to beat.

``WorkerState`` takes scheduler messages, processor outcomes and clock ticks, and returns
instructions for the shell in ``agent.py``: ``SendToScheduler``, ``RunTask`` (hand a task to the
idle processor), ``RestartProcessor`` (kill it and start a fresh one) and ``ExitWorker``.

The agent keeps each function's bytes and attaches them to a task only when the current
processor has not had that function yet, so a function crosses the pipe once per processor.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from scaler.protocol.messages import (
    CancelConfirmType,
    Message,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskResult,
    TaskStatus,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SendToScheduler:
    """Instruction: send a message to the scheduler."""

    message: Message


@dataclass(frozen=True, slots=True)
class RunTask:
    """Instruction: give this task to the idle processor."""

    task: Task


@dataclass(frozen=True, slots=True)
class RestartProcessor:
    """Instruction: kill the processor and start a fresh one, then call ``on_processor_started``."""

    reason: str


@dataclass(frozen=True, slots=True)
class ExitWorker:
    """Instruction: the worker must exit."""

    reason: str


WorkerInstruction = SendToScheduler | RunTask | RestartProcessor | ExitWorker


@dataclass(slots=True)
class _Running:
    task: Task
    started_at: float
    timeout: float  # seconds; 0 means none


class WorkerState:
    """All of one worker agent's bookkeeping; see the module docstring."""

    def __init__(
        self,
        now: float,
        heartbeat_interval_seconds: float,
        death_timeout_seconds: float,
        task_timeout_seconds: float = 0.0,
    ) -> None:
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.death_timeout_seconds = death_timeout_seconds
        self.task_timeout_seconds = task_timeout_seconds
        self._queue: OrderedDict[bytes, Task] = OrderedDict()
        self._running: _Running | None = None
        self._processor_ready = False  # alive and idle
        self._functions: dict[bytes, bytes] = {}
        self._processor_functions: set[bytes] = set()
        self._last_scheduler_contact = now
        self._last_heartbeat = float("-inf")
        self._scheduler_id: bytes | None = None
        self._out: list[WorkerInstruction] = []
        self._done = 0

    # -- events from the scheduler -----------------------------------------------------------

    def on_task(self, task: Task, now: float) -> list[WorkerInstruction]:
        """Queue a task from the scheduler and run it if the processor is idle."""
        self._last_scheduler_contact = now
        if task.function:
            self._functions[task.function_id] = task.function
        self._queue[task.task_id] = task
        self._run_next(now)
        return self._take_output()

    def on_task_cancel(self, cancel: TaskCancel, now: float) -> list[WorkerInstruction]:
        """Drop a queued task, or kill the processor running it; confirm either way."""
        self._last_scheduler_contact = now
        task_id = cancel.task_id
        if self._queue.pop(task_id, None) is not None:
            confirm = CancelConfirmType.CANCELED
        elif self._running is not None and self._running.task.task_id == task_id:
            logger.info("task %s: cancelled while running; restarting the processor", task_id.hex())
            self._running = None
            self._restart_processor(f"task {task_id.hex()} was cancelled")
            confirm = CancelConfirmType.CANCELED
        else:
            confirm = CancelConfirmType.CANCEL_NOT_FOUND  # its result already left
        self._out.append(SendToScheduler(TaskCancelConfirm(task_id, confirm)))
        return self._take_output()

    def on_scheduler_contact(self, now: float) -> list[WorkerInstruction]:
        """Any message from the scheduler proves it is alive."""
        self._last_scheduler_contact = now
        return self._take_output()

    def on_heartbeat_echo(self, echo: WorkerHeartbeatEcho, now: float) -> list[WorkerInstruction]:
        """Note the scheduler is alive; if it restarted, drop the tasks the old one gave us."""
        self._last_scheduler_contact = now
        if self._scheduler_id is None:
            self._scheduler_id = echo.scheduler_id
        elif echo.scheduler_id != self._scheduler_id:
            self._scheduler_id = echo.scheduler_id
            logger.warning("the scheduler restarted; dropping %d tasks it no longer knows", self.queued_count())
            self._queue.clear()
            # The new scheduler sends functions afresh, so the processor must not rely on them either.
            self._functions.clear()
            if self._running is not None:
                self._running = None
                self._restart_processor("the scheduler restarted")
        return self._take_output()

    # -- events from the processor -----------------------------------------------------------

    def on_processor_started(self, now: float) -> list[WorkerInstruction]:
        """A fresh processor is ready; it holds no function yet."""
        self._processor_ready = True
        self._processor_functions.clear()
        self._run_next(now)
        return self._take_output()

    def on_processor_result(self, result: TaskResult, now: float) -> list[WorkerInstruction]:
        """The processor finished its task: report it and run the next one."""
        running = self._running
        if running is None or running.task.task_id != result.task_id:
            logger.warning("task %s: the processor reported a task it was not running", result.task_id.hex())
            return self._take_output()
        self._running = None
        self._processor_ready = True
        self._done += 1
        self._out.append(SendToScheduler(result))
        self._run_next(now)
        return self._take_output()

    def on_processor_died(self, now: float) -> list[WorkerInstruction]:
        """The processor died on its own: fail its task with PROCESSOR_DIED and restart it."""
        running, self._running = self._running, None
        if running is not None:
            task = running.task
            text = f"the processor running task {task.task_id.hex()} died (crash, os._exit, segfault or OOM kill)"
            logger.error(text)
            result = TaskResult(task.task_id, TaskStatus.PROCESSOR_DIED, text.encode(), task.attempt)
            self._out.append(SendToScheduler(result))
        self._restart_processor("the processor died")
        return self._take_output()

    # -- time ---------------------------------------------------------------------------------

    def tick(self, now: float, cpu_percent: float = 0.0, rss_bytes: int = 0) -> list[WorkerInstruction]:
        """Send heartbeats, enforce the task timeout, and give up on a silent scheduler."""
        if now - self._last_scheduler_contact > self.death_timeout_seconds:
            self._out.append(ExitWorker(f"no word from the scheduler for {self.death_timeout_seconds:g}s"))
            return self._take_output()
        running = self._running
        if running is not None and running.timeout and now - running.started_at > running.timeout:
            task = running.task
            text = f"task {task.task_id.hex()} ran past its timeout of {running.timeout:g}s and was stopped"
            logger.warning(text)
            self._running = None
            self._out.append(SendToScheduler(TaskResult(task.task_id, TaskStatus.TIMEOUT, text.encode(), task.attempt)))
            self._restart_processor("task timeout")
        if now - self._last_heartbeat >= self.heartbeat_interval_seconds:
            self._last_heartbeat = now
            heartbeat = WorkerHeartbeat(now, self.queued_count(), cpu_percent, rss_bytes)
            self._out.append(SendToScheduler(heartbeat))
        return self._take_output()

    # -- inspection ---------------------------------------------------------------------------

    def queued_count(self) -> int:
        """Tasks held by this worker, the running one included."""
        return len(self._queue) + (self._running is not None)

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring and tests."""
        return {
            "queued": len(self._queue),
            "running": int(self._running is not None),
            "done": self._done,
            "functions": len(self._functions),
        }

    def running_task_id(self) -> bytes | None:
        """The id of the task the processor runs now, if any."""
        return None if self._running is None else self._running.task.task_id

    # -- internals ----------------------------------------------------------------------------

    def _take_output(self) -> list[WorkerInstruction]:
        out, self._out = self._out, []
        return out

    def _restart_processor(self, reason: str) -> None:
        self._processor_ready = False
        self._out.append(RestartProcessor(reason))

    def _run_next(self, now: float) -> None:
        if not self._processor_ready or self._running is not None or not self._queue:
            return
        _, task = self._queue.popitem(last=False)
        function = b""
        if task.function_id not in self._processor_functions:
            function = self._functions.get(task.function_id, b"")
            self._processor_functions.add(task.function_id)
        self._processor_ready = False
        self._running = _Running(task, now, self.task_timeout_seconds)
        self._out.append(RunTask(Task(task.task_id, task.function_id, function, task.args, task.attempt)))
