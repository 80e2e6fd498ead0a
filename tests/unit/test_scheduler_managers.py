"""The scheduler's side of worker managers: heartbeats in, WorkerManagerCommand out (no sockets, no sleeps)."""

from __future__ import annotations

import pytest

from scaler.protocol.messages import (
    DisconnectRequest,
    ManagedWorkerRecord,
    ManagedWorkerState,
    TaskStarted,
    WorkerHeartbeat,
    WorkerManagerCommand,
    WorkerManagerHeartbeat,
)
from scaler.scheduler.managers import worker_name
from scaler.scheduler.state import SchedulerConfig, Send
from tests.unit.test_scheduler_state import C1, Harness, dispatched, result, task

pytestmark = pytest.mark.timeout(30)

M1 = b"manager|m1|1|aaaa"
RUNNING = ManagedWorkerState.RUNNING
STARTING = ManagedWorkerState.STARTING


def wid(name: str) -> bytes:
    return f"worker|{name}|42|abcd".encode()


def beat(
    names: dict[str, ManagedWorkerState], low: int = 0, high: int = 4, caps: dict[str, int] | None = None
) -> WorkerManagerHeartbeat:
    records = [ManagedWorkerRecord(name, state, "") for name, state in names.items()]
    return WorkerManagerHeartbeat("m1", caps or {}, low, high, 1, 0.0, records)


def command(out: list) -> WorkerManagerCommand:
    (send,) = [i for i in out if isinstance(i, Send) and isinstance(i.message, WorkerManagerCommand)]
    assert send.to == M1
    return send.message


@pytest.fixture
def h() -> Harness:
    return Harness(SchedulerConfig(worker_idle_seconds=10, per_worker_queue_size=100))


def test_worker_name_is_read_from_the_identity() -> None:
    assert worker_name(b"worker|m1.00ff|12|ab") == "m1.00ff"
    assert worker_name(b"client|x|1|a") == ""


def test_a_new_manager_gets_its_minimum(h: Harness) -> None:
    assert command(h.handle(M1, beat({}, low=2))) == WorkerManagerCommand(2, [])


def test_waiting_tasks_ask_for_workers_and_starting_ones_count(h: Harness) -> None:
    for index in range(3):
        h.handle(C1, task(f"t{index}".encode()))
    assert command(h.handle(M1, beat({}))).target == 3
    # The manager started them: asking again gives the same count, not three more.
    assert command(h.handle(M1, beat({"m1.a": STARTING, "m1.b": STARTING, "m1.c": STARTING}))).target == 3


def test_tasks_queued_at_a_worker_but_not_started_count_as_waiting(h: Harness) -> None:
    h.add_worker(wid("m1.a"))
    for index in range(3):
        h.handle(C1, task(f"t{index}".encode()))
    h.handle(wid("m1.a"), TaskStarted(b"t0", 1))
    # One runs, two wait behind it on the same worker: two more workers are wanted.
    assert command(h.handle(M1, beat({"m1.a": RUNNING}))).target == 3


def test_an_idle_worker_is_stopped_after_the_idle_period_and_gets_nothing_meanwhile(h: Harness) -> None:
    h.add_worker(wid("m1.a"))
    h.add_worker(wid("m1.b"))
    h.handle(C1, task(b"t0"))
    h.handle(wid("m1.a"), TaskStarted(b"t0", 1))
    h.now = 5
    assert command(h.handle(M1, beat({"m1.a": RUNNING, "m1.b": RUNNING}))) == WorkerManagerCommand(2, [])
    h.now = 11  # b idle since it joined at 0; a busy
    assert command(h.handle(M1, beat({"m1.a": RUNNING, "m1.b": RUNNING}))) == WorkerManagerCommand(1, ["m1.b"])
    assert h.state.workers[wid("m1.b")].retiring
    # A new task goes to a, never to b, which is being stopped.
    out = h.handle(C1, task(b"t1"))
    assert Send(wid("m1.a"), dispatched(b"t1")) in out
    assert all(i.to != wid("m1.b") for i in out if isinstance(i, Send))


def test_a_busy_worker_is_never_stopped(h: Harness) -> None:
    h.add_worker(wid("m1.a"))
    h.handle(C1, task(b"t0"))
    h.handle(wid("m1.a"), TaskStarted(b"t0", 1))
    h.now = 100
    assert command(h.handle(M1, beat({"m1.a": RUNNING}))) == WorkerManagerCommand(1, [])
    h.handle(wid("m1.a"), result(b"t0"))
    h.now = 105  # idle since its result at 100: not yet an idle period
    assert command(h.handle(M1, beat({"m1.a": RUNNING}))) == WorkerManagerCommand(1, [])
    h.now = 111
    assert command(h.handle(M1, beat({"m1.a": RUNNING}))) == WorkerManagerCommand(0, ["m1.a"])


def test_workers_of_no_manager_are_left_alone(h: Harness) -> None:
    h.add_worker(b"worker|someone|1|x")
    h.now = 1000
    assert command(h.handle(M1, beat({}))) == WorkerManagerCommand(0, [])


