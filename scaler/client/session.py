"""``ClientSession``: what a client decides about its scheduler, without sockets or clocks.

The client's agent thread (``agent.py``) moves frames; this object decides what they mean for
the connection as a whole:

- **heartbeats**: ``tick(now)`` returns a ``Send(ClientHeartbeat)`` every
  ``heartbeat_interval_seconds``;
- **losing the scheduler**: silence for ``timeout_seconds`` (``tick``), a frame that cannot be
  read (``on_bad_frame``), a refused handshake (``on_refused``), ``SchedulerShutdown`` or
  ``ClientDropped`` (``on_message``), or the agent itself failing (``lose``) each return one
  ``FailAll(error)``, once: every pending future ends with that error;
- **noticing a restart**: each ``ClientHeartbeatEcho`` names the scheduler; a new name on the same
  address means a new scheduler that forgot this client's tasks, and loses it too;
- **backpressure credits**: ``TaskCredit`` adds credits (``WakeSubmitters``), and ``take_credit``
  spends one per task sent. Before the first ``TaskCredit`` there is no limit.

Data flow::

    agent: message            -> on_message(msg, now)  -> [WakeSubmitters] / [FailAll] / []
           frame unreadable   -> on_bad_frame(error)   -> [FailAll]
           batch of frames read -> on_heard(now)       -> [NotifyConnected] the first time
           loop turn          -> tick(now)             -> [Send(heartbeat)] / [FailAll] / []
    user:  submit           -> take_credit(may_owe)    -> True (spent) / False (wait)

Not thread-safe on its own: its owner serialises every call (the agent holds one lock around
them, which is also what user threads waiting for credit wait on). ``now`` is any monotonic
clock in seconds; the heartbeat carries it, and the scheduler echoes it back.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaler.errors import AuthenticationError, DisconnectedError, ProtocolError, ProtocolVersionError
from scaler.protocol.messages import (
    ClientDropped,
    ClientHeartbeat,
    ClientHeartbeatEcho,
    Message,
    SchedulerShutdown,
    TaskCredit,
)


class SessionStateError(RuntimeError):
    """The session's own account broke an invariant: a bug in scaler, never the user's."""


@dataclass(frozen=True, slots=True)
class Send:
    """Send this message to the scheduler."""

    message: Message


@dataclass(frozen=True, slots=True)
class NotifyConnected:
    """The scheduler answered for the first time: ``Client()`` may return."""


@dataclass(frozen=True, slots=True)
class WakeSubmitters:
    """Credits arrived: wake the submits waiting for one."""


@dataclass(frozen=True, slots=True)
class FailAll:
    """The scheduler is lost: end every pending future with ``error``, and wake every waiter."""

    error: DisconnectedError


Instruction = Send | NotifyConnected | WakeSubmitters | FailAll

_NOTHING: tuple[Instruction, ...] = ()
_WAKE_SUBMITTERS: tuple[Instruction, ...] = (WakeSubmitters(),)


class ClientSession:
    """One client's account of its scheduler; see the module docstring."""

    def __init__(self, address: str, heartbeat_interval_seconds: float, timeout_seconds: float, now: float) -> None:
        self.address = address
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.timeout_seconds = timeout_seconds
        self.error: DisconnectedError | None = None  # set once, when the scheduler is lost
        self.answered = False  # a readable frame came from the scheduler
        self.heard_anything = False  # some frame, even an unreadable one, came from the address
        self.credits: int | None = None  # how many more tasks the scheduler accepts; None: no limit
        self.scheduler_id: bytes | None = None  # the scheduler's name, from its first echo
        self._last_heard = now
        self._next_heartbeat = now  # the first tick sends one at once

    # -- time ------------------------------------------------------------------------------------

    def tick(self, now: float) -> tuple[Instruction, ...]:
        """Send a heartbeat when one is due; lose a scheduler silent for ``timeout_seconds``."""
        out: tuple[Instruction, ...] = _NOTHING
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_interval_seconds
            out = (Send(ClientHeartbeat(now)),)
        if self.error is None and now - self._last_heard > self.timeout_seconds:
            silence = f"no answer from the scheduler at {self.address} for {self.timeout_seconds:g}s"
            out += self.lose(silence)
        return out

    def next_tick(self) -> float:
        """When ``tick`` has something to do next (the next heartbeat), on the clock of ``now``."""
        return self._next_heartbeat

    # -- what arrives --------------------------------------------------------------------------

    def on_heard(self, now: float) -> tuple[Instruction, ...]:
        """Readable frames from the scheduler were read, the last at ``now``: it is alive.

        The agent calls it once per batch of frames, after their messages (and the callbacks those
        ran) are handled, so a slow callback does not count as the scheduler's silence.
        """
        self.heard_anything = True
        self._last_heard = max(self._last_heard, now)
        if self.answered:
            return _NOTHING
        self.answered = True
        return (NotifyConnected(),)

    def on_bad_frame(self, error: ProtocolError) -> tuple[Instruction, ...]:
        """A frame could not be read; only the scheduler sends here, so the stream is broken.

        The frame may have held results: fail what is pending rather than let it wait forever.
        """
        self.heard_anything = True
        if isinstance(error, ProtocolVersionError):
            return self.lose(str(error))
        return self.lose(f"the client could not read a frame from the scheduler ({error})")

    def on_message(self, message: Message, now: float) -> tuple[Instruction, ...]:
        """Take one of the session's messages: credits, echoes, and the scheduler's goodbyes."""
        if isinstance(message, TaskCredit):
            self.credits = (self.credits or 0) + message.count
            return _WAKE_SUBMITTERS
        if isinstance(message, ClientHeartbeatEcho):
            if self.scheduler_id is None:
                self.scheduler_id = message.scheduler_id
            elif message.scheduler_id != self.scheduler_id:
                return self.lose("the scheduler restarted, and the tasks it held are lost")
            return _NOTHING
        if isinstance(message, SchedulerShutdown):
            return self.lose(f"the scheduler shut down: {message.reason}")
        if isinstance(message, ClientDropped):
            return self.lose(f"the scheduler dropped this client: {message.reason}")
        raise SessionStateError(f"the session does not handle {type(message).__name__}")

    def on_refused(self, error: AuthenticationError) -> tuple[Instruction, ...]:
        """The scheduler refused the handshake for good (keys): give up at once."""
        return self.lose(error)

    def lose(self, reason: str | DisconnectedError) -> tuple[Instruction, ...]:
        """Declare the scheduler lost (the first reason wins); later calls change nothing."""
        if self.error is not None:
            return _NOTHING
        self.error = reason if isinstance(reason, DisconnectedError) else DisconnectedError(reason)
        return (FailAll(self.error),)

    # -- credits ---------------------------------------------------------------------------------

    def take_credit(self, may_owe: bool = False) -> bool:
        """Spend one credit for a task about to be sent; False when none is left.

        With ``may_owe`` (the agent's own thread, which must never wait for credits because it is
        the one that receives them) the count may go below zero; later credits make it up.
        """
        if self.credits is None:
            return True
        if self.credits <= 0 and not may_owe:
            return False
        self.credits -= 1
        return True

    # -- checks ----------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ``SessionStateError`` if the session's fields disagree."""
        if self.answered and not self.heard_anything:
            raise SessionStateError("answered by a scheduler it never heard")
        if self.error is not None and not isinstance(self.error, DisconnectedError):
            raise SessionStateError(f"lost for a reason that is not a DisconnectedError: {self.error!r}")

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring and tests (credits: -1 when unlimited)."""
        return {"credits": -1 if self.credits is None else self.credits, "lost": int(self.error is not None)}
