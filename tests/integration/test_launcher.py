"""``scaler CONFIG.toml`` runs examples/config.toml: a scheduler and two workers, stopped with nothing left."""

from __future__ import annotations

import pathlib
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from scaler import Client
from scaler.io.sockets import free_tcp_address
from tests.integration.conftest import descendants, wait_no_descendants

EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "config.toml"
EXAMPLE_ADDRESS = "tcp://127.0.0.1:8516"


def example_on_a_free_port(tmp_path: pathlib.Path) -> tuple[pathlib.Path, str]:
    """examples/config.toml as it is, but for the scheduler's port."""
    text = EXAMPLE.read_text()
    assert text.count(EXAMPLE_ADDRESS) >= 1
    address = free_tcp_address()
    path = tmp_path / "config.toml"
    path.write_text(text.replace(EXAMPLE_ADDRESS, address))
    return path, address


def workers_below(pid: int) -> list[psutil.Process]:
    """The worker agents started below process ``pid``."""
    found = []
    for process in psutil.Process(pid).children(recursive=True):
        try:
            if "scaler.cli.worker" in process.cmdline():
                found.append(process)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_the_launcher_runs_the_example_config_and_stops_everything(
    tmp_path: pathlib.Path, stop_signal: signal.Signals
) -> None:
    before = descendants()
    path, address = example_on_a_free_port(tmp_path)
    output = tmp_path / "launcher.out"
    with open(output, "wb") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "scaler.cli.launcher", str(path)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        with Client(address, timeout_seconds=60) as client:
            assert client.map(pow, [1, 2, 3], [2, 2, 2]) == [1, 4, 9]
            deadline = time.monotonic() + 30
            while len(workers_below(launcher.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(workers_below(launcher.pid)) == 2  # n_workers = 2 in the example
        launcher.send_signal(stop_signal)
        assert launcher.wait(timeout=60) == 0, output.read_text()
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert wait_no_descendants(before) == set()
    text = output.read_text()
    assert "started [scheduler]" in text and "started [cluster]" in text and "scaler: stopped" in text


@pytest.mark.timeout(60)
def test_the_launcher_stops_the_others_when_one_exits(tmp_path: pathlib.Path) -> None:
    """A cluster whose scheduler cannot start (its address is taken) is not left running."""
    before = descendants()
    path, address = example_on_a_free_port(tmp_path)
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        result = subprocess.run(
            [sys.executable, "-m", "scaler.cli.launcher", str(path)], capture_output=True, text=True, timeout=50
        )
    assert result.returncode != 0
    assert "[scheduler] exited with status" in result.stdout, result.stdout + result.stderr
    assert wait_no_descendants(before) == set()


@pytest.mark.timeout(60)
def test_a_bad_config_file_starts_nothing(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[scheduler]\naddress = "tcp://127.0.0.1:1"\n[cluster]\nn_worker = 2\n')
    before = descendants()
    result = subprocess.run(
        [sys.executable, "-m", "scaler.cli.launcher", str(path)], capture_output=True, text=True, timeout=50
    )
    assert result.returncode == 2
    assert f"{path}: [cluster] has no setting 'n_worker'; did you mean 'n_workers'?" in result.stderr
    assert "started" not in result.stdout
    assert wait_no_descendants(before) == set()
