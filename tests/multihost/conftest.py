"""Fixtures of the multi-host suite: simulated hosts (network namespaces) and a scaler deployment on them.

The hosts are built once per module and always torn down, even when a test fails or pytest is
interrupted: ``SimulatedHosts.teardown()`` kills every process in them before it deletes the namespaces, and
the next run removes those left by a run that crashed. Between tests, ``reset()`` plugs every host
back in, removes the loss rules and kills any process left on a host. Without root, ``ip`` or
``nft``, every test here is skipped with the reason.
"""

from __future__ import annotations

import collections.abc
import subprocess
import sys
from pathlib import Path

import pytest

from tests.multihost.netns import SimulatedHosts, missing_requirements, remove_leftovers
from tests.multihost.support import Deployment, host_env

# The scheduler, two worker hosts, and two client hosts (the second one watches the first one's fault).
HOSTS = ("sched", "w1", "w2", "cli", "cli2")
WORKER_HOSTS = ("w1", "w2")


@pytest.fixture(scope="module")
def testbed() -> collections.abc.Iterator[SimulatedHosts]:
    """Five simulated hosts on one bridge, removed after the module's tests."""
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(f"multi-host tests skipped: {reason}")
    remove_leftovers()
    bed = SimulatedHosts(HOSTS)
    try:
        try:
            bed.build()
        except subprocess.CalledProcessError as error:
            if "not permitted" in (error.stderr or ""):  # root in a container without CAP_SYS_ADMIN
                pytest.skip(f"multi-host tests skipped: {' '.join(error.cmd)}: {error.stderr.strip()}")
            raise
        yield bed
    finally:
        bed.teardown()


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh set of CURVE keys made by ``scaler_keygen``."""
    directory = tmp_path_factory.mktemp("multihost") / "keys"
    subprocess.run(
        [sys.executable, "-m", "scaler.cli.keygen", str(directory)],
        check=True,
        capture_output=True,
        env=host_env("root"),
        timeout=60,
    )
    return directory


@pytest.fixture
def deployment(testbed: SimulatedHosts, keys_dir: Path, tmp_path: Path) -> collections.abc.Iterator[Deployment]:
    """A scheduler and workers not started yet (each test sets its network up first); stopped after the test."""
    deployed = Deployment(testbed, keys_dir, tmp_path, WORKER_HOSTS)
    try:
        yield deployed
    finally:
        deployed.stop()
        testbed.reset()
