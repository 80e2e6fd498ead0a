"""A Dask-style task graph run with ``client.get``: the graph travels once, intermediates stay on the cluster.

Run it with ``python examples/graphtask_client.py``. A graph is a dict: a value is data, or a task
tuple ``(function, *args)`` whose args may name other keys. ``get`` sends only what the asked keys
need, and returns their values (or futures, with ``block=False``).
"""

from __future__ import annotations

from scaler import Client, SchedulerClusterCombo


def inc(x: int) -> int:
    return x + 1


def add(*values: int) -> int:
    return sum(values)


def minus(a: int, b: int) -> int:
    return a - b


def main() -> None:
    graph = {
        "a": 2,
        "b": (inc, "a"),  # 3
        "c": (add, "a", "b"),  # 5
        ("chunk", 0): (minus, "c", 1),  # tuple keys work too: 4
        ("chunk", 1): (add, "a", (inc, "b")),  # a nested task: 2 + 4 = 6
        "total": (sum, [("chunk", 0), ("chunk", 1)]),  # a list of keys: 10
        "unused": (inc, "total"),  # culled: never runs
    }
    with (
        SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as cluster,
        Client(address=cluster.get_address()) as client,
    ):
        print(client.get(graph, ["total", "c"]))  # {'total': 10, 'c': 5}

        futures = client.get(graph, [("chunk", 0), ("chunk", 1)], block=False)
        print({key: future.result() for key, future in futures.items()})


if __name__ == "__main__":
    main()
