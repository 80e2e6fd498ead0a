"""``ClusterConfig``: N workers on one machine, for ``scaler_cluster``, ``[cluster]`` and ``Cluster``."""

from __future__ import annotations

import dataclasses
import os

from scaler.config.settings import setting
from scaler.config.worker import WorkerSettings


def parse_names(text: str) -> tuple[str, ...]:
    """``a,b,c`` -> ``("a", "b", "c")``."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterConfig(WorkerSettings):
    """A group of workers started and stopped together; each gets the worker settings."""

    n_workers: int | None = setting(
        None,
        help="how many workers to start (default: one per --worker-names name, else one per CPU)",
        group="workers",
        flag="--num-of-workers",
        scaler_flags=("--num-of-workers", "-n"),
        metavar="N",
    )
    worker_names: tuple[str, ...] = setting(
        (),
        help="the workers' names, comma-separated, one per worker, shown in their identities and logs in place "
        "of the host name",
        group="workers",
        scaler_flags=("--worker-names", "-wn"),
        scaler_meaning="mapped: each name stands in each worker's identity (in the scheduler's and the worker's "
        "logs) where the host name would be",
        metavar="NAME,...",
        parse=parse_names,
        format=",".join,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_workers is not None and self.n_workers < 1:
            raise ValueError(f"n_workers must be at least 1, got {self.n_workers}")
        for name in self.worker_names:
            if not name or "," in name or "|" in name:
                raise ValueError(f"bad worker name {name!r}: it needs a character, and no ',' or '|'")
        if self.worker_names and self.n_workers is not None and len(self.worker_names) != self.n_workers:
            raise ValueError(
                f"{len(self.worker_names)} worker names for {self.n_workers} workers: give one name per worker"
            )

    @property
    def worker_count(self) -> int:
        """``n_workers``, or one per name, or one per CPU."""
        if self.n_workers is not None:
            return self.n_workers
        return len(self.worker_names) or os.cpu_count() or 1
