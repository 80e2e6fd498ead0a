"""The Slurm test bed: a real single-node Slurm started for the session, torn down even when a test fails.

Skips (printing why) when not root or when slurm-wlm or munge is missing; ``.ci/run`` installs both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.slurm.bed import SlurmBed, unavailable


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmBed]:
    """A running single-node Slurm; ``SLURM_CONF`` points at it for the session (and processes started in it)."""
    why = unavailable()
    if why is not None:
        print(f"\n[slurm] skipped: {why}")
        pytest.skip(why)
    bed = SlurmBed(tmp_path_factory.mktemp("slurm"))
    before = os.environ.get("SLURM_CONF")
    try:
        bed.start()
        os.environ["SLURM_CONF"] = str(bed.conf)
        yield bed
    finally:
        bed.stop()
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before


@pytest.fixture
def empty_queue(slurm: SlurmBed) -> Iterator[SlurmBed]:
    """The bed, with every job a test left cancelled after it."""
    yield slurm
    slurm.run("scancel", "--user=root", "--full", check=False)
