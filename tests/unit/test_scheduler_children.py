"""Tasks submitted from inside a task: stopping the parent stops its children (``task_tree.py``).

The outer client C1 submits a parent P, which W1 runs. The client inside P's processor (C2)
submits P's children, each naming P as its ``parent_task_id``. With two workers of two slots,
the children go c1 -> W2, c2 -> W1, c3 -> W2, and c4 waits in the scheduler's queue. Every step
goes through ``Harness``, which validates the state (the links included) after it.
"""

from __future__ import annotations

import dataclasses
import sys

import pytest

from scaler.protocol.messages import (
    ClientDisconnect,
    DisconnectRequest,
    DisconnectType,
    GraphNode,
    GraphTask,
    Task,
    TaskCancel,
    TaskCredit,
    TaskResult,
    TaskStarted,
    TaskStatus,
)
from scaler.scheduler.state import Instruction, SchedulerConfig, Send
from scaler.scheduler.task_table import TaskState
from scaler.scheduler.task_tree import STOPPED_MEMORY
from tests.unit.test_scheduler_state import (
    C1,
    C2,
    C3,
    CANCEL_FAILED,
    CANCEL_NOT_FOUND,
    CANCELED,
    FN,
    FN_BYTES,
    W1,
    W2,
    Harness,
    args_of,
    confirm,
    dispatched,
    result,
    task,
)

P = b"parent"
CHILDREN = [b"c1", b"c2", b"c3", b"c4"]


def child(task_id: bytes, parent: bytes = P, function: bytes = b"") -> Task:
    """A task as a client inside ``parent``'s processor sends it."""
    sent = task(task_id, function=function)
    sent.parent_task_id = parent
    return sent


def without_credits(out: list[Instruction]) -> list[Instruction]:
    return [send for send in out if not (isinstance(send, Send) and isinstance(send.message, TaskCredit))]


def same(out: list[Instruction], expected: list[Instruction]) -> bool:
    """The same instructions in any order: a parent's children are a set."""
    return sorted(map(repr, out)) == sorted(map(repr, expected))


def family(config: SchedulerConfig | None = None, credits: bool = False) -> Harness:
    """P runs on W1 and has started; its four children are placed as the module docstring says."""
    h = Harness(config or SchedulerConfig(per_worker_queue_size=2, max_task_retries=1), credits=credits)
    h.add_worker(W1)
    h.add_worker(W2)
    assert without_credits(h.handle(C1, task(P))) == [Send(W1, dispatched(P, function=FN_BYTES))]
    h.handle(W1, TaskStarted(P, 1))
    assert without_credits(h.handle(C2, child(b"c1"))) == [Send(W2, dispatched(b"c1", function=FN_BYTES))]
    assert without_credits(h.handle(C2, child(b"c2"))) == [Send(W1, dispatched(b"c2"))]
    assert without_credits(h.handle(C2, child(b"c3"))) == [Send(W2, dispatched(b"c3"))]
    assert without_credits(h.handle(C2, child(b"c4"))) == []
    assert h.stats()["linked_children"] == 4
    return h


def children_stopped(h: Harness) -> list[Instruction]:
    """What stopping P's four children sends: c4 ends at once, the others through their workers."""
    return [
        Send(C2, confirm(b"c4", CANCELED)),
        Send(W2, TaskCancel(b"c1")),
        Send(W1, TaskCancel(b"c2")),
        Send(W2, TaskCancel(b"c3")),
    ]


def workers_confirm_children(h: Harness) -> None:
    for task_id, worker in ((b"c1", W2), (b"c2", W1), (b"c3", W2)):
        assert h.handle(worker, confirm(task_id, CANCELED)) == [Send(C2, confirm(task_id, CANCELED))]


def assert_nothing_left(h: Harness) -> None:
    stats = h.stats()
    assert (stats["tasks"], stats["queued"], stats["assigned"], stats["linked_children"]) == (0, 0, 0, 0)
    assert not h.state.workers[W1].tasks and not h.state.workers[W2].tasks


