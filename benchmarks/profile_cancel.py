"""Where the time of scaler_bench's cancel row goes: kills, and the CPU of each kind of process.

Run it from the repository root::

    python benchmarks/profile_cancel.py                  # 2 workers, 6 rounds of 200 cancels
    python benchmarks/profile_cancel.py --rounds 10

Each round is ``scaler_bench``'s cancel workload (``cancel_seconds``): 200 one-second tasks, the
first ones running, cancelled one by one with a blocking ``cancel()``. For each round it prints
the seconds from the first cancel until every future had ended, and how many cancels found their
task running, so that its processor was killed (the worker logs each such kill at INFO; the logs
go to a temporary directory). At the end it gives, per round, the CPU of the client, the
scheduler, the worker agents, their fork servers (which fork each replacement processor) and the
processors they reaped, with the replacement processors' minor page faults.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import tempfile
import time
from typing import Any

import psutil

from scaler.bench.peers import ScalerSession
from scaler.bench.workloads import Settings, cancel_seconds

KILL_LOG_LINE = "killing its processor"  # what a worker logs when a cancel kills a running task


class LoggedSession(ScalerSession):
    """``ScalerSession`` with INFO logs written under ``log_dir`` (each worker appends its pid)."""

    def __init__(self, workers: int, log_dir: str) -> None:  # noqa: D107 - see the class
        from scaler import Client, SchedulerClusterCombo

        self.log_path = os.path.join(log_dir, "scaler.log")
        self.combo = SchedulerClusterCombo(n_workers=workers, logging_level="INFO", logging_paths=self.log_path)
        self.client = Client(address=self.combo.get_address())
        self.scheduler_pid = self.combo.scheduler_pid()

    def kills(self) -> int:
        """Cancels so far that killed a running task's processor."""
        total = 0
        for path in glob.glob(self.log_path + "*"):
            with open(path) as log:
                total += log.read().count(KILL_LOG_LINE)
        return total


def _roles() -> dict[str, list[psutil.Process]]:
    """The combo's processes by role: its scheduler forked the workers, each of which forked its fork server."""
    me = psutil.Process()
    schedulers = me.children()
    agents = [agent for scheduler in schedulers for agent in scheduler.children()]
    servers = [
        child for agent in agents for child in agent.children() if "resource_tracker" not in " ".join(child.cmdline())
    ]
    return {"client": [me], "scheduler": schedulers, "worker agents": agents, "fork servers": servers}


def _times(process: psutil.Process) -> tuple[float, float, int]:
    times = process.cpu_times()
    with open(f"/proc/{process.pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return times.user + times.system, times.children_user + times.children_system, int(fields[8])


def main() -> None:
    """Run the rounds, then print the CPU breakdown per round."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="workers (default 2)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of 200 cancels (default 6)")
    args = parser.parse_args()
    settings = Settings(workers=args.workers)
    with tempfile.TemporaryDirectory() as log_dir:
        session = LoggedSession(args.workers, log_dir)
        try:
            session.wait_for_workers(args.workers)
            cancel_seconds(session, settings)  # warm-up: every fork server and spare has started
            roles = _roles()
            before: dict[str, list[Any]] = {role: [_times(p) for p in group] for role, group in roles.items()}
            rounds = []
            for number in range(args.rounds):
                kills = session.kills()
                seconds, cancelled = cancel_seconds(session, settings)
                time.sleep(0.3)  # the last kills reach the log
                rounds.append((seconds, session.kills() - kills))
                killed = rounds[-1][1]
                print(f"round {number + 1}: {seconds:.3f} s, {cancelled} cancelled, {killed} killed", flush=True)
            after = {role: [_times(p) for p in group] for role, group in roles.items()}
        finally:
            session.close()
    kills = sum(killed for _, killed in rounds)
    median = statistics.median(seconds for seconds, _ in rounds)
    print(f"median {median:.3f} s per round; {kills / args.rounds:.0f} kills per round")
    for role in roles:
        own = sum(a[0] - b[0] for a, b in zip(after[role], before[role], strict=True)) / args.rounds
        print(f"  {role:14s} {own:6.3f} s of CPU per round")
        if role == "fork servers":
            reaped = sum(a[1] - b[1] for a, b in zip(after[role], before[role], strict=True))
            faults = sum(a[2] - b[2] for a, b in zip(after[role], before[role], strict=True))
            each = 1000 * reaped / max(kills, 1)
            print(
                f"  {'processors':14s} {reaped / args.rounds:6.3f} s of CPU per round: {each:.1f} ms "
                f"and {faults / max(kills, 1):.0f} minor faults per replacement"
            )


if __name__ == "__main__":
    main()
