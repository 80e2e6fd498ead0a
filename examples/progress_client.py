"""Progress bars while tasks run, then where each task's time and memory went.

Run it with ``python examples/progress_client.py``. The bars are tqdm's, drawn on stderr (a widget in
Jupyter). ``profiling=True`` makes every task measure itself; ``task_report`` turns the measures into
one record per task, and writes them as CSV for a spreadsheet or pandas.
"""

from __future__ import annotations

import os
import random
import tempfile
import time

import scaler
from scaler import Client, SchedulerClusterCombo


def simulate(seed: int) -> float:
    """A small Monte Carlo estimate of pi, with a nap to make the bar visible."""
    rng = random.Random(seed)
    inside = sum(rng.random() ** 2 + rng.random() ** 2 <= 1 for _ in range(20_000))
    time.sleep(0.05)
    return 4 * inside / 20_000


def flaky(seed: int) -> int:
    if seed % 7 == 3:
        raise ValueError(f"seed {seed} is unlucky")
    return seed


def main() -> None:
    with (
        SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as cluster,
        Client(address=cluster.get_address(), profiling=True) as client,
    ):
        # map with a bar: same results as without, in order.
        estimates = client.map(simulate, range(40), progress=True)
        print(f"pi is about {sum(estimates) / len(estimates):.3f}")

        # Any futures: the bar counts successes, failures and cancellations apart, and never raises.
        futures = [client.submit(flaky, seed) for seed in range(20)]
        scaler.progress(futures, desc="flaky")
        print("failed:", sum(future.exception() is not None for future in futures))

        # Where the time went: one record per task, and the same as CSV.
        report_path = os.path.join(tempfile.mkdtemp(), "tasks.csv")
        records = client.task_report(futures, csv_path=report_path)
        print("function        status   load (s)  run (s)   result (B)  peak memory (MB)")
        for record in records[:5]:
            print(
                f"{record.function:<15} {record.status:<8} {record.load_s or 0:<9.5f} {record.run_s or 0:<9.5f} "
                f"{record.result_bytes or 0:<11} {(record.memory_peak or 0) / 1e6:.1f}"
            )
        print(f"{len(records)} records written to {report_path}")


if __name__ == "__main__":
    main()
