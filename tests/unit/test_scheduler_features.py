"""SchedulerState: objects, big results, graphs, priorities, capabilities, balancing and logs."""

from __future__ import annotations

from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ArgumentKind,
    BalanceRequest,
    BalanceResponse,
    CancelConfirmType,
    ClientDisconnect,
    DisconnectType,
    GraphNode,
    GraphTask,
    LogStream,
    ObjectContent,
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
    TaskResultWanted,
    TaskStatus,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
)
from scaler.scheduler.state import SchedulerConfig, Send
from scaler.scheduler.task_table import TaskState
from tests.unit.test_scheduler_state import (
    C1,
    CANCELED,
    FN,
    FN_BYTES,
    SCHEDULER_ID,
    W1,
    W2,
    Harness,
    dispatched,
    result,
    task,
)

C2 = b"client-2"
CREATE, DELETE, CLEAR = ObjectInstructionType.CREATE, ObjectInstructionType.DELETE, ObjectInstructionType.CLEAR


def object_arg(object_id: bytes) -> TaskArgument:
    return TaskArgument("", ArgumentKind.OBJECT, object_id)


def task_with_object(task_id: bytes, object_id: bytes, function: bytes = FN_BYTES) -> Task:
    return Task(task_id, FN, function, [object_arg(object_id)], 0)


O_DATA, O_BIG, O_SECRET, O_MINE = (content_id(data) for data in (b"data", b"big", b"secret", b"mine"))


def create(*pairs: tuple[bytes, bytes]) -> ObjectInstruction:
    return ObjectInstruction(CREATE, [object_id for object_id, _ in pairs], [data for _, data in pairs])


def sent_tasks(out: list) -> list[tuple[bytes, Task]]:
    return [(send.to, send.message) for send in out if isinstance(send.message, Task)]


# -- objects ---------------------------------------------------------------------------------------


def test_identical_objects_are_stored_once_and_freed_with_their_last_holder() -> None:
    h = Harness()
    h.handle(C1, create((O_DATA, b"data")))
    h.handle(C2, create((O_DATA, b"data")))
    assert h.stats()["objects"] == 1
    assert h.state.objects.total_bytes() == 4
    h.handle(C1, ObjectInstruction(DELETE, [O_DATA], []))
    assert h.stats()["objects"] == 1
    h.handle(C2, ObjectInstruction(CLEAR, [], []))
    assert h.stats()["objects"] == 0


def test_an_object_argument_travels_to_each_worker_once() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=10))
    h.add_worker(W1)
    h.handle(C1, create((O_BIG, b"big")))
    first = sent_tasks(h.handle(C1, task_with_object(b"t1", O_BIG)))
    second = sent_tasks(h.handle(C1, task_with_object(b"t2", O_BIG, function=b"")))
    assert first[0][1].objects == [ObjectContent(O_BIG, b"big")]
    assert second[0][1].objects == []


def test_an_object_lives_while_a_task_needs_it_then_leaves_the_workers_too() -> None:
    h = Harness()
    h.add_worker(W1)
    h.handle(C1, create((O_BIG, b"big")))
    h.handle(C1, task_with_object(b"t1", O_BIG))
    assert h.handle(C1, ObjectInstruction(DELETE, [O_BIG], [])) == []
    assert h.stats()["objects"] == 1  # t1 still needs it
    out = h.handle(W1, result(b"t1"))
    assert Send(W1, ObjectInstruction(DELETE, [O_BIG], [])) in out
    assert h.stats()["objects"] == 0


def test_a_task_naming_an_unknown_or_foreign_object_is_rejected() -> None:
    h = Harness()
    h.handle(C2, create((O_SECRET, b"secret")))
    out = h.handle(C1, task_with_object(b"t1", O_SECRET))
    assert len(out) == 1 and isinstance(out[0].message, TaskResult)
    assert out[0].message.status is TaskStatus.MISSING_OBJECTS
    assert b"unknown" in out[0].message.payload


def test_a_client_can_read_only_objects_it_holds() -> None:
    h = Harness()
    h.handle(C1, create((O_MINE, b"mine")))
    assert h.handle(C1, ObjectRequest([O_MINE, b"nope"])) == [
        Send(C1, ObjectResponse([O_MINE, b"nope"], [b"mine", b""], [True, False]))
    ]
    assert h.handle(C2, ObjectRequest([O_MINE])) == [Send(C2, ObjectResponse([O_MINE], [b""], [False]))]


