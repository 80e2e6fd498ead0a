"""The client's agent thread: it alone owns the connection to the scheduler, and only moves frames.

The connection is a ``DealerTransport`` (``scaler/io/transport.py``, shared with the worker and,
as a ROUTER, the scheduler): its receive drain, batched sends, handshake monitor and set-up.
User threads hand messages to ``send``, which queues them and wakes the agent through a
``Waker`` pipe; the agent sends everything queued as one frame, so a burst of ``submit`` calls
costs few syscalls. Incoming results, cancel confirmations and fetched objects go to the
``ClientFutureManager``; task output (``TaskLog``) goes to the ``TaskOutputPrinter``; status
snapshots (the answers to ``Client.status()``) to the client's waiting caller; credits,
heartbeat echoes and the scheduler's goodbyes go to the ``ClientSession`` (``session.py``), which
decides when heartbeats are due and when the scheduler is lost. The agent carries out what the
session returns. A monitor on the socket reports handshakes: one the scheduler refuses (keys)
ends the connection at once with an ``AuthenticationError`` rather than a silent wait.

Whatever happens to the thread, nothing pending waits forever: a failure of the loop (any
exception, ``SystemExit`` included) loses the scheduler with that cause, and a thread that ends
without a loss or a ``stop()`` loses it too.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from scaler.client.future_manager import ClientFutureManager
from scaler.client.output import TaskOutputPrinter
from scaler.client.session import ClientSession, FailAll, Instruction, NotifyConnected, Send, WakeSubmitters
from scaler.errors import AuthenticationError, DisconnectedError, ProtocolError
from scaler.io.security import HandshakeWatch, PeerKeys
from scaler.io.transport import DealerTransport, Waker
from scaler.protocol.messages import (
    ClientDropped,
    ClientHeartbeatEcho,
    ClientShutdownResponse,
    Message,
    ObjectResponse,
    SchedulerShutdown,
    StatusSnapshot,
    TaskCancelConfirm,
    TaskCredit,
    TaskLog,
    TaskResult,
)

logger = logging.getLogger(__name__)


class Agent(Protocol):
    """What a ``Client`` needs of its agent: ``ClientAgent``, or a test's stand-in."""

    connected: threading.Event  # set once the scheduler answered, or is known to be lost
    handshakes: HandshakeWatch

    @property
    def error(self) -> DisconnectedError | None:
        """Why the scheduler is lost, once it is."""

    @property
    def heard_anything(self) -> bool:
        """Some frame, even an unreadable one, came from the address."""

    def start(self) -> None:
        """Start moving messages."""

    def is_alive(self) -> bool:
        """Whether it still moves messages."""

    def send(self, message: Message) -> None:
        """Queue a message for the scheduler (any thread)."""

    def stop(self) -> None:
        """Flush what is queued, then stop."""

    def take_credit(self, block: bool = True) -> bool:
        """Use one backpressure credit for a task about to be sent."""


# (address, identity, manager, heartbeat interval, timeout, on_shutdown_response, keys, on_status_snapshot) -> agent
AgentFactory = Callable[
    [
        str,
        bytes,
        ClientFutureManager,
        float,
        float,
        Callable[[ClientShutdownResponse], None],
        "PeerKeys | None",
        Callable[[StatusSnapshot], None],
    ],
    Agent,
]


