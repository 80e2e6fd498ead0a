"""The client-memory probe: ``python -m scaler.bench.memory PEER WORKERS COUNT`` prints one JSON line.

It runs in a fresh process, so that both frameworks start from the same state: the interpreter,
the framework imported, its workers started and warmed up, every worker held by a blocking task.
Then it submits ``COUNT`` no-op tasks, which stay pending, and measures what this process grew by:

- ``rss_mib``: resident memory (psutil), which counts everything, C buffers included;
- ``traced_mib``: Python allocations traced by ``tracemalloc``, in a second batch (tracing itself
  costs memory, so it is not on while RSS is measured).

Each batch is cancelled before the next, and everything started is stopped before it exits.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Callable

import psutil

from scaler.bench.peers import Session, peer
from scaler.bench.tasks import MIB, noop
from scaler.bench.workloads import busy_workers, wait_ended, warm_up

SETTLE_SECONDS = 0.5  # after the last submit: let the framework's threads hand the tasks on


def held_bytes(session: Session, workers: int, count: int, measure: Callable[[], int]) -> int:
    """How much ``measure()`` grew by while ``count`` futures were pending behind busy workers.

    They are cancelled after, and the workers released, before it returns.
    """
    with busy_workers(session, workers):
        gc.collect()
        before = measure()
        futures = [session.submit(noop, i) for i in range(count)]
        time.sleep(SETTLE_SECONDS)
        gc.collect()
        grown = measure() - before
        session.cancel_many(futures)
    wait_ended(session, futures, timeout=300)  # an executor cannot cancel what it has queued for its workers
    del futures
    gc.collect()
    return grown


def probe(peer_id: str, workers: int, count: int) -> dict[str, float]:
    """Both figures, in MiB, for ``count`` pending futures of peer ``peer_id``."""
    session = peer(peer_id).open(workers)
    try:
        warm_up(session, 200)
        rss = held_bytes(session, workers, count, lambda: psutil.Process().memory_info().rss)
        tracemalloc.start()
        try:
            traced = held_bytes(session, workers, count, lambda: tracemalloc.get_traced_memory()[0])
        finally:
            tracemalloc.stop()
    finally:
        session.close()
    return {"rss_mib": rss / MIB, "traced_mib": traced / MIB}


def main(argv: list[str]) -> None:
    """Print the probe's figures as one JSON line on stdout."""
    peer_id, workers, count = argv[0], int(argv[1]), int(argv[2])
    print(json.dumps(probe(peer_id, workers, count)))


if __name__ == "__main__":
    main(sys.argv[1:])
