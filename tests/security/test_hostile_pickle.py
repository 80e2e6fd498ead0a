"""The scheduler never unpickles: a pickle bomb in every payload position, under an audit hook.

The canary is a pickle whose loading creates two files (one through ``open``, one through
``os.system("touch ...")``). It goes into every bytes field of every message type, from a client
and from a fake worker, and then through the paths where the scheduler really keeps and forwards
payloads: a stored object, a task's function and arguments, a graph, small, big and failed
results, a retried task. Nothing may create the files, and the scheduler runs under an audit hook
(SCHEDULER_SCRIPT in hostile_support) that records any unpickling of a global
(``pickle.find_class``, which every pickle that can run code needs), any command it runs, and any
``open`` of a canary path. A control run shows that hook firing on the same kind of pickle.

No real worker runs until the canary's last message is gone: a worker would (rightly) unpickle it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ALL_MESSAGES,
    ArgumentKind,
    BalanceRequest,
    BalanceResponse,
    CancelConfirmType,
    ClientDisconnect,
    DisconnectType,
    GraphNode,
    GraphTask,
    Message,
    ObjectInstruction,
    ObjectInstructionType,
    ObjectRequest,
    ObjectResponse,
    Task,
    TaskArgument,
    TaskCancel,
    TaskCancelConfirm,
    TaskResult,
    TaskStatus,
)
from tests.security.hostile_support import (
    SCHEDULER_SCRIPT,
    Bystander,
    HostileScheduler,
    RawPeer,
    audit_environment,
    canary_fired,
    canary_pickle,
    with_each_bytes_field,
)

CANARY_WORKER = {"canary": 1}  # only the fake worker offers it
BIG = 100 * 1024  # over the scheduler's inline result size: such a result is kept as an object


def _run_control(directory: Path) -> str:
    """Run SCHEDULER_SCRIPT's hook on a canary of its own; return what the hook recorded."""
    directory.mkdir()
    marker = directory / "audit.log"
    env = {**os.environ, **audit_environment(marker, directory, control=canary_pickle(directory))}
    subprocess.run([sys.executable, "-c", SCHEDULER_SCRIPT], env=env, timeout=60, check=True)
    assert canary_fired(directory) == ["opened", "touched"], "the canary pickle does not work"
    return marker.read_text()


class _FakeWorker:
    """Answers the tasks it is given from a script of results (each task id: its answers, in order)."""

    def __init__(self, peer: RawPeer, script: dict[bytes, list[TaskResult]]) -> None:
        self.peer = peer
        self.script = script
        self.given: list[Task] = []
        self.cancelled: list[bytes] = []

    def serve_once(self, hold: set[bytes]) -> None:
        for message in self.peer.worker_sync():
            if isinstance(message, Task):
                self.given.append(message)
                answers = self.script.get(message.task_id)
                if message.task_id not in hold and answers:
                    answer = answers.pop(0)
                    answer.attempt = message.attempt
                    self.peer.send(answer)
            elif isinstance(message, TaskCancel):
                self.cancelled.append(message.task_id)
                self.peer.send(TaskCancelConfirm(message.task_id, CancelConfirmType.CANCELED))
            elif isinstance(message, BalanceRequest):
                self.peer.send(BalanceResponse([]))  # keeps everything


@pytest.mark.timeout(90)
def test_the_scheduler_never_unpickles_a_payload(tmp_path: Path) -> None:
    # The control: the hook, installed exactly as for the scheduler below, does see this pickle load.
    control = _run_control(tmp_path / "control")
    assert "pickle.find_class" in control and "os.system" in control and "open" in control, control

    canaries = tmp_path / "canary"
    canaries.mkdir()
    marker = tmp_path / "audit.log"
    canary = canary_pickle(canaries)
    with HostileScheduler(tmp_path, n_workers=0, env=audit_environment(marker, canaries)) as scheduler:
        bystander = Bystander(scheduler, wait_started=False)  # its tasks wait for a real worker
        try:
            with RawPeer(scheduler.address) as client, RawPeer(scheduler.address) as worker:
                client.client_sync()
                worker.worker_sync(CANARY_WORKER)
                # 1. The canary in each bytes field of each message type, from both sides.
                positions = [path for kind in ALL_MESSAGES for path, _ in with_each_bytes_field(kind, canary)]
                for kind in ALL_MESSAGES:
                    for _, message in with_each_bytes_field(kind, canary):
                        client.send(message)
                        worker.send(message)
                client.client_sync()
                # None of these is a task anyone may run (ids are not hashes, or nothing is known of them).
                assert not any(isinstance(m, Task) for m in worker.worker_sync()), "a task was dispatched"
                deep = _through_the_real_paths(client, worker, canary)
                client.send(ClientDisconnect(DisconnectType.DISCONNECT))
                worker.leave_as_worker()
            print(
                f"\nthe canary in {len(positions)} fields x 2 senders: {', '.join(positions)}; "
                f"then where the scheduler keeps or forwards it: {', '.join(deep)}"
            )
            assert marker.exists(), "the scheduler ran without its audit hook"
            assert canary_fired(canaries) == []
            assert marker.read_text() == "", "the scheduler unpickled something"
            scheduler.start_workers(1)  # the canary is gone: a real worker may come now
            bystander.check()
            assert canary_fired(canaries) == []
            assert marker.read_text() == ""
        finally:
            bystander.close()


