"""The client-memory probe: ``python -m scaler.bench.memory PEER WORKERS COUNT rss|traced`` prints one JSON line.

It runs in a fresh process, so that every framework starts from the same state: the interpreter,
the framework imported, its workers started and warmed up, every worker held by a blocking task.
Then it submits ``COUNT`` no-op tasks, which stay pending, and measures what this process grew by:

- ``rss``: resident memory (psutil), which counts everything, C buffers included;
- ``traced``: Python allocations traced by ``tracemalloc`` (in its own process: tracing costs memory
  of its own, so it is never on while RSS is measured).

Then it cancels them without waiting for the cancels to finish, and stops the framework: waiting
for thousands of cancels would cost some frameworks minutes and tell nothing.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Callable

import psutil

from scaler.bench.peers import peer
from scaler.bench.tasks import MIB, block, noop
from scaler.bench.workloads import BLOCK_SECONDS, blocking_tasks, wait_started, warm_up

SETTLE_SECONDS = 0.5  # after the last submit: let the framework's threads hand the tasks on


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _traced() -> int:
    return tracemalloc.get_traced_memory()[0]


def probe(peer_id: str, workers: int, count: int, kind: str) -> float:
    """MiB that ``count`` pending futures of peer ``peer_id`` add to this process (``kind``: rss or traced)."""
    measure: Callable[[], int] = _rss if kind == "rss" else _traced
    session = peer(peer_id).open(workers)
    try:
        warm_up(session, 200)
        with blocking_tasks() as (stop_path, started_dir):
            for _ in range(workers):
                session.submit(block, stop_path, started_dir, BLOCK_SECONDS)
            if not wait_started(started_dir, workers):
                raise RuntimeError(f"{peer_id}: not every worker started its blocking task")
            if kind == "traced":
                tracemalloc.start()
            gc.collect()
            before = measure()
            futures = [session.submit(noop, i) for i in range(count)]
            time.sleep(SETTLE_SECONDS)
            gc.collect()
            grown = measure() - before
            tracemalloc.stop()
            session.cancel_many(futures)  # without waiting: dask would otherwise run them all as it closes
            del futures
    finally:
        session.close()
    return grown / MIB


def main(argv: list[str]) -> None:
    """Print ``{"KIND_mib": figure}`` as one JSON line on stdout."""
    peer_id, workers, count, kind = argv[0], int(argv[1]), int(argv[2]), argv[3]
    if kind not in ("rss", "traced"):
        raise SystemExit(f"unknown kind {kind!r}: rss or traced")
    print(json.dumps({f"{kind}_mib": probe(peer_id, workers, count, kind)}))


if __name__ == "__main__":
    main(sys.argv[1:])
