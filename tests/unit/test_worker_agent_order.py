"""The order in which the worker agent's shell carries out one turn's instructions.

No sockets and no processes: the agent's transport and processor starter are replaced by a
recorder (plain objects of our own, not ZeroMQ), and ``_execute`` is called directly.
"""

from __future__ import annotations

from scaler.protocol.messages import CancelConfirmType, Message, TaskCancelConfirm
from scaler.worker.agent import WorkerAgent
from scaler.worker.state import ExitWorker, SendToScheduler, StartProcessor


class Recorder:
    """Stands in for both the transport (``send``) and the starter (``start``), noting each call in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def send(self, messages: list[Message]) -> None:
        if messages:
            self.calls.append(("send", list(messages)))

    def start(self, processor_id: int) -> None:
        self.calls.append(("start", processor_id))


def agent_with(recorder: Recorder) -> WorkerAgent:
    agent = WorkerAgent("tcp://127.0.0.1:1")
    agent._transport = recorder  # type: ignore[assignment]
    agent._starter = recorder  # type: ignore[assignment]
    return agent


def test_what_the_scheduler_must_hear_leaves_before_a_processor_start_is_asked() -> None:
    # A start's helper thread holds the GIL for a while: a cancel's confirmation must not wait behind it.
    recorder = Recorder()
    confirm = TaskCancelConfirm(b"t1", CancelConfirmType.CANCELED)
    assert agent_with(recorder)._execute([StartProcessor(2), SendToScheduler(confirm)])
    assert recorder.calls == [("send", [confirm]), ("start", 2)]


def test_an_exiting_worker_starts_no_processor() -> None:
    recorder = Recorder()
    confirm = TaskCancelConfirm(b"t1", CancelConfirmType.CANCELED)
    assert not agent_with(recorder)._execute([StartProcessor(2), ExitWorker("drained"), SendToScheduler(confirm)])
    assert recorder.calls == [("send", [confirm])]
