"""How many workers each worker manager should run: a pure function of the queue and the workers.

A worker manager (a process that starts and stops workers on some engine: local processes, Slurm
jobs, Kubernetes pods) tells the scheduler what its workers offer and its limits. The scheduler
owns the decision, here, with no I/O and no clock of its own: ``plan_scaling`` takes a picture of
the moment and returns, per manager, the count it should run and the idle workers that should go.

The rules, each a property the tests check over random histories:

- **Bounds.** A target never exceeds the manager's maximum nor drops below its minimum.
- **Scale up where it helps.** Work that waits is counted against the managers whose workers have
  every capability it needs; each such manager is asked for enough workers to run it, up to its
  maximum. Work no manager can serve asks nothing of anyone (it gets the "no worker" error).
- **Scale down only the idle.** A worker goes only when it has held no task for ``idle_seconds``
  and no work waits that it could run. A busy worker is never chosen, and neither is a worker that
  joined less than ``idle_seconds`` ago (idle time counts from when it joined): so a worker asked
  for is never dropped within one idle period. The going worker drains (see the scheduler's
  graceful stop), so no task is lost, restarted or charged a retry.
- **Settling.** With no change in load, a second plan equals the first: starting workers are
  counted as coming, so a manager is not asked again for workers it is already starting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ManagerLimits:
    """What a worker manager announced: what its workers offer, and how many it may run."""

    capabilities: Mapping[str, int]
    min_workers: int
    max_workers: int
    tasks_per_worker: int = 1  # how many tasks one of its workers runs at once

    def __post_init__(self) -> None:
        if not 0 <= self.min_workers <= self.max_workers:
            raise ValueError(f"need 0 <= min_workers <= max_workers, got {self.min_workers} and {self.max_workers}")
        if self.tasks_per_worker < 1:
            raise ValueError(f"tasks_per_worker must be at least 1, got {self.tasks_per_worker}")

    def can_serve(self, needs: frozenset[str]) -> bool:
        """True if this manager's workers have every capability in ``needs``."""
        return needs.issubset(self.capabilities)


@dataclass(frozen=True)
class ManagedWorker:
    """A connected worker a manager started: how busy it is, and since when it has been idle."""

    worker_id: bytes
    tasks: int  # tasks it holds now (queued there or running)
    idle_since: float  # when it last became idle, or joined; meaningless while it holds tasks
    draining: bool = False  # already leaving: counts neither as capacity nor for a stop


@dataclass(frozen=True)
class ManagerView:
    """One manager at this moment: its limits, its connected workers, and those it is still starting."""

    limits: ManagerLimits
    workers: Sequence[ManagedWorker] = ()
    starting: int = 0  # asked for, not yet connected


@dataclass(frozen=True)
class ScalingPlan:
    """What a manager should do now: run ``target`` workers, and stop ``stop`` (idle ones, by drain)."""

    target: int
    stop: tuple[bytes, ...] = field(default=())


def plan_scaling(
    waiting: Mapping[frozenset[str], int],
    managers: Mapping[str, ManagerView],
    now: float,
    idle_seconds: float,
) -> dict[str, ScalingPlan]:
    """Decide each manager's worker count; see the module docstring.

    ``waiting`` counts the tasks that wait for a worker (in the scheduler's queue, or queued at a
    worker beyond what it runs) by the set of capability names they need. Managers are served in
    name order, so equal inputs give equal plans.
    """
    plans: dict[str, ScalingPlan] = {}
    names = sorted(managers)
    # Spread each kind of waiting work over the managers that can serve it, filling the first
    # one's headroom before asking the next, so one kind of work never starts two fleets at once.
    demand = {name: 0 for name in names}  # workers wanted beyond those running or starting
    # Slots that will take waiting work without asking anyone: idle room on connected workers,
    # and the workers being started (so a manager is not asked twice for the same work).
    free = {name: _free_slots(managers[name]) for name in names}
    for needs, count in sorted(waiting.items(), key=lambda item: sorted(item[0])):
        if count <= 0:
            continue
        for name in names:
            if count > 0 and managers[name].limits.can_serve(needs):
                taken = min(count, free[name])
                free[name] -= taken
                count -= taken
        for name in names:
            if count <= 0:
                break
            view = managers[name]
            if not view.limits.can_serve(needs):
                continue
            per_worker = view.limits.tasks_per_worker
            room = view.limits.max_workers - _live(view) - demand[name]
            granted = max(0, min(math.ceil(count / per_worker), room))
            demand[name] += granted
            count -= granted * per_worker
    for name in names:
        view = managers[name]
        plans[name] = _plan_one(view, demand[name], _wanted_by_waiting(waiting, view.limits), now, idle_seconds)
    return plans


def _live(view: ManagerView) -> int:
    """Workers that count as capacity: connected and not leaving, plus those starting."""
    return sum(1 for worker in view.workers if not worker.draining) + view.starting


def _free_slots(view: ManagerView) -> int:
    per_worker = view.limits.tasks_per_worker
    connected = sum(max(0, per_worker - worker.tasks) for worker in view.workers if not worker.draining)
    return connected + view.starting * per_worker


def _wanted_by_waiting(waiting: Mapping[frozenset[str], int], limits: ManagerLimits) -> bool:
    return any(count > 0 and limits.can_serve(needs) for needs, count in waiting.items())


def _plan_one(view: ManagerView, extra: int, work_waits: bool, now: float, idle_seconds: float) -> ScalingPlan:
    limits = view.limits
    live = _live(view)
    if extra > 0 or live < limits.min_workers:
        return ScalingPlan(target=min(limits.max_workers, max(limits.min_workers, live + extra)))
    stop: list[bytes] = []
    if not work_waits:
        # Longest idle first: the one least likely to be needed. Never below the minimum.
        idle = [w for w in view.workers if not w.draining and w.tasks == 0 and now - w.idle_since >= idle_seconds]
        idle.sort(key=lambda worker: (worker.idle_since, worker.worker_id))
        spare = live - limits.min_workers
        stop = [worker.worker_id for worker in idle[: max(0, spare)]]
    target = min(limits.max_workers, max(limits.min_workers, live - len(stop)))
    return ScalingPlan(target=target, stop=tuple(stop))
