"""The scheduler's answers to its workers' messages: heartbeats, results, starts, cancel answers, logs, goodbyes.

``WorkerMessages`` adds one ``on_<message>`` method per worker message to the bookkeeping of
``SchedulerBook``; ``SchedulerState`` picks the handler by the message's type. A worker registers
with its first heartbeat. Results count only from the worker holding the task's current attempt,
so a late answer from a worker declared dead never counts twice.
"""

from __future__ import annotations

import logging

from scaler.io.output_limits import DEFAULT_OUTPUT_LIMITS, OutputThrottle
from scaler.protocol.messages import (
    BalanceResponse,
    CancelConfirmType,
    DisconnectRequest,
    DisconnectResponse,
    PeerEventKind,
    TaskCancelConfirm,
    TaskLog,
    TaskResult,
    TaskStarted,
    TaskStatus,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
)
from scaler.scheduler.instructions import id_text, peer_text
from scaler.scheduler.lifecycle import SchedulerBook
from scaler.scheduler.task_table import TaskEvent, TaskState

# One logger for the whole core, under the name it always had: logging settings and tests select it.
logger = logging.getLogger("scaler.scheduler.state")

# Outcomes that stop a task's code while its children may still run: they are cancelled with it.
_STOPPING_STATUSES = (TaskStatus.TIMEOUT, TaskStatus.PROCESSOR_DIED, TaskStatus.WORKER_DIED)


