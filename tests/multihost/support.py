"""A scaler deployment on the simulated hosts: the scheduler, the workers, proxies and remote clients.

Every process runs from the command line, as on real hosts: ``python -m scaler.cli.scheduler`` on the
scheduler's host, bound to its address on the test network with CURVE keys, ``python -m
scaler.cli.cluster`` on each worker host, and ``remote_client.py`` on the client hosts. Logs go to
files whose lines start with ``time.time()`` (``%(created)``), so the test can tell when the scheduler
noticed something, on the same clock as its own.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.multihost.netns import SimulatedHosts

REPOSITORY = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LOG_FORMAT = "%(created).3f %(levelname)s %(processName)s(%(process)d) %(name)s: %(message)s"
SCHEDULER_PORT = 8516
PROXY_PORT = 8600


def host_env(host: str) -> dict[str, str]:
    """The environment of a process on ``host``: this checkout first on the path, and the host's name."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPOSITORY), path) if p),
        "SCALER_MH_HOST": host,
    }


def figure(title: str, text: str) -> None:
    """Print one measured figure, as the fault tests do (``pytest -s`` shows them)."""
    print(f"\n[{title}] {text}", flush=True)


class LogWatch:
    """Reads a log written with ``LOG_FORMAT``: each entry's time, and waits for a line to appear."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self, pattern: str, since: float = 0.0) -> list[tuple[float, str]]:
        """The lines that match ``pattern`` (a regex) logged at ``since`` or later, with their times."""
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text(errors="replace").splitlines():
            stamp, _, _ = line.partition(" ")
            try:
                created = float(stamp)
            except ValueError:  # a traceback's continuation line
                continue
            if created >= since and re.search(pattern, line):
                found.append((created, line))
        return found

    def wait_for(
        self, pattern: str, since: float = 0.0, timeout: float = 30.0, count: int = 1
    ) -> list[tuple[float, str]]:
        """Wait until ``count`` lines match; return them. Fails the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.entries(pattern, since)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                tail = "\n".join(self.path.read_text(errors="replace").splitlines()[-20:]) if self.path.exists() else ""
                raise AssertionError(f"{count} lines matching {pattern!r} not logged in {timeout:g}s:\n{tail}")
            time.sleep(0.05)