# -- the parent is cancelled ----------------------------------------------------------------------


def test_cancelling_a_parent_cancels_its_queued_children_at_once_and_its_running_ones_through_their_workers() -> None:
    h = family()
    out = h.handle(C1, TaskCancel(P))
    assert same(out, [Send(W1, TaskCancel(P)), *children_stopped(h)])
    assert h.task_state(P) is TaskState.CANCELING
    assert [h.task_state(task_id) for task_id in CHILDREN] == [TaskState.CANCELING] * 3 + [None]
    assert h.handle(W1, confirm(P, CANCELED)) == [Send(C1, confirm(P, CANCELED))]
    workers_confirm_children(h)
    assert_nothing_left(h)


def test_the_cancel_goes_down_every_level() -> None:
    h = family()
    # c1 runs on W2 and submits its own child through a third client.
    h.handle(C3, child(b"g1", parent=b"c1"))
    assert h.task_state(b"g1") is TaskState.QUEUED
    out = h.handle(C1, TaskCancel(P))
    assert same(out, [Send(W1, TaskCancel(P)), *children_stopped(h), Send(C3, confirm(b"g1", CANCELED))])


def test_a_chain_deeper_than_the_recursion_limit_is_cancelled_whole() -> None:
    depth = sys.getrecursionlimit() + 500
    h = Harness(SchedulerConfig(per_worker_queue_size=depth + 1))
    h.add_worker(W1)
    h.state.handle(C1, task(b"t0"), 0.0)
    for level in range(1, depth + 1):  # each one is dispatched, so it may be the next one's parent
        h.state.handle(C1, child(b"t%d" % level, parent=b"t%d" % (level - 1)), 0.0)
    assert h.stats()["linked_children"] == depth
    out = h.handle(C1, TaskCancel(b"t0"))
    assert len(out) == depth + 1 and all(send == Send(W1, TaskCancel(send.message.task_id)) for send in out)
    assert h.stats()["linked_children"] == 0


def test_the_parents_client_leaving_cancels_the_children_too() -> None:
    h = family()
    out = h.handle(C1, ClientDisconnect(DisconnectType.DISCONNECT))
    assert same(out, [Send(W1, TaskCancel(P)), *children_stopped(h)])


def test_a_refused_cancel_leaves_the_children_cancelled_and_new_ones_link_again() -> None:
    h = family()
    h.handle(C1, TaskCancel(P))
    assert h.handle(W1, confirm(P, CANCEL_FAILED)) == [Send(C1, confirm(P, CANCEL_FAILED))]
    workers_confirm_children(h)
    h.handle(C2, child(b"c5"))
    assert h.state.tasks[b"c5"].parent == P


def test_a_child_sent_while_its_parent_is_being_cancelled_is_cancelled_on_arrival() -> None:
    h = family()
    h.handle(C1, TaskCancel(P))
    assert h.handle(C2, child(b"late")) == [Send(C2, confirm(b"late", CANCELED))]


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_child_read_after_its_parent_was_stopped_is_cancelled_on_arrival(how: str) -> None:
    h = family(SchedulerConfig(per_worker_queue_size=2, max_number_of_tasks_waiting=10), credits=True)
    if how == "cancel":
        h.handle(C1, TaskCancel(P))
        h.handle(W1, confirm(P, CANCELED))
    else:
        h.handle(W1, TaskResult(P, TaskStatus.TIMEOUT, b"too long", 1))
    assert P not in h.state.tasks
    assert h.state.clients[C2].waiting == 0  # c4 was cancelled too, and gave its credit back
    # Its credit comes back at once, like a refused task's.
    assert h.handle(C2, child(b"late")) == [Send(C2, confirm(b"late", CANCELED)), Send(C2, TaskCredit(1))]
    assert h.handle(C2, child(b"late-too")) == [Send(C2, confirm(b"late-too", CANCELED)), Send(C2, TaskCredit(1))]
    graph = GraphTask(b"g", [GraphNode(b"n1", FN, b"", args_of(b"n1"), [])], [b"n1"], parent_task_id=P)
    assert h.handle(C2, graph) == [Send(C2, confirm(b"n1", CANCELED))]
    assert b"late" not in h.state.tasks and not h.state.graphs


