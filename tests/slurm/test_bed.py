"""The Slurm test bed says why it cannot run, rather than failing, when Slurm or munge is missing."""

from __future__ import annotations

import os

from tests.slurm.bed import unavailable


def test_without_the_packages_the_bed_names_what_is_missing_and_how_to_install_it(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no slurmctld, no munged
    why = unavailable()
    assert why is not None
    if os.geteuid() == 0:
        assert "sbatch" in why and "munged" in why and "apt-get install" in why
    else:
        assert "root" in why