def test_client_disconnect_frees_its_objects() -> None:
    h = Harness()
    h.handle(C1, create((content_id(b"x"), b"x"), (content_id(b"y"), b"y")))
    h.handle(C1, TaskCancel(b"none"))
    h.handle(C1, ClientDisconnect(DisconnectType.DISCONNECT))
    assert h.stats()["objects"] == 0


# -- big results -----------------------------------------------------------------------------------


def test_a_big_result_stays_on_the_scheduler_until_fetched_and_deleted() -> None:
    h = Harness(SchedulerConfig(inline_result_bytes=4))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    out = h.handle(W1, TaskResult(b"t1", TaskStatus.SUCCESS, b"a big payload", 1, b"", 1.5, 1.0, 99))
    assert out == [Send(C1, TaskResult(b"t1", TaskStatus.SUCCESS, b"", 1, b"t1", 1.5, 1.0, 99))]
    assert h.handle(C1, ObjectRequest([b"t1"])) == [Send(C1, ObjectResponse([b"t1"], [b"a big payload"], [True]))]
    h.handle(C1, ObjectInstruction(DELETE, [b"t1"], []))
    assert h.stats()["objects"] == 0


def test_a_big_result_its_client_waits_for_goes_straight_to_it() -> None:
    h = Harness(SchedulerConfig(inline_result_bytes=4))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    assert h.handle(C1, TaskResultWanted([b"t1"])) == []
    big = TaskResult(b"t1", TaskStatus.SUCCESS, b"a big payload", 1)
    assert h.handle(W1, big) == [Send(C1, big)]
    assert h.stats()["objects"] == 0, "nothing kept, nothing to fetch or delete"


def test_a_hint_for_another_clients_task_or_an_unknown_one_changes_nothing() -> None:
    h = Harness(SchedulerConfig(inline_result_bytes=4))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    assert h.handle(C2, TaskResultWanted([b"t1", b"no such task"])) == []
    out = h.handle(W1, TaskResult(b"t1", TaskStatus.SUCCESS, b"a big payload", 1))
    assert out == [Send(C1, TaskResult(b"t1", TaskStatus.SUCCESS, b"", 1, b"t1"))], "kept, as without a hint"
    assert h.stats()["objects"] == 1


def test_small_results_and_failures_travel_inline() -> None:
    h = Harness(SchedulerConfig(inline_result_bytes=4))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    failure = TaskResult(b"t1", TaskStatus.FAILED, b"a long pickled exception", 1)
    assert h.handle(W1, failure) == [Send(C1, failure)]
    assert h.stats()["objects"] == 0


# -- graphs ----------------------------------------------------------------------------------------


def chain_graph(graph_id: bytes = b"g1") -> GraphTask:
    """a -> b -> c, where only c is asked for."""
    return GraphTask(
        graph_id,
        [
            GraphNode(b"a", FN, FN_BYTES, [TaskArgument("", ArgumentKind.INLINE, b"1")], []),
            GraphNode(b"b", FN, b"", [object_arg(b"a")], [b"a"]),
            GraphNode(b"c", FN, b"", [object_arg(b"b")], [b"b"]),
        ],
        [b"c"],
    )


def test_a_graph_runs_node_by_node_and_only_the_target_reaches_the_client() -> None:
    h = Harness()
    h.add_worker(W1)
    out = h.handle(C1, chain_graph())
    assert [message.task_id for _, message in sent_tasks(out)] == [b"a"]
    assert h.task_state(b"b") is TaskState.WAITING
    out = h.handle(W1, TaskResult(b"a", TaskStatus.SUCCESS, b"A", 1))
    assert not any(send.to == C1 for send in out)  # an intermediate result stays here
    (to, b_task) = sent_tasks(out)[0]
    assert b_task.task_id == b"b" and b_task.objects == [ObjectContent(b"a", b"A")]
    out = h.handle(W1, TaskResult(b"b", TaskStatus.SUCCESS, b"B", 1))
    assert Send(W1, ObjectInstruction(DELETE, [b"a"], [])) in out  # no one needs a's result any more
    out = h.handle(W1, TaskResult(b"c", TaskStatus.SUCCESS, b"C", 1))
    assert Send(C1, TaskResult(b"c", TaskStatus.SUCCESS, b"C", 1)) in out
    assert h.stats()["graphs"] == 0 and h.stats()["objects"] == 0 and h.stats()["tasks"] == 0


