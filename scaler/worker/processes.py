"""The worker agent's processes: starting processor subprocesses, holding them, and sampling usage.

The agent (``agent.py``) owns one ``ProcessorHandle`` per live processor, keyed by the id the
state (``state.py``) gave it. ``ProcessorStarter`` starts them on a helper thread from a
pre-imported fork server, so the agent keeps answering while one boots. ``ResourceSampler``
reads the agent's CPU and memory for its heartbeats. Each processor leads its own process group,
and a processor is always killed with its group (``process_group.py``), so the programs a task
started end with it.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import socket
import sys
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import psutil

from scaler.io.output_limits import DEFAULT_OUTPUT_LIMITS, OutputLimits
from scaler.worker.pipe import PipeChannel
from scaler.worker.process_group import kill_group
from scaler.worker.processor import run_processor

# What every processor needs before its first task, imported in the fork server rather than in
# each child: unpickling a process object imports its ``Popen`` class's module (1-2 ms apiece).
_PROCESSOR_PRELOAD = ("scaler.worker.processor", "multiprocessing.popen_forkserver")


def _process_context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([*_PROCESSOR_PRELOAD, *_main_module_imports()])
        return context
    return multiprocessing.get_context("spawn")


def _main_module_imports() -> list[str]:
    """Our modules this process has loaded, when its main module is one of ours (``python -m scaler.cli.worker``).

    Every child of the fork server runs the parent's main module again (multiprocessing's
    ``__mp_main__`` fix-up). Unless the fork server has imported what that module imports, each
    new processor imported the whole tree again (the agent, ZeroMQ, the configuration: 71 modules,
    120-190 ms of CPU), so a processor took a core for a fifth of a second instead of a few ms.
    The main module itself is left out: run again over a copy already imported, runpy warns.
    So are the scheduler's modules, which a worker forked by ``scaler.cluster.boot`` has loaded
    too, and which no processor uses.
    A user's script as the main module is left alone: importing it may do anything.
    """
    name = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None)
    if not isinstance(name, str) or not name.startswith("scaler.") or name.endswith("__main__"):
        return []
    return sorted(
        module
        for module in sys.modules
        if module.startswith("scaler.") and module != name and not module.startswith(_SCHEDULER_ONLY)
    )


_SCHEDULER_ONLY = ("scaler.scheduler", "scaler.cli.scheduler")  # modules no processor needs


def fork_fork_server() -> int | None:
    """Start this process's multiprocessing fork server by forking this process; its pid, or None if not done.

    multiprocessing starts its fork server as a fresh interpreter that imports the processor's
    modules again: 0.15-0.25 s of CPU on every worker's way to its first task. A worker forked
    by ``scaler.cluster.boot`` has imported them all already, so a fork of it serves at once.
    Call it only while this process has no other thread, no ZeroMQ context and no socket:
    the fork server forks every processor from this copy. The fork server is multiprocessing's
    own (``forkserver.main``), handed to its ``ForkServer`` as if that had started it, so
    processors start, report and end exactly as before; if it dies, multiprocessing starts a
    fresh one the usual way. That hand-over uses the ``ForkServer``'s private fields: on a Python
    whose fork server differs (an authentication key, from 3.14), nothing is done.
    """
    import importlib
    from multiprocessing import connection, forkserver, util

    for module in _PROCESSOR_PRELOAD:
        importlib.import_module(module)

    server: Any = getattr(forkserver, "_forkserver", None)
    fields = ("_forkserver_address", "_forkserver_alive_fd", "_forkserver_pid")
    if (
        "forkserver" not in multiprocessing.get_all_start_methods()
        or server is None
        or not all(hasattr(server, field) for field in fields)
        or hasattr(server, "_forkserver_authkey")
        or server._forkserver_pid is not None
    ):
        return None
    with socket.socket(socket.AF_UNIX) as listener:
        address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]
        listener.bind(address)
        if not util.is_abstract_socket_namespace(address):
            os.chmod(address, 0o600)
        listener.listen()
        alive_r, alive_w = os.pipe()  # it stops once every holder of alive_w has gone, as multiprocessing's does
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(alive_w)
                forkserver.main(listener.fileno(), alive_r, [])
            except SystemExit:
                code = 0
            finally:
                os._exit(code)  # never back into the caller's stack
        os.close(alive_r)
    server._forkserver_address = address
    server._forkserver_alive_fd = alive_w
    server._forkserver_pid = pid
    return pid


class ProcessorHandle:
    """The agent's handle on one processor subprocess: the process and the agent's end of its pipe.

    Not to be confused with ``ProcessorRecord`` (``processor_table.py``), which is what the pure
    state knows of the same processor.
    """

    def __init__(
        self,
        context: Any,
        processor_id: int,
        scheduler_address: str,
        key_files: tuple[str, str] | None = None,
        output_limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
    ) -> None:
        agent_end, processor_end = multiprocessing.Pipe(duplex=True)
        self.processor_id = processor_id
        self.connection: Connection = agent_end
        self.channel = PipeChannel(agent_end)
        self.process: BaseProcess = context.Process(
            target=run_processor,
            args=(processor_end, os.getpid(), scheduler_address, key_files, output_limits),
            name=f"scaler-processor-{processor_id}",
            daemon=True,
        )
        self.process.start()
        assert self.process.pid is not None
        self.pid: int = self.process.pid
        processor_end.close()
        self.fd = agent_end.fileno()
        self.sentinel = self.process.sentinel

    def end(self) -> None:
        """SIGKILL it and every program its tasks started: none runs user code once this returns.

        Even when it has already exited (a crash), its group may live on. Its pipe stays open.
        """
        alive = self.process.is_alive()
        kill_group(self.pid, leader_alive=alive)
        if alive:
            self.process.kill()  # in case it was killed before it could lead a group of its own

    def kill(self) -> None:
        """Close its pipe and ``end`` it. Reaping is left to ``reaped``."""
        self.channel.close()
        self.end()

    def reaped(self) -> bool:
        """True once its exit has been collected (never blocks); frees its process handle then."""
        if self.process.is_alive():
            return False
        self.process.close()
        return True

    def reap(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` seconds for it to exit (after ``kill``)."""
        self.process.join(timeout=timeout)