class RemoteClient:
    """``remote_client.py SCENARIO`` running on a host; its JSON lines, one by one."""

    def __init__(self, testbed: SimulatedHosts, host: str, scenario: str, args: dict[str, Any], log_dir: Path) -> None:
        self.host = host
        self.stderr_path = log_dir / f"client-{host}-{scenario}-{time.time():.0f}.log"
        with self.stderr_path.open("wb") as stderr:
            self.process = testbed.start(
                host,
                [sys.executable, str(HERE / "remote_client.py"), scenario, json.dumps(args)],
                env=host_env(host),
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                self._lines.put(json.loads(raw))
            except ValueError:
                continue  # something else printed on stdout
        self._lines.put(None)

    def wait(self, event: str, timeout: float) -> dict[str, Any]:
        """The next line whose ``event`` is ``event``; fails the test if the script ends or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"client on {self.host}: no {event!r} in {timeout:g}s\n{self._stderr()}") from None
            if line is None:
                self._lines.put(None)
                raise AssertionError(f"client on {self.host} ended before {event!r}\n{self._stderr()}")
            if line["event"] == event:
                return line

    def _stderr(self) -> str:
        return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-30:])

    def close(self, timeout: float = 15.0) -> int | None:
        """Wait for the script to end (kill it after ``timeout``); its exit code."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


@dataclass
class Timeouts:
    """The short timeouts that keep the fault tests short (the defaults are 60 s and 2 s)."""

    worker_timeout_seconds: float = 3.0
    client_timeout_seconds: float = 3.0
    heartbeat_interval_seconds: float = 0.5


class Deployment:
    """A scheduler with CURVE keys on ``scheduler_host`` and one ``scaler_cluster`` per worker host."""

    def __init__(
        self,
        testbed: SimulatedHosts,
        keys_dir: Path,
        log_dir: Path,
        worker_hosts: Sequence[str],
        scheduler_host: str = "sched",
        timeouts: Timeouts | None = None,
        per_worker_queue_size: int = 8,
    ) -> None:
        self.testbed = testbed
        self.keys_dir = keys_dir
        self.log_dir = log_dir
        self.worker_hosts = list(worker_hosts)
        self.scheduler_host = scheduler_host
        self.timeouts = timeouts or Timeouts()
        self.per_worker_queue_size = per_worker_queue_size
        self.scheduler_address = f"tcp://{testbed.hosts[scheduler_host].address}:{SCHEDULER_PORT}"
        self.scheduler_log = LogWatch(log_dir / "scheduler.log")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.clients: list[RemoteClient] = []

    def start_scheduler(self) -> None:
        """Start the scheduler and wait until it listens."""
        argv = [
            sys.executable, "-m", "scaler.cli.scheduler", self.scheduler_address,
            "--keys-dir", str(self.keys_dir),
            "--worker-timeout-seconds", str(self.timeouts.worker_timeout_seconds),
            "--client-timeout-seconds", str(self.timeouts.client_timeout_seconds),
            "--per-worker-queue-size", str(self.per_worker_queue_size),
            "--logging-paths", str(self.scheduler_log.path),
            "--logging-format", LOG_FORMAT,
        ]  # fmt: skip
        self.processes.append(self.testbed.start(self.scheduler_host, argv, env=host_env(self.scheduler_host)))
        port = f":{SCHEDULER_PORT:x}".upper()
        deadline = time.monotonic() + 30
        # Listening, as seen from inside its own host (/proc/net/tcp there lists the namespace's sockets).
        while port not in self.testbed.run(self.scheduler_host, ["cat", "/proc/net/tcp"]).stdout.upper():
            assert self.processes[-1].poll() is None, f"the scheduler exited:\n{self._tail(self.scheduler_log.path)}"
            assert time.monotonic() < deadline, "the scheduler did not listen within 30 s"
            time.sleep(0.1)

    def start_proxy(self, host: str, delay_seconds: float) -> str:
        """A delaying TCP proxy on ``host`` in front of the scheduler; the address to connect to instead."""
        listen = self.testbed.hosts[host].address
        target = self.testbed.hosts[self.scheduler_host].address
        argv = [sys.executable, str(HERE / "delay_proxy.py"), listen, str(PROXY_PORT), target, str(SCHEDULER_PORT),
                str(delay_seconds)]  # fmt: skip
        proxy = self.testbed.start(host, argv, env=host_env(host), stdout=subprocess.PIPE)
        self.processes.append(proxy)
        assert proxy.stdout is not None
        assert proxy.stdout.readline().strip() == b"ready", "the delay proxy did not start"
        proxy.stdout.close()
        return f"tcp://{listen}:{PROXY_PORT}"

    def start_workers(self, address: str | None = None, workers_per_host: int = 1) -> None:
        """One ``scaler_cluster`` per worker host, connecting to ``address`` (default: the scheduler)."""
        for host in self.worker_hosts:
            names = ",".join(f"{host}" if workers_per_host == 1 else f"{host}.{k}" for k in range(workers_per_host))
            argv = [
                sys.executable, "-m", "scaler.cli.cluster", address or self.scheduler_address,
                "--worker-names", names,
                "--keys-dir", str(self.keys_dir),
                "--heartbeat-interval-seconds", str(self.timeouts.heartbeat_interval_seconds),
                "--death-timeout-seconds", "120",  # a worker cut off for a while stays, to rejoin
                "--grace-period-seconds", "0",
                "--logging-paths", str(self.log_dir / f"worker-{host}.log"),
                "--logging-format", LOG_FORMAT,
            ]  # fmt: skip
            self.processes.append(self.testbed.start(host, argv, env=host_env(host)))

    def wait_workers(self, count: int, since: float = 0.0, timeout: float = 60.0) -> list[tuple[float, str]]:
        """Wait until the scheduler has logged ``count`` worker registrations since ``since``."""
        return self.scheduler_log.wait_for(r"worker \S+ connected", since=since, timeout=timeout, count=count)

    def client(self, host: str, scenario: str, address: str | None = None, **args: Any) -> RemoteClient:
        """Start ``remote_client.py SCENARIO`` on ``host`` against ``address`` (default: the scheduler)."""
        args = {"address": address or self.scheduler_address, "keys_dir": str(self.keys_dir), **args}
        started = RemoteClient(self.testbed, host, scenario, args, self.log_dir)
        self.clients.append(started)
        return started

    def stop(self) -> None:
        """Stop every process of the deployment: SIGTERM, then SIGKILL what is left after 10 s."""
        for remote in self.clients:
            remote.process.kill()
            remote.close()
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    @staticmethod
    def _tail(path: Path) -> str:
        return "\n".join(path.read_text(errors="replace").splitlines()[-20:]) if path.exists() else "(no log)"
