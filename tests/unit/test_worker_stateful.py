"""Random interleavings of scheduler messages, processor events and ticks against ``WorkerState``.

A small model of the agent's shell carries out the instructions (which processors are starting,
idle, running or killed) and checks that the state only ever asks for sensible things: a task
goes only to a started, idle processor; at most one processor boots at a time; only started
processors are killed. After every step ``validate()`` checks the state's own invariants. At
the end everything is drained, and every task must have reached exactly one outcome: a result
(success, death or timeout), a cancel confirmation, a hand-back for balancing, or being voided
by a scheduler restart.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from scaler.protocol.messages import (
    ArgumentKind,
    BalanceRequest,
    BalanceResponse,
    CancelConfirmType,
    ObjectContent,
    ObjectInstruction,
    ObjectInstructionType,
    ProcessorBlocked,
    Task,
    TaskArgument,
    TaskCancel,
    TaskCancelConfirm,
    TaskResult,
    TaskStarted,
    TaskStatus,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
)
from scaler.worker.state import (
    ExitWorker,
    KillProcessor,
    RunTask,
    SendToProcessor,
    SendToScheduler,
    StartProcessor,
    WorkerInstruction,
    WorkerState,
)

OBJECT_IDS = [b"o1", b"o2", b"o3"]


class WorkerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.state = WorkerState(self.now, 1.0, 1e9, task_timeout_seconds=5.0, max_idle_processors=2)
        self.starting: set[int] = set()
        self.idle: set[int] = set()
        self.running: dict[int, bytes] = {}  # processor -> task id, as the shell would see it
        self.processor_objects: dict[int, set[bytes]] = {}
        self.killed: set[int] = set()
        self.outcomes: Counter[bytes] = Counter()
        self.voided: set[bytes] = set()
        self.sent: list[bytes] = []
        self.next_task = 0
        self.scheduler_id = b"s0"
        self.state.on_heartbeat_echo(WorkerHeartbeatEcho(0.0, self.scheduler_id), self.now)
        self.apply(self.state.start(self.now))

    # -- the shell model ------------------------------------------------------------------------

    def apply(self, instructions: list[WorkerInstruction]) -> None:
        for index, instruction in enumerate(instructions):
            if isinstance(instruction, SendToScheduler) and isinstance(instruction.message, TaskStarted):
                following = instructions[index + 1] if index + 1 < len(instructions) else None
                assert isinstance(following, RunTask), "a start notice goes right before its task"
                assert instruction.message == TaskStarted(following.task.task_id, following.task.attempt)
                continue
            if isinstance(instruction, RunTask):
                notice = SendToScheduler(TaskStarted(instruction.task.task_id, instruction.task.attempt))
                assert index > 0 and instructions[index - 1] == notice, "every task run is announced first"
            if isinstance(instruction, StartProcessor):
                assert not self.starting, "one processor boots at a time"
                pid = instruction.processor_id
                assert pid not in self.killed and pid not in self.idle and pid not in self.running
                self.starting.add(pid)
            elif isinstance(instruction, RunTask):
                pid = instruction.processor_id
                assert pid in self.idle, "tasks go only to started, idle processors"
                self.idle.discard(pid)
                self.running[pid] = instruction.task.task_id
                held = self.processor_objects.setdefault(pid, set())
                for content in instruction.task.objects:
                    assert content.object_id not in held, "object bytes go to a processor once"
                    held.add(content.object_id)
            elif isinstance(instruction, SendToProcessor):
                pid = instruction.processor_id
                assert pid in self.idle, "the agent writes only to idle processors"
                assert isinstance(instruction.message, ObjectInstruction)
                self.processor_objects.get(pid, set()).difference_update(instruction.message.object_ids)
            elif isinstance(instruction, KillProcessor):
                pid = instruction.processor_id
                assert pid in self.idle or pid in self.running, "only started processors are killed"
                self.idle.discard(pid)
                self.running.pop(pid, None)
                self.killed.add(pid)
            elif isinstance(instruction, SendToScheduler):
                self.record(instruction.message)
            else:
                assert not isinstance(instruction, ExitWorker)

    def record(self, message: object) -> None:
        if isinstance(message, TaskResult):
            self.outcomes[message.task_id] += 1
            if message.status is TaskStatus.SUCCESS:  # others end with a KillProcessor or a death
                for pid, task_id in list(self.running.items()):
                    if task_id == message.task_id:
                        self.idle.add(pid)
                        del self.running[pid]
        elif isinstance(message, TaskCancelConfirm):
            if message.confirm is CancelConfirmType.CANCELED:
                self.outcomes[message.task_id] += 1
        elif isinstance(message, BalanceResponse):
            for task_id in message.task_ids:
                self.outcomes[task_id] += 1
        else:
            assert isinstance(message, WorkerHeartbeat)

    # -- scheduler events -------------------------------------------------------------------------

    @rule(
        priority=st.integers(0, 2),
        objects=st.lists(st.sampled_from(OBJECT_IDS), max_size=2),
        timeout=st.sampled_from([0.0, 2.0]),
    )
    def task_arrives(self, priority: int, objects: list[bytes], timeout: float) -> None:
        task_id = b"t%d" % self.next_task
        self.next_task += 1
        self.sent.append(task_id)
        args = [TaskArgument("", ArgumentKind.OBJECT, object_id) for object_id in objects]
        args.append(TaskArgument("", ArgumentKind.INLINE, b"x"))
        contents = [ObjectContent(object_id, b"data-" + object_id) for object_id in dict.fromkeys(objects)]
        task = Task(task_id, b"fn", b"fn-bytes", args, 1, priority, timeout_seconds=timeout, objects=contents)
        self.apply(self.state.on_task(task, self.now))

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.sent))
        self.apply(self.state.on_task_cancel(TaskCancel(task_id), self.now))

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def balance(self, data: st.DataObject) -> None:
        task_ids = data.draw(st.lists(st.sampled_from(self.sent), max_size=4, unique=True))
        self.apply(self.state.on_balance_request(BalanceRequest(task_ids), self.now))

    @rule(object_ids=st.lists(st.sampled_from(OBJECT_IDS), min_size=1, max_size=3, unique=True))
    def delete_objects(self, object_ids: list[bytes]) -> None:
        instruction = ObjectInstruction(ObjectInstructionType.DELETE, object_ids, [])
        self.apply(self.state.on_object_instruction(instruction, self.now))

    @rule()
    def scheduler_restarts(self) -> None:
        held = set(self.state.queued_task_ids()) | set(self.state.running())
        self.voided |= held
        self.scheduler_id += b"'"
        self.apply(self.state.on_heartbeat_echo(WorkerHeartbeatEcho(self.now, self.scheduler_id), self.now))

    # -- processor events -------------------------------------------------------------------------

    @precondition(lambda self: self.starting)
    @rule()
    def processor_starts(self) -> None:
        pid = self.starting.pop()
        self.idle.add(pid)
        self.processor_objects[pid] = set()
        self.apply(self.state.on_processor_started(pid, self.now))

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def processor_finishes(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(sorted(self.running)))
        task_id = self.running[pid]
        self.apply(self.state.on_processor_result(pid, TaskResult(task_id, TaskStatus.SUCCESS, b"", 1), self.now))

    @precondition(lambda self: self.running)
    @rule(data=st.data(), blocked=st.booleans())
    def processor_blocks(self, data: st.DataObject, blocked: bool) -> None:
        pid = data.draw(st.sampled_from(sorted(self.running)))
        self.apply(self.state.on_processor_blocked(pid, ProcessorBlocked(blocked), self.now))

    @precondition(lambda self: self.running or self.idle)
    @rule(data=st.data())
    def processor_dies(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(sorted(set(self.running) | self.idle)))
        self.idle.discard(pid)
        if pid in self.running:
            task_id = self.running[pid]
            out = self.state.on_processor_died(pid, self.now)
            assert SendToScheduler(self.outcome_of_death(task_id, out)) in out
            self.running.pop(pid, None)
            self.apply(out)
        else:
            self.apply(self.state.on_processor_died(pid, self.now))
        self.killed.add(pid)

    def outcome_of_death(self, task_id: bytes, out: list[WorkerInstruction]) -> TaskResult:
        for instruction in out:
            if isinstance(instruction, SendToScheduler) and isinstance(instruction.message, TaskResult):
                assert instruction.message.task_id == task_id
                assert instruction.message.status is TaskStatus.PROCESSOR_DIED
                return instruction.message
        raise AssertionError("a dead processor's task must fail")

    @rule(seconds=st.sampled_from([0.5, 1.0, 3.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.apply(self.state.tick(self.now))

    # -- checks ---------------------------------------------------------------------------------

    @invariant()
    def state_is_valid(self) -> None:
        self.state.validate()
        assert self.state.running() == {task_id: pid for pid, task_id in self.running.items()}
        assert set(self.state.idle_processor_ids()) == self.idle
        for pid, held in self.processor_objects.items():
            if pid in self.idle or pid in self.running:
                assert held <= set(OBJECT_IDS)

    @invariant()
    def no_task_has_two_outcomes(self) -> None:
        assert all(count == 1 for count in self.outcomes.values()), self.outcomes

    def teardown(self) -> None:
        # Drain: start what boots, unblock and finish what runs, until the worker holds nothing.
        for _ in range(10_000):
            if self.starting:
                self.processor_starts()
            elif self.running:
                pid = min(self.running)
                self.apply(self.state.on_processor_blocked(pid, ProcessorBlocked(False), self.now))
                if pid in self.running:
                    task_id = self.running[pid]
                    result = TaskResult(task_id, TaskStatus.SUCCESS, b"", 1)
                    self.apply(self.state.on_processor_result(pid, result, self.now))
            else:
                break
            self.state.validate()
        assert self.state.held_count() == 0, "every task ran to its end"
        for task_id in self.sent:
            expected = 0 if task_id in self.voided else 1
            assert self.outcomes[task_id] == expected, (task_id, self.outcomes[task_id])


WorkerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestWorkerStateMachine = WorkerMachine.TestCase
