"""A local cluster from one interpreter: ``python -m scaler.cluster.boot REPORT_FD SPEC``.

``SchedulerClusterCombo`` starts this instead of one fresh interpreter per process. It imports
the scheduler's and the worker's modules once, forks one child per worker (each in a session of
its own, as ``start_new_session`` gives), writes the workers' pids to ``REPORT_FD`` as JSON, and
then becomes the scheduler itself. Each child runs ``scaler.cli.worker`` as if started with the
same flags; ``SPEC`` is JSON: ``{"scheduler": [flags...], "workers": [[flags...], ...]}``.

Forking is safe here: until the forks, this process has only imported modules (no thread, no
ZeroMQ context, no open socket). Importing once, not N + 1 times, is most of a local cluster's
start-up on a small machine (each interpreter spent 0.2-0.5 s of CPU on its imports).

The workers are the scheduler's children, so they exit with it (``exit_with_parent``), and it
exits with the caller, as before. The scheduler reaps them as they end; the caller follows them
through ``ForkedProcess``, which acts as a ``subprocess.Popen`` for a process that is not its child.

The module's own imports stay light: every processor runs the main module again
(multiprocessing's ``__mp_main__``), and must not import the scheduler.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

BOOT_MODULE = "scaler.cluster.boot"
POLL_SECONDS = 0.01  # how often ``ForkedProcess.wait`` looks again


def _reap(pid: int) -> None:
    """Collect a forked worker's exit, so that it leaves no zombie while the scheduler runs."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def fork_workers(
    commands: Sequence[Sequence[str]], close_fds: Sequence[int] = ()
) -> tuple[list[int], list[str] | None]:
    """Fork one worker per command: ``(pids, None)`` in this process, ``([], its flags)`` in each child.

    The child closes ``close_fds`` and leads a session of its own, so a Ctrl-C in the caller's
    terminal does not reach it (``shutdown`` stops it), as with ``start_new_session``.
    """
    pids = []
    for command in commands:
        pid = os.fork()
        if pid == 0:
            for fd in close_fds:
                os.close(fd)
            os.setsid()
            return [], list(command)
        pids.append(pid)
    return pids, None


def main(argv: Sequence[str] | None = None) -> None:
    """Fork the workers, report their pids, then serve as the scheduler until it stops."""
    report_fd, spec = (sys.argv[1:] if argv is None else list(argv))[:2]
    commands = json.loads(spec)
    from scaler.cli import scheduler, worker
    from scaler.worker.processes import fork_fork_server

    pids, worker_argv = fork_workers(commands["workers"], close_fds=(int(report_fd),))
    if worker_argv is not None:
        fork_fork_server()  # while this process is still only its imports
        worker.main(worker_argv)  # returns (or raises SystemExit) in the worker: this process ends with it
        return
    with os.fdopen(int(report_fd), "w") as report:
        json.dump(pids, report)
    for pid in pids:
        threading.Thread(target=_reap, args=(pid,), name=f"reap-{pid}", daemon=True).start()
    scheduler.main(commands["scheduler"])


class ForkedProcess:
    """The part of ``subprocess.Popen`` that ``Cluster`` uses, for a worker the boot process forked.

    It is not this process's child, so its exit status is its parent's to collect: ``returncode``
    is 0 once it has ended, whatever its status. Signals go through psutil, which checks the
    process is still the one it found (not a later one given the same pid). A zombie counts as ended.
    """

    def __init__(self, pid: int) -> None:
        import psutil

        self.pid = pid
        self.returncode: int | None = None
        try:
            self._process: psutil.Process | None = psutil.Process(pid)
        except psutil.NoSuchProcess:
            self._process = None
            self.returncode = 0

    def poll(self) -> int | None:
        """None while it runs, else its ``returncode``."""
        import psutil

        if self.returncode is None:
            assert self._process is not None
            try:
                ended = not self._process.is_running() or self._process.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                ended = True
            if ended:
                self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait until it has ended; ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
            time.sleep(POLL_SECONDS)
        return code

    def _signal(self, send: Callable[[], None]) -> None:
        import psutil

        if self.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                send()

    def terminate(self) -> None:
        """SIGTERM it, if it still runs."""
        self._signal(lambda: self._process.terminate() if self._process else None)

    def kill(self) -> None:
        """SIGKILL it, if it still runs."""
        self._signal(lambda: self._process.kill() if self._process else None)


if __name__ == "__main__":
    main()