def test_only_a_bounded_number_of_stopped_parents_is_remembered() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=STOPPED_MEMORY + 10))
    h.add_worker(W1)
    for index in range(STOPPED_MEMORY + 1):
        task_id = b"t%d" % index
        h.state.handle(C1, task(task_id, FN_BYTES if index == 0 else b""), 0.0)
        h.state.handle(C1, TaskCancel(task_id), 0.0)
        h.state.handle(W1, confirm(task_id, CANCELED), 0.0)
    h.state.validate()
    # The oldest is forgotten: a late child of it runs as a top-level task.
    h.handle(C2, child(b"late-0", parent=b"t0"))
    assert h.state.tasks[b"late-0"].parent == b""
    assert h.handle(C2, child(b"late-1", parent=b"t1")) == [Send(C2, confirm(b"late-1", CANCELED))]


# -- the parent fails in a way that stops its code ------------------------------------------------


@pytest.mark.parametrize("status", [TaskStatus.TIMEOUT, TaskStatus.PROCESSOR_DIED])
def test_a_parent_that_times_out_or_loses_its_processor_for_good_takes_its_children(status: TaskStatus) -> None:
    h = family(SchedulerConfig(per_worker_queue_size=2, max_task_retries=0))
    out = h.handle(W1, TaskResult(P, status, b"stopped", 1))
    assert out[0].message.task_id == P and out[0].message.status is status
    # c4 is cancelled before the dispatch that would give it P's freed slot.
    assert same(out[1:], children_stopped(h))
    workers_confirm_children(h)
    assert_nothing_left(h)


def test_a_parent_retried_after_its_processor_died_loses_its_old_children_and_keeps_its_new_ones() -> None:
    h = family()
    out = h.handle(W1, TaskResult(P, TaskStatus.PROCESSOR_DIED, b"crash", 1))
    # P goes back to the front of the queue and to W1 again (its slot is free); its old children are cancelled.
    assert same(out, [*children_stopped(h), Send(W1, dispatched(P, attempt=2))])
    # A child of the dead run read while P waited would have been cancelled; once P runs again, they link to it.
    workers_confirm_children(h)
    h.handle(W1, TaskStarted(P, 2))
    h.handle(C2, child(b"new"))
    assert h.state.tasks[b"new"].parent == P


def test_a_child_naming_a_parent_waiting_in_the_queue_is_cancelled_on_arrival() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=2))
    h.handle(C1, task(P))  # no worker: P waits in the queue, so nothing it submitted can be current
    assert h.handle(C2, child(b"stale")) == [Send(C2, confirm(b"stale", CANCELED))]


@pytest.mark.parametrize("how", ["died", "released"])
def test_a_parent_whose_worker_goes_loses_its_children_even_those_on_the_same_worker(how: str) -> None:
    h = family()
    if how == "died":
        out = h.worker_disconnected(W1)
    else:
        h.handle(W1, DisconnectRequest(drain=True))  # P and c2 keep running there ...
        out = h.handle(W1, DisconnectRequest())  # ... until the grace period ends
    # P is requeued (its retry goes to W2, the only worker); c2, requeued from W1 too, and c4 end at
    # once; c1 and c3 are cancelled on W2.
    assert h.task_state(P) is TaskState.QUEUED
    assert [h.task_state(task_id) for task_id in CHILDREN] == [TaskState.CANCELING, None, TaskState.CANCELING, None]
    assert Send(C2, confirm(b"c2", CANCELED)) in out and Send(C2, confirm(b"c4", CANCELED)) in out
    assert Send(W2, TaskCancel(b"c1")) in out and Send(W2, TaskCancel(b"c3")) in out
    h.handle(W2, confirm(b"c1", CANCELED))
    h.handle(W2, confirm(b"c3", CANCELED))
    assert h.task_state(P) is TaskState.ASSIGNED and h.state.tasks[P].worker == W2


