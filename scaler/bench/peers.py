"""The frameworks compared: scaler and its peers, each behind the same small interface.

A ``Peer`` says whether its framework is importable, how long it takes from nothing to a first
result (``startup``), and opens a ``Session``: a running cluster or executor with ``workers``
single-threaded worker processes, every one of which has answered a task already. The workloads
(``scaler.bench.workloads``) only ever call a session's methods.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scaler.bench.tasks import noop, worker_pid

READY_TIMEOUT_SECONDS = 60.0


class Unsupported(Exception):
    """The framework has no such operation (a graph on an executor)."""


class Session:
    """A running framework. The defaults suit anything whose futures are ``concurrent.futures`` futures."""

    name = ""
    scheduler_pid: int | None = None  # a separate scheduler process, where there is one

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)``; return its future at once."""
        raise NotImplementedError

    def starmap(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The framework's own bulk call: ``fn(*a)`` for each ``a``, results in order."""
        raise NotImplementedError

    def wait(self, futures: list[Any]) -> None:
        """Return once every future has finished."""
        concurrent.futures.wait(futures)

    def results(self, futures: list[Any]) -> list[Any]:
        """Every future's result, in order (fetching it, where results are fetched on demand)."""
        return [future.result() for future in futures]

    def cancel(self, future: Any) -> bool:
        """Cancel one future, the framework's own way; True if it ended cancelled."""
        return bool(future.cancel())

    def cancel_many(self, futures: list[Any]) -> None:
        """Cancel many futures at once, as quickly as the framework allows (waiting for nothing)."""
        for future in futures:
            future.cancel()

    def done(self, future: Any) -> bool:
        """Whether the future has ended (result, error or cancelled)."""
        return bool(future.done())

    def run_graph(self, graph: dict[str, Any], key: str) -> Any:
        """Run a dask-style graph on the framework's scheduler; return the value of ``key``."""
        raise Unsupported(f"{self.name} has no task graphs")

    def close(self) -> None:
        """Stop every process the session started."""

    def wait_for_workers(self, workers: int, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Return once tasks have run on ``workers`` distinct processes."""
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: only {len(seen)} of {workers} workers answered in {timeout:g}s")
            seen |= set(self.results([self.submit(worker_pid, 0.05) for _ in range(2 * workers)]))


def _in_turn(first: Callable[[], Any], then: Callable[[], Any]) -> None:
    """``first()``, then ``then()`` even if ``first()`` raised."""
    try:
        first()
    finally:
        then()


class ExecutorSession(Session):
    """A ``concurrent.futures`` executor: the standard library's process pool, or loky's."""

    def __init__(self, name: str, executor: concurrent.futures.Executor) -> None:
        self.name = name
        self.executor = executor

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """See ``Session.submit``."""
        return self.executor.submit(fn, *args)

    def starmap(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``Executor.map`` over the argument columns (chunksize 1, its default)."""
        return list(self.executor.map(fn, *zip(*args)))  # noqa: B905 - columns of equal length

    def close(self) -> None:
        """Shut the executor down, cancelling what has not started."""
        try:
            self.executor.shutdown(wait=True, cancel_futures=True)
        except TypeError:  # loky's shutdown has no cancel_futures; the workloads leave nothing pending
            self.executor.shutdown(wait=True)


class ScalerSession(Session):
    """A ``SchedulerClusterCombo`` on loopback, and a ``Client`` of it."""

    name = "scaler"

    def __init__(self, workers: int) -> None:
        from scaler import Client, SchedulerClusterCombo

        self.combo = SchedulerClusterCombo(n_workers=workers, logging_level="WARNING", logging_paths="/dev/stderr")
        try:
            self.client = Client(address=self.combo.get_address())
        except BaseException:
            self.combo.shutdown()
            raise
        self.scheduler_pid = self.combo.scheduler_pid()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """See ``Session.submit``."""
        return self.client.submit(fn, *args)

    def starmap(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``Client.starmap``."""
        return self.client.starmap(fn, args)

    def cancel(self, future: Any) -> bool:
        """``future.cancel()``, which blocks until the scheduler confirms it."""
        return bool(future.cancel())

    def cancel_many(self, futures: list[Any]) -> None:
        """Every cancel sent without waiting for its confirmation (``cancel(timeout=0)``)."""
        for future in futures:
            future.cancel(timeout=0)

    def run_graph(self, graph: dict[str, Any], key: str) -> Any:
        """``Client.get``: the scheduler runs the graph, the client receives ``key`` only."""
        return self.client.get(graph, [key])[key]

    def close(self) -> None:
        """Disconnect, then stop the scheduler and the workers."""
        _in_turn(self.client.disconnect, self.combo.shutdown)


class DaskSession(Session):
    """A dask.distributed ``LocalCluster`` of single-threaded worker processes, and a client of it."""

    name = "dask"

    def __init__(self, workers: int) -> None:
        import distributed

        # Typed as Any: distributed's own annotations are partial, and only its behaviour matters here.
        self.distributed: Any = distributed
        self.cluster: Any = self.distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        try:
            self.client: Any = self.distributed.Client(self.cluster)
        except BaseException:
            self.cluster.close()
            raise
        self.scheduler_pid = None  # the scheduler runs in this process, on the client's event loop thread

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """See ``Session.submit`` (``pure=False``: equal arguments are separate tasks)."""
        return self.client.submit(fn, *args, pure=False)

    def starmap(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``Client.map`` over the argument columns, then ``Client.gather``."""
        futures = self.client.map(fn, *zip(*args), pure=False)  # noqa: B905
        return list(self.client.gather(futures))

    def wait(self, futures: list[Any]) -> None:
        """``distributed.wait``."""
        self.distributed.wait(futures)

    def results(self, futures: list[Any]) -> list[Any]:
        """``Client.gather``: one request for all of them."""
        return list(self.client.gather(futures))

    def cancel(self, future: Any) -> bool:
        """``future.cancel()``: returns once the request is on its way, without an answer."""
        future.cancel()
        return bool(future.cancelled())

    def cancel_many(self, futures: list[Any]) -> None:
        """``Client.cancel`` of all of them in one request."""
        self.client.cancel(futures)

    def run_graph(self, graph: dict[str, Any], key: str) -> Any:
        """``Client.get``: the scheduler runs the graph, the client receives ``key`` only."""
        return self.client.get(graph, key)

    def close(self) -> None:
        """Close the client, then the cluster."""
        _in_turn(self.client.close, self.cluster.close)


class RaySession(Session):
    """A local Ray instance with ``num_cpus=workers``: at most that many one-CPU tasks at a time."""

    name = "ray"

    def __init__(self, workers: int) -> None:
        import ray

        self.ray = ray
        # Its workers inherit this process's environment, so they import scaler from where it does.
        ray.init(
            num_cpus=workers,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=False,
        )
        self._remote: dict[Callable[..., Any], Any] = {}

    def _function(self, fn: Callable[..., Any]) -> Any:
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(num_cpus=1)(fn)
        return self._remote[fn]

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn.remote(*args)``: an ``ObjectRef``."""
        return self._function(fn).remote(*args)

    def starmap(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Ray has no map: one ``remote`` call each, then one ``ray.get``."""
        remote = self._function(fn)
        return list(self.ray.get([remote.remote(*a) for a in args]))

    def wait(self, futures: list[Any]) -> None:
        """``ray.wait`` for all of them, without fetching the values."""
        self.ray.wait(futures, num_returns=len(futures), fetch_local=False)

    def results(self, futures: list[Any]) -> list[Any]:
        """``ray.get`` of all of them."""
        return list(self.ray.get(futures))

    def cancel(self, future: Any) -> bool:
        """``ray.cancel``: asks, and returns without an answer."""
        self.ray.cancel(future)
        return True

    def cancel_many(self, futures: list[Any]) -> None:
        """``ray.cancel`` each."""
        for future in futures:
            self.ray.cancel(future)

    def done(self, future: Any) -> bool:
        """Ready (a value, an error or a cancellation) by ``ray.wait`` with no timeout."""
        ready, _ = self.ray.wait([future], timeout=0, fetch_local=False)
        return bool(ready)

    def run_graph(self, graph: dict[str, Any], key: str) -> Any:
        """Each node a ``remote`` call whose arguments are its inputs' ``ObjectRef``s (keys are topological)."""
        refs: dict[str, Any] = {}
        for name, (fn, *args) in graph.items():
            refs[name] = self._function(fn).remote(*(refs[a] if isinstance(a, str) and a in refs else a for a in args))
        return self.ray.get(refs[key])

    def close(self) -> None:
        """``ray.shutdown``: stops the processes ``ray.init`` started."""
        self.ray.shutdown()


# -- the peers ---------------------------------------------------------------------------------------


def _process_pool(workers: int) -> Session:
    return ExecutorSession("ppe", concurrent.futures.ProcessPoolExecutor(workers))


def _loky(workers: int) -> Session:
    import loky

    return ExecutorSession("loky", loky.ProcessPoolExecutor(workers))


def _scaler_startup(workers: int) -> float:
    """``Client()`` with no address (its own local cluster) to the first result: what a newcomer meets first."""
    from scaler import Client

    start = time.perf_counter()
    client = Client()
    try:
        client.submit(noop, 1).result()
        return time.perf_counter() - start
    finally:
        client.disconnect()


def _session_startup(open_session: Callable[[int], Session]) -> Callable[[int], float]:
    """From creating the session to its first result (not waiting for every worker)."""

    def startup(workers: int) -> float:
        start = time.perf_counter()
        session = open_session(workers)
        try:
            session.results([session.submit(noop, 1)])
            return time.perf_counter() - start
        finally:
            session.close()

    return startup


@dataclass(frozen=True)
class Peer:
    """One framework: its id on the command line and in JSON, its name in the table, and how to run it."""

    id: str
    label: str
    module: str | None  # what must be importable; None: always there
    install: str  # how to get it
    start: Callable[[int], Session]  # a session whose ``workers`` workers have not all answered yet
    startup: Callable[[int], float]
    graphs: bool = False  # runs a dask-style task graph on its scheduler

    def missing(self) -> str | None:
        """Why this peer cannot run here, or None."""
        if self.module is None or importlib.util.find_spec(self.module) is not None:
            return None
        return f"{self.label} not installed ({self.install})"

    def open(self, workers: int) -> Session:
        """A session whose ``workers`` workers have all answered a task."""
        session = self.start(workers)
        try:
            session.wait_for_workers(workers)
        except BaseException:
            session.close()
            raise
        return session


PEERS: tuple[Peer, ...] = (
    Peer("scaler", "scaler", None, "", ScalerSession, _scaler_startup, graphs=True),
    Peer("ppe", "ProcessPoolExecutor", None, "", _process_pool, _session_startup(_process_pool)),
    Peer("loky", "loky", "loky", "pip install loky", _loky, _session_startup(_loky)),
    Peer(
        "dask",
        "dask",
        "distributed",
        "pip install 'dask[distributed]'",
        DaskSession,
        _session_startup(DaskSession),
        True,
    ),
    Peer("ray", "Ray", "ray", "pip install ray", RaySession, _session_startup(RaySession), graphs=True),
)


def peer(peer_id: str) -> Peer:
    """The peer called ``peer_id``."""
    return next(entry for entry in PEERS if entry.id == peer_id)


def peer_ids() -> list[str]:
    """Every peer's id, scaler first."""
    return [entry.id for entry in PEERS]


def labels(ids: Iterable[str]) -> dict[str, str]:
    """Each id's name in the table."""
    return {entry.id: entry.label for entry in PEERS if entry.id in set(ids)}
