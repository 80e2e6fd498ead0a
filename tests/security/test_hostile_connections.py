"""A thousand TCP connections that never finish the ZMTP handshake must not starve real clients."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.hostile_support import ROUND_TRIP_LIMIT_SECONDS, Bystander, HostileScheduler, fresh_round_trip

CONNECTIONS = 1000
FDS_NEEDED = CONNECTIONS + 200  # this process's sockets, and the scheduler's (it inherits the limit)

# ZMTP 3 starts with a 10-byte signature, then the version, mechanism and padding (64 bytes in all),
# then a READY command. Each kind of connection stops somewhere before the end, or says nonsense.
_SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
_GREETING = _SIGNATURE + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
HALF_OPEN = {
    "silent": b"",
    "one byte": b"\xff",
    "partial signature": _SIGNATURE[:5],
    "signature only": _SIGNATURE,
    "greeting, no READY": _GREETING,
    "not ZMTP": b"GET / HTTP/1.1\r\nHost: scheduler\r\n\r\n",
}


@pytest.fixture
def enough_descriptors() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FDS_NEEDED:
        pytest.skip(f"the hard limit on open files is {hard}; {CONNECTIONS} connections need about {FDS_NEEDED}")
    if soft != resource.RLIM_INFINITY and soft < FDS_NEEDED:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FDS_NEEDED, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _address(scheduler: HostileScheduler) -> tuple[str, int]:
    host, _, port = scheduler.address.removeprefix("tcp://").rpartition(":")
    return host, int(port)


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_a_thousand_unfinished_handshakes_do_not_starve_real_clients(enough_descriptors: None, tmp_path: Path) -> None:
    with HostileScheduler(tmp_path) as scheduler:  # its own, started under the raised limit
        bystander = Bystander(scheduler)  # it keeps the first worker busy for the whole test...
        sockets: list[socket.socket] = []
        try:
            scheduler.start_workers(1, capabilities={})  # ...so fresh clients' tasks go to this one
            fresh_round_trip(scheduler.address)  # (once it is up)
            started = time.monotonic()
            kinds = list(HALF_OPEN.items())
            for index in range(CONNECTIONS):
                connection = socket.create_connection(_address(scheduler), timeout=10)
                sockets.append(connection)
                _, greeting = kinds[index % len(kinds)]
                if greeting:
                    connection.sendall(greeting)
            opened = time.monotonic() - started
            assert scheduler.alive()
            # While they are all open: real clients are served, each within the limit.
            round_trips = [fresh_round_trip(scheduler.address) for _ in range(5)]
            still_open = {name: 0 for name in HALF_OPEN}
            for index, connection in enumerate(sockets):
                still_open[kinds[index % len(kinds)][0]] += _is_open(connection)
            print(
                f"\n{CONNECTIONS} half-open connections opened in {opened:.2f}s; still open afterwards: {still_open}; "
                f"fresh client round trips meanwhile: {', '.join(f'{t * 1000:.0f} ms' for t in round_trips)}"
            )
            assert max(round_trips) < ROUND_TRIP_LIMIT_SECONDS
            # The test means something only if the connections were really there while clients were served.
            silent = sum(1 for index in range(CONNECTIONS) if kinds[index % len(kinds)][0] == "silent")
            assert still_open["silent"] == silent, "the scheduler closed connections that were only slow"
            for connection in sockets:
                connection.close()
            after = bystander.check()
            print(f"after closing them all: {after * 1000:.0f} ms")
        finally:
            for connection in sockets:
                connection.close()
            bystander.close()


def _is_open(connection: socket.socket) -> bool:
    """False if the peer has closed the connection (a read would return nothing)."""
    connection.setblocking(False)
    try:
        return connection.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            connection.setblocking(True)
