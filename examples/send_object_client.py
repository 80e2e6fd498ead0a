"""Big data sent once: ``send_object`` for shared inputs, automatic objects for big arguments.

Run it with ``python examples/send_object_client.py``. ``send_object`` stores a value on the
scheduler once and returns a small ``ObjectReference``; tasks given the reference receive the value
itself. An argument over 64 KiB passed straight to ``submit`` is stored the same way on its own,
once per content, however many tasks use it.
"""

from __future__ import annotations

from scaler import Client, SchedulerClusterCombo


def lookup(table: dict[int, str], key: int) -> str:
    return table[key]


def count_over(values: list[float], threshold: float) -> int:
    return sum(value > threshold for value in values)


def main() -> None:
    table = {i: f"item-{i}" for i in range(100_000)}
    values = [i / 1000 for i in range(200_000)]
    with (
        SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as cluster,
        Client(address=cluster.get_address()) as client,
    ):
        reference = client.send_object(table, name="table")  # stored once
        print(reference)
        print([client.submit(lookup, reference, key).result() for key in (1, 500, 99_999)])

        futures = [client.submit(count_over, values, threshold) for threshold in range(0, 200, 50)]
        print([future.result() for future in futures])  # `values` was uploaded once for all four tasks
        stats = client.statistics()
        print("objects created:", stats["objects_created"])

        client.clear()  # drop them from the scheduler (disconnect does it too)


if __name__ == "__main__":
    main()
