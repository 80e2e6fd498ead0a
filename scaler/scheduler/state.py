"""The scheduler's pure core: messages and clock ticks in, instructions out.

``SchedulerState`` is the scheduler's protocol: which message does what. It touches no socket and
no clock: each entry point takes ``now`` (or uses the latest it was given) and returns the
``Send``/``Stop`` instructions that the I/O shell in ``server.py`` carries out. Its bookkeeping
lives in stores with their own invariants (see ``lifecycle.py`` and the package docstring), and
``validate()`` checks all of them and how they agree.

Every entry point builds its own list of instructions. If a handler raises, that is a bug, and the
state may be half updated: the core then fails stop. It drops the half-made output, tells every
client and worker that the scheduler stopped (so none waits for a timeout), returns ``Stop``, and
answers nothing after that. Serving on from a state that may be broken could resolve a future
twice or lose a task without a word; a loud stop cannot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from scaler.config.scheduler import SchedulerConfig as SchedulerConfig  # its settings live there
from scaler.protocol.messages import (
    BalanceResponse,
    ClientDisconnect,
    ClientDropped,
    ClientHeartbeat,
    DisconnectRequest,
    GraphTask,
    Message,
    ObjectInstruction,
    ObjectRequest,
    SchedulerShutdown,
    StatusEvents,
    StatusRequest,
    StatusSnapshot,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskLog,
    TaskResult,
    TaskResultWanted,
    TaskStarted,
    WorkerHeartbeat,
    WorkerManagerHeartbeat,
)
from scaler.scheduler.client_messages import ClientMessages
from scaler.scheduler.instructions import Instruction as Instruction
from scaler.scheduler.instructions import Send as Send
from scaler.scheduler.instructions import Stop as Stop
from scaler.scheduler.instructions import peer_text
from scaler.scheduler.manager_messages import ManagerMessages
from scaler.scheduler.status import ShellFigures
from scaler.scheduler.worker_messages import WorkerMessages

logger = logging.getLogger(__name__)

_CLIENT_MESSAGES = (
    Task,
    GraphTask,
    TaskCancel,
    ClientHeartbeat,
    ClientDisconnect,
    ObjectInstruction,
    ObjectRequest,
    TaskResultWanted,
    StatusRequest,
)


class SchedulerState(ClientMessages, WorkerMessages, ManagerMessages):
    """All scheduler bookkeeping as a plain object; see the module docstring."""

    def __init__(self, config: SchedulerConfig | None = None, scheduler_id: bytes | None = None) -> None:
        super().__init__(config, scheduler_id)
        self._handlers: dict[type[Message], Callable[[bytes, Any, float], None]] = {
            Task: self.on_task,
            GraphTask: self.on_graph_task,
            TaskCancel: self.on_task_cancel,
            ObjectInstruction: self.on_object_instruction,
            ObjectRequest: self.on_object_request,
            TaskResultWanted: self.on_task_result_wanted,
            ClientHeartbeat: self.on_client_heartbeat,
            ClientDisconnect: self.on_client_disconnect,
            TaskResult: self.on_task_result,
            TaskCancelConfirm: self.on_task_cancel_confirm,
            TaskLog: self.on_task_log,
            BalanceResponse: self.on_balance_response,
            WorkerHeartbeat: self.on_worker_heartbeat,
            DisconnectRequest: self.on_disconnect_request,
            TaskStarted: self.on_task_started,
            WorkerManagerHeartbeat: self.on_worker_manager_heartbeat,
            StatusRequest: self.on_status_request,
        }
        self._failure: str | None = None  # set when a handler raised: the core answers nothing more

    @property
    def failure(self) -> str | None:
        """Why the core stopped after an internal error, or None: a shell exits with an error then."""
        return self._failure

    # -- entry points -------------------------------------------------------------------------

    def handle(self, source: bytes, message: Message, now: float, dispatch: bool = True) -> list[Instruction]:
        """Apply one message from peer ``source``; return what must be sent.

        With ``dispatch=False`` queued tasks are not handed out yet: a shell that applies a
        burst of messages calls ``dispatch()`` once after them, which is cheaper.
        """
        # _call inlined: this runs once per message.
        if self._failure is not None:
            return []
        if now > self._now:
            self._now = now
        out: list[Instruction] = []
        self._out = out
        try:
            self._handle(source, message, now, dispatch)
        except Exception:
            return self._fail_stop("_handle", (source, message))
        return out

    def shutdown(self, reason: str) -> list[Instruction]:
        """Stop: tell every client and worker, so none waits for a timeout to find out."""
        return self._call(None, self._shutdown, reason)

    def dispatch(self) -> list[Instruction]:
        """Hand queued tasks to workers with room; return what must be sent."""
        return self._call(None, self._dispatch)

    def tick(self, now: float) -> list[Instruction]:
        """Expire silent clients and workers, and tasks no worker can run; call it a few times a second."""
        return self._call(now, self._tick, now)

    def worker_disconnected(self, worker_id: bytes) -> list[Instruction]:
        """The transport saw a worker's connection close for good: treat it as dead."""
        return self._call(None, self._worker_disconnected, worker_id)

    def unreadable_frame(self, source: bytes, reason: str) -> list[Instruction]:
        """A frame from ``source`` could not be decoded, so whatever it held is lost.

        Never silently: a known client is dropped and told at once (its futures fail instead of
        waiting for answers to tasks that never arrived); a known worker is let go as if it had
        left, so the results it may have sent are not waited for and its tasks run elsewhere,
        uncharged. Unknown peers (strangers, attackers) are only logged by the shell.
        """
        return self._call(None, self._unreadable_frame, source, reason)

    # -- the status feed (status.py) -------------------------------------------------------------

    def status(self, now: float, request_id: int = 0) -> StatusSnapshot:
        """The cluster at ``now`` as a ``StatusSnapshot``: what the feed publishes and ``Client.status()`` gets."""
        if now > self._now:
            self._now = now
        return self._snapshot(now, request_id)

    def set_shell_figures(self, figures: ShellFigures) -> None:
        """The shell's latest figures about its process (CPU, RSS, rates...), for the snapshots."""
        self._shell = figures

    def record_events(self, recording: bool) -> None:
        """Record status events (someone subscribes to the feed) or not (the default: it costs nothing then)."""
        self._status.set_recording(recording)

    @property
    def recording_events(self) -> bool:
        """Whether status events are being recorded."""
        return self._status.recording

    def take_events(self, now: float, wall_time: float) -> StatusEvents | None:
        """The events recorded since the last call as one ``StatusEvents`` (None if none); call once per turn."""
        return self._status.take_events(now, wall_time)

    def _call(self, now: float | None, step: Callable[..., None], *args: Any) -> list[Instruction]:
        """Run one entry point with its own output list; if it raises, fail stop (see the module docstring)."""
        if self._failure is not None:
            return []
        if now is not None and now > self._now:
            self._now = now
        out: list[Instruction] = []
        self._out = out
        try:
            step(*args)
        except Exception:
            return self._fail_stop(step.__name__, args)
        return out

    def _fail_stop(self, step: str, args: tuple[Any, ...]) -> list[Instruction]:
        """A handler raised: drop its half-made output, tell every peer, and stop for good."""
        described = ", ".join(peer_text(arg) if isinstance(arg, bytes) else type(arg).__name__ for arg in args)
        logger.critical(
            "scheduler: internal error in %s(%s); stopping, because its state can no longer be trusted",
            step,
            described,
            exc_info=True,
        )
        reason = f"the scheduler stopped after an internal error (in {step.lstrip('_')}); see its log"
        self._failure = reason
        self._stopped = True
        self._out = []
        peers = list(self.workers) + list(self.clients)
        return [*(Send(peer, SchedulerShutdown(reason)) for peer in peers), Stop(reason)]

    def _handle(self, source: bytes, message: Message, now: float, dispatch: bool) -> None:
        kind = type(message)
        handler = self._handlers.get(kind)
        departure = self.clients.departure(source) if kind in _CLIENT_MESSAGES else None
        if departure is not None:
            if kind is not ClientDisconnect:
                self._send(source, ClientDropped(departure))
        elif handler is None:
            self._noise("unaccepted").warning(
                self._now, "peer %s sent %s, which the scheduler does not accept", peer_text(source), kind.__name__
            )
        else:
            handler(source, message, now)
            worker = self.workers.get(source)
            if worker is not None and worker.leaving and not worker.tasks:
                self._release(source)
        self._cancel_doomed()
        if dispatch:
            self._dispatch()

    def _tick(self, now: float) -> None:
        timeout = self.config.client_timeout_seconds
        for client_id in self.clients.silent(now, timeout):
            logger.warning(
                "client %s timed out; cancelling its %d tasks", peer_text(client_id), len(self.clients[client_id].tasks)
            )
            reason = f"the scheduler heard nothing from this client for {timeout:g}s"
            self._remove_client(client_id, reason + "; its tasks were cancelled")
        for worker_id, worker in list(self.workers.items()):
            if now - worker.last_seen > self.config.worker_timeout_seconds:
                logger.warning("worker %s timed out holding %d tasks", peer_text(worker_id), len(worker.tasks))
                self._remove_worker(worker_id, died=True)
            elif worker.leaving and not worker.tasks:  # its last tasks were cancelled on their client's behalf
                self._release(worker_id)
        self.workers.forget_released(now - self.config.worker_timeout_seconds)
        self._forget_silent_managers(now)
        self._expire_unschedulable(now)
        self._dispatch()

    def _worker_disconnected(self, worker_id: bytes) -> None:
        if worker_id in self.workers:
            logger.warning("worker %s disconnected", peer_text(worker_id))
            self._remove_worker(worker_id, died=True)
            self._dispatch()

    def _unreadable_frame(self, source: bytes, reason: str) -> None:
        if source in self.clients:
            text = f"the scheduler could not read a frame this client sent ({reason}); its tasks were cancelled"
            logger.error("client %s: %s", peer_text(source), text)
            self._remove_client(source, text)
            self._send(source, ClientDropped(text))
        elif source in self.workers:
            logger.error("worker %s sent an unreadable frame (%s); its tasks go elsewhere", peer_text(source), reason)
            self._remove_worker(source, died=False)
            self._dispatch()