def test_a_failed_node_fails_its_dependent_targets_with_the_same_error() -> None:
    h = Harness()
    h.add_worker(W1)
    h.handle(C1, chain_graph())
    out = h.handle(W1, TaskResult(b"a", TaskStatus.FAILED, b"pickled ValueError", 1))
    assert out == [Send(C1, TaskResult(b"c", TaskStatus.FAILED, b"pickled ValueError", 0))]
    assert h.stats()["tasks"] == 0 and h.stats()["graphs"] == 0


def test_cancelling_a_target_cancels_the_whole_graph() -> None:
    h = Harness()
    h.add_worker(W1)
    graph = chain_graph()
    graph.targets = [b"a", b"c"]
    h.handle(C1, graph)
    out = h.handle(C1, TaskCancel(b"c"))
    # c was waiting: confirmed at once; a runs on W1: cancelled through it.
    assert Send(C1, TaskCancelConfirm(b"c", CANCELED)) in out
    assert Send(W1, TaskCancel(b"a")) in out
    out = h.handle(W1, TaskCancelConfirm(b"a", CANCELED))
    assert out == [Send(C1, TaskCancelConfirm(b"a", CANCELED))]
    assert h.stats()["tasks"] == 0 and h.stats()["graphs"] == 0


def test_a_graph_with_a_cycle_or_a_foreign_dependency_is_rejected_whole() -> None:
    h = Harness()
    cyclic = GraphTask(
        b"g1",
        [GraphNode(b"a", FN, FN_BYTES, [], [b"b"]), GraphNode(b"b", FN, b"", [], [b"a"])],
        [b"a"],
    )
    out = h.handle(C1, cyclic)
    assert [(send.message.task_id, send.message.status) for send in out] == [(b"a", TaskStatus.REJECTED)]
    assert b"cycle" in out[0].message.payload
    foreign = GraphTask(b"g2", [GraphNode(b"a", FN, FN_BYTES, [], [b"elsewhere"])], [b"a"])
    assert b"not in the graph" in h.handle(C1, foreign)[0].message.payload
    assert h.stats()["tasks"] == 0


def test_a_diamond_keeps_a_shared_result_until_both_users_are_done() -> None:
    h = Harness()
    h.add_worker(W1)
    graph = GraphTask(
        b"g1",
        [
            GraphNode(b"a", FN, FN_BYTES, [], []),
            GraphNode(b"b", FN, b"", [object_arg(b"a")], [b"a"]),
            GraphNode(b"c", FN, b"", [object_arg(b"a")], [b"a"]),
            GraphNode(b"d", FN, b"", [object_arg(b"b"), object_arg(b"c")], [b"b", b"c"]),
        ],
        [b"d"],
    )
    h.handle(C1, graph)
    h.handle(W1, TaskResult(b"a", TaskStatus.SUCCESS, b"A", 1))
    h.handle(W1, TaskResult(b"b", TaskStatus.SUCCESS, b"B", 1))
    assert b"a" in h.state.objects  # c still needs it
    h.handle(W1, TaskResult(b"c", TaskStatus.SUCCESS, b"C", 1))
    assert b"a" not in h.state.objects
    out = h.handle(W1, TaskResult(b"d", TaskStatus.SUCCESS, b"D", 1))
    assert Send(C1, TaskResult(b"d", TaskStatus.SUCCESS, b"D", 1)) in out
    assert h.stats()["objects"] == 0


# -- priority and capabilities ---------------------------------------------------------------------


def test_higher_priority_runs_first() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=10))
    for task_id, priority in [(b"low", 0), (b"high", 5), (b"mid", 1)]:
        message = task(task_id, FN_BYTES if task_id == b"low" else b"")
        message.priority = priority
        h.handle(C1, message)
    assert [message.task_id for _, message in sent_tasks(h.add_worker(W1))] == [b"high", b"mid", b"low"]


def gpu_task(task_id: bytes) -> Task:
    message = task(task_id)
    message.capabilities = {"gpu": 1}
    return message


def test_a_task_goes_only_to_a_worker_with_its_capabilities() -> None:
    h = Harness()
    h.add_worker(W1)
    assert sent_tasks(h.handle(C1, gpu_task(b"t1"))) == []
    out = h.handle(W2, WorkerHeartbeat(0.0, 0, 0.0, 0, {"gpu": 1}))
    assert out[0] == Send(W2, WorkerHeartbeatEcho(0.0, SCHEDULER_ID))
    assert [(to, message.task_id) for to, message in sent_tasks(out)] == [(W2, b"t1")]


