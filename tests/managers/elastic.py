"""End-to-end elastic scaling, shared by the native and Slurm tests: the real scheduler's policy drives a real
``scaler_worker_manager`` process, whose engine starts real workers.

``elastic_cycle`` starts at the minimum, submits a burst, watches the workers grow to the maximum (never
above), checks every result and that each task started exactly once with no retry, then lets the cluster
idle and watches it drain back to the minimum. It measures scale-up (burst submitted -> the maximum
connected) and scale-down (last result -> back to the minimum), and checks hysteresis from the scheduler's
log: no worker is chosen to stop within one idle period of joining.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from scaler import Client
from scaler.protocol.messages import StatusSnapshot, WorkerState
from tests.managers import manager_tasks
from tests.managers.support import env_with_worktree, started_marks

IDLE_SECONDS = 2.0  # the scheduler's --worker-idle-seconds in these tests
POLL_SECONDS = 0.3  # the manager's --poll-interval-seconds


def manager_argv(adapter: str, address: str, name: str, low: int, high: int, *flags: str) -> list[str]:
    """``python -m scaler.cli.worker_manager ADAPTER ADDRESS ...`` with short intervals for tests."""
    return [
        sys.executable,
        "-m",
        "scaler.cli.worker_manager",
        adapter,
        address,
        f"--name={name}",
        f"--min-workers={low}",
        f"--max-workers={high}",
        f"--poll-interval-seconds={POLL_SECONDS}",
        "--heartbeat-interval-seconds=0.5",
        "--logging-level=INFO",
        *flags,
    ]


def start_manager(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a manager process, its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env_with_worktree())


def stop_manager(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the manager (its workers keep running), SIGKILL it if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def kill_native_workers(manager_name: str) -> None:
    """SIGKILL the local worker processes named ``MANAGER.*`` (those the test's manager started), by pid."""
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if any(part.startswith(f"--name={manager_name}.") for part in cmdline):
            with contextlib.suppress(psutil.Error):
                process.kill()


@contextlib.contextmanager
def running_manager(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A manager process for the duration of the block."""
    process = start_manager(argv, log)
    try:
        yield process
    finally:
        stop_manager(process)


class Sampler:
    """Reads ``Client.status()`` every 0.1 s in a thread: the connected workers over time, for figures and bounds."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.samples: list[tuple[float, frozenset[bytes]]] = []  # (monotonic time, active workers)
        self.most_active = 0
        self.retried = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                self._take(self.client.status(timeout_seconds=5))
            self._stop.wait(0.1)

    def _take(self, snapshot: StatusSnapshot) -> None:
        active = frozenset(w.worker_id for w in snapshot.workers if w.state == WorkerState.ACTIVE)
        with self._lock:
            self.samples.append((time.monotonic(), active))
            self.most_active = max(self.most_active, len(active))
            self.retried = snapshot.scheduler.tasks_total.get("retried", 0)

    def count(self) -> int:
        """Workers connected and not leaving, at the last sample."""
        with self._lock:
            return len(self.samples[-1][1]) if self.samples else 0

    def wait_count(self, predicate: object, timeout: float, what: str) -> float:
        """Wait until ``predicate(count)`` holds at a sample taken after now; the monotonic time it first did."""
        assert callable(predicate)
        since = time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for at, active in self.samples:
                    if at >= since and predicate(len(active)):
                        return at
            time.sleep(0.05)
        raise AssertionError(f"{what}: still {self.count()} workers after {timeout:g}s")


@dataclasses.dataclass
class ElasticFigures:
    """What ``elastic_cycle`` measured, in seconds."""

    scale_up: float  # burst submitted -> the maximum connected
    scale_down: float  # last result -> back to the minimum
    shortest_life: float  # the least time between a worker joining and being chosen to stop


def scheduler_log_times(log: Path, marker: str) -> dict[str, float]:
    """Worker name -> wall time of the first scheduler log line holding ``marker`` and ``worker worker|NAME|``."""
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if marker not in line or "worker worker|" not in line:
            continue
        name = line.split("worker worker|", 1)[1].split("|", 1)[0]
        if name not in found:
            found[name] = datetime.datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return found


def shortest_life(log: Path, manager_name: str) -> float:
    """The least time from a managed worker joining to the scheduler choosing it to stop (inf if none was)."""
    joined = scheduler_log_times(log, " connected with capabilities")
    chosen = scheduler_log_times(log, " is idle: its manager ")
    lives = [chosen[name] - joined[name] for name in chosen if name.startswith(manager_name + ".")]
    return min(lives, default=float("inf"))


def elastic_cycle(
    client: Client, marks: Path, log: Path, manager_name: str, low: int, high: int, tasks: int, seconds: float
) -> ElasticFigures:
    """Min -> burst -> max (never above) -> all results right, each task run once -> idle -> back to min."""
    with Sampler(client) as sampler:
        sampler.wait_count(lambda n: n == low, 120, f"start at the minimum {low}")
        time.sleep(IDLE_SECONDS + 1)  # at rest at the minimum: nothing to stop, nothing to start
        assert sampler.count() == low
        first = len(list(marks.iterdir()))
        burst_at = time.monotonic()
        futures = [client.submit(manager_tasks.marked_sleep, str(marks), first + i, seconds) for i in range(tasks)]
        at_max = sampler.wait_count(lambda n: n == high, 120, f"grow to the maximum {high}")
        results = [future.result(timeout=300) for future in futures]
        done_at = time.monotonic()
        assert [index for index, _ in results] == list(range(first, first + tasks)), "every result, in order"
        back_at = sampler.wait_count(lambda n: n == low, 120, f"drain back to the minimum {low}")
        time.sleep(IDLE_SECONDS + 1)  # and stay there
        assert sampler.count() == low
        assert sampler.most_active <= high, f"{sampler.most_active} workers: above the maximum {high}"
        assert sampler.retried == 0, "no task was retried because of scaling"
    starts = sorted(index for index, _ in started_marks(marks) if first <= index < first + tasks)
    assert starts == list(range(first, first + tasks)), "each task started exactly once"
    life = shortest_life(log, manager_name)
    assert life >= IDLE_SECONDS - 0.01, f"a worker was chosen to stop {life:.2f}s after joining"
    return ElasticFigures(at_max - burst_at, back_at - done_at, life)
