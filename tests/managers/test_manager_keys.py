"""A worker manager with CURVE keys: its own pair (`scaler_keygen DIR --add manager`) gets in, a stranger's does not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from scaler import Client
from scaler.cli.keygen import make_keys
from scaler.io.keys import create_key_pair
from tests.managers.support import env_with_worktree, pid_alive, scheduler_process, wait_for_names


def manager_argv(address: str, tmp_path: Path, *flags: str) -> list[str]:
    return [
        sys.executable, "-m", "scaler.cli.worker_manager", "native", address, "--name=keyed",
        f"--native-state-dir={tmp_path / 'state'}", "--poll-interval-seconds=0.3", *flags,
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_manager_with_its_own_key_pair_gets_in_and_one_off_the_allow_list_is_refused(tmp_path) -> None:
    keys = tmp_path / "keys"
    make_keys(keys)  # with a manager key pair, on the allow-list
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    _, stranger_key = create_key_pair(stranger, "manager")
    scheduler_log = tmp_path / "scheduler.log"
    with scheduler_process(scheduler_log, f"--keys-dir={keys}") as address:
        log = tmp_path / "manager.log"
        with open(log, "ab") as out:
            manager = subprocess.Popen(
                manager_argv(address, tmp_path, f"--keys-dir={keys}", "--min-workers=1", "--max-workers=1"),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env_with_worktree(),
            )
        workers: list[int] = []
        try:
            with Client(address=address, keys_dir=keys, timeout_seconds=30) as client:
                deadline = time.monotonic() + 30
                while not (names := [p.name[:-4] for p in (tmp_path / "state").glob("keyed.*.log")]):
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.05)
                wait_for_names(client, set(names))  # its worker got in with the worker key pair
            workers = [child.pid for child in psutil.Process(manager.pid).children()]
            deadline = time.monotonic() + 10
            while "worker manager 'keyed' connected" not in scheduler_log.read_text():  # its heartbeats got through
                assert time.monotonic() < deadline, scheduler_log.read_text()
                time.sleep(0.05)
            assert manager.poll() is None
            manager.send_signal(signal.SIGTERM)
            assert manager.wait(timeout=15) == 0
        finally:
            if manager.poll() is None:
                manager.kill()
                manager.wait()
            for pid in workers:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGTERM)

        refused = subprocess.run(
            manager_argv(
                address, tmp_path, f"--keys-dir={keys}", f"--manager-key-file={stranger_key}", "--name=stranger"
            ),
            capture_output=True,
            text=True,
            timeout=60,
            env=env_with_worktree(),
        )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "cannot join" in refused.stdout + refused.stderr and "refused" in refused.stdout + refused.stderr
