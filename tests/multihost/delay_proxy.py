"""A TCP proxy that adds a fixed delay to every byte, each way: latency for a kernel without netem.

``python delay_proxy.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_SECONDS`` forwards each
connection to the target. Each chunk read from one side is written to the other ``DELAY_SECONDS``
after it arrived, in order, without waiting for the chunks before it to be delivered first: it adds
latency, not a bandwidth limit (like ``netem delay``). It prints ``ready`` once it listens, and
runs until killed. It is a file of its own, run with ``ip netns exec`` inside a simulated host.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()

    delivery = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(1 << 16):
            queue.put_nowait((loop.time() + delay, chunk))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0.0, b""))
    with contextlib.suppress(ConnectionError, OSError):
        await delivery
        writer.write_eof()  # half-close, as the peer did
        await writer.drain()


async def _serve_one(
    client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, target: tuple[str, int], delay: float
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(_pump(client_reader, server_writer, delay), _pump(server_reader, client_writer, delay))
    finally:
        for writer in (client_writer, server_writer):
            writer.close()


async def serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    """Forward connections accepted on ``listen`` to ``target``, ``delay`` seconds late each way."""
    server = await asyncio.start_server(
        lambda reader, writer: _serve_one(reader, writer, target, delay), listen[0], listen[1]
    )
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    """Parse ``LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_SECONDS`` and serve forever."""
    listen_host, listen_port, target_host, target_port, delay = argv
    asyncio.run(serve((listen_host, int(listen_port)), (target_host, int(target_port)), float(delay)))


if __name__ == "__main__":
    main(sys.argv[1:])