class ClientAgent(threading.Thread):
    """Moves messages between one client and its scheduler."""

    def __init__(
        self,
        address: str,
        identity: bytes,
        manager: ClientFutureManager,
        heartbeat_interval_seconds: float,
        timeout_seconds: float,
        on_shutdown_response: Callable[[ClientShutdownResponse], None],
        keys: PeerKeys | None = None,
        on_status_snapshot: Callable[[StatusSnapshot], None] | None = None,
    ) -> None:
        super().__init__(name=f"scaler-client-agent-{identity[-8:].decode(errors='replace')}", daemon=True)
        self.address = address
        self.identity = identity
        self.manager = manager
        self.keys = keys
        self.handshakes = HandshakeWatch(address, keys, "client")  # read by other threads only after join
        self.connected = threading.Event()  # the scheduler has answered, or is known to be lost
        self.session = ClientSession(address, heartbeat_interval_seconds, timeout_seconds, time.monotonic())
        # Guards the session: the agent changes it, and submitting threads take credits from it,
        # waiting on this condition while there is none.
        self._session_changed = threading.Condition()
        self._outbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        # Its pipe closes when the agent object goes, not when its thread ends: a late send (a
        # dropped future freeing its result, on any thread) must never write to a reused descriptor.
        self._waker = Waker()
        self._output = TaskOutputPrinter()
        self._stop_requested = False
        self._handlers: dict[type[Message], Callable[[Any], None]] = {
            TaskResult: self._on_task_result,
            ObjectResponse: manager.on_object_response,
            TaskCancelConfirm: manager.on_task_cancel_confirm,
            TaskLog: self._output.on_task_log,
            ClientShutdownResponse: on_shutdown_response,
            TaskCredit: self._on_session_message,
            ClientHeartbeatEcho: self._on_session_message,
            SchedulerShutdown: self._on_session_message,
            ClientDropped: self._on_session_message,
        }
        if on_status_snapshot is not None:  # the answer to Client.status()
            self._handlers[StatusSnapshot] = on_status_snapshot

    @property
    def error(self) -> DisconnectedError | None:
        """Why the scheduler is lost, once it is."""
        return self.session.error

    @property
    def heard_anything(self) -> bool:
        """Some frame, even an unreadable one, came from the address."""
        return self.session.heard_anything

    def send(self, message: Message) -> None:
        """Queue a message for the scheduler (any thread)."""
        self._outbox.put(message)
        self._waker.wake()

    def stop(self) -> None:
        """Flush what is queued, then end the thread; from the agent's own thread (a callback), just ask."""
        self._stop_requested = True
        self._waker.wake(always=True)
        if threading.current_thread() is not self:
            self.join(timeout=10)

    def take_credit(self, block: bool = True) -> bool:
        """Use one credit for a task about to be sent; unless ``block`` is False, wait while there is none.

        Returns False only when not blocking and no credit is left. On the agent's own thread (a
        done-callback that submits) it never waits: that thread is the one that receives credits.
        A wait also ends when the scheduler is lost or the agent ends; the caller then finds out.
        """
        on_agent_thread = threading.current_thread() is self
        with self._session_changed:
            if self.session.take_credit(may_owe=on_agent_thread):
                return True
            if not block:
                return False
            logger.debug("submit waits: this client has as many tasks queued as the scheduler allows")
            while not self.session.take_credit() and self.session.error is None and self.is_alive():
                self._session_changed.wait(1.0)
            return True

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        """The agent loop."""
        transport: DealerTransport | None = None
        try:  # the set-up too: a failure there must reach Client() now, not after its timeout
            transport = DealerTransport(self.address, self.identity, self.keys, name="client")
            transport.register(self._waker.fd)
            while True:
                self._apply(self._session(self.session.tick, time.monotonic()))
                stopping = self._stop_requested
                self._flush(transport)
                if stopping:
                    break
                wait = max(0.0, self.session.next_tick() - time.monotonic())
                events = transport.poll(int(wait * 1000) + 1)
                if transport.monitor in events:
                    self._on_handshakes(transport)
                if transport.socket in events:
                    self._receive(transport)
        except BaseException as error:  # never die silently, whatever the type: what was pending must still end
            logger.exception("client agent failed")
            self._lose(f"the client's agent thread failed ({error!r}); see the log")
        finally:
            if not self._stop_requested:  # no path ends here without a loss, but nothing may wait forever
                self._lose("the client's agent thread ended")
            if self.error is not None:
                self.manager.fail_all(self.error)  # tasks submitted since the loss, too
            self._wake_submitters()  # a submit still waiting for credit must wake and find the client closed
            if transport is not None:
                transport.close()

    def _flush(self, transport: DealerTransport) -> None:
        self._waker.clear()  # before taking the queue: a send() after this wakes the next poll
        batch: list[Message] = []
        while True:
            try:
                batch.append(self._outbox.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return
        if self.error is None:
            transport.send(batch)
        else:
            self.manager.fail_all(self.error)  # tasks submitted after the loss must not wait forever

    def _receive(self, transport: DealerTransport) -> None:
        heard = False
        for messages in transport.receive():
            if isinstance(messages, ProtocolError):
                self._apply(self._session(self.session.on_bad_frame, messages))
                continue
            heard = True
            for message in messages:
                self._dispatch(message)
        if heard:  # after the messages' callbacks: a slow callback is not the scheduler's silence
            self._apply(self._session(self.session.on_heard, time.monotonic()))

    def _dispatch(self, message: Message) -> None:
        handler = self._handlers.get(type(message))
        if handler is None:  # decode() knows every type; one without a handler here is not for clients
            logger.warning("client ignored a %s from the scheduler", type(message).__name__)
            return
        handler(message)

    def _on_task_result(self, result: TaskResult) -> None:
        self.manager.on_task_result(result)
        self._output.on_task_done(result.task_id)

    def _on_session_message(self, message: Message) -> None:
        self._apply(self._session(self.session.on_message, message, time.monotonic()))

    def _on_handshakes(self, transport: DealerTransport) -> None:
        for event, value in transport.monitor_events():
            refused = self.handshakes.on_event(event, value)
            if refused is not None and self.error is None:
                self._apply(self._session(self.session.on_refused, refused))
                transport.disconnect()  # stop knocking: the answer will not change

    # -- carrying out the session's instructions -------------------------------------------------

    def _session(self, call: Callable[..., tuple[Instruction, ...]], *args: Any) -> tuple[Instruction, ...]:
        with self._session_changed:  # submitting threads read the session's credits under it
            return call(*args)

    def _apply(self, instructions: Iterable[Instruction]) -> None:
        for instruction in instructions:
            if isinstance(instruction, Send):
                self.send(instruction.message)
            elif isinstance(instruction, WakeSubmitters):
                self._wake_submitters()
            elif isinstance(instruction, NotifyConnected):
                self.connected.set()
            elif isinstance(instruction, FailAll):
                self._fail_all(instruction.error)

    def _lose(self, reason: str) -> None:
        self._apply(self._session(self.session.lose, reason))

    def _fail_all(self, error: DisconnectedError) -> None:
        if isinstance(error, AuthenticationError):
            logger.error("client refused by its scheduler: %s", error)
        else:
            logger.error("client lost its scheduler: %s", error)
        self.connected.set()  # wake anyone waiting for the first answer
        self._wake_submitters()  # and any submit waiting for credit: its task now fails at once
        self.manager.fail_all(error)

    def _wake_submitters(self) -> None:
        with self._session_changed:
            self._session_changed.notify_all()
