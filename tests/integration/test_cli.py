"""The command-line entry points, run as real subprocesses."""

from __future__ import annotations

import subprocess
import sys

from scaler.io.sockets import free_tcp_address
from tests.integration.conftest import descendants, wait_no_descendants


def test_scheduler_cluster_and_a_client_in_separate_processes() -> None:
    before = descendants()
    address = free_tcp_address()
    scheduler = subprocess.Popen([sys.executable, "-m", "scaler.cli.scheduler", address, "--logging-level=WARNING"])
    cluster_command = [sys.executable, "-m", "scaler.cli.cluster", "-n", "2", address, "--logging-level=WARNING"]
    cluster = subprocess.Popen(cluster_command)
    try:
        code = f"from scaler import Client; print(Client({address!r}, timeout_seconds=20).submit(max, 1, 2).result())"
        output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert output.returncode == 0, output.stderr
        assert output.stdout.strip() == "2"
    finally:
        cluster.terminate()
        assert cluster.wait(timeout=15) == 0
        scheduler.terminate()
        assert scheduler.wait(timeout=15) == 0
    assert wait_no_descendants(before) == set()


def test_console_scripts_are_installed_and_print_help() -> None:
    for script in ("scaler_scheduler", "scaler_cluster"):
        result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0
        assert "address" in result.stdout


def test_scheduler_refuses_a_bad_address() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scaler.cli.scheduler", "127.0.0.1:8516"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "tcp://" in result.stderr
