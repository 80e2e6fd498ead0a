"""Well-formed messages from peers that lie: forged results, and reaching for other clients' tasks and objects.

A fake worker is a raw DEALER that sent a WorkerHeartbeat, which is all it takes today (see
docs/security.md). It never offers ``legit``, so it is never given the bystander's tasks; each
test has it leave before the final check, so the fresh client's task goes to the real worker.
"""

from __future__ import annotations

import os
import pickle
import time

import pytest

from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ArgumentKind,
    BalanceResponse,
    CancelConfirmType,
    ClientDisconnect,
    DisconnectType,
    GraphNode,
    GraphTask,
    LogStream,
    Message,
    ObjectInstruction,
    ObjectInstructionType,
    ObjectRequest,
    ObjectResponse,
    Task,
    TaskArgument,
    TaskCancel,
    TaskCancelConfirm,
    TaskLog,
    TaskResult,
    TaskStarted,
    TaskStatus,
)
from tests.security import hostile_tasks
from tests.security.hostile_support import LEGIT, Bystander, HostileScheduler, RawPeer, fresh_round_trip, wait_for

FORGED = pickle.dumps("forged")


def _lies_about(task_ids: list[bytes]) -> list[Message]:
    """Every worker message that would end, confirm or move these tasks, for attempts 0 to 3."""
    lies: list[Message] = []
    for task_id in task_ids:
        for attempt in range(4):
            lies += [
                TaskResult(task_id, TaskStatus.SUCCESS, FORGED, attempt),
                TaskResult(task_id, TaskStatus.FAILED, FORGED, attempt),
                TaskResult(task_id, TaskStatus.PROCESSOR_DIED, b"died", attempt),
                TaskStarted(task_id, attempt),
            ]
        lies += [
            TaskCancelConfirm(task_id, CancelConfirmType.CANCELED),
            TaskLog(task_id, LogStream.STDOUT, "forged output\n"),
        ]
    return lies + [BalanceResponse(task_ids)]


def _dropped_results(scheduler: HostileScheduler, identity: bytes) -> int:
    name = identity.decode()
    return sum("dropped a result" in line and name in line for line in scheduler.log_lines())


@pytest.mark.timeout(60)
def test_forged_results_are_ignored_and_logged(hostile_scheduler: HostileScheduler, bystander: Bystander) -> None:
    victims = bystander.task_ids
    unknown = [os.urandom(16) for _ in range(3)]
    with RawPeer(hostile_scheduler.address) as stranger, RawPeer(hostile_scheduler.address) as fake_worker:
        # A peer that never said what it is, then one posing as a worker, lie about the bystander's
        # tasks (which neither was given) and about tasks that do not exist.
        for lie in _lies_about(victims + unknown):
            stranger.send(lie)
        assert stranger.ping() == []
        assert fake_worker.worker_sync() == []
        for lie in _lies_about(victims + unknown):
            fake_worker.send(lie)
        assert fake_worker.worker_sync() == [], "the fake worker was sent something"
        assert fake_worker.leave_as_worker() == []
        logged = {"stranger": _dropped_results(hostile_scheduler, stranger.identity)}
        logged["fake worker"] = _dropped_results(hostile_scheduler, fake_worker.identity)
    print(f"\nforged results logged as dropped: {logged}")
    # Logged, but rate-limited: at most 10 lines a second for the lot, however many lies arrive.
    assert 1 <= sum(logged.values()) <= 10, "forged results must be logged, and not one line each"
    bystander.check()  # the real results, each future notified exactly once


def _receive_task(worker: RawPeer, timeout: float = 10.0) -> Task:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in worker.worker_sync():
            if isinstance(message, Task):
                return message
        time.sleep(0.01)
    raise AssertionError("the fake worker was never given the task")


