"""``ClientSession``: heartbeats, losing the scheduler, restarts and credits, with time moved by hand.

No sockets, no threads, no sleeps: the tests call the session as the agent would and compare
what it returns with ``==``.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from scaler.client.session import (
    ClientSession,
    FailAll,
    Instruction,
    NotifyConnected,
    Send,
    SessionStateError,
    WakeSubmitters,
)
from scaler.errors import AuthenticationError, DisconnectedError, ProtocolError, ProtocolVersionError
from scaler.protocol.messages import (
    ClientDropped,
    ClientHeartbeat,
    ClientHeartbeatEcho,
    SchedulerShutdown,
    TaskCredit,
    TaskResult,
    TaskStatus,
)

ADDRESS = "tcp://127.0.0.1:1"
INTERVAL = 2.0
TIMEOUT = 10.0


@pytest.fixture
def session() -> ClientSession:
    return ClientSession(ADDRESS, INTERVAL, TIMEOUT, now=100.0)


def failures(instructions: tuple[Instruction, ...]) -> list[str]:
    return [str(i.error) for i in instructions if isinstance(i, FailAll)]


def test_a_heartbeat_goes_at_once_then_every_interval(session: ClientSession) -> None:
    assert session.tick(100.0) == (Send(ClientHeartbeat(100.0)),)
    assert session.tick(101.9) == ()
    assert session.next_tick() == 102.0
    assert session.tick(102.0) == (Send(ClientHeartbeat(102.0)),)


def test_the_first_answer_connects_once(session: ClientSession) -> None:
    assert not session.answered
    assert session.on_heard(100.5) == (NotifyConnected(),)
    assert session.on_heard(101.0) == ()
    assert session.answered and session.heard_anything


def test_silence_past_the_timeout_loses_the_scheduler_once(session: ClientSession) -> None:
    session.on_heard(100.0)
    assert failures(session.tick(110.0)) == []  # exactly the timeout: not yet
    lost = session.tick(110.1)
    assert failures(lost) == [f"no answer from the scheduler at {ADDRESS} for 10s"]
    assert isinstance(session.error, DisconnectedError)
    assert failures(session.tick(200.0)) == []  # once
    session.validate()


def test_hearing_from_the_scheduler_keeps_it(session: ClientSession) -> None:
    for now in range(100, 200, 5):
        session.on_heard(float(now))
        assert failures(session.tick(float(now) + 4.0)) == []
    assert session.error is None


def test_a_new_scheduler_id_means_a_restart(session: ClientSession) -> None:
    session.on_heard(100.0)
    assert session.on_message(ClientHeartbeatEcho(100.0, b"first"), 100.0) == ()
    assert session.on_message(ClientHeartbeatEcho(102.0, b"first"), 102.0) == ()
    restarted = session.on_message(ClientHeartbeatEcho(104.0, b"second"), 104.0)
    assert failures(restarted) == ["the scheduler restarted, and the tasks it held are lost"]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (SchedulerShutdown("stopped by SIGTERM"), "the scheduler shut down: stopped by SIGTERM"),
        (ClientDropped("silent for 60s"), "the scheduler dropped this client: silent for 60s"),
    ],
)
def test_the_schedulers_goodbyes_lose_it(session: ClientSession, message: object, reason: str) -> None:
    assert failures(session.on_message(message, 100.0)) == [reason]  # type: ignore[arg-type]


def test_an_unreadable_frame_loses_the_scheduler(session: ClientSession) -> None:
    assert failures(session.on_bad_frame(ProtocolError("truncated"))) == [
        "the client could not read a frame from the scheduler (truncated)"
    ]
    assert session.heard_anything and not session.answered


def test_another_protocol_version_says_so(session: ClientSession) -> None:
    error = ProtocolVersionError(5, 9)
    assert failures(session.on_bad_frame(error)) == [str(error)]
    assert "version 9" in str(session.error)


def test_a_refused_handshake_fails_with_that_error(session: ClientSession) -> None:
    refused = AuthenticationError("check client.key_secret")
    assert session.on_refused(refused) == (FailAll(refused),)
    assert session.error is refused


def test_the_first_reason_wins(session: ClientSession) -> None:
    session.lose("first")
    assert session.lose("second") == ()
    assert str(session.error) == "first"


def test_no_credit_message_means_no_limit(session: ClientSession) -> None:
    assert all(session.take_credit() for _ in range(1000))


def test_credits_are_spent_and_granted(session: ClientSession) -> None:
    assert session.on_message(TaskCredit(2), 100.0) == (WakeSubmitters(),)
    assert session.take_credit() and session.take_credit()
    assert not session.take_credit()
    assert session.take_credit(may_owe=True)  # the agent's own thread never waits
    assert session.credits == -1
    session.on_message(TaskCredit(2), 101.0)
    assert session.take_credit()
    assert not session.take_credit()


def test_a_message_that_is_not_the_sessions_is_a_bug(session: ClientSession) -> None:
    with pytest.raises(SessionStateError, match="TaskResult"):
        session.on_message(TaskResult(b"t", TaskStatus.SUCCESS, b"", 0), 100.0)


class SessionMachine(RuleBasedStateMachine):
    """Random interleavings of time, frames, echoes, goodbyes and credits; a model checks each step."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.session = ClientSession(ADDRESS, INTERVAL, TIMEOUT, self.now)
        self.last_heard = self.now
        self.scheduler_id: bytes | None = None
        self.failed: list[DisconnectedError] = []
        self.heartbeats: list[float] = []
        self.credits: int | None = None
        self.connects = 0

    def _take(self, out: tuple[Instruction, ...]) -> None:
        for instruction in out:
            if isinstance(instruction, FailAll):
                self.failed.append(instruction.error)
            elif isinstance(instruction, Send):
                assert isinstance(instruction.message, ClientHeartbeat)
                self.heartbeats.append(instruction.message.timestamp)
            elif isinstance(instruction, NotifyConnected):
                self.connects += 1

    @rule(seconds=st.floats(0.0, 12.0))
    def tick(self, seconds: float) -> None:
        self.now += seconds
        lost_before = bool(self.failed)
        self._take(self.session.tick(self.now))
        if not lost_before and self.now - self.last_heard > TIMEOUT:
            assert len(self.failed) == 1 and "no answer" in str(self.failed[0])

    @rule()
    def heard(self) -> None:
        self._take(self.session.on_heard(self.now))
        self.last_heard = self.now

    @rule(scheduler=st.sampled_from([b"a", b"b"]))
    def echo(self, scheduler: bytes) -> None:
        lost_before = bool(self.failed)
        self._take(self.session.on_message(ClientHeartbeatEcho(self.now, scheduler), self.now))
        if self.scheduler_id is None:
            self.scheduler_id = scheduler
        elif scheduler != self.scheduler_id and not lost_before:
            assert "restarted" in str(self.failed[0])

    @rule(kind=st.sampled_from(["shutdown", "dropped", "bad frame"]))
    def goodbye(self, kind: str) -> None:
        if kind == "shutdown":
            self._take(self.session.on_message(SchedulerShutdown("bye"), self.now))
        elif kind == "dropped":
            self._take(self.session.on_message(ClientDropped("silent"), self.now))
        else:
            self._take(self.session.on_bad_frame(ProtocolError("garbage")))

    @rule(count=st.integers(1, 5))
    def credit(self, count: int) -> None:
        assert self.session.on_message(TaskCredit(count), self.now) == (WakeSubmitters(),)
        self.credits = (self.credits or 0) + count

    @rule(may_owe=st.booleans())
    def take(self, may_owe: bool) -> None:
        taken = self.session.take_credit(may_owe)
        if self.credits is None:
            assert taken
        elif self.credits <= 0 and not may_owe:
            assert not taken
        else:
            assert taken
            self.credits -= 1

    @invariant()
    def lost_at_most_once_and_for_good(self) -> None:
        assert len(self.failed) <= 1
        assert self.session.error is (self.failed[0] if self.failed else None)

    @invariant()
    def heartbeats_one_per_interval(self) -> None:
        pairs = zip(self.heartbeats, self.heartbeats[1:])  # noqa: B905
        assert all(b - a >= INTERVAL - 1e-9 for a, b in pairs)  # float sums: now + 2.0 - now may be 1.99...

    @invariant()
    def credits_match_the_model(self) -> None:
        assert self.session.credits == self.credits

    @invariant()
    def connected_once_at_most(self) -> None:
        assert self.connects <= 1

    @invariant()
    def valid(self) -> None:
        self.session.validate()


SessionMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestSessionMachine = SessionMachine.TestCase
