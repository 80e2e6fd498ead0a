"""Functions the dashboard's real-cluster browser test runs (shipped to the workers by value)."""

from __future__ import annotations

import time


def square(x: int) -> int:
    time.sleep(0.02)
    return x * x


def simulate(steps: int) -> float:
    time.sleep(0.15)
    total = 0.0
    for step in range(steps):
        total += step**0.5
    return total


def load_rows(n: int) -> int:
    rows = [str(i) * 10 for i in range(n)]  # a little memory, so peak memory shows
    time.sleep(0.05)
    return len(rows)


def check_input(x: int) -> int:
    if x % 5 == 0:
        raise ValueError(f"bad input {x}")
    return x
