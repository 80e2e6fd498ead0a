"""The scheduler's answers to its clients' messages: tasks, graphs, cancels, objects, heartbeats, goodbyes.

``ClientMessages`` adds one ``on_<message>`` method per client message to the bookkeeping of
``SchedulerBook``; ``SchedulerState`` picks the handler by the message's type. A client's first
message registers it (and grants its first backpressure credits).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Collection, Iterable
from typing import Any

from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ArgumentKind,
    CancelConfirmType,
    ClientDisconnect,
    ClientHeartbeat,
    ClientHeartbeatEcho,
    ClientShutdownResponse,
    DisconnectType,
    GraphTask,
    ObjectInstruction,
    ObjectInstructionType,
    ObjectRequest,
    ObjectResponse,
    PeerEventKind,
    StatusRequest,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskCredit,
    TaskResult,
    TaskResultWanted,
    TaskStatus,
)
from scaler.scheduler.clients import ClientRecord
from scaler.scheduler.graph_table import graph_problem
from scaler.scheduler.instructions import id_text, peer_text
from scaler.scheduler.lifecycle import SchedulerBook
from scaler.scheduler.task_table import TaskRecord, TaskState

# One logger for the whole core, under the name it always had: logging settings and tests select it.
logger = logging.getLogger("scaler.scheduler.state")


class ClientMessages(SchedulerBook):
    """The handlers of client messages; see the module docstring."""

    def on_task(self, source: bytes, task: Task, now: float) -> None:
        """Queue a task from a client, storing its function the first time it is seen."""
        client = self._register_or_refresh_client(source, now)
        if task.task_id in self.tasks:
            self._noise("duplicate").warning(self._now, "task %s: duplicate submission ignored", id_text(task.task_id))
            self._credits.refund(source, client)
            return
        # The function first: were it dropped with a refused task, the client's later tasks, which
        # no longer carry its bytes, would all be refused too.
        status = TaskStatus.REJECTED
        problem: str | None = self._use_function(client, task.function_id, task.function)
        problem = problem or self._credits.problem(client)
        if not problem:
            status, problem = TaskStatus.MISSING_OBJECTS, self._object_problem(source, task.args, ())
        if problem:
            self._noise("rejected").error(self._now, "task %s: rejected: %s", id_text(task.task_id), problem)
            self._send(source, TaskResult(task.task_id, status, problem.encode(), 0))
            self._credits.refund(source, client)
            return
        parent = self._tree.parent_for(task.parent_task_id)
        if parent is None:
            self._noise("orphans").info(
                self._now,
                "task %s: its parent %s was stopped; cancelled",
                id_text(task.task_id),
                id_text(task.parent_task_id),
            )
            self._send(source, TaskCancelConfirm(task.task_id, CancelConfirmType.CANCELED))
            self._credits.refund(source, client)
            return
        task.function = b""
        if task.objects:  # only a scheduler or an agent attaches objects; a fresh [] per task would cost 56 bytes
            task.objects = []
        # A decoded message brings its own copies: keep one per function, not one per queued task.
        task.function_id = self._functions.canonical(task.function_id)
        task.function_name = sys.intern(task.function_name)
        record = TaskRecord(task=task, client=source, parent=parent, submitted_at=now)
        self._credits.take(client, record)
        self._adopt(client, record)
        self._enqueue(record, front=False)
        self._status.submitted_task(record, now)

    def on_graph_task(self, source: bytes, graph: GraphTask, now: float) -> None:
        """Accept a whole graph: nodes without dependencies are queued, the others wait."""
        client = self._register_or_refresh_client(source, now)
        node_ids = frozenset(node.task_id for node in graph.nodes)
        problem = graph_problem(graph, self.tasks) if graph.graph_id not in self.graphs else "graph id reused"
        for node in graph.nodes:
            problem = problem or self._use_function(client, node.function_id, node.function)
        status = TaskStatus.REJECTED
        for node in graph.nodes:
            if not problem:
                status, problem = TaskStatus.MISSING_OBJECTS, self._object_problem(source, node.args, node_ids)
        if problem:
            self._noise("rejected").error(self._now, "graph %s: rejected: %s", id_text(graph.graph_id), problem)
            for target in dict.fromkeys(graph.targets):
                self._send(source, TaskResult(target, status, problem.encode(), 0))
            return
        parent = self._tree.parent_for(graph.parent_task_id)
        if parent is None:
            self._noise("orphans").info(
                self._now,
                "graph %s: its parent %s was stopped; cancelled",
                id_text(graph.graph_id),
                id_text(graph.parent_task_id),
            )
            for target in dict.fromkeys(graph.targets):
                self._send(source, TaskCancelConfirm(target, CancelConfirmType.CANCELED))
            return
        targets = set(graph.targets)
        for node in graph.nodes:
            task = Task(node.task_id, node.function_id, b"", node.args, 0, function_name=node.function_name)
            task.profiling, task.stream_output = graph.profiling, graph.stream_output
            is_target = node.task_id in targets
            record = TaskRecord(
                task,
                source,
                TaskState.WAITING,
                graph=graph.graph_id,
                is_target=is_target,
                parent=parent,
                submitted_at=now,
            )
            self._adopt(client, record, graph_nodes=node_ids)
            self._status.submitted_task(record, now)
        for node_id in self.graphs.add(graph.graph_id, [(node.task_id, node.dependencies) for node in graph.nodes]):
            self._make_ready(self.tasks[node_id])

    def on_task_cancel(self, source: bytes, cancel: TaskCancel, now: float) -> None:
        """Cancel a queued task at once; ask the worker to cancel an assigned one; a graph goes whole."""
        self._register_or_refresh_client(source, now)
        record = self.tasks.get(cancel.task_id)
        if record is None or record.client != source or not record.is_target:
            logger.debug("task %s: cancel of a task the scheduler no longer holds", id_text(cancel.task_id))
            self._send(source, TaskCancelConfirm(cancel.task_id, CancelConfirmType.CANCEL_NOT_FOUND))
        elif record.graph:
            logger.info("graph %s: cancelled through task %s", id_text(record.graph), id_text(cancel.task_id))
            for node_id in list(self.graphs[record.graph]):
                self._cancel(self.tasks[node_id])  # no node is another's child: a graph's nodes share one parent
        else:
            self._cancel(record)

    def on_object_instruction(self, source: bytes, instruction: ObjectInstruction, now: float) -> None:
        """Store, release or clear a client's objects."""
        self._register_or_refresh_client(source, now)
        freed: list[bytes] = []
        if instruction.kind is ObjectInstructionType.CREATE:
            if len(instruction.object_ids) != len(instruction.payloads):
                self._noise("objects").warning(
                    self._now, "client %s sent a CREATE with mismatched ids and payloads", peer_text(source)
                )
                return
            for object_id, payload in zip(instruction.object_ids, instruction.payloads, strict=True):
                # An id is the hash of its bytes: a client cannot claim (and then read) an object
                # it does not have, nor plant other bytes under an id someone else will use.
                if content_id(payload) != object_id:
                    self._noise("objects").warning(
                        self._now, "client %s sent an object whose id is not its content hash", peer_text(source)
                    )
                    continue
                self.objects.put(source, object_id, payload)
        elif instruction.kind is ObjectInstructionType.DELETE:
            for object_id in instruction.object_ids:
                freed += self.objects.release(source, object_id)
        elif instruction.kind is ObjectInstructionType.CLEAR:
            freed += self.objects.release_all(source)
        else:  # functions are freed when their last client leaves, not on a client's word
            self._noise("objects").warning(
                self._now, "client %s sent an ObjectInstruction of kind %s", peer_text(source), instruction.kind.name
            )
        self._announce_freed(freed)

    def on_object_request(self, source: bytes, request: ObjectRequest, now: float) -> None:
        """Answer with the objects' bytes; a client may read only objects it holds."""
        self._register_or_refresh_client(source, now)
        payloads: list[bytes] = []
        found: list[bool] = []
        for object_id in request.object_ids:
            data = self.objects.get(object_id) if self.objects.is_held_by(object_id, source) else None
            payloads.append(data if data is not None else b"")
            found.append(data is not None)
        self._send(source, ObjectResponse(list(request.object_ids), payloads, found))

    def on_task_result_wanted(self, source: bytes, wanted: TaskResultWanted, now: float) -> None:
        """Mark the client's own live tasks whose results it waits for: a big one goes straight to it."""
        self._register_or_refresh_client(source, now)
        for task_id in wanted.task_ids:
            record = self.tasks.get(task_id)
            if record is not None and record.client == source:
                record.result_wanted = True

    def on_client_heartbeat(self, source: bytes, heartbeat: ClientHeartbeat, now: float) -> None:
        """Note the client is alive and echo the heartbeat."""
        self._register_or_refresh_client(source, now)
        self._send(source, ClientHeartbeatEcho(heartbeat.timestamp, self.scheduler_id))

    def on_client_disconnect(self, source: bytes, disconnect: ClientDisconnect, now: float) -> None:
        """A client leaves: cancel its tasks; with SHUTDOWN, stop the scheduler unless protected."""
        if disconnect.kind is DisconnectType.SHUTDOWN:
            if self.config.protected:
                reason = (
                    "the scheduler runs in protected mode, so clients cannot shut it down; "
                    "stop it from its host, or restart it with --no-protected (protected=False)"
                )
                self._register_or_refresh_client(source, now)
                self._send(source, ClientShutdownResponse(False, reason))
                return
            self._send(source, ClientShutdownResponse(True, ""))
            self._remove_client(source, "this client shut the scheduler down")
            self._shutdown("a client asked the scheduler to shut down")
            return
        self._remove_client(source, "this client disconnected")

    def on_status_request(self, source: bytes, request: StatusRequest, now: float) -> None:
        """Answer ``Client.status()``: the snapshot the status feed would publish now."""
        self._register_or_refresh_client(source, now)
        self._send(source, self._snapshot(now, request.request_id))

    def _register_or_refresh_client(self, source: bytes, now: float) -> ClientRecord:
        """The client's record, refreshed; a client's first message registers it and grants its first credits."""
        client, new = self.clients.register_or_refresh(source, now)
        if new:
            logger.info("client %s connected", peer_text(source))
            self._status.peer(PeerEventKind.CLIENT_JOINED, now, source)
            if self._credits.enabled:
                self._send(source, TaskCredit(self._credits.limit))
        return client

    def _use_function(self, client: ClientRecord, function_id: bytes, function: bytes) -> str | None:
        """Take the function a task names (or brings); return why the task cannot run, if it cannot."""
        problem = self._functions.accept(function_id, function, new_user=function_id not in client.functions)
        if problem is None:
            client.functions.add(function_id)
        return problem

    def _object_problem(self, client_id: bytes, args: Iterable[Any], graph_nodes: Collection[bytes]) -> str | None:
        for argument in args:
            is_client_object = argument.kind is ArgumentKind.OBJECT and argument.data not in graph_nodes
            if is_client_object and not self.objects.is_held_by(argument.data, client_id):
                return f"object {argument.data.hex()} is unknown: it was never sent, or was freed"
        return None
