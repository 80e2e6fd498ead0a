"""The worker manager process: a thin shell between the scheduler, ``ManagerState`` and an engine adapter.

::

    scheduler ROUTER ──WorkerManagerCommand──▶ DealerTransport ──▶ ManagerState.on_command
          ▲                                                              │ StartWorker / StopWorker / ForgetWorker
          └────WorkerManagerHeartbeat (name, limits, workers)──┐         ▼
                                                              WorkerManager ──▶ EngineAdapter (native, slurm)
                                       every poll interval: adapter.poll() ──▶ ManagerState.on_report

It connects like a client (its identity is ``manager|NAME|pid|...``, its keys the ``manager``
role's), heartbeats every ``poll_interval_seconds`` and right after each command, so the
scheduler sees the workers it asked for as starting at once. Stopping the manager leaves its
workers running: a manager started again with the same name adopts them.
"""

from __future__ import annotations

import logging
import os
import time
import uuid

from scaler.errors import ProtocolError
from scaler.io.security import HandshakeWatch, PeerKeys
from scaler.io.sockets import make_identity
from scaler.io.transport import DealerTransport, Ticker
from scaler.protocol.messages import WorkerManagerCommand, WorkerManagerHeartbeat
from scaler.utility.rate_limited_log import RateLimitedLog
from scaler.worker_manager.adapter import EngineAdapter, WorkerStatus, check_manager_name
from scaler.worker_manager.core import ForgetWorker, ManagerInstruction, ManagerState, StartWorker, StopWorker

logger = logging.getLogger(__name__)


class WorkerManager:
    """Runs ``adapter``'s workers for the scheduler at ``address``, between ``min_workers`` and ``max_workers``."""

    def __init__(
        self,
        address: str,
        adapter: EngineAdapter,
        name: str,
        min_workers: int,
        max_workers: int,
        capabilities: dict[str, int] | None = None,
        tasks_per_worker: int = 1,
        start_seconds: float = 0.0,
        poll_interval_seconds: float = 2.0,
        keys: PeerKeys | None = None,
        exit_with_parent: bool = False,
        failed_report_seconds: float | None = None,
    ) -> None:
        self.address = address
        self.adapter = adapter
        self.name = check_manager_name(name)
        self.capabilities = dict(capabilities or {})
        self.tasks_per_worker = tasks_per_worker
        self.start_seconds = start_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self.keys = keys
        self.exit_with_parent = exit_with_parent
        report_seconds = failed_report_seconds if failed_report_seconds is not None else 5 * poll_interval_seconds
        self.state = ManagerState(min_workers, max_workers, self._new_name, report_seconds)
        self.identity = make_identity("manager", name)
        self.refused: str | None = None  # why the scheduler refused this manager's keys, once it has
        self.failure: str | None = None  # why it stopped on its own, if it did (the engine could not be read)
        self._stopping = False
        self._errors = RateLimitedLog()

    def _new_name(self) -> str:
        return f"{self.name}.{uuid.uuid4().hex[:8]}"

    def stop(self, *_: object) -> None:
        """Ask the loop to finish (safe from a signal handler and from another thread); workers keep running."""
        self._stopping = True

    def run(self) -> None:
        """Adopt the workers of an earlier run, then serve the scheduler's commands until stopped."""
        transport = DealerTransport(self.address, self.identity, self.keys, name=f"manager {self.name}")
        handshakes = HandshakeWatch(self.address, self.keys, "worker manager", cut_short_is_final=False)
        parent = os.getppid()
        ticker = Ticker(self.poll_interval_seconds)
        try:
            try:
                adopted = self.adapter.adopt()
            except Exception as error:
                # Starting without knowing what runs could start a second fleet beside the first.
                self.failure = f"could not read the workers it already has from {self.adapter.kind}: {error}"
                logger.error("worker manager %s stops: %s", self.name, self.failure)
                return
            if adopted:
                logger.info("worker manager %s adopted %d workers: %s", self.name, len(adopted), ", ".join(adopted))
            self.state.adopt(adopted)
            logger.info(
                "worker manager %s (%s) serving %s: %d to %d workers",
                self.name,
                self.adapter.kind,
                self.address,
                self.state.min_workers,
                self.state.max_workers,
            )
            while not self._stopping:
                now = time.monotonic()
                beat = False
                if ticker.due(now):
                    self._execute(self.state.on_report(self._poll(), now))
                    beat = True
                events = transport.poll(min(ticker.wait_ms(now), 200))
                now = time.monotonic()
                if transport.socket in events:
                    for messages in transport.receive():
                        if isinstance(messages, ProtocolError):
                            self._errors.warning(now, "worker manager %s: unreadable frame: %s", self.name, messages)
                            continue
                        for message in messages:
                            if isinstance(message, WorkerManagerCommand):
                                self._execute(self.state.on_command(message, now))
                                beat = True
                            else:
                                logger.debug("worker manager %s ignored %s", self.name, type(message).__name__)
                if transport.monitor in events:
                    for event, value in transport.monitor_events():
                        refused = handshakes.on_event(event, value)
                        if refused is not None:
                            self.refused = str(refused)
                            logger.error("worker manager %s cannot join: %s", self.name, refused)
                            return
                if beat:
                    transport.send([self._heartbeat()])
                if self.exit_with_parent and os.getppid() != parent:
                    logger.warning("worker manager %s: its parent exited; stopping", self.name)
                    break
        finally:
            transport.close(linger_ms=100)
            self.adapter.close()
            logger.info("worker manager %s stopped; its workers keep running: %s", self.name, self.state.statistics())

    def _poll(self) -> dict[str, WorkerStatus]:
        try:
            return self.adapter.poll()
        except Exception as error:  # an engine hiccup (squeue timed out): keep the last picture
            self._errors.warning(
                time.monotonic(), "worker manager %s: could not read its workers: %s", self.name, error
            )
            return {record.worker_name: WorkerStatus(record.state, record.detail) for record in self.state.records()}

    def _execute(self, instructions: list[ManagerInstruction]) -> None:
        for instruction in instructions:
            try:
                if isinstance(instruction, StartWorker):
                    logger.info("worker manager %s: starting worker %s", self.name, instruction.name)
                    self.adapter.start(instruction.name)
                elif isinstance(instruction, StopWorker):
                    logger.info("worker manager %s: stopping worker %s (it drains)", self.name, instruction.name)
                    self.adapter.stop(instruction.name)
                elif isinstance(instruction, ForgetWorker):
                    self.adapter.forget(instruction.name)
            except Exception:
                logger.exception("worker manager %s: %s failed", self.name, instruction)

    def _heartbeat(self) -> WorkerManagerHeartbeat:
        return WorkerManagerHeartbeat(
            name=self.name,
            capabilities=self.capabilities,
            min_workers=self.state.min_workers,
            max_workers=self.state.max_workers,
            tasks_per_worker=self.tasks_per_worker,
            start_seconds=self.start_seconds,
            workers=self.state.records(),
        )
