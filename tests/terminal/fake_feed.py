"""A stand-in status feed: a plain zmq PUB that publishes made-up snapshots, for scaler_top's tests.

``python -m tests.terminal.fake_feed PORT [WORKERS [INTERVAL]]`` publishes a ``StatusSnapshot`` every INTERVAL s (0.2)
(and a ``StatusEvents`` now and then) on tcp://127.0.0.1:PORT until it is killed. Worker i has
queued 10*i tasks, CPU 90-10*i %, RSS (i+1) MiB and runs its task for i seconds, so each sort key
gives a known order. ``snapshot(...)`` is what the unit tests build their snapshots from.
"""

from __future__ import annotations

import sys
import time

import zmq

from scaler.protocol.codec import encode
from scaler.protocol.messages import (
    ClientStatus,
    PeerEventKind,
    PeerEventRecord,
    RunningTask,
    SchedulerStatus,
    StatusEvents,
    StatusSnapshot,
    WorkerState,
    WorkerStatus,
)

MIB = 1024 * 1024


def worker(index: int, state: WorkerState = WorkerState.ACTIVE) -> WorkerStatus:
    """Worker ``index`` (named ``w{index}``) with figures that grow or shrink with it; see the module docstring."""
    running = [RunningTask(b"t%d" % index, f"work_{index}", b"client|c0|1|aa", float(index))] if index else []
    return WorkerStatus(
        worker_id=f"worker|w{index}|100{index}|abcd".encode(),
        state=state,
        capabilities={},
        queued=10 * index,
        running=running,
        processors_running=len(running),
        processors_parked=0,
        processors_idle=1 - len(running),
        cpu_percent=90.0 - 10 * index,
        rss_bytes=(index + 1) * MIB,
        heartbeat_age_seconds=0.5,
        done=100 - index,
    )


def snapshot(
    now: float, workers: int = 3, finished: int = 0, scheduler_id: bytes = b"scheduler|s|1|ff"
) -> StatusSnapshot:
    """A snapshot at ``now`` with ``workers`` workers, one client and ``finished`` tasks finished."""
    scheduler = SchedulerStatus(
        scheduler_id=scheduler_id,
        version="0.test",
        uptime_seconds=now,
        cpu_percent=12.5,
        rss_bytes=80 * MIB,
        messages_in_per_second=1000.0,
        messages_out_per_second=990.0,
        tasks_by_state={"queued": 10 * workers, "running": workers},
        tasks_total={"submitted": finished + 11 * workers, "finished": finished, "failed": 0},
        objects=2,
        object_bytes=2048,
        feed_dropped=0,
    )
    client = ClientStatus(b"client|c0|1|aa", 10 * workers, workers, finished, 0, 0, 4, now)
    return StatusSnapshot(0, now, time.time(), scheduler, [client], [worker(i) for i in range(workers)])


def main(port: int, workers: int, interval: float = 0.2) -> None:
    """Publish until killed."""
    context: zmq.Context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    publisher.setsockopt(zmq.LINGER, 0)
    publisher.bind(f"tcp://127.0.0.1:{port}")
    start = time.monotonic()
    finished = 0
    while True:
        now = time.monotonic() - start
        finished += 7
        publisher.send(encode([snapshot(now, workers, finished)]))
        if int(now / interval) % 25 == 0:
            event = PeerEventRecord(PeerEventKind.WORKER_JOINED, now, b"worker|w0|1000|abcd", "")
            publisher.send(encode([StatusEvents(now, time.time(), [], [event], 0)]))
        time.sleep(interval)


if __name__ == "__main__":
    main(
        int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3, float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
    )