@pytest.mark.timeout(60)
def test_a_duplicate_result_reaches_the_client_once(hostile_scheduler: HostileScheduler, bystander: Bystander) -> None:
    function = b"opaque bytes, never unpickled"
    task = Task(os.urandom(16), content_id(function), function, [], 0, capabilities={"fake": 1})
    with RawPeer(hostile_scheduler.address) as client, RawPeer(hostile_scheduler.address) as worker:
        worker.worker_sync({"fake": 1})
        client.client_sync()
        client.send(task)
        given = _receive_task(worker)
        assert (given.task_id, given.function) == (task.task_id, function)
        time.sleep(1.1)  # a fresh second for the rate-limited log of stale results (10 lines a second)
        first = TaskResult(task.task_id, TaskStatus.SUCCESS, b"first", given.attempt)
        for result in (
            first,
            first,
            TaskResult(task.task_id, TaskStatus.SUCCESS, b"second", given.attempt),
            TaskResult(task.task_id, TaskStatus.FAILED, b"third", given.attempt + 1),
            TaskResult(task.task_id, TaskStatus.SUCCESS, b"fourth", given.attempt - 1),
        ):
            worker.send(result)
        assert worker.worker_sync() == []
        got = client.client_sync()
        assert worker.leave_as_worker() == []
    assert got == [first], f"the client got {got}"
    assert _dropped_results(hostile_scheduler, worker.identity) >= 4
    bystander.check()


@pytest.mark.timeout(60)
def test_a_client_cannot_cancel_or_read_another_clients_tasks_and_objects(
    hostile_scheduler: HostileScheduler, bystander: Bystander
) -> None:
    victim = bystander.client
    secret = os.urandom(1000)
    reference = victim.send_object(secret)
    uses_object = victim.submit_verbose(
        hostile_tasks.length_when_released, (str(bystander.release), reference), {}, capabilities=LEGIT
    )
    victims = [*bystander.task_ids, uses_object.task_id]
    stolen = reference.object_id
    function = b"opaque bytes"
    borrow = TaskArgument("", ArgumentKind.OBJECT, stolen)
    with RawPeer(hostile_scheduler.address) as thief:
        thief.client_sync()
        for task_id in victims:
            answer, _ = thief.exchange(TaskCancel(task_id), TaskCancelConfirm)
            assert answer.confirm is CancelConfirmType.CANCEL_NOT_FOUND
        response, _ = thief.exchange(ObjectRequest([stolen, *victims]), ObjectResponse)
        assert response.found == [False] * (1 + len(victims)) and set(response.payloads) == {b""}
        # Tasks and graphs of its own that take the victim's object are refused, not run.
        steal = Task(os.urandom(16), content_id(function), function, [borrow], 0, capabilities=LEGIT)
        answer_to_task, _ = thief.exchange(steal, TaskResult)
        # MISSING_OBJECTS (Scaler's MissingObjects): the very answer an object never sent gets, so the
        # refusal tells the thief nothing about the victim's object.
        assert answer_to_task.status is TaskStatus.MISSING_OBJECTS
        node = GraphNode(os.urandom(16), content_id(function), function, [borrow], [])
        answer_to_graph, _ = thief.exchange(GraphTask(os.urandom(16), [node], [node.task_id]), TaskResult)
        assert answer_to_graph.status is TaskStatus.MISSING_OBJECTS
        # Dropping the victim's object, or everything, drops nothing of the victim's.
        thief.send(ObjectInstruction(ObjectInstructionType.DELETE, [stolen], []))
        thief.send(ObjectInstruction(ObjectInstructionType.CLEAR, [], []))
        thief.client_sync()
    # A peer taking the victim's very identity is refused by the ROUTER while the victim is
    # connected (zmq does not hand a connected identity over), so its cancels and goodbye go nowhere.
    identity = victim._agent.identity  # the one private access of these tests: a peer's identity
    with RawPeer(hostile_scheduler.address, identity=identity) as impostor:
        for task_id in victims:
            impostor.send(TaskCancel(task_id))
        impostor.send(ClientDisconnect(DisconnectType.DISCONNECT))
        assert impostor.receive_raw(0.5) == []
    bystander.check()
    assert uses_object.result(timeout=10) == len(secret)
    # The victim still holds its object, and its big result (kept on the scheduler) is its alone.
    assert victim.submit(len, reference).result(timeout=10) == len(secret)
    big = victim.submit(os.urandom, 200_000)
    wait_for(big.done, 10, "the big result")  # done, and kept on the scheduler until asked for
    with RawPeer(hostile_scheduler.address) as thief:
        thief.client_sync()
        response, _ = thief.exchange(ObjectRequest([big.task_id]), ObjectResponse)
        assert response.found == [False]
    assert len(big.result(timeout=10)) == 200_000
    assert fresh_round_trip(hostile_scheduler.address) < 1.0
