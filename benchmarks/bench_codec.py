"""The protocol codec alone: what encoding and decoding cost per message, batched and one by one.

Run it from the repository root::

    python benchmarks/bench_codec.py                          # this checkout
    python benchmarks/bench_codec.py --against /tmp/base      # side by side with another checkout
    python benchmarks/bench_codec.py --against /tmp/base --rounds 7 --json

Workloads (each message is the size a no-op task makes: 16-byte ids, a few-byte pickle):

- ``task x100``: a frame of 100 ``Task`` messages, one inline argument each;
- ``result x100``: a frame of 100 ``TaskResult`` messages;
- ``heartbeat x100``: a frame of 100 ``WorkerHeartbeat`` messages;
- ``mixed x100``: a frame of 100 messages of the kinds a busy scheduler handles (tasks, results,
  starts, credits, cancels, heartbeats, object instructions, a small graph);
- ``task x1``: one ``Task`` per frame, as the one-task latency path sends it.

For each it reports microseconds per message to encode (``encode``) and to decode (``decode``),
the best of several repeats (the least disturbed by other load on the machine).

``--against PATH`` runs the same measurements on another checkout of scaler (for instance the
commit before a codec change: ``git worktree add /tmp/base <commit>``) in a subprocess with
``PYTHONPATH=PATH``, alternating with this checkout round by round, and prints the medians and
the ratio old / new. It also checks that both checkouts put the same bytes on the wire for the
same messages: a codec change that keeps the wire format keeps every peer working.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _workloads() -> dict[str, list[Any]]:
    """The message batches, built from positional arguments that every protocol version 7 codec takes."""
    from scaler.protocol import messages as m

    def task(index: int) -> Any:
        argument = m.TaskArgument("", m.ArgumentKind.INLINE, b"\x80\x05K\x01.")
        return m.Task(index.to_bytes(16, "big"), b"f" * 16, b"", [argument], 0, function_name="noop")

    def result(index: int) -> Any:
        return m.TaskResult(index.to_bytes(16, "big"), m.TaskStatus.SUCCESS, b"\x80\x05K\x01.", 0)

    def heartbeat(index: int) -> Any:
        return m.WorkerHeartbeat(1700000000.0 + index, 3, 12.5, 50_000_000, {}, 1, 0, 1)

    def mixed(index: int) -> Any:
        kind = index % 10
        task_id = index.to_bytes(16, "big")
        if kind in (0, 1, 2):
            return task(index)
        if kind in (3, 4, 5):
            return result(index)
        if kind == 6:
            return m.TaskStarted(task_id, 0)
        if kind == 7:
            return m.TaskCredit(10)
        if kind == 8:
            if index % 20 == 8:
                return m.ObjectInstruction(m.ObjectInstructionType.CREATE, [task_id], [b"x" * 64])
            return m.TaskCancel(task_id)
        if index % 20 == 9:
            argument = m.TaskArgument("", m.ArgumentKind.OBJECT, task_id)
            node = m.GraphNode(task_id, b"f" * 16, b"", [argument], [task_id])
            return m.GraphTask(task_id, [node, node], [task_id])
        return heartbeat(index)

    return {
        "task x100": [task(i) for i in range(100)],
        "result x100": [result(i) for i in range(100)],
        "heartbeat x100": [heartbeat(i) for i in range(100)],
        "mixed x100": [mixed(i) for i in range(100)],
        "task x1": [task(7)],
    }


def _best_microseconds(action: Callable[[], object], per: int, budget: float = 0.2, repeats: int = 5) -> float:
    """Microseconds per item of ``action`` (which handles ``per`` items): the best of ``repeats`` timed loops."""
    loops = 1
    while True:  # size the loop to about ``budget`` seconds
        started = time.perf_counter()
        for _ in range(loops):
            action()
        if time.perf_counter() - started > budget / 4:
            break
        loops *= 4
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(loops):
            action()
        best = min(best, (time.perf_counter() - started) / loops)
    return best * 1e6 / per


def measure() -> dict[str, Any]:
    """Encode and decode every workload in this process: microseconds per message, and the frames' hashes."""
    import scaler
    from scaler.protocol.codec import decode, encode

    figures: dict[str, dict[str, float]] = {}
    digest = hashlib.sha256()
    for name, batch in _workloads().items():
        frame = encode(batch)
        if decode(frame) != batch:
            raise AssertionError(f"{name}: the batch does not round-trip")
        digest.update(frame)
        figures[name] = {
            "encode": _best_microseconds(lambda batch=batch: encode(batch), len(batch)),  # type: ignore[misc]
            "decode": _best_microseconds(lambda frame=frame: decode(frame), len(batch)),  # type: ignore[misc]
        }
    return {"scaler": os.path.dirname(scaler.__file__), "figures": figures, "wire_sha256": digest.hexdigest()}


def _run_child(checkout: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": checkout}
    output = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child"],
        env=env,
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    result: dict[str, Any] = json.loads(output)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", metavar="PATH", help="another checkout of scaler to measure side by side")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds with --against (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(measure()))
        return
    if not options.against:
        result = measure()
        if options.json:
            print(json.dumps(result, indent=2))
            return
        print(f"scaler from {result['scaler']}: microseconds per message (best of 5)")
        print(f"{'workload':<16}{'encode':>10}{'decode':>10}")
        for name, figure in result["figures"].items():
            print(f"{name:<16}{figure['encode']:>10.2f}{figure['decode']:>10.2f}")
        return
    sides = {"old": os.path.abspath(options.against), "new": REPO}
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    for round_index in range(options.rounds):
        order = ("old", "new") if round_index % 2 == 0 else ("new", "old")  # alternate, so drift hits both
        for side in order:
            runs[side].append(_run_child(sides[side]))
    medians = {
        side: {
            name: {op: statistics.median(run["figures"][name][op] for run in runs[side]) for op in ("encode", "decode")}
            for name in runs[side][0]["figures"]
        }
        for side in sides
    }
    same_wire = runs["old"][0]["wire_sha256"] == runs["new"][0]["wire_sha256"]
    if options.json:
        print(json.dumps({"sides": sides, "rounds": options.rounds, "medians": medians, "same_wire": same_wire}))
        return
    print(f"old: {runs['old'][0]['scaler']}\nnew: {runs['new'][0]['scaler']}")
    print(f"microseconds per message, median of {options.rounds} alternating rounds (each the best of 5 loops)")
    print(f"{'workload':<16}{'encode old':>11}{'new':>8}{'x':>7}{'decode old':>12}{'new':>8}{'x':>7}")
    for name, old in medians["old"].items():
        new = medians["new"][name]
        print(
            f"{name:<16}{old['encode']:>11.2f}{new['encode']:>8.2f}{old['encode'] / new['encode']:>7.1f}"
            f"{old['decode']:>12.2f}{new['decode']:>8.2f}{old['decode'] / new['decode']:>7.1f}"
        )
    print(f"same bytes on the wire: {'yes' if same_wire else 'NO'}")


if __name__ == "__main__":
    main()
