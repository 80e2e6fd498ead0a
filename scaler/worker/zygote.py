"""``Zygote``: a copy of the worker agent, forked before it starts any thread, that forks its processors.

A processor must not be forked from the agent itself once the agent runs threads (ZeroMQ's I/O
threads, the processor starter): a lock held by one of them at the fork stays held in the child
for good. ``multiprocessing``'s fork server avoids that by starting a fresh interpreter that
imports the processor's modules again, which on a busy 2-core machine costs about half a CPU
second per worker, on the path to the first result. The zygote is the same idea without the
fresh interpreter: the agent forks it first thing, while it is still single-threaded and has
already imported everything a processor needs, so it costs neither start-up nor imports.

The zygote runs one loop: a request (the processor's end of its pipe, passed as a file
descriptor, and the processor's arguments, pickled) comes in over a Unix socket pair, it forks a
processor, and it answers with the processor's pid and a pidfd (``os.pidfd_open``), which the agent
polls for the processor's exit as it polled ``multiprocessing``'s sentinel. The zygote reaps its
processors as they exit (a ``SIGCHLD`` handler), so none lingers as a zombie, but never between a
fork and its ``pidfd_open`` (``SIGCHLD`` is blocked then): the pidfd always names the child just
forked. It exits when the agent closes its end of the socket, or dies (the kernel closes it then). Processors watch the
agent's pid themselves (``processor._exit_with_agent``), as they did under the fork server.

Linux only (pidfds, Linux 5.3); ``available()`` says whether it can be used here and now.
"""

from __future__ import annotations

import array
import contextlib
import os
import pickle
import signal
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

_PID = struct.Struct("q")
_LENGTH = struct.Struct("I")
_MAX_REQUEST = 1 << 20  # the arguments of one processor: addresses, key paths, limits


def available() -> bool:
    """True where a zygote can start processors: Linux with pidfds, in a process with one thread.

    A process already running other threads (ZeroMQ's, a test runner's) must not fork a zygote:
    a lock one of them holds would stay held in it.
    """
    if not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open"):
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


class Zygote:
    """The agent's side of a forked zygote; ``fork(target, args, fd)`` starts a processor from it."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for stream in (sys.stdout, sys.stderr):  # or every processor would write their buffered text again
            with contextlib.suppress(Exception):
                stream.flush()
        pid = os.fork()
        if pid == 0:  # the zygote
            code = 0
            try:
                ours.close()
                _serve(theirs)
            except BaseException:  # noqa: BLE001 - the zygote never returns into the agent's code
                code = 1
            os._exit(code)
        theirs.close()
        self.pid = pid
        self._socket = ours

    def fork(self, target: Callable[..., Any], args: tuple[Any, ...], fd: int, name: str = "") -> tuple[int, int]:
        """Fork a process that runs ``target(Connection(fd), *args)``; returns its ``(pid, pidfd)``.

        ``fd`` (the child's end of its pipe) is passed to the zygote, not consumed: the caller
        closes its own copy. ``name`` is the child's ``multiprocessing.current_process().name``
        (what ``%(processName)s`` shows in its log lines). Not thread-safe: one fork at a time.
        """
        request = pickle.dumps((target, args, name), protocol=pickle.HIGHEST_PROTOCOL)
        self._socket.sendmsg(
            [_LENGTH.pack(len(request)), request],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))],
        )
        data, fds = _receive_fds(self._socket, _PID.size)
        if len(data) != _PID.size or len(fds) != 1:
            for received in fds:
                os.close(received)
            raise OSError("the zygote could not fork" if len(data) == _PID.size else "the zygote did not answer")
        (pid,) = _PID.unpack(data)
        return pid, fds[0]

    def close(self) -> None:
        """Stop the zygote (its processors live on, each until it is killed or its agent is gone)."""
        self._socket.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _receive_fds(sock: socket.socket, size: int) -> tuple[bytes, list[int]]:
    """Read exactly ``size`` bytes (or up to EOF) and the file descriptors sent with them."""
    fds = array.array("i")
    data = b""
    while len(data) < size:
        chunk, ancillary, _, _ = sock.recvmsg(size - len(data), socket.CMSG_SPACE(fds.itemsize))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if not chunk:
            break
        data += chunk
    return data, list(fds)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _serve(sock: socket.socket) -> None:
    """The zygote's loop: fork one child per request, until the agent's end closes."""
    signal.signal(signal.SIGCHLD, _reap_children)
    # Ctrl-C and SIGTERM go to the agent, which stops its processors and then closes our socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        header, fds = _receive_fds(sock, _LENGTH.size)
        if len(header) < _LENGTH.size:
            return  # the agent closed its end, or is gone
        (length,) = _LENGTH.unpack(header)
        if length > _MAX_REQUEST or len(fds) != 1:
            return
        target, args, name = pickle.loads(_read_exactly(sock, length))
        # No reaping until the child has its pidfd: one that exits at once stays a zombie till then,
        # so its pid cannot have been reaped (and reused) when the pidfd is opened.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = os.fork()
            if pid == 0:
                _run_child(sock, target, args, fds[0], name)
            pidfd = os.pidfd_open(pid)
        except OSError:  # no fork now (out of processes or memory): the agent's start fails, not the zygote
            pid, pidfd = -1, -1
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            os.close(fds[0])
        try:
            passed = [] if pidfd < 0 else [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pidfd]))]
            sock.sendmsg([_PID.pack(pid)], passed)
        finally:
            if pidfd >= 0:
                os.close(pidfd)


def _reap_children(signum: int, frame: object) -> None:
    """Collect every child that has exited (SIGCHLD handler)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _run_child(sock: socket.socket, target: Callable[..., Any], args: tuple[Any, ...], fd: int, name: str) -> None:
    """In the forked child: undo the zygote's settings, run ``target``, and never return."""
    import multiprocessing
    from multiprocessing.connection import Connection

    code = 0
    try:
        sock.close()
        if name:
            multiprocessing.current_process().name = name
        for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):  # programs it starts inherit these
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})  # blocked by the zygote around the fork
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # As multiprocessing does for its children: a task reading stdin gets an end of file,
        # never the worker's terminal.
        if sys.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                sys.stdin.close()
                sys.stdin = open(os.devnull)  # noqa: SIM115 - the process's stdin for good
        target(Connection(fd), *args)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 - shown, then the child exits like a crashed process
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):  # exiting anyway
                stream.flush()
    os._exit(code)