class ProcessorStarter:
    """Starts processors on a helper thread so the agent keeps answering while one boots.

    The first start also boots the fork server (a second or so on a busy machine); later ones
    fork from it in milliseconds. ``fd`` becomes readable when a started processor is ready.
    Starts run one after another, in the order asked.
    """

    def __init__(
        self,
        scheduler_address: str,
        key_files: tuple[str, str] | None = None,
        output_limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
    ) -> None:
        self._context = _process_context()
        self._scheduler_address = scheduler_address
        self._key_files = key_files
        self._output_limits = output_limits
        self._read, self._write = os.pipe()
        self.fd = self._read
        self._thread: threading.Thread | None = None
        self._waiting: collections.deque[int] = collections.deque()
        self._started: ProcessorHandle | None = None
        self._error: BaseException | None = None

    def start(self, processor_id: int) -> None:
        """Start a processor under this id (after any start already on its way)."""
        self._waiting.append(processor_id)
        self._next()

    def _next(self) -> None:
        if self._thread is None and self._waiting:
            processor_id = self._waiting.popleft()
            self._thread = threading.Thread(
                target=self._run, args=(processor_id,), name="processor-starter", daemon=True
            )
            self._thread.start()

    def _run(self, processor_id: int) -> None:
        try:
            self._started = ProcessorHandle(
                self._context, processor_id, self._scheduler_address, self._key_files, self._output_limits
            )
        except BaseException as error:  # noqa: BLE001 - reported to the agent's loop
            self._error = error
        os.write(self._write, b"x")

    def take(self) -> ProcessorHandle:
        """Collect the started processor (call when ``fd`` is readable)."""
        os.read(self._read, 1)
        assert self._thread is not None
        self._thread.join()
        self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"could not start a processor: {error}") from error
        started, self._started = self._started, None
        assert started is not None
        self._next()
        return started

    def close(self) -> None:
        """Wait for a start in progress and kill what it started."""
        self._waiting.clear()
        if self._thread is not None:
            self._thread.join()
            if self._started is not None:
                self._started.kill()
                self._started.reap()
        os.close(self._read)
        os.close(self._write)


class ResourceSampler:
    """CPU and memory of the worker (its agent and every processor under it), read at most once per heartbeat.

    psutil reads /proc, which is slow, hence the interval. Each process's CPU share is measured since
    the previous sample, so the same ``psutil.Process`` objects are kept from one sample to the next.
    Memory is the sum of their resident sets (pages a processor shares with the fork server count
    in both, as ``top`` shows them).
    """

    def __init__(self, interval: float) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self._next = 0.0
        self._last = (0.0, 0)
        self._known: dict[int, psutil.Process] = {}

    def sample(self, now: float) -> tuple[float, int]:
        """``(cpu_percent, rss_bytes)`` (100 = one core), read again only once ``interval`` has passed."""
        if now >= self._next:
            self._next = now + self._interval
            try:
                processes = [self._process, *self._process.children(recursive=True)]
            except psutil.Error:
                processes = [self._process]
            cpu, rss = 0.0, 0
            known: dict[int, psutil.Process] = {}
            for process in processes:
                process = self._known.get(process.pid, process)  # the one whose last CPU reading we hold
                try:
                    cpu += process.cpu_percent()
                    rss += process.memory_info().rss
                except psutil.Error:  # it ended meanwhile
                    continue
                known[process.pid] = process
            self._known = known
            self._last = (cpu, rss)
        return self._last