def test_a_task_a_manager_could_serve_is_not_rejected_for_want_of_a_worker() -> None:
    h = Harness(SchedulerConfig(unschedulable_grace_seconds=1, worker_idle_seconds=10))
    h.handle(M1, beat({}, caps={"gpu": 1}))
    gpu_task = task(b"g")
    gpu_task.capabilities = {"gpu": 1}
    h.handle(C1, gpu_task)
    h.tick(0.5)
    h.tick(5)
    assert h.state.tasks[b"g"].task.task_id == b"g"  # still queued: a worker can be started for it
    assert command(h.handle(M1, beat({}, caps={"gpu": 1}))).target == 1


def test_a_silent_manager_is_forgotten_and_its_retiring_worker_serves_again() -> None:
    h = Harness(SchedulerConfig(worker_idle_seconds=1, worker_timeout_seconds=5))
    h.add_worker(wid("m1.a"))
    h.now = 2
    assert command(h.handle(M1, beat({"m1.a": RUNNING}))).stop_workers == ["m1.a"]
    h.tick(4)
    h.add_worker(wid("m1.a"))  # the worker is alive; its manager is not
    h.tick(8)
    assert len(h.state.managers) == 0 and not h.state.workers[wid("m1.a")].retiring
    assert Send(wid("m1.a"), dispatched(b"t0", function=b"pickled-function")) in h.handle(C1, task(b"t0"))


def test_impossible_limits_are_ignored(h: Harness) -> None:
    assert h.handle(M1, beat({}, low=3, high=1)) == []
    assert len(h.state.managers) == 0


def test_a_drained_worker_its_manager_still_lists_is_not_counted_as_starting(h: Harness) -> None:
    # Found end to end: a stopped worker leaves the scheduler at once (it held nothing) while its
    # process still exits, so the manager lists it a little longer. Counted as "starting", it made
    # the target one too high and the manager started a replacement for every worker it stopped.
    h.add_worker(wid("m1.a"))
    h.add_worker(wid("m1.b"))
    h.now = 11
    both = {"m1.a": RUNNING, "m1.b": RUNNING}
    assert command(h.handle(M1, beat(both, low=1))) == WorkerManagerCommand(1, ["m1.a"])
    h.handle(wid("m1.a"), DisconnectRequest(drain=True))
    h.handle(wid("m1.a"), DisconnectRequest())
    assert wid("m1.a") not in h.state.workers
    assert command(h.handle(M1, beat(both, low=1))) == WorkerManagerCommand(1, [])
    # Once the manager no longer lists it, the name is forgotten.
    assert command(h.handle(M1, beat({"m1.b": RUNNING}, low=1))) == WorkerManagerCommand(1, [])
    assert not h.state.managers[M1].stopping


def test_a_heartbeat_sent_before_the_leave_was_granted_does_not_bring_the_worker_back(h: Harness) -> None:
    # Found end to end: a drained worker's last heartbeat, in flight when the scheduler let it go,
    # registered it again as a fresh idle worker; its manager then saw a target one above what it
    # ran and started a replacement.
    h.add_worker(wid("m1.a"))
    h.now = 11
    assert command(h.handle(M1, beat({"m1.a": RUNNING}))) == WorkerManagerCommand(0, ["m1.a"])
    h.handle(wid("m1.a"), DisconnectRequest(drain=True))
    assert wid("m1.a") not in h.state.workers
    assert h.handle(wid("m1.a"), WorkerHeartbeat(h.now, 0, 0.0, 0)) == []
    assert wid("m1.a") not in h.state.workers
    assert command(h.handle(M1, beat({"m1.a": RUNNING}))) == WorkerManagerCommand(0, [])
    h.tick(11 + SchedulerConfig().worker_timeout_seconds + 1)  # the memory of it is dropped in time
    assert not h.state.workers.was_released(wid("m1.a"))


def test_a_task_just_sent_to_an_idle_worker_asks_for_no_new_worker(h: Harness) -> None:
    # Between its dispatch and the worker's TaskStarted, a task sent to an idle worker is not
    # waiting: counting it asked the manager for a worker at every dispatch that a heartbeat met.
    h.add_worker(wid("m1.a"))
    h.handle(C1, task(b"t0"))
    assert command(h.handle(M1, beat({"m1.a": RUNNING}))) == WorkerManagerCommand(1, [])
    h.handle(C1, task(b"t1"))  # queued behind t0 on the same worker: it does wait
    assert command(h.handle(M1, beat({"m1.a": RUNNING}))) == WorkerManagerCommand(2, [])


def test_a_manager_restarted_under_the_same_name_replaces_its_predecessor_at_once(h: Harness) -> None:
    # The SIGKILL-and-restart case: the old manager stayed on the books for a worker timeout,
    # and a worker it had been told to stop (and never stopped) got no task and no stop meanwhile.
    h.add_worker(wid("m1.a"))
    h.now = 11
    assert command(h.handle(M1, beat({"m1.a": RUNNING}))) == WorkerManagerCommand(0, ["m1.a"])
    restarted = b"manager|m1|2|bbbb"
    out = h.handle(restarted, beat({"m1.a": RUNNING}))
    assert list(h.state.managers) == [restarted]
    (send,) = [i for i in out if isinstance(i, Send)]
    assert send == Send(restarted, WorkerManagerCommand(0, ["m1.a"]))  # the new one is told, and stops it
