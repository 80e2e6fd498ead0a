"""The smallest scaler program: ``Client()`` with no address starts a private local cluster.

Run it with ``python examples/simple_client.py``. The cluster (a scheduler and one worker per
CPU, all local subprocesses) stops when the ``with`` block ends.
"""

from __future__ import annotations

from scaler import Client, RemoteTraceback


def add(x: int, y: int = 0, *, scale: int = 1) -> int:
    return (x + y) * scale


def divide(a: float, b: float) -> float:
    return a / b


def main() -> None:
    with Client() as client:
        future = client.submit(add, 1, 2)
        print("add(1, 2) =", future.result())

        future = client.submit(add, 1, y=2, scale=10)  # keyword arguments travel too
        print("add(1, y=2, scale=10) =", future.result())

        try:
            client.submit(divide, 1, 0).result()
        except ZeroDivisionError as error:  # the worker's exception, with its own type
            assert isinstance(error.__cause__, RemoteTraceback)  # and the worker's traceback
            print("divide(1, 0) raised", type(error).__name__ + ":", error)


if __name__ == "__main__":
    main()