def test_a_task_no_connected_worker_can_run_fails_after_the_grace_period() -> None:
    h = Harness(SchedulerConfig(unschedulable_grace_seconds=5.0, worker_timeout_seconds=100.0))
    h.add_worker(W1)
    h.handle(C1, gpu_task(b"t1"))
    assert h.tick(1.0) == []
    assert h.tick(5.0) == []
    (send,) = h.tick(6.5)
    assert send.to == C1 and send.message.status is TaskStatus.NO_WORKER
    assert b"--per-worker-capabilities gpu=1" in send.message.payload
    assert h.stats()["tasks"] == 0


# -- balancing -------------------------------------------------------------------------------------


def test_an_idle_worker_gets_queued_tasks_from_a_busy_one_but_never_its_first() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=10))
    h.add_worker(W1)
    for index in range(4):
        h.handle(C1, task(b"t%d" % index, FN_BYTES if index == 0 else b""))
    out = h.add_worker(W2)
    assert out == [Send(W1, BalanceRequest([b"t2", b"t3"]))]
    assert h.task_state(b"t2") is TaskState.BALANCING
    # W1 had already started t2, so it hands back t3 only.
    out = h.handle(W1, BalanceResponse([b"t3"]))
    assert [(to, message.task_id) for to, message in sent_tasks(out)] == [(W2, b"t3")]
    assert sent_tasks(out)[0][1].function == FN_BYTES  # W2 never had the function
    assert h.task_state(b"t2") is TaskState.ASSIGNED
    # A late result of the moved task from W1 would not count: t3 is W2's now.
    h.handle(W1, result(b"t3", attempt=1))
    assert h.task_state(b"t3") is TaskState.ASSIGNED


def test_a_task_cancelled_while_being_handed_back_is_confirmed_once_off_the_worker() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=10))
    h.add_worker(W1)
    h.handle(C1, task(b"t0"))
    h.handle(C1, task(b"t1", b""))
    h.add_worker(W2)  # asks W1 for t1 back
    assert h.handle(C1, TaskCancel(b"t1")) == [Send(W1, TaskCancel(b"t1"))]
    out = h.handle(W1, BalanceResponse([b"t1"]))
    assert Send(C1, TaskCancelConfirm(b"t1", CANCELED)) in out
    assert h.handle(W1, TaskCancelConfirm(b"t1", CancelConfirmType.CANCEL_NOT_FOUND)) == []


# -- logs ------------------------------------------------------------------------------------------


def test_task_output_goes_to_its_client_only_from_its_worker() -> None:
    h = Harness()
    h.add_worker(W1)
    h.add_worker(W2)
    h.handle(C1, task(b"t1"))
    worker = h.state.tasks[b"t1"].worker
    other = W2 if worker == W1 else W1
    line = TaskLog(b"t1", LogStream.STDOUT, "hello\n")
    assert h.handle(worker, line) == [Send(C1, line)]
    assert h.handle(other, line) == []


def test_task_output_over_a_clients_budget_is_dropped_and_told_before_the_result() -> None:
    h = Harness(SchedulerConfig(output_bytes_per_second_per_client=100))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(C1, task(b"t2"))
    first = TaskLog(b"t1", LogStream.STDOUT, "a" * 90)
    assert h.handle(W1, first) == [Send(C1, first)]
    # The bucket is shared by the client's tasks: t2's output is over it too.
    assert h.handle(W1, TaskLog(b"t2", LogStream.STDOUT, "b" * 20)) == []
    assert h.handle(W1, TaskLog(b"t1", LogStream.STDOUT, "c" * 20, dropped_bytes=7)) == []
    h.now = 1.0  # refilled
    assert h.handle(W1, TaskLog(b"t1", LogStream.STDOUT, "d")) == [
        Send(C1, TaskLog(b"t1", LogStream.STDOUT, "d", dropped_bytes=27))
    ]
    out = h.handle(W1, result(b"t2"))
    assert out[:2] == [Send(C1, TaskLog(b"t2", LogStream.STDOUT, "", dropped_bytes=20)), Send(C1, result(b"t2"))]


