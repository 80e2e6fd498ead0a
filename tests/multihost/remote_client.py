"""A scaler client run inside a simulated host: ``python remote_client.py SCENARIO 'JSON-ARGUMENTS'``.

The pytest process lives in the root namespace, which cannot reach the test network, so each client is
this script started with ``ip netns exec``. It prints one JSON object per line on stdout: events the
test waits for (``{"event": "submitted", ...}``) and a last one, ``{"event": "done", ...}``, with what
it measured. Times are ``time.time()``, comparable with the test's own clock (one machine). The task
functions live in this ``__main__`` module, so cloudpickle sends them by value: the workers need not
import anything of the tests. A task reports the host that ran it from ``SCALER_MH_HOST``, which the
test sets for each worker host.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import statistics
import sys
import threading
import time
from typing import Any

from scaler import Client, DisconnectedError


def emit(event: str, **fields: Any) -> None:
    """One JSON line for the test."""
    print(json.dumps({"event": event, "time": time.time(), **fields}), flush=True)


# --- tasks (run on the workers) ---


def host() -> str:
    """The simulated host this runs on."""
    return os.environ.get("SCALER_MH_HOST", "?")


def square(i: int) -> tuple[int, str]:
    return i * i, host()


def sleep_square(i: int, seconds: float, ledger: str | None = None) -> tuple[int, str]:
    if ledger:  # the namespaces share the file system: the test reads which tasks started, and when
        with open(ledger, "a") as file:
            file.write(f"{i} {time.time():.3f} {host()}\n")
    time.sleep(seconds)
    return i * i, host()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_bytes(size: int, seed: int) -> bytes:
    return bytes((seed + k) % 251 for k in range(256)) * (size // 256)


def inc(x: int) -> int:
    return x + 1


def total(*values: int) -> int:
    return sum(values)


# --- scenarios ---


def connect(args: dict[str, Any]) -> Client:
    return Client(
        args["address"],
        keys_dir=args["keys_dir"],
        timeout_seconds=args.get("timeout_seconds", 30.0),
        heartbeat_interval_seconds=args.get("heartbeat_interval_seconds", 0.5),
    )


def workload(args: dict[str, Any]) -> None:
    """Latency of one task, throughput of many, a big argument and result, and a graph; all checked."""
    n_tasks, big = args["n_tasks"], args["big_bytes"]
    with connect(args) as client:
        client.submit(square, 0).result(timeout=60)  # the function is cached on the workers from here on
        round_trips = []
        for i in range(args.get("probes", 20)):
            start = time.perf_counter()
            client.submit(square, i).result(timeout=60)
            round_trips.append(time.perf_counter() - start)

        start = time.perf_counter()
        futures = [client.submit(square, i) for i in range(n_tasks)]
        results = [future.result(timeout=120) for future in futures]
        elapsed = time.perf_counter() - start
        wrong = sum(value != i * i for i, (value, _) in enumerate(results))
        hosts: dict[str, int] = {}
        for _, where in results:
            hosts[where] = hosts.get(where, 0) + 1

        data = os.urandom(big)
        start = time.perf_counter()
        big_argument_ok = client.submit(digest, data).result(timeout=120) == hashlib.sha256(data).hexdigest()
        big_result_ok = client.submit(make_bytes, big, 7).result(timeout=120) == make_bytes(big, 7)
        big_seconds = time.perf_counter() - start

        graph: dict[Any, Any] = {"x0": 1}
        for k in range(1, 30):
            graph[f"x{k}"] = (inc, f"x{k - 1}")
        graph["sum"] = (total, *[f"x{k}" for k in range(30)])
        got = client.get(graph, ["sum", "x29"])
        graph_ok = got == {"sum": sum(range(1, 31)), "x29": 30}

    emit(
        "done",
        n_tasks=n_tasks,
        wrong=wrong,
        hosts=hosts,
        seconds=elapsed,
        tasks_per_second=n_tasks / elapsed,
        round_trip_median=statistics.median(round_trips),
        big_argument_ok=big_argument_ok,
        big_result_ok=big_result_ok,
        big_seconds=big_seconds,
        graph_ok=graph_ok,
    )


def batch(args: dict[str, Any]) -> None:
    """``n_tasks`` sleeping tasks; says ``running`` once ``signal_after`` results are in, then waits for all."""
    n_tasks, seconds, signal_after = args["n_tasks"], args["task_seconds"], args.get("signal_after", 0)
    with connect(args) as client:
        futures = [client.submit(sleep_square, i, seconds, args.get("ledger")) for i in range(n_tasks)]
        emit("submitted", n_tasks=n_tasks)
        index_of: dict[concurrent.futures.Future[Any], int] = {future: i for i, future in enumerate(futures)}
        done: list[dict[str, Any]] = []
        for future in concurrent.futures.as_completed(futures, timeout=args.get("wait_seconds", 120)):
            i = index_of[future]
            error = future.exception()
            if error is None:
                value, where = future.result()
                done.append({"i": i, "ok": value == i * i, "host": where, "time": time.time()})
            else:
                done.append({"i": i, "ok": False, "error": repr(error), "time": time.time()})
            if len(done) == signal_after:
                emit("running", done=len(done))
    emit("done", n_tasks=n_tasks, results=done)


def doomed(args: dict[str, Any]) -> None:
    """Submit long tasks, say ``submitted``, then record when and how each future fails once cut off."""
    n_tasks, seconds = args["n_tasks"], args["task_seconds"]
    client = connect(args)
    futures = [client.submit(sleep_square, i, seconds, args.get("ledger")) for i in range(n_tasks)]
    futures[0].result(timeout=60)  # the workers run its tasks now
    outcomes: list[dict[str, Any]] = []
    lock = threading.Lock()

    def record(future: concurrent.futures.Future[Any]) -> None:
        error = future.exception() if not future.cancelled() else None
        with lock:
            outcomes.append({"time": time.time(), "error": type(error).__name__ if error else None})

    for future in futures[1:]:
        future.add_done_callback(record)
    emit("submitted", n_tasks=n_tasks)
    concurrent.futures.wait(futures, timeout=args.get("wait_seconds", 60))
    with lock:
        failed = [o for o in outcomes if o["error"] is not None]
        emit(
            "done",
            n_tasks=n_tasks,
            pending=sum(not future.done() for future in futures),
            succeeded=sum(o["error"] is None for o in outcomes) + 1,
            disconnected=sum(o["error"] == DisconnectedError.__name__ for o in failed),
            other_errors=sorted({o["error"] for o in failed} - {DisconnectedError.__name__}),
            first_failure=min((o["time"] for o in failed), default=None),
            last_failure=max((o["time"] for o in failed), default=None),
        )
    # Leaving must not hang on a scheduler this host cannot reach.
    leaving = threading.Thread(target=client.disconnect, daemon=True)
    leaving.start()
    leaving.join(timeout=10)
    emit("left", clean=not leaving.is_alive())
    os._exit(0)  # not through interpreter shutdown, which could wait on a disconnect still stuck


if __name__ == "__main__":
    {"workload": workload, "batch": batch, "doomed": doomed}[sys.argv[1]](json.loads(sys.argv[2]))
