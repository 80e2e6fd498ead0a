"""A local cluster started explicitly, a client connected to its address, and three ways to fan out.

Run it with ``python examples/map_client.py``. ``SchedulerClusterCombo`` is what ``Client()`` starts
for you; starting it yourself lets several clients share it, and choose its size and settings.
"""

from __future__ import annotations

import concurrent.futures
import math

from scaler import Client, SchedulerClusterCombo


def hypotenuse(a: float, b: float) -> float:
    return math.sqrt(a * a + b * b)


def is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))


def main() -> None:
    with (
        SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as cluster,
        Client(address=cluster.get_address()) as client,
    ):
        # map: like the builtin, one task per item, results in order.
        print("squares:", client.map(pow, range(8), [2] * 8))

        # starmap: each item is an argument tuple.
        print("hypotenuses:", client.starmap(hypotenuse, [(3, 4), (5, 12), (8, 15)]))

        # submit + as_completed: handle each result as soon as it is ready, in completion order.
        futures = {client.submit(is_prime, n): n for n in range(1_000_000, 1_000_040)}
        primes = [futures[f] for f in concurrent.futures.as_completed(futures) if f.result()]
        print("primes in [1000000, 1000040):", sorted(primes))


if __name__ == "__main__":
    main()
