"""The pure scaling policy: examples, then properties over random simulated histories."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.scheduler.scaling_policy import ManagedWorker, ManagerLimits, ManagerView, ScalingPlan, plan_scaling

pytestmark = pytest.mark.timeout(120)

NONE: frozenset[str] = frozenset()
GPU = frozenset({"gpu"})


def view(
    min_workers: int = 0, max_workers: int = 4, workers: tuple[ManagedWorker, ...] = (), starting: int = 0, **caps
):
    return ManagerView(ManagerLimits(caps, min_workers, max_workers), workers, starting)


def test_waiting_work_asks_for_workers_up_to_the_maximum() -> None:
    assert plan_scaling({NONE: 3}, {"a": view()}, now=0, idle_seconds=60) == {"a": ScalingPlan(3)}
    assert plan_scaling({NONE: 30}, {"a": view()}, now=0, idle_seconds=60) == {"a": ScalingPlan(4)}


def test_starting_workers_count_as_coming() -> None:
    assert plan_scaling({NONE: 3}, {"a": view(starting=3)}, now=0, idle_seconds=60) == {"a": ScalingPlan(3)}


def test_only_managers_with_the_capabilities_are_asked() -> None:
    plans = plan_scaling({GPU: 2}, {"cpu": view(), "gpu": view(gpu=1)}, now=0, idle_seconds=60)
    assert plans == {"cpu": ScalingPlan(0), "gpu": ScalingPlan(2)}


def test_work_no_manager_can_serve_asks_nothing() -> None:
    assert plan_scaling({GPU: 5}, {"cpu": view(min_workers=1)}, now=0, idle_seconds=60) == {"cpu": ScalingPlan(1)}


def test_overflow_goes_to_the_next_manager() -> None:
    plans = plan_scaling({NONE: 6}, {"a": view(max_workers=4), "b": view(max_workers=4)}, now=0, idle_seconds=60)
    assert plans == {"a": ScalingPlan(4), "b": ScalingPlan(2)}


def test_idle_workers_go_after_the_idle_period_never_below_the_minimum() -> None:
    workers = (ManagedWorker(b"w1", 0, idle_since=0), ManagedWorker(b"w2", 0, idle_since=5), ManagedWorker(b"w3", 1, 0))
    assert plan_scaling({}, {"a": view(min_workers=1, workers=workers)}, now=59, idle_seconds=60) == {
        "a": ScalingPlan(3)
    }
    # w3 is busy, so only one of the idle ones may go: the longest idle.
    assert plan_scaling({}, {"a": view(min_workers=2, workers=workers)}, now=70, idle_seconds=60) == {
        "a": ScalingPlan(2, (b"w1",))
    }


def test_no_scale_down_while_work_it_could_run_waits() -> None:
    workers = (ManagedWorker(b"w1", 0, idle_since=0),)
    assert plan_scaling({NONE: 1}, {"a": view(workers=workers, max_workers=1)}, now=100, idle_seconds=60) == {
        "a": ScalingPlan(1)
    }


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="min_workers <= max_workers"):
        ManagerLimits({}, 3, 2)


# -- properties over simulated histories --------------------------------------------------------


@dataclass
class SimWorker:
    worker_id: bytes
    manager: str
    joined: float
    idle_since: float
    running: list[float] = field(default_factory=list)  # end times of the tasks it runs
    draining: bool = False


@dataclass
class SimManager:
    limits: ManagerLimits
    start_delay: float
    starting: list[float] = field(default_factory=list)  # when each started worker will connect


@st.composite
def histories(draw: st.DrawFn) -> dict:
    managers = {}
    for index in range(draw(st.integers(1, 3))):
        low = draw(st.integers(0, 2))
        high = draw(st.integers(max(low, 1), low + 4))
        caps = draw(st.sampled_from([{}, {"gpu": 1}]))
        managers[f"m{index}"] = SimManager(ManagerLimits(caps, low, high), draw(st.sampled_from([0.0, 1.0, 5.0])))
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(0, 6),  # tasks arriving
                st.sampled_from([NONE, GPU]),  # what they need
                st.sampled_from([0.5, 2.0, 10.0]),  # how long each runs
                st.booleans(),  # a random worker dies this step
            ),
            min_size=1,
            max_size=40,
        )
    )
    return {"managers": managers, "steps": steps}


def simulate(history: dict, idle_seconds: float = 6.0, dt: float = 1.0, max_quiet_steps: int = 3000) -> None:
    """Run a history, checking each property at every step; then a quiet tail must settle."""
    managers: dict[str, SimManager] = history["managers"]
    workers: dict[bytes, SimWorker] = {}
    waiting: list[tuple[frozenset[str], float]] = []
    now = 0.0
    counter = 0
    scripted = list(history["steps"])
    quiet = 0  # steps since the script ended: long enough for the work to finish, then one idle period more
    settled_at: float | None = None
    previous: dict[str, ScalingPlan] | None = None
    while True:
        if scripted:
            arriving, needs, length, death = scripted.pop(0)
        else:
            quiet += 1
            busy = any(w.running for w in workers.values()) or any(
                any(m.limits.can_serve(job[0]) for m in managers.values()) for job in waiting
            )
            if busy:
                assert quiet < max_quiet_steps, "the work never finished: scaling stalled"
            elif settled_at is None:
                settled_at = now
            elif now - settled_at > idle_seconds + 3 * dt:
                break
            arriving, needs, length, death = 0, NONE, 1.0, False
        now += dt
        waiting.extend([(needs, length)] * arriving)
        # Workers connect, finish tasks, take waiting work, and sometimes die.
        for name, manager in managers.items():
            for ready in [t for t in manager.starting if t <= now]:
                manager.starting.remove(ready)
                counter += 1
                wid = f"{name}-{counter}".encode()
                workers[wid] = SimWorker(wid, name, joined=now, idle_since=now)
        for worker in workers.values():
            before = len(worker.running)
            worker.running = [end for end in worker.running if end > now]
            if before and not worker.running:
                worker.idle_since = now
        for worker in workers.values():
            caps = managers[worker.manager].limits
            while not worker.draining and len(worker.running) < caps.tasks_per_worker:
                job = next((job for job in waiting if caps.can_serve(job[0])), None)
                if job is None:
                    break
                waiting.remove(job)
                worker.running.append(now + job[1])
        if death and workers:
            victim = sorted(workers)[counter % len(workers)]
            dead = workers.pop(victim)
            waiting.extend((NONE, end - now) for end in dead.running)  # its tasks run again elsewhere
        counts: dict[frozenset[str], int] = {}
        for job_needs, _ in waiting:
            counts[job_needs] = counts.get(job_needs, 0) + 1
        views = {
            name: ManagerView(
                manager.limits,
                [
                    ManagedWorker(w.worker_id, len(w.running), w.idle_since, w.draining)
                    for w in workers.values()
                    if w.manager == name
                ],
                len(manager.starting),
            )
            for name, manager in managers.items()
        }
        plans = plan_scaling(counts, views, now, idle_seconds)
        for name, plan in plans.items():
            manager = managers[name]
            limits = manager.limits
            live = sum(1 for w in workers.values() if w.manager == name and not w.draining) + len(manager.starting)
            # Bounds.
            assert limits.min_workers <= plan.target <= limits.max_workers
            # Only idle workers go, never one that joined or worked within the idle period.
            for wid in plan.stop:
                worker = workers[wid]
                assert worker.manager == name and not worker.running and not worker.draining
                assert now - worker.idle_since >= idle_seconds and now - worker.joined >= idle_seconds
            # Waiting work that only it can serve, more than its idle and starting workers will
            # take, and room: it is asked for more.
            free = len(manager.starting) + sum(
                limits.tasks_per_worker - len(w.running) for w in workers.values() if w.manager == name
            )
            only_here = [
                n
                for n, _ in waiting
                if limits.can_serve(n) and sum(m.limits.can_serve(n) for m in managers.values()) == 1
            ]
            if len(only_here) > free and live < limits.max_workers:
                assert plan.target > live
            # The manager carries out the plan: idle workers drain (and, idle, leave at once); new ones start.
            for wid in plan.stop:
                del workers[wid]
            live -= len(plan.stop)
            manager.starting.extend([now + manager.start_delay] * max(0, plan.target - live))
        previous = plans
    # Quiet: every task some manager can serve ran (the rest get the "no worker" error), and the
    # count settled at each minimum with nothing more to stop.
    assert not [job for job in waiting if any(m.limits.can_serve(job[0]) for m in managers.values())]
    assert previous is not None
    for name, plan in previous.items():
        assert plan == ScalingPlan(managers[name].limits.min_workers)


@settings(max_examples=150, deadline=None)
@given(histories())
def test_properties_hold_over_random_histories(history: dict) -> None:
    simulate(history)