def test_drops_of_a_task_that_ends_without_a_result_are_still_told() -> None:
    h = Harness(SchedulerConfig(output_bytes_per_second_per_client=10))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    h.handle(W1, TaskLog(b"t1", LogStream.STDERR, "x" * 10))  # uses up the bucket
    assert h.handle(W1, TaskLog(b"t1", LogStream.STDERR, "x" * 100)) == []
    h.handle(C1, TaskCancel(b"t1"))
    out = h.handle(W1, TaskCancelConfirm(b"t1", CANCELED))
    assert Send(C1, TaskLog(b"t1", LogStream.STDERR, "", dropped_bytes=100)) in out


def test_dispatch_passes_task_options_to_the_worker() -> None:
    h = Harness()
    message = task(b"t1")
    message.timeout_seconds, message.profiling, message.stream_output = 2.5, True, True
    h.handle(C1, message)
    ((_, sent),) = sent_tasks(h.add_worker(W1))
    expected = dispatched(b"t1", function=FN_BYTES)
    expected.timeout_seconds, expected.profiling, expected.stream_output = 2.5, True, True
    assert sent == expected


# -- retries after a processor death ---------------------------------------------------------------


def test_a_task_whose_processor_dies_is_retried_then_fails_saying_how_often() -> None:
    h = Harness(SchedulerConfig(max_task_retries=2))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    died = b"the processor died"
    for attempt in (1, 2):
        out = h.handle(W1, TaskResult(b"t1", TaskStatus.PROCESSOR_DIED, died, attempt))
        assert [(to, message.attempt) for to, message in sent_tasks(out)] == [(W1, attempt + 1)]
    (send,) = h.handle(W1, TaskResult(b"t1", TaskStatus.PROCESSOR_DIED, died, 3))
    assert send.to == C1 and send.message.status is TaskStatus.PROCESSOR_DIED
    assert send.message.payload.startswith(died) and b"died 3 times" in send.message.payload
    assert h.stats()["tasks"] == 0


def test_user_exceptions_are_never_retried() -> None:
    h = Harness(SchedulerConfig(max_task_retries=2))
    h.add_worker(W1)
    h.handle(C1, task(b"t1"))
    failure = TaskResult(b"t1", TaskStatus.FAILED, b"pickled error", 1)
    assert h.handle(W1, failure) == [Send(C1, failure)]


# -- content ids -----------------------------------------------------------------------------------


def test_an_object_sent_under_an_id_that_is_not_its_hash_is_refused() -> None:
    h = Harness()
    h.handle(C1, create((O_SECRET, b"secret")))
    # Another client cannot become a holder of C1's object by naming it, nor plant other bytes.
    h.handle(C2, create((O_SECRET, b"not the secret")))
    assert h.handle(C2, ObjectRequest([O_SECRET])) == [Send(C2, ObjectResponse([O_SECRET], [b""], [False]))]
    h.handle(C2, create((b"made-up-id", b"anything")))
    assert b"made-up-id" not in h.state.objects


def test_a_function_sent_under_an_id_that_is_not_its_hash_is_refused() -> None:
    h = Harness()
    (send,) = h.handle(C1, Task(b"t1", FN, b"other bytes", [], 0))
    assert send.message.status is TaskStatus.REJECTED
    assert b"hash" in send.message.payload
    assert h.stats()["functions"] == 0


def test_a_node_taking_another_nodes_result_without_depending_on_it_is_rejected() -> None:
    h = Harness()
    graph = GraphTask(
        b"g1",
        [GraphNode(b"a", FN, FN_BYTES, [], []), GraphNode(b"b", FN, b"", [object_arg(b"a")], [])],
        [b"b"],
    )
    (send,) = h.handle(C1, graph)
    assert send.message.status is TaskStatus.REJECTED and b"without depending" in send.message.payload


def test_a_task_the_worker_refused_to_hand_back_is_not_asked_for_again() -> None:
    h = Harness(SchedulerConfig(per_worker_queue_size=10))
    h.add_worker(W1)
    high = task(b"t0")
    h.handle(C1, high)
    for index in (1, 2):
        h.handle(C1, task(b"t%d" % index, b""))
    out = h.add_worker(W2)
    assert out == [Send(W1, BalanceRequest([b"t2"]))]
    # W1 runs t2 (say it had a higher priority), so it refuses; a later turn must not ask again.
    out = h.handle(W1, BalanceResponse([]))
    assert out == [Send(W1, BalanceRequest([b"t1"]))]  # it asks for another queued task instead
    assert h.handle(W1, BalanceResponse([])) == []
    assert h.handle(W1, WorkerHeartbeat(0.0, 3, 0.0, 0)) == [Send(W1, WorkerHeartbeatEcho(0.0, SCHEDULER_ID))]
