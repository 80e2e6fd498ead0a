"""The docs' tutorial, last step: its commands for several hosts with keys, run on this one.

``scaler_keygen``, then each "host" gets a directory with only its files, then ``scaler_scheduler``
and ``scaler_cluster`` with ``--keys-dir``, and ``examples/monte_carlo_pricing.py`` as the client.
The example with no arguments (a private local cluster) runs in test_examples.py.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

from scaler.io.sockets import free_tcp_address
from tests.integration.conftest import descendants, wait_no_descendants

EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "monte_carlo_pricing.py"


def host(root: pathlib.Path, keys: pathlib.Path, name: str, *files: str) -> pathlib.Path:
    """What the tutorial copies to one host: only ``files`` of the keys directory."""
    directory = root / name
    directory.mkdir()
    for file in files:
        shutil.copy2(keys / file, directory / file)
    return directory


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_monte_carlo_on_a_keyed_scheduler_and_cluster(tmp_path: pathlib.Path) -> None:
    before = descendants()
    keys = tmp_path / "scaler-keys"
    made = subprocess.run([sys.executable, "-m", "scaler.cli.keygen", str(keys)], capture_output=True, timeout=30)
    assert made.returncode == 0, made.stderr
    scheduler_host = host(tmp_path, keys, "scheduler", "scheduler.key_secret", "allowed_keys")
    worker_host = host(tmp_path, keys, "worker", "worker.key_secret", "scheduler.key")
    client_host = host(tmp_path, keys, "client", "client.key_secret", "scheduler.key")

    address = free_tcp_address()
    quiet = "--logging-level=WARNING"
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "scaler.cli.scheduler", address, "--keys-dir", str(scheduler_host), quiet]
    )
    cluster = subprocess.Popen(
        [sys.executable, "-m", "scaler.cli.cluster", "-n", "2", address, "--keys-dir", str(worker_host), quiet]
    )
    try:
        run = subprocess.run(
            [sys.executable, str(EXAMPLE), address, "--keys-dir", str(client_host)],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        # The same figures as on a private local cluster, which the tutorial quotes: one seed per batch.
        assert "400,000 paths: 7.1498 +/- 0.0199" in run.stdout, run.stdout
        assert "then cancelled" in run.stdout
    finally:
        cluster.terminate()
        assert cluster.wait(timeout=30) == 0
        scheduler.terminate()
        assert scheduler.wait(timeout=15) == 0
    assert wait_no_descendants(before) == set()
