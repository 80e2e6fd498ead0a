"""Where each microsecond of a task goes: CPU per task and a sampled profile of every process.

Starts a real scheduler (``scaler_scheduler``) and one worker (``scaler_cluster --num-of-workers 1``)
on loopback, runs a client in this process, and for one workload reports, for each process
(client, scheduler, worker agent, processor):

- CPU microseconds per task (psutil user+system time over the measured tasks);
- with ``--py-spy`` (needs ``pip install py-spy``), the functions holding most of that process's
  samples, by own time and by total time, from ``py-spy record`` attached for the run.

Run it from the repository root::

    python benchmarks/profile_processes.py                     # 20,000 no-op tasks
    python benchmarks/profile_processes.py --workload mib --tasks 500 --py-spy
    python benchmarks/profile_processes.py --py-spy --top 25 --keep-dir /tmp/profiles

The client's own samples include its agent thread; py-spy attaches to the client with
``--pid`` like the others, so each process is sampled the same way.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import psutil

from scaler import Client
from scaler.bench.tasks import tree_graph
from scaler.io.sockets import free_tcp_address


def noop(x: int) -> int:
    """The task whose cost is pure framework overhead."""
    return x


def first_byte(data: bytes) -> int:
    """A task whose cost is moving its argument."""
    return data[0]


def mebibyte(seed: int) -> bytes:
    """A task whose cost is moving its result."""
    return bytes([seed % 256]) * (1 << 20)


@contextlib.contextmanager
def cluster(address: str) -> Iterator[dict[str, psutil.Process]]:
    """A scheduler and one worker as real processes; yields them by role once the processor is up."""
    bin_dir = pathlib.Path(sys.executable).parent
    scheduler = subprocess.Popen([str(bin_dir / "scaler_scheduler"), address], stdout=subprocess.DEVNULL)
    workers = subprocess.Popen(
        [str(bin_dir / "scaler_cluster"), "--num-of-workers", "1", address], stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            children = psutil.Process(workers.pid).children(recursive=True)
            agents = [p for p in children if p.ppid() == workers.pid]
            # Processors are forked by the agent's fork server: the agent's grandchildren.
            helpers = {p.pid for p in children if agents and p.ppid() == agents[0].pid}
            processors = [p for p in children if p.ppid() in helpers]
            if agents and processors:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not start its processor in 30 s")
            time.sleep(0.1)
        yield {
            "scheduler": psutil.Process(scheduler.pid),
            "worker agent": agents[0],
            "processor": processors[0],
        }
    finally:
        for process in (workers, scheduler):
            process.send_signal(signal.SIGINT)
        for process in (workers, scheduler):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def minor_faults(process: psutil.Process) -> int:
    """Minor page faults so far (``/proc/PID/stat``): each is a fresh page touched, about 4 KiB."""
    fields = pathlib.Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[7])


def run_workload(client: Client, workload: str, tasks: int) -> None:
    if workload == "graph":  # ``tasks`` graphs of 1,023 nodes each
        graph, root, _ = tree_graph(10)
        for _ in range(max(1, tasks // 1023)):
            client.get(graph, [root])
        return
    if workload == "noop":
        futures = [client.submit(noop, i) for i in range(tasks)]
    elif workload == "mib-args":
        payload = b"\x01" * (1 << 20)
        futures = [client.submit(first_byte, payload + bytes([i % 256])) for i in range(tasks)]
    else:
        futures = [client.submit(mebibyte, i) for i in range(tasks)]
    for future in futures:
        future.result()


def summarize(raw_path: pathlib.Path, top: int) -> list[str]:
    """The functions with the most samples in a py-spy ``--format raw`` (collapsed stacks) file."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = [frame.split(" (")[0] + " (" + frame.split(" (")[-1].split("/")[-1] for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"  {samples} samples; own time:"]
    lines += [f"    {100 * n / samples:5.1f} %  {name}" for name, n in own.most_common(top)]
    lines.append("  total time (the function and what it calls):")
    lines += [f"    {100 * n / samples:5.1f} %  {name}" for name, n in total.most_common(top)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=["noop", "mib-args", "mib-results", "graph"], default="noop")
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks measured (default: %(default)s)")
    parser.add_argument("--py-spy", action="store_true", help="also sample each process with py-spy")
    parser.add_argument("--top", type=int, default=15, help="functions listed per process (default: %(default)s)")
    parser.add_argument("--keep-dir", help="keep py-spy's raw files here (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.py_spy and shutil.which("py-spy") is None:
        parser.error("--py-spy needs py-spy on PATH: pip install py-spy")

    address = free_tcp_address()
    work_dir = pathlib.Path(args.keep_dir or tempfile.mkdtemp(prefix="scaler-profile-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    with cluster(address) as processes, Client(address) as client:
        processes = {"client": psutil.Process(os.getpid()), **processes}
        run_workload(client, args.workload, min(args.tasks, 2_000))  # warm-up: functions cached, pools grown
        spies = {}
        if args.py_spy:
            for role, process in processes.items():
                raw = work_dir / f"{role.replace(' ', '-')}.txt"
                command = ["py-spy", "record", "--pid", str(process.pid), "--format", "raw", "-o", str(raw)]
                command += [
                    "--rate",
                    "250",
                    "--nonblocking",
                    "--gil",
                ]  # samples only while holding the GIL: CPU, not waits
                spies[role] = (subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), raw)
            time.sleep(1.0)  # py-spy attaches
        before = {role: cpu_seconds(process) for role, process in processes.items()}
        faults_before = {role: minor_faults(process) for role, process in processes.items()}
        start = time.perf_counter()
        run_workload(client, args.workload, args.tasks)
        elapsed = time.perf_counter() - start
        after = {role: cpu_seconds(process) for role, process in processes.items()}
        faults = {role: minor_faults(process) - faults_before[role] for role, process in processes.items()}
        for spy, _ in spies.values():
            spy.send_signal(signal.SIGINT)
        for spy, _ in spies.values():
            spy.wait(30)

    print(f"{args.workload}: {args.tasks} tasks in {elapsed:.2f} s, {args.tasks / elapsed:,.0f} tasks/s")
    total = 0.0
    for role in processes:
        per_task = (after[role] - before[role]) / args.tasks * 1e6
        total += per_task
        print(f"  {role:<13} {per_task:8.1f} µs CPU per task, {faults[role] / args.tasks:8.1f} minor faults per task")
    print(f"  {'all':<13} {total:8.1f} µs CPU per task")
    for role, (_, raw) in spies.items():
        print(f"\n{role}:")
        if raw.exists():
            print("\n".join(summarize(raw, args.top)))
        else:
            print("  py-spy wrote nothing (is ptrace allowed?)")
    if not args.keep_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
