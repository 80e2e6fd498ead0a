"""Dask collections computed on scaler: ``dask.compute(..., scheduler=client.get)``.

Run it with ``python examples/dask_client.py`` (needs ``pip install "dask[array]"``). dask builds
and optimizes the graph; scaler runs it, keeping intermediate chunks on the cluster.
"""

from __future__ import annotations

import dask
import dask.array as da

from scaler import Client, SchedulerClusterCombo


@dask.delayed
def load(day: int) -> list[int]:
    return [day * 10 + hour for hour in range(24)]


@dask.delayed
def peak(values: list[int]) -> int:
    return max(values)


def main() -> None:
    with (
        SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as cluster,
        Client(address=cluster.get_address()) as client,
    ):
        peaks = [peak(load(day)) for day in range(7)]
        print("weekly peak:", dask.compute(dask.delayed(max)(peaks), scheduler=client.get)[0])

        x = da.arange(10_000, chunks=1_000).reshape((100, 100)).rechunk((25, 25))
        print("mean of x @ x.T:", float((x @ x.T).mean().compute(scheduler=client.get)))


if __name__ == "__main__":
    main()