class WorkerMessages(SchedulerBook):
    """The handlers of worker messages; see the module docstring."""

    def on_worker_heartbeat(self, source: bytes, heartbeat: WorkerHeartbeat, now: float) -> None:
        """Register or refresh a worker and echo the heartbeat; ignore a late one from a worker already let go."""
        if self.workers.was_released(source):
            return
        if self.workers.register_or_refresh(source, now, heartbeat.capabilities, heartbeat):
            logger.info("worker %s connected with capabilities %s", peer_text(source), heartbeat.capabilities)
            self._status.peer(PeerEventKind.WORKER_JOINED, now, source)
        self._send(source, WorkerHeartbeatEcho(heartbeat.timestamp, self.scheduler_id))

    def on_task_result(self, source: bytes, result: TaskResult, now: float) -> None:
        """Route a result to its client if it comes from the worker holding the current attempt."""
        worker = self.workers.heard_from(source, now)
        record = self.tasks.get(result.task_id)
        if worker is None or record is None or record.worker != source or record.attempt != result.attempt:
            self._noise("stale").info(
                self._now,
                "task %s: dropped a result from %s that does not match the current attempt",
                id_text(result.task_id),
                peer_text(source),
            )
            return
        task_id = result.task_id
        worker.busy_at = now
        wanted = record.state is not TaskState.CANCELING and record.client in self.clients
        if result.status is TaskStatus.PROCESSOR_DIED and wanted:
            record.deaths += 1
            if record.deaths <= self.config.max_task_retries:
                logger.warning("task %s: its processor died; retrying (attempt %d)", id_text(task_id), record.attempt)
                self._status.retried_task(record, now, "its processor died")
                self._requeue(record)
                return
            note = f"; its processor died {record.deaths} times, so it will not be retried again"
            result.payload = bytes(result.payload) + note.encode()  # a big payload arrives as a memoryview
        self._completed += 1
        worker.done += 1
        if record.task.profiling and record.started_at is not None:  # the scheduler's share of the profile
            result.queue_wait_seconds = record.started_at - record.submitted_at
            result.transfer_seconds = record.started_at - record.sent_at
        if not wanted or result.status in _STOPPING_STATUSES:  # cancelled, its client gone, or stopped
            self._stop_children(record, ending=True)
        if result.status is not TaskStatus.SUCCESS:
            self._fail(record, result)
            return
        ready = self.graphs.node_done(task_id, ok=True)[0] if record.graph else []
        if record.graph and self.graphs.needs_result(task_id):
            self.objects.put(record.graph, task_id, result.payload)  # live later nodes need it
        big = len(result.payload) > self.config.inline_result_bytes
        if record.is_target and big and not record.result_wanted and record.client in self.clients:
            self.objects.put(record.client, task_id, result.payload)
            result.result_object_id, result.payload = task_id, b""
        self._end(record, result)
        for node_id in ready:
            self._make_ready(self.tasks[node_id])

    def on_task_started(self, source: bytes, started: TaskStarted, now: float) -> None:
        """A worker began running the current attempt: from now on its death counts against the task."""
        self.workers.heard_from(source, now)
        record = self.tasks.get(started.task_id)
        # The attempt must be this worker's current one; a repeated report changes nothing.
        if record is not None and record.worker == source and record.attempt == started.attempt and not record.started:
            record.move(TaskEvent.START)
            record.started_at = now
            self._status.started_task(record, now)

    def on_task_cancel_confirm(self, source: bytes, confirm: TaskCancelConfirm, now: float) -> None:
        """A worker answered a cancel; pass the answer on to the task's client."""
        self.workers.heard_from(source, now)
        record = self.tasks.get(confirm.task_id)
        if record is None or record.worker != source or record.state is not TaskState.CANCELING:
            return  # its result already went to the client, which settles the future
        if confirm.confirm is CancelConfirmType.CANCEL_FAILED:
            record.move(TaskEvent.CANCEL_FAILED)
            if record.is_target:
                self._send_to_client(record.client, confirm)
            return
        # The worker no longer runs it (cancelled, or lost it): either way the task is over.
        self._end_cancelled(record)

    def on_task_log(self, source: bytes, log: TaskLog, now: float) -> None:
        """Pass a task's output on to its client, within the client's output budget (else count it)."""
        self.workers.heard_from(source, now)
        record = self.tasks.get(log.task_id)
        client = self.clients.get(record.client) if record is not None and record.worker == source else None
        if client is None or record is None:
            return
        if client.output is None:
            client.output = OutputThrottle(self.config.output_bytes_per_second_per_client, DEFAULT_OUTPUT_LIMITS)
        admitted = client.output.admit(log, now)
        if admitted is not None:
            self._send(record.client, admitted)

    def on_balance_response(self, source: bytes, response: BalanceResponse, now: float) -> None:
        """A worker handed back some tasks: queue them again (or end them); it keeps the others."""
        worker = self.workers.heard_from(source, now)
        if worker is None:
            return
        worker.balancing = False
        for task_id in response.task_ids:
            record = self.tasks.get(task_id)
            if record is not None and record.worker == source:  # it is off that worker now
                self._take_back(record)
        for task_id in worker.tasks:
            record = self.tasks[task_id]
            if record.state is TaskState.BALANCING:
                record.move(TaskEvent.KEEP)
                worker.kept.add(task_id)

    def on_disconnect_request(self, source: bytes, request: DisconnectRequest, now: float) -> None:
        """A worker leaves on purpose: take its tasks back without counting it as a death.

        A draining worker keeps the tasks it has started until they end; the rest are taken back now.
        """
        worker = self.workers.get(source)
        if worker is None:
            self._send(source, DisconnectResponse())
            return
        if not request.drain:
            logger.info("worker %s is leaving", peer_text(source))
            self._release(source)
            return
        logger.info("worker %s is draining: %d tasks held", peer_text(source), len(worker.tasks))
        worker.leaving = True
        self._status.peer(PeerEventKind.WORKER_DRAINING, now, source)
        for task_id in list(worker.tasks):
            record = self.tasks[task_id]
            if not record.started:  # a started one runs there: its result (or cancel confirm) comes from there
                self._take_back(record)  # the worker drops it unstarted: nothing will confirm a cancel

    def _expire_unschedulable(self, now: float) -> None:
        """Fail queued tasks that no connected worker could ever run, after a grace period."""
        grace = self.config.unschedulable_grace_seconds
        for task_id in list(self._queued_with_capabilities):
            record = self.tasks[task_id]
            if any(worker.can_run(record.task) for worker in self.workers.values()) or self.managers.can_serve(
                record.task.capabilities
            ):  # a worker manager can start one that runs it
                record.unschedulable_since = None
                continue
            if record.unschedulable_since is None:
                record.unschedulable_since = now
            elif now - record.unschedulable_since > grace:
                wanted = ",".join(f"{name}={value}" for name, value in record.task.capabilities.items())
                self._reject(
                    record,
                    f"no connected worker has the capabilities {wanted} it needs (waited {grace:g}s); start "
                    f"workers with `scaler_cluster --per-worker-capabilities {wanted} ...`",
                    TaskStatus.NO_WORKER,
                )