def _through_the_real_paths(client: RawPeer, worker: RawPeer, canary: bytes) -> list[str]:
    """Send the canary where the scheduler keeps and forwards it; check it arrives intact. Returns where it went."""
    # A stored object, read back.
    stored = canary + b"object"
    client.send(ObjectInstruction(ObjectInstructionType.CREATE, [content_id(stored)], [stored]))
    response, _ = client.exchange(ObjectRequest([content_id(stored)]), ObjectResponse)
    assert (response.found, response.payloads) == ([True], [stored])
    # Tasks whose function, arguments and attached object are the canary, and a graph.
    function = canary + b"function"
    fid = content_id(function)
    args = [
        TaskArgument("", ArgumentKind.INLINE, canary),
        TaskArgument("", ArgumentKind.OBJECT, content_id(stored)),
        TaskArgument("keyword", ArgumentKind.INLINE, canary + b"keyword"),
    ]
    ids = {name: os.urandom(16) for name in ("small", "big", "failed", "retried", "cancelled")}
    tasks = [Task(task_id, fid, function, args, 0, capabilities=dict(CANARY_WORKER)) for task_id in ids.values()]
    first, second = os.urandom(16), os.urandom(16)
    graph = GraphTask(
        os.urandom(16),
        [
            GraphNode(first, fid, function, [TaskArgument("", ArgumentKind.INLINE, canary)], []),
            GraphNode(second, fid, b"", [TaskArgument("", ArgumentKind.OBJECT, first)], [first]),
        ],
        [second],
    )
    result = {name: canary + name.encode() for name in ("small", "failed", "retried", "first", "second")}
    big = canary + b"\0" * BIG
    script = {
        ids["small"]: [TaskResult(ids["small"], TaskStatus.SUCCESS, result["small"], 0)],
        ids["big"]: [TaskResult(ids["big"], TaskStatus.SUCCESS, big, 0)],
        ids["failed"]: [TaskResult(ids["failed"], TaskStatus.FAILED, result["failed"], 0)],
        ids["retried"]: [
            TaskResult(ids["retried"], TaskStatus.PROCESSOR_DIED, canary, 0),
            TaskResult(ids["retried"], TaskStatus.SUCCESS, result["retried"], 0),
        ],
        first: [TaskResult(first, TaskStatus.SUCCESS, result["first"], 0)],
        second: [TaskResult(second, TaskStatus.SUCCESS, result["second"], 0)],
    }
    fake = _FakeWorker(worker, script)
    for task in tasks:
        client.send(task)
    client.send(graph)
    answers: dict[bytes, Message] = {}
    wanted = {*ids.values(), second}
    deadline = time.monotonic() + 20
    cancel_sent = False
    while set(answers) != wanted:
        assert time.monotonic() < deadline, f"answers for {len(answers)} of {len(wanted)} tasks"
        fake.serve_once(hold={ids["cancelled"]})
        if not cancel_sent and any(task.task_id == ids["cancelled"] for task in fake.given):
            client.send(TaskCancel(ids["cancelled"]))
            cancel_sent = True
        for message in client.client_sync():
            if isinstance(message, (TaskResult, TaskCancelConfirm)):
                answers[message.task_id] = message
        time.sleep(0.01)
    # What the fake worker was given carried the canary untouched: function, arguments, object.
    given = {task.task_id: task for task in fake.given}
    assert given[ids["small"]].function == function and given[ids["small"]].args == args
    assert [(o.object_id, o.data) for o in given[ids["small"]].objects] == [(content_id(stored), stored)]
    assert [(o.object_id, o.data) for o in given[second].objects] == [(first, result["first"])]
    assert [task.attempt for task in fake.given if task.task_id == ids["retried"]] == [1, 2]
    # What the client got back is what the fake worker sent.
    assert isinstance(answers[ids["cancelled"]], TaskCancelConfirm)
    outcomes = {task_id: (m.status, m.payload) for task_id, m in answers.items() if isinstance(m, TaskResult)}
    assert outcomes[ids["small"]] == (TaskStatus.SUCCESS, result["small"])
    assert outcomes[ids["failed"]] == (TaskStatus.FAILED, result["failed"])
    assert outcomes[ids["retried"]] == (TaskStatus.SUCCESS, result["retried"])
    assert outcomes[second] == (TaskStatus.SUCCESS, result["second"])
    kept = answers[ids["big"]]
    assert isinstance(kept, TaskResult) and kept.result_object_id == ids["big"] and kept.payload == b""
    response, _ = client.exchange(ObjectRequest([ids["big"]]), ObjectResponse)
    assert (response.found, response.payloads) == ([True], [big])
    return [
        "a stored object (read back, and attached to a task)",
        "a task's function",
        "inline positional and keyword arguments",
        "a graph node's function and argument",
        "a graph node's result, kept and attached to the next node",
        "small, failed and processor-died results",
        "a big result, kept and read back",
    ]
