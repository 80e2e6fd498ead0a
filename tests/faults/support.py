"""Helpers for the fault tests: worker process trees, ledgers, and a TCP proxy that can go silent.

A worker is an agent process (``combo.worker_pids()``) with two children, a resource tracker and
a fork server, and its processors are children of the fork server. A processor orphaned by a
killed agent is re-parented outside this test process, so ``descendants()`` no longer sees it:
tests remember every pid of the trees they touch and check those are gone too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from scaler import Client
from tests.faults import fault_tasks


def tree(agent_pid: int) -> list[int]:
    """The agent's pid and the pids of every process below it (fork server, processors...)."""
    try:
        agent = psutil.Process(agent_pid)
        return [agent_pid] + [child.pid for child in agent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def processors_of(agent_pid: int) -> set[int]:
    """Pids of the agent's processors: the children of its fork server."""
    found: set[int] = set()
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(agent_pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                found.update(grandchild.pid for grandchild in child.children())
    return found


def agent_of(pid: int, agent_pids: Iterable[int]) -> int | None:
    """Which of ``agent_pids`` the process ``pid`` (a processor) belongs to."""
    agents = set(agent_pids)
    with contextlib.suppress(psutil.NoSuchProcess):
        for parent in psutil.Process(pid).parents():
            if parent.pid in agents:
                return parent.pid
    return None


def signal_all(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each pid, the first one (the agent) first; ignore those already gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def alive(pids: Iterable[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    running = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.add(pid)
        except psutil.NoSuchProcess:
            pass
    return running


def wait_gone(pids: Iterable[int], timeout: float = 10.0) -> set[int]:
    """Wait until none of ``pids`` runs; return those still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    left = alive(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = alive(left)
    return left


def wait_workers(client: Client, agent_pids: Iterable[int], timeout: float = 30.0) -> None:
    """Wait until every one of ``agent_pids`` has registered and runs tasks."""
    agents = set(agent_pids)
    seen: set[int | None] = set()
    deadline = time.monotonic() + timeout
    while not agents <= seen:
        assert time.monotonic() < deadline, f"workers {agents - seen} never ran a task"
        futures = [client.submit(fault_tasks.processor_pid, 0.2) for _ in agents]
        seen |= {agent_of(future.result(timeout=timeout), agents) for future in futures}


@dataclass(frozen=True)
class Entry:
    kind: str
    index: int
    pid: int
    time: float


def read_ledger(path: str) -> list[Entry]:
    entries = []
    with open(path) as ledger:
        for line in ledger:
            kind, index, pid, stamp = line.split()
            entries.append(Entry(kind, int(index), int(pid), float(stamp)))
    return entries


def by_index(entries: Iterable[Entry], kind: str) -> dict[int, list[Entry]]:
    found: dict[int, list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.kind == kind:
            found[entry.index].append(entry)
    return found


class LedgerTail:
    """Reads a ledger as it grows, one call at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""

    def new_entries(self) -> list[Entry]:
        if not os.path.exists(self.path):
            return []
        with open(self.path) as ledger:
            ledger.seek(self._offset)
            text = ledger.read()
            self._offset = ledger.tell()
        text, self._partial = (self._partial + text).rpartition("\n")[::2]
        return [Entry(k, int(i), int(p), float(t)) for k, i, p, t in (line.split() for line in text.splitlines())]


class SilentProxy:
    """A TCP proxy (threads and sockets) from a local port to ``target``; ``cut()`` makes it stop
    forwarding in both directions without closing anything, ``heal()`` resumes it."""

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("tcp://").rpartition(":")
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._sockets: list[socket.socket] = [self._listener]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def cut(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self._flowing.set()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self._target)
            except OSError:  # the scheduler is not listening yet: the worker will connect again
                downstream.close()
                continue
            with self._lock:
                if self._closed:
                    downstream.close()
                    upstream.close()
                    return
                self._sockets += [downstream, upstream]
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True, name="proxy-pump").start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            self._flowing.wait()  # while cut, nothing is read: the bytes pile up in the kernel
            try:
                data = source.recv(65536)
            except OSError:
                return
            self._flowing.wait()  # a chunk read just before the cut is held back too
            if not data or self._closed:
                return
            try:
                sink.sendall(data)
            except OSError:
                return


def kill_when_mid_task(
    tail: LedgerTail, agent_pid: int, started_within: float, timeout: float = 30.0
) -> tuple[float, int]:
    """SIGKILL the whole worker (agent first, then its fork server and processors) while one of its
    processors runs a ledger task it started less than ``started_within`` seconds ago.

    Killing mid-task means no task had finished without its result leaving yet, so a task's
    'done' line can only come from the attempt whose result counted. Returns the kill's
    time.time() and the index of the task cut short.
    """
    open_starts: dict[int, Entry] = {}  # processor pid -> its last start without a done
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processors = processors_of(agent_pid)
        for entry in tail.new_entries():
            if entry.kind == "start":
                open_starts[entry.pid] = entry
            else:
                open_starts.pop(entry.pid, None)
        for pid, entry in open_starts.items():
            if pid in processors and time.time() - entry.time < started_within:
                pids = tree(agent_pid)
                signal_all(pids, signal.SIGKILL)
                return time.time(), entry.index
        time.sleep(0.001)
    raise AssertionError("the worker to kill never started a task")
