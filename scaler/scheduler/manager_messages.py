"""The scheduler's answers to worker managers: each heartbeat gets the count to run and the workers to stop.

``ManagerMessages`` adds the manager handler to the bookkeeping of ``SchedulerBook``. The decision
itself is the pure ``plan_scaling`` (``scaling_policy.py``); here are only its inputs, read off the
scheduler's stores, and its effects:

- **waiting work** is every task that waits for a worker: in the scheduler's queue, or sent to a
  worker that has not started it yet, except the one an idle worker is about to start; counted by
  the capability names it needs;
- **a manager's workers** are the connected workers whose names it lists; the ones it lists that
  are not connected yet count as starting, except those it was told to stop (a drained worker
  leaves the scheduler before its process ends: counting it as starting would start a replacement);
- **a worker chosen to stop** is idle; it is marked ``retiring`` at once, so it gets no new task in
  the time its manager takes to stop it, and it then drains as on any SIGTERM. Should its manager
  go away before stopping it, it becomes an ordinary worker again.
"""

from __future__ import annotations

import logging

from scaler.protocol.messages import ManagedWorkerState, WorkerManagerCommand, WorkerManagerHeartbeat
from scaler.scheduler.instructions import peer_text
from scaler.scheduler.lifecycle import SchedulerBook
from scaler.scheduler.managers import worker_name
from scaler.scheduler.scaling_policy import ManagedWorker, ManagerView, ScalingPlan, plan_scaling

# One logger for the whole core, under the name it always had: logging settings and tests select it.
logger = logging.getLogger("scaler.scheduler.state")


class ManagerMessages(SchedulerBook):
    """The handler of worker manager messages; see the module docstring."""

    def on_worker_manager_heartbeat(self, source: bytes, heartbeat: WorkerManagerHeartbeat, now: float) -> None:
        """Register or refresh a manager, then answer with its plan."""
        if source not in self.managers:
            # A manager restarted under the same name (the old one killed, say): it replaces the
            # old one now rather than after a worker timeout, and the workers the old one was told
            # to stop serve again until the new one is told.
            for manager_id, predecessor in list(self.managers.items()):
                if predecessor.name == heartbeat.name:
                    logger.warning("worker manager %r reconnected: it replaces its predecessor", heartbeat.name)
                    self._drop_manager(manager_id)
        try:
            new = self.managers.refresh(source, heartbeat, now)
        except ValueError as error:
            self._noise("manager").warning(now, "worker manager %s: ignored: %s", peer_text(source), error)
            return
        if new:
            logger.info(
                "worker manager %r connected: %d to %d workers with capabilities %s",
                heartbeat.name,
                heartbeat.min_workers,
                heartbeat.max_workers,
                heartbeat.capabilities,
            )
        for record in heartbeat.workers:
            if record.state is ManagedWorkerState.FAILED:
                self._noise("manager-failed").warning(
                    now,
                    "worker manager %r: worker %s failed to start: %s",
                    heartbeat.name,
                    record.worker_name,
                    record.detail,
                )
        plan = self._plan_scaling(now).get(heartbeat.name, ScalingPlan(self.managers[source].limits.min_workers))
        stop_names: list[str] = []
        stopping = self.managers[source].stopping
        for worker_id in plan.stop:
            worker = self.workers.get(worker_id)
            if worker is not None and not worker.tasks:
                worker.retiring = True
                stop_names.append(worker_name(worker_id))
                stopping.add(worker_name(worker_id))
                logger.info("worker %s is idle: its manager %r stops it", peer_text(worker_id), heartbeat.name)
        self._send(source, WorkerManagerCommand(plan.target, stop_names))

    def _plan_scaling(self, now: float) -> dict[str, ScalingPlan]:
        """Every manager's plan at ``now`` (they share the waiting work, so they are planned together)."""
        owned: dict[bytes, list[ManagedWorker]] = {manager_id: [] for manager_id in self.managers}
        connected: set[str] = set()
        for worker_id, worker in self.workers.items():
            manager_id = self.managers.owner(worker_id)
            if manager_id is None:
                continue
            connected.add(worker_name(worker_id))
            idle_since = max(worker.joined_at, worker.busy_at)
            owned[manager_id].append(
                ManagedWorker(worker_id, len(worker.tasks), idle_since, worker.leaving or worker.retiring)
            )
        views: dict[str, ManagerView] = {}
        for manager_id, record in self.managers.items():
            starting = sum(
                1
                for name, state in record.workers.items()
                if state is not ManagedWorkerState.FAILED and name not in connected and name not in record.stopping
            )
            views[record.name] = ManagerView(record.limits, owned[manager_id], starting)
        return plan_scaling(self._waiting_work(), views, now, self.config.worker_idle_seconds)

    def _waiting_work(self) -> dict[frozenset[str], int]:
        """Tasks waiting for a worker, by the capability names they need."""
        waiting: dict[frozenset[str], int] = {}
        plain = len(self._queue) - len(self._queued_with_capabilities)
        if plain > 0:
            waiting[frozenset()] = plain
        for task_id in self._queued_with_capabilities:
            needs = frozenset(self.tasks[task_id].task.capabilities)
            waiting[needs] = waiting.get(needs, 0) + 1
        for worker in self.workers.values():
            records = [self.tasks[task_id] for task_id in worker.tasks]
            # A worker running nothing starts its first task now: that one waits for no new worker
            # (counting it asked managers for a worker at each dispatch to an idle worker).
            starts_now = not any(record.started for record in records)
            for record in records:
                if not record.started:
                    if starts_now:
                        starts_now = False
                        continue
                    needs = frozenset(record.task.capabilities)
                    waiting[needs] = waiting.get(needs, 0) + 1
        return waiting

    def _forget_silent_managers(self, now: float) -> None:
        """Forget managers silent past the worker timeout; the workers they were stopping stay, and serve."""
        for manager_id in self.managers.silent(now, self.config.worker_timeout_seconds):
            logger.warning("worker manager %r timed out; its workers stay as they are", self.managers[manager_id].name)
            self._drop_manager(manager_id)

    def _drop_manager(self, manager_id: bytes) -> None:
        record = self.managers[manager_id]
        for name in record.workers:
            for worker_id, worker in self.workers.items():
                if worker.retiring and worker_name(worker_id) == name:
                    worker.retiring = False
        self.managers.remove(manager_id)
