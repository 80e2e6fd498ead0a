"""scaler_top under tmux, watching a real local cluster (a scheduler and workers on loopback): the worker count
and the task counts move while tasks run, a key press re-sorts the workers, and ``q`` exits 0."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scaler import Client, SchedulerClusterCombo
from scaler.cli.keygen import make_keys
from tests.terminal.test_top_fake_feed import ROOT, environment, free_port
from tests.terminal.tmux import TmuxScreen, require_tmux

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def total(screen: str, name: str) -> int:
    found = re.search(rf"totals:.*?\b{name} (\d+)", screen)
    return int(found.group(1)) if found else -1


def worker_count(screen: str) -> int:
    found = re.search(r"^\s*workers (\d+)", screen, flags=re.MULTILINE)
    return int(found.group(1)) if found else -1


def scheduler_id(screen: str) -> str:
    found = re.search(r"^\s*scheduler (\S+) ", screen, flags=re.MULTILINE)
    return found.group(1) if found else ""


def sleeping_rows(screen: str) -> list[tuple[str, float]]:
    """(worker name, seconds its task has run) for each row running ``sleep``, in screen order."""
    rows = re.findall(r"^\s*(\S+)\s+active\s+\d+\s+\S*sleep\s+([\d.]+)s\s", screen, flags=re.MULTILINE)
    return [(name, float(seconds)) for name, seconds in rows]


@pytest.fixture
def cluster() -> Iterator[SchedulerClusterCombo]:
    require_tmux()
    with SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as combo:
        yield combo


def test_top_follows_a_real_cluster(cluster: SchedulerClusterCombo) -> None:
    monitor = cluster.get_monitor_address()
    assert monitor is not None
    top = TmuxScreen(f"{sys.executable} -m scaler.cli.top {monitor}", environment())
    extra = None
    try:
        top.wait_for(lambda s: worker_count(s) == 2 and "live:" in s, 60, "2 workers, live")

        # One more worker joins: the count moves up; it leaves: down again.
        extra = subprocess.Popen(
            [sys.executable, "-m", "scaler.cli.worker", cluster.get_address(), "--logging-level", "WARNING"],
            cwd=ROOT,
            env=environment(),
        )
        top.wait_for(lambda s: worker_count(s) == 3, 60, "the third worker")

        with Client(cluster.get_address(), timeout_seconds=30) as client:
            # About 7 s on 2 workers: the 1 s refreshes see the finished count at several values.
            futures = [client.submit(time.sleep, 0.05) for _ in range(300)]
            seen = {total(top.wait_for(lambda s: total(s, "submitted") >= 300, 30, "300 submitted"), "finished")}
            while not all(future.done() for future in futures):
                seen.add(total(top.screen(), "finished"))
                time.sleep(0.3)
            [future.result() for future in futures]
            screen = top.wait_for(lambda s: total(s, "finished") >= 300, 30, "300 finished")
            seen.add(total(screen, "finished"))
            assert len(seen - {-1}) >= 3, f"the finished count should move through several values: {sorted(seen)}"

            extra.terminate()
            extra.wait(30)
            top.wait_for(lambda s: worker_count(s) == 2, 60, "the third worker gone")

            # Two long tasks, started 2 s apart on the two workers: sorting by running time orders them.
            first = client.submit(time.sleep, 120)
            top.wait_for(lambda s: len(sleeping_rows(s)) == 1, 30, "the first long task running")
            time.sleep(2)
            second = client.submit(time.sleep, 120)
            top.wait_for(lambda s: len(sleeping_rows(s)) == 2, 30, "both long tasks running")

            top.press("t")  # longest-running first
            longest_first = top.wait_for(
                lambda s: "running for ▼" in s and len(sleeping_rows(s)) == 2, 10, "sorted by running time, down"
            )
            down = sleeping_rows(longest_first)
            assert down[0][1] > down[1][1]
            top.press("t")  # again: shortest first
            shortest_first = top.wait_for(
                lambda s: "running for ▲" in s and len(sleeping_rows(s)) == 2, 10, "sorted by running time, up"
            )
            up = sleeping_rows(shortest_first)
            assert up[0][1] < up[1][1]
            assert [name for name, _ in up] == [name for name, _ in reversed(down)]  # the rows swapped places
            first.cancel(timeout=30)
            second.cancel(timeout=30)

        top.press("q")
        assert "EXIT=0" in top.wait_for(lambda s: "EXIT=" in s, 15, "scaler_top to exit")
    finally:
        top.close()
        if extra is not None:
            extra.kill()
            extra.wait(10)


def test_top_reads_a_keyed_scheduler_with_its_config_file(tmp_path: Path) -> None:
    """CURVE: ``-c FILE.toml`` whose [top] section names the monitor address and the keys directory."""
    require_tmux()
    keys_dir = tmp_path / "keys"
    make_keys(keys_dir)
    with SchedulerClusterCombo(n_workers=1, logging_level="WARNING", keys_dir=str(keys_dir)) as keyed:
        config = tmp_path / "scaler.toml"
        config.write_text(f'[top]\naddress = "{keyed.get_monitor_address()}"\nkeys_dir = "{keys_dir}"\n')
        top = TmuxScreen(f"{sys.executable} -m scaler.cli.top -c {config}", environment())
        try:
            top.wait_for(lambda s: worker_count(s) == 1 and "live:" in s, 60, "the keyed scheduler's worker")
            top.press("q")
            assert "EXIT=0" in top.wait_for(lambda s: "EXIT=" in s, 15, "scaler_top to exit")
        finally:
            top.close()


def test_top_says_when_the_scheduler_dies_and_recovers_when_it_restarts() -> None:
    """The CLIs on loopback ports: a scheduler is killed, the screen says so; a new one on the same ports is shown."""
    require_tmux()
    address, monitor = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"

    def start_scheduler() -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "scaler.cli.scheduler", address, "--monitor-address", monitor]
        return subprocess.Popen([*command, "--logging-level", "WARNING"], cwd=ROOT, env=environment())

    scheduler = start_scheduler()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scaler.cli.worker",
            address,
            "--logging-level",
            "WARNING",
            "--death-timeout-seconds",
            "60",
        ],
        cwd=ROOT,
        env=environment(),
    )
    top = TmuxScreen(f"{sys.executable} -m scaler.cli.top {monitor}", environment())
    try:
        first = top.wait_for(lambda s: worker_count(s) == 1 and "live:" in s, 60, "the first scheduler's worker")
        scheduler.kill()  # gone without a word
        scheduler.wait(10)
        screen = top.wait_for(lambda s: "silent for" in s, 20, "the silence line")
        assert f"scheduler at {monitor} silent for" in screen and "reconnecting" in screen
        scheduler = start_scheduler()
        # The same worker reconnects to the new scheduler, and scaler_top to its feed, with no key press.
        screen = top.wait_for(lambda s: worker_count(s) == 1 and "live:" in s, 60, "the new scheduler's worker")
        assert scheduler_id(screen) != scheduler_id(first)
        top.press("q")
        assert "EXIT=0" in top.wait_for(lambda s: "EXIT=" in s, 15, "scaler_top to exit")
    finally:
        top.close()
        for process in (worker, scheduler):
            process.kill()
            process.wait(10)