def test_a_parent_failing_for_good_with_its_worker_takes_its_children() -> None:
    h = family(SchedulerConfig(per_worker_queue_size=2, max_task_retries=0))
    out = h.worker_disconnected(W1)
    assert Send(C1, TaskResult(P, TaskStatus.WORKER_DIED, out[0].message.payload, 1)) == out[0]
    assert P not in h.state.tasks
    assert [h.task_state(task_id) for task_id in CHILDREN] == [TaskState.CANCELING, None, TaskState.CANCELING, None]


# -- the parent ends on its own: its children run on ---------------------------------------------


@pytest.mark.parametrize("status", [TaskStatus.SUCCESS, TaskStatus.FAILED])
def test_a_parent_that_returns_or_raises_leaves_its_children_running(status: TaskStatus) -> None:
    h = family()
    out = h.handle(W1, dataclasses.replace(result(P), status=status))
    assert out == [Send(C1, dataclasses.replace(result(P), status=status)), Send(W1, dispatched(b"c4"))]
    assert h.stats()["linked_children"] == 0 and h.stats()["tasks"] == 4
    assert all(h.state.tasks[task_id].parent == b"" for task_id in CHILDREN)
    # A late child of a parent that ended on its own is an ordinary top-level task.
    h.handle(C2, child(b"late"))
    assert h.state.tasks[b"late"].parent == b""
    # And the children end as usual.
    assert h.handle(W2, result(b"c1")) == [Send(C2, result(b"c1")), Send(W2, dispatched(b"late"))]


def test_a_child_ending_leaves_its_parent_linked_to_the_others() -> None:
    h = family()
    h.handle(W2, result(b"c1"))
    assert h.stats()["linked_children"] == 3
    h.handle(C2, TaskCancel(b"c3"))
    h.handle(W2, confirm(b"c3", CANCEL_NOT_FOUND))
    assert h.stats()["linked_children"] == 2
    assert h.state.tasks[P].state is TaskState.ASSIGNED  # a child's end never touches its parent


def test_a_child_naming_an_unknown_parent_is_a_top_level_task() -> None:
    h = Harness()
    h.handle(C2, child(b"orphan", parent=b"never-seen", function=FN_BYTES))
    assert h.task_state(b"orphan") is TaskState.QUEUED
    assert h.state.tasks[b"orphan"].parent == b""


# -- graphs ---------------------------------------------------------------------------------------


def test_a_graph_submitted_by_a_parent_is_cancelled_whole_with_it() -> None:
    h = family()
    nodes = [
        GraphNode(b"n1", FN, b"", args_of(b"n1"), []),
        GraphNode(b"n2", FN, b"", args_of(b"n2"), [b"n1"]),
    ]
    h.handle(C3, GraphTask(b"graph", nodes, [b"n2"], parent_task_id=P))
    assert h.task_state(b"n1") is TaskState.QUEUED and h.task_state(b"n2") is TaskState.WAITING
    out = h.handle(C1, TaskCancel(P))
    assert same(out, [Send(W1, TaskCancel(P)), *children_stopped(h), Send(C3, confirm(b"n2", CANCELED))])
    assert not h.state.graphs


def test_a_graph_node_may_be_a_parent() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=2))
    h.add_worker(W1)
    h.handle(C1, GraphTask(b"graph", [GraphNode(b"n1", FN, FN_BYTES, args_of(b"n1"), [])], [b"n1"]))
    h.handle(C2, child(b"c", parent=b"n1"))
    assert h.state.tasks[b"c"].parent == b"n1"
    out = h.handle(C1, TaskCancel(b"n1"))
    assert same(out, [Send(W1, TaskCancel(b"n1")), Send(W1, TaskCancel(b"c"))])
