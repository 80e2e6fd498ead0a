"""``Client``: submit Python callables and task graphs to a scaler cluster; get ``ScalerFuture``s back.

Data flow::

    user thread: submit(fn, *args) -> serialize args -> Task -> ClientAgent.send (queue + wake)
                 get(graph, keys)  -> graph.plan_graph -> one GraphTask (nodes run by one runner)
                 send_object(obj)  -> ObjectInstruction(CREATE) once per content
    agent thread: queue -> one frame -> scheduler ... TaskResult -> ClientFutureManager -> future

A function is pickled with the client's serializer and identified by the hash of those bytes;
its bytes travel only with the first task that names it. An argument whose serialized form is
over 64 KiB travels as an object, uploaded once per content and freed when no pending task
needs it and the client's cache of such objects is full (``encoder.py``). With no address,
the client connects to its worker's scheduler when it runs inside a task, and otherwise starts a
private ``SchedulerClusterCombo`` and shuts it down on ``disconnect()``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from scaler.client import graph as graphs
from scaler.client import progress as progress_bars
from scaler.client import task_report as task_reports
from scaler.client.agent import AgentFactory, ClientAgent
from scaler.client.encoder import INLINE_ARGUMENT_BYTES, Big, TaskEncoder, check_message_size
from scaler.client.future import ScalerFuture
from scaler.client.future_manager import ClientFutureManager
from scaler.client.object_reference import ObjectReference
from scaler.client.registry import rebuild_client, register_original
from scaler.client.results import decode_result
from scaler.client.serializer import DefaultSerializer, Serializer
from scaler.client.status import StatusRequests
from scaler.config.client import AUTOMATIC_OBJECT_CACHE_BYTES, ClientConfig
from scaler.errors import AuthenticationError, ClientForkedError, DisconnectedError, ShutdownRefusedError
from scaler.io.keys import PathLike
from scaler.io.security import PeerKeys, require_libzmq
from scaler.io.sockets import make_identity, validate_address
from scaler.protocol.messages import (
    ClientDisconnect,
    ClientShutdownResponse,
    DisconnectType,
    GraphTask,
    Message,
    StatusRequest,
    StatusSnapshot,
    Task,
)
from scaler.utility import task_context

logger = logging.getLogger(__name__)

__all__ = ["AUTOMATIC_OBJECT_CACHE_BYTES", "INLINE_ARGUMENT_BYTES", "Client"]


class Client:
    """A connection to a scaler scheduler.

    ``Client(address)`` connects to a running scheduler. ``Client()`` inside a task connects to
    the scheduler of the task's worker; anywhere else it starts a private local cluster and owns
    it: two workers (one on a single CPU) at once, growing to one worker per CPU while tasks wait
    and back to two after a minute idle (``SchedulerClusterCombo(n_workers=2, max_workers=CPUS)``).
    Use it as a context manager, or call ``disconnect()`` when done.

    ``profiling=True`` measures where every task's time and memory went
    (``future.profiling_info()``, ``task_report()``); ``stream_output=True`` prints what tasks
    write on this process's stdout and stderr, each line prefixed with the task id. ``map``,
    ``starmap`` and ``get`` take ``progress=True`` to draw a progress bar while they wait.

    A ``Client`` pickles as its address and settings, so passing it to a task gives the task a
    client of the same scheduler.

    Keys, for a scheduler that requires them: ``keys_dir`` is a directory made by
    ``scaler_keygen`` (or a copy holding ``client.key_secret`` and ``scheduler.key``);
    ``key_file`` (this client's ``.key_secret``) and ``scheduler_key_file`` (the scheduler's
    ``.key``) name the files directly and win over ``keys_dir``. Inside a task, a client of the
    task's own scheduler uses its worker's keys. A refused key raises ``AuthenticationError``.

    ``agent_factory`` makes the thread that owns the socket (``ClientAgent``); tests pass a
    stand-in that records what the client sends.
    """

    asynchronous = False  # for dask: ``dask.compute(obj, scheduler=client)`` uses ``client.get``

    def __init__(
        self,
        address: str | None = None,
        profiling: bool = ClientConfig.profiling,
        timeout_seconds: float = ClientConfig.timeout_seconds,
        heartbeat_interval_seconds: float = ClientConfig.heartbeat_interval_seconds,
        serializer: Serializer | type[Serializer] | None = None,
        stream_output: bool = ClientConfig.stream_output,
        object_cache_bytes: int = ClientConfig.object_cache_bytes,
        keys_dir: PathLike | None = None,
        key_file: PathLike | None = None,
        scheduler_key_file: PathLike | None = None,
        *,
        agent_factory: AgentFactory = ClientAgent,
    ) -> None:
        require_libzmq()
        self._pid = os.getpid()  # a Client belongs to the process that made it (see _ensure_usable)
        self._combo: Any = None
        own_scheduler = task_context.scheduler_address()
        if address is None:
            address = own_scheduler or None
        no_keys_given = keys_dir is None and key_file is None and scheduler_key_file is None
        if no_keys_given and address is not None and address == own_scheduler:  # a task's client: its worker's keys
            key_file, scheduler_key_file = task_context.scheduler_key_files() or (None, None)
        self._keys = PeerKeys.load("client", keys_dir, key_file, scheduler_key_file)
        if address is None:
            from scaler.cluster.combo import SchedulerClusterCombo

            cpus = os.cpu_count() or 1
            # Two workers at once (the first result comes as fast as ever), growing to one per CPU
            # while tasks wait. A keys directory made before scaler_keygen made a manager key pair
            # gets the fixed cluster it always had.
            elastic = keys_dir is None or os.path.exists(
                os.path.join(os.path.expanduser(keys_dir), "manager.key_secret")
            )
            self._combo = SchedulerClusterCombo(  # its logs must not mix with the program's output
                n_workers=min(2, cpus) if elastic else cpus,
                max_workers=cpus if elastic else None,
                logging_level="WARNING",
                logging_paths="/dev/stderr",
                keys_dir=keys_dir,
            )
            address = self._combo.get_address()
        self.address = validate_address(address)
        self.profiling = profiling
        self.stream_output = stream_output
        self.timeout_seconds = timeout_seconds
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        if isinstance(serializer, type):
            serializer = serializer()
        self._serializer: Serializer = serializer or DefaultSerializer()
        self._encoder = TaskEncoder(self._serializer, self._send, object_cache_bytes)
        self._token = os.urandom(8)  # names this client in pickles of it
        identity = make_identity("client")
        self._task_prefix = os.urandom(8)
        self._task_counter = itertools.count()
        self._shutdown_answer: ClientShutdownResponse | None = None
        self._shutdown_answered = threading.Event()
        self._shutdown_unawaited = False  # asked from a done-callback: nobody waits for the answer
        self._disconnected = False
        self._status_requests = StatusRequests()
        decode = functools.partial(decode_result, self._serializer)
        self._manager = ClientFutureManager(self._send, decode, self._on_agent_thread)
        self._agent = agent_factory(
            self.address,
            identity,
            self._manager,
            heartbeat_interval_seconds,
            timeout_seconds,
            self._on_shutdown_response,
            self._keys,
            self._status_requests.answer,
        )
        self._agent.start()
        if not self._agent.connected.wait(timeout_seconds) or self._agent.error is not None:
            self._close(stop_combo=True)
            if isinstance(self._agent.error, AuthenticationError):
                raise self._agent.error
            failed_handshakes = self._agent.handshakes.timeout_error(timeout_seconds)
            if self._agent.error is None and failed_handshakes is not None:
                raise failed_handshakes
            if self._agent.heard_anything and self._agent.error is not None:
                raise DisconnectedError(f"cannot use the scheduler at {self.address}: {self._agent.error}")
            raise DisconnectedError(
                f"no scaler scheduler answered at {self.address} within {timeout_seconds:g}s; "
                f"start one with `scaler_scheduler {self.address}`, or use Client() for a local cluster"
            )
        register_original(self, self.address, self._token)

    # -- context manager and pickling ------------------------------------------------------------

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.disconnect()

    def __reduce__(self) -> tuple[Any, ...]:
        settings = (self.profiling, self.timeout_seconds, self.heartbeat_interval_seconds, self._serializer)
        key_files = None if self._keys is None else (self._keys.key_file, self._keys.scheduler_key_file)
        return rebuild_client, (self.address, self._token, settings, self.stream_output, key_files)

    # -- submitting ----------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> ScalerFuture:
        """Run ``fn(*args, **kwargs)`` on the cluster; return its future at once."""
        function_id, function = self._encoder.function(fn)
        return self._submit(function_id, function, args, kwargs)

    def submit_verbose(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        capabilities: dict[str, int] | None = None,
        priority: int = 0,
        timeout_seconds: float | None = None,
    ) -> ScalerFuture:
        """Like ``submit``, with task options.

        ``capabilities`` (e.g. ``{"gpu": 1}``): only workers offering every key may run it.
        ``priority``: among queued tasks, higher runs first (default 0).
        ``timeout_seconds``: stop the task if it runs longer, and fail its future with
        ``TaskTimeoutError``; it overrides the workers' ``--task-timeout-seconds`` (default: theirs).
        """
        if timeout_seconds is not None and not (isinstance(timeout_seconds, int | float) and timeout_seconds > 0):
            raise ValueError(f"timeout_seconds must be a number of seconds above 0, or None; got {timeout_seconds!r}")
        function_id, function = self._encoder.function(fn)
        timeout = float(timeout_seconds or 0.0)
        options = (dict(capabilities or {}), priority, timeout)
        return self._submit(function_id, function, tuple(args), dict(kwargs), *options)

    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], progress: progress_bars.ProgressOptions = False
    ) -> list[Any]:
        """Like the builtin ``map``, run on the cluster; block and return the results in order.

        ``progress=True`` draws a progress bar (``scaler.progress``) while the tasks run; a dict
        gives the bar's options instead, e.g. ``progress={"desc": "pricing", "file": sys.stdout}``.
        The first failure, in order, is raised either way, and the tasks left are cancelled.
        """
        return self.starmap(fn, zip(*iterables), progress=progress)  # noqa: B905 - stops at the shortest

    def starmap(
        self,
        fn: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        progress: progress_bars.ProgressOptions = False,
    ) -> list[Any]:
        """Run ``fn(*args)`` for each ``args`` in ``iterable``; block and return the results in order.

        ``progress``: as for ``map``.
        """
        function_id, function = self._encoder.function(fn)
        futures = [self._submit(function_id, function, tuple(args), {}) for args in iterable]
        return _gather(futures, progress)

    # -- objects -------------------------------------------------------------------------------

    def send_object(self, obj: Any, name: str | None = None) -> ObjectReference:
        """Store ``obj`` on the scheduler once; pass the reference to tasks instead of the object.

        Identical content is stored once. The object stays until ``clear()`` or disconnect.
        """
        self._ensure_connected()
        return self._encoder.send_object(obj, name)

    def clear(self) -> None:
        """Drop every object this client stored (``send_object`` and big arguments) on the scheduler.

        Tasks still pending keep what they use; a big result not read yet is dropped too.
        """
        self._ensure_connected()
        self._encoder.clear()

    # -- graphs --------------------------------------------------------------------------------

    def get(self, graph: Any, keys: Any, block: bool = True, progress: progress_bars.ProgressOptions = False) -> Any:
        """Run a Dask-style task graph; return ``{key: value}`` (or ``{key: future}`` with ``block=False``).

        ``graph`` maps keys (strings, or tuples such as ``("x", 0)``) to data, an
        ``ObjectReference``, or a task tuple ``(callable, *args)`` whose args may name other keys,
        hold nested task tuples, or lists, tuples and dicts of those. Only what ``keys`` need is
        sent, as one message; intermediate results stay on the cluster. A missing or repeated key
        raises ``KeyError`` and a cycle ``graphlib.CycleError``, before anything is sent. A failing
        node fails the keys that depend on it with its exception; cancelling any returned future
        cancels the whole graph.

        As a dask scheduler (``dask.compute(obj, scheduler=client.get)``) it takes dask's graph and
        nested list of keys, and returns the values shaped like ``keys``, as dask expects.

        ``progress=True`` draws a progress bar of the keys asked for while it blocks (a dict gives
        the bar's options, as for ``map``); with ``block=False``, call ``scaler.progress`` on the
        returned futures instead.
        """
        if progress_bars.wanted(progress) and not block:
            raise ValueError("progress=True needs block=True; with block=False, use scaler.progress(futures)")
        request = graphs.plan_request(graph, keys)  # raises before anything is sent
        futures = self._send_graph(request.plan)
        if not block and not request.from_dask:
            return futures
        return request.pack(dict(zip(futures, _gather(list(futures.values()), progress))))  # noqa: B905

    # -- reports -------------------------------------------------------------------------------

    def task_report(
        self,
        futures: Iterable[ScalerFuture] | Mapping[Any, ScalerFuture],
        csv_path: str | os.PathLike[str] | None = None,
    ) -> list[task_reports.TaskRecord]:
        """Where each task's time and memory went: one ``TaskRecord`` per future, in order.

        Each record has the task's id, function name and status (``pending``, ``success``,
        ``failed``, ``cancelled``), and with ``Client(profiling=True)`` its queue wait, transfer,
        load, run and CPU time, peak memory, result size and serialization time (``None`` when
        not measured). ``csv_path`` also writes them there as CSV, one row per task.
        """
        rows = task_reports.records(futures)
        if csv_path is not None:
            task_reports.write_csv(rows, csv_path)
        return rows

    # -- leaving -------------------------------------------------------------------------------

    def disconnect(self) -> None:
        """Leave the scheduler; pending futures end cancelled. Calling it again does nothing."""
        self._check_process()
        if self._disconnected:
            return
        self._disconnected = True  # first: a submit from now on (a callback, another thread) raises
        self._manager.cancel_all()
        if self._agent.error is None:
            self._agent.send(ClientDisconnect(DisconnectType.DISCONNECT))  # _send() drops sends once disconnected
        self._close(stop_combo=True)

    def shutdown(self) -> None:
        """Stop the scheduler (and its cluster), then disconnect.

        Raises ``ShutdownRefusedError`` when the scheduler runs in protected mode. A client
        that started its own local cluster (``Client()``) always shuts it down.

        From a done-callback (the client's agent thread, which is the one that would read the
        answer) it sends the request and returns at once: an accepted shutdown then ends this
        client's futures as the scheduler goes, and a refusal is logged as a warning.
        """
        self._check_process()
        if self._disconnected:
            return
        if self._combo is not None:
            self.disconnect()
            return
        self._ensure_connected()
        self._shutdown_answered.clear()
        if self._on_agent_thread():
            self._shutdown_unawaited = True
            self._send(ClientDisconnect(DisconnectType.SHUTDOWN))
            return
        self._send(ClientDisconnect(DisconnectType.SHUTDOWN))
        if not self._shutdown_answered.wait(self.timeout_seconds) or self._shutdown_answer is None:
            raise DisconnectedError(f"the scheduler did not answer the shutdown request within {self.timeout_seconds}s")
        if not self._shutdown_answer.accepted:
            raise ShutdownRefusedError(self._shutdown_answer.reason)
        self._manager.cancel_all()
        self._close(stop_combo=True)

    def status(self, timeout_seconds: float | None = None) -> StatusSnapshot:
        """The whole cluster as the scheduler sees it now, through this client's own connection.

        Returns the same typed ``StatusSnapshot`` the scheduler publishes on its status feed
        (``--monitor-address``): ``.scheduler`` (uptime, CPU, memory, message rates, tasks by state,
        totals since start, objects), ``.clients`` (each client's queued, running, done, failed and
        cancelled tasks) and ``.workers`` (each worker's state, queue, running tasks with their
        function names and running times, processors, CPU, memory and heartbeat age). It works
        whether or not the feed is on, and needs no extra socket or key.

        Waits at most ``timeout_seconds`` (default: the client's ``timeout_seconds``) and raises
        ``TimeoutError`` if no answer came; ``DisconnectedError`` if the scheduler is lost. From a
        done-callback (the thread that would receive the answer) it raises ``RuntimeError``.
        """
        self._ensure_connected()
        if self._on_agent_thread():
            raise RuntimeError("Client.status() cannot wait in a done-callback: that thread receives the answer")
        timeout = self.timeout_seconds if timeout_seconds is None else timeout_seconds
        request_id = self._status_requests.open()
        self._send(StatusRequest(request_id))
        return self._status_requests.wait(request_id, timeout, lambda: self._agent.error)

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring and tests."""
        self._check_process()
        return {
            "pending": self._manager.pending_count(),
            "results_kept_on_scheduler": self._manager.kept_count(),
            **self._encoder.statistics(),
        }

    # -- internals: connection -----------------------------------------------------------------

    def _close(self, stop_combo: bool) -> None:
        self._disconnected = True
        self._agent.stop()
        self._manager.cancel_all()  # a submit that raced the flag above must not leave its future pending
        if stop_combo and self._combo is not None:
            self._combo.shutdown()
            self._combo = None

    def _ensure_connected(self) -> None:
        self._check_process()
        if self._disconnected:
            raise DisconnectedError("this client is disconnected; create a new Client to submit more tasks")
        if self._agent.error is not None:
            raise DisconnectedError(str(self._agent.error))
        if not self._agent.is_alive():  # it always sets an error first; this guards against the unforeseen
            raise DisconnectedError("this client's agent thread has ended; create a new Client")

    def _reusable(self) -> bool:
        """Whether a pickle of this client may unpickle as this very object (see ``registry.py``)."""
        return self._pid == os.getpid() and not self._disconnected and self._agent.error is None

    def _check_process(self) -> None:
        """A forked child inherits the Client object but not its agent thread: refuse, rather than hang."""
        if os.getpid() != self._pid:
            raise ClientForkedError(
                f"this Client was created in process {self._pid} and cannot be used in process {os.getpid()} "
                f"(a fork of it has no connection to the scheduler); create a new Client in the child process"
            )

    def _send(self, message: Message) -> None:
        if not self._disconnected:  # late frees (a dropped future) after disconnect have nowhere to go
            self._agent.send(message)

    def _on_agent_thread(self) -> bool:
        agent: object = self._agent  # a ClientAgent is a thread; a test's stand-in never is
        return threading.current_thread() is agent

    def _on_shutdown_response(self, response: ClientShutdownResponse) -> None:
        self._shutdown_answer = response
        self._shutdown_answered.set()
        if self._shutdown_unawaited:  # on the agent thread: act on the answer without blocking it
            self._shutdown_unawaited = False
            if not response.accepted:
                logger.warning("the scheduler refused the shutdown asked from a done-callback: %s", response.reason)
            else:
                self._manager.cancel_all()
                self._close(stop_combo=False)

    # -- internals: tasks ----------------------------------------------------------------------

    def _next_task_id(self) -> bytes:
        return self._task_prefix + struct.pack(">Q", next(self._task_counter))

    def _submit(
        self,
        function_id: bytes,
        function: bytes,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        capabilities: dict[str, int] | None = None,
        priority: int = 0,
        timeout_seconds: float = 0.0,
    ) -> ScalerFuture:
        self._ensure_connected()
        encoder = self._encoder
        big: Big = {}
        arguments, inline = encoder.arguments(args, kwargs, big)
        check_message_size(inline + len(function))
        self._wait_for_room()  # only once nothing can fail before the send: a credit taken is a task sent
        task_id = self._next_task_id()
        future = self._manager.create(task_id, self.profiling, encoder.pin_automatic(big) if big else None)
        task = Task(task_id, function_id, b"", arguments, 0)
        task.priority = priority
        task.capabilities = capabilities or {}
        task.timeout_seconds = timeout_seconds
        task.profiling = self.profiling
        task.stream_output = self.stream_output
        task.parent_task_id = task_context.current_task_id()  # b"" outside a task
        encoder.send_with_function(task, function_id, function)
        future._function_name = task.function_name  # named by the encoder, as the status feed shows it
        if self._agent.error is not None:  # lost meanwhile, maybe after the agent's last flush: never wait
            self._manager.fail_all(self._agent.error)
        return future

    def _wait_for_room(self) -> None:
        """Take a backpressure credit, blocking while the scheduler has as many of our tasks queued as it allows."""
        agent = self._agent
        if agent.take_credit(block=False):
            return
        with task_context.blocked():  # inside a task, let the worker run others meanwhile
            agent.take_credit()
        self._ensure_connected()  # it may have been disconnected, or lost the scheduler, meanwhile

    # -- internals: graphs ---------------------------------------------------------------------

    def _send_graph(self, plan: graphs.GraphPlan) -> dict[Any, ScalerFuture]:
        """Encode a planned graph, make its targets' futures, and send it as one ``GraphTask``."""
        self._ensure_connected()
        if not plan.targets:
            return {}
        encoded = self._encoder.graph(plan, self._next_task_id)  # raises before anything is sent
        unpin = self._encoder.pin_automatic(encoded.big)
        on_finish = _countdown(len(plan.targets), unpin) if unpin is not None else None
        task_ids = encoded.task_ids
        futures = {key: self._manager.create(task_ids[key], self.profiling, on_finish) for key in plan.targets}
        names = {node.task_id: node.function_name for node in encoded.nodes}  # the feed's names, in the report
        for future in futures.values():
            future._function_name = names[future.task_id]
        targets = [task_ids[key] for key in plan.targets]
        graph_task = GraphTask(self._next_task_id(), encoded.nodes, targets, self.profiling, self.stream_output)
        graph_task.parent_task_id = task_context.current_task_id()
        self._encoder.send_with_function(graph_task, *encoded.runner)
        return futures


def _gather(futures: list[ScalerFuture], progress: progress_bars.ProgressOptions = False) -> list[Any]:
    """Wait for every result in order (drawing a bar if asked); on the first error, cancel the rest and raise it."""
    for future in futures:
        future._want()  # big results kept on the scheduler are fetched together, not one by one
    try:
        with task_context.blocked():
            if progress_bars.wanted(progress):
                return progress_bars.gather(futures, progress)
            return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            if not future.done():
                future.cancel(timeout=0)
        raise


def _countdown(count: int, then: Callable[[], None]) -> Callable[[], None]:
    """A callable that runs ``then`` on its ``count``-th call (from any thread)."""
    left = [count]
    lock = threading.Lock()

    def tick() -> None:
        with lock:
            left[0] -= 1
            done = left[0] == 0
        if done:
            then()

    return tick
