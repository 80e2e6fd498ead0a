"""Tasks that submit tasks: a ``Client()`` made inside a task connects to that task's scheduler.

Run it with ``python examples/nested_client.py``. While a task waits on its children, its worker
runs other tasks, so recursion deeper than the number of workers does not deadlock. A ``Client``
can also be passed to a task as an argument: it arrives connected to the same scheduler.
"""

from __future__ import annotations

from scaler import Client, SchedulerClusterCombo


def fibonacci(n: int) -> int:
    if n < 2:
        return n
    with Client() as client:  # inside a task: the worker's own scheduler
        left = client.submit(fibonacci, n - 1)
        right = client.submit(fibonacci, n - 2)
        return int(left.result()) + int(right.result())


def sum_of_squares(client: Client, n: int) -> int:
    return sum(client.map(pow, range(n), [2] * n))


def main() -> None:
    with (
        SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as cluster,
        Client(address=cluster.get_address()) as client,
    ):
        print("fibonacci(7) =", client.submit(fibonacci, 7).result())
        print("sum of squares below 10 =", client.submit(sum_of_squares, client, 10).result())


if __name__ == "__main__":
    main()
