"""Price a European call option by Monte Carlo simulation: the code of the docs' tutorial.

Run it with ``python examples/monte_carlo_pricing.py``: ``Client()`` starts a private local
cluster. Against a scheduler you started yourself, on this host or another one::

    python examples/monte_carlo_pricing.py tcp://127.0.0.1:8516
    python examples/monte_carlo_pricing.py tcp://sched-host:8516 --keys-dir ~/scaler-keys --batches 2000

Each task simulates one batch of price paths from its own seed, so the estimate is the same
wherever and however often a batch runs. The script prints the estimate of two runs, one with
every batch and one that stops (and cancels the batches still pending) once the estimate is
precise enough, beside the Black-Scholes price that both should approach.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import itertools
import math
import random

from scaler import Client


# --8<-- [start:model]
@dataclasses.dataclass(frozen=True)
class Option:
    """A European call: the right to buy at ``strike`` in ``years``, on a stock now at ``spot``."""

    spot: float = 100.0
    strike: float = 105.0
    rate: float = 0.03  # the risk-free rate, continuously compounded
    volatility: float = 0.2
    years: float = 1.0


def simulate(option: Option, paths: int, seed: int) -> tuple[int, float, float]:
    """Simulate ``paths`` prices at expiry; return the count, sum and sum of squares of the discounted payoffs."""
    rng = random.Random(seed)  # one seed per batch: the same batch gives the same numbers anywhere
    drift = (option.rate - option.volatility**2 / 2) * option.years
    spread = option.volatility * math.sqrt(option.years)
    discount = math.exp(-option.rate * option.years)
    total = squares = 0.0
    for _ in range(paths):
        price = option.spot * math.exp(drift + spread * rng.gauss(0.0, 1.0))
        payoff = discount * max(price - option.strike, 0.0)
        total += payoff
        squares += payoff * payoff
    return paths, total, squares


# --8<-- [end:model]


# --8<-- [start:estimate]
@dataclasses.dataclass(frozen=True)
class Estimate:
    """A Monte Carlo price and its standard error."""

    price: float
    standard_error: float
    paths: int


def combine(batches: list[tuple[int, float, float]]) -> Estimate:
    """Pool the batches' sums into one estimate."""
    paths = sum(count for count, _, _ in batches)
    mean = sum(total for _, total, _ in batches) / paths
    variance = max(sum(squares for _, _, squares in batches) / paths - mean * mean, 0.0)
    return Estimate(mean, math.sqrt(variance / paths), paths)


def normal_cdf(x: float) -> float:
    """P(Z <= x) for a standard normal Z."""
    return (1 + math.erf(x / math.sqrt(2))) / 2


def black_scholes(option: Option) -> float:
    """The exact price, to check the simulation against."""
    d1 = (math.log(option.spot / option.strike) + (option.rate + option.volatility**2 / 2) * option.years) / (
        option.volatility * math.sqrt(option.years)
    )
    d2 = d1 - option.volatility * math.sqrt(option.years)
    discounted_strike = option.strike * math.exp(-option.rate * option.years)
    return option.spot * normal_cdf(d1) - discounted_strike * normal_cdf(d2)


# --8<-- [end:estimate]


# --8<-- [start:price]
def price(client: Client, option: Option, batches: int, paths_per_batch: int) -> Estimate:
    """Run every batch; the result does not depend on which worker ran which batch."""
    results = client.map(simulate, [option] * batches, [paths_per_batch] * batches, range(batches))
    return combine(results)


# --8<-- [end:price]


# --8<-- [start:price_until]
def price_until(client: Client, option: Option, paths_per_batch: int, standard_error: float) -> Estimate:
    """Keep 16 batches in flight until the estimate is that precise; then cancel the ones left."""
    seeds = itertools.count()
    pending = {client.submit(simulate, option, paths_per_batch, next(seeds)) for _ in range(16)}
    done: list[tuple[int, float, float]] = []
    try:
        while pending:
            finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            done.extend(future.result() for future in finished)
            if len(done) >= 8 and combine(done).standard_error <= standard_error:
                break
            pending |= {client.submit(simulate, option, paths_per_batch, next(seeds)) for _ in finished}
    finally:
        for future in pending:
            future.cancel(timeout=0)  # send every cancel at once, without waiting for each answer
        concurrent.futures.wait(pending)  # then wait for the answers
    return combine(done)


# --8<-- [end:price_until]


# --8<-- [start:main]
def main() -> None:
    parser = argparse.ArgumentParser(description="Price a European call option by Monte Carlo on scaler.")
    parser.add_argument("address", nargs="?", help="a scheduler's address (default: a private local cluster)")
    parser.add_argument("--keys-dir", help="keys made by scaler_keygen, for a scheduler started with keys")
    parser.add_argument("--batches", type=int, default=40, help="tasks in the first run (default 40)")
    parser.add_argument("--paths-per-batch", type=int, default=10_000, help="paths per task (default 10000)")
    parser.add_argument("--standard-error", type=float, default=0.03, help="the second run's target (default 0.03)")
    args = parser.parse_args()

    option = Option()
    with Client(args.address, keys_dir=args.keys_dir) as client:
        every_batch = price(client, option, args.batches, args.paths_per_batch)
        print(f"{every_batch.paths:,} paths: {every_batch.price:.4f} +/- {every_batch.standard_error:.4f}")

        enough = price_until(client, option, args.paths_per_batch, args.standard_error)
        print(f"{enough.paths:,} paths, then cancelled: {enough.price:.4f} +/- {enough.standard_error:.4f}")

    exact = black_scholes(option)
    print(f"Black-Scholes: {exact:.4f}")
    assert abs(every_batch.price - exact) < 5 * every_batch.standard_error  # a 1-in-a-million miss


# --8<-- [end:main]


if __name__ == "__main__":
    main()
