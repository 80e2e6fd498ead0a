"""Client liveness: who is connected, when each was last heard from, and who left (and why).

A client is registered by its first message and refreshed by every later one. A client that
leaves (it disconnects, times out, or its frame could not be read) is remembered for a while with
the reason, so that its late messages get a ``ClientDropped`` answer naming it instead of
registering it again as a new client.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from scaler.io.output_limits import OutputThrottle
from scaler.utility.invariants import require

DEPARTED_MEMORY = 10_000  # how many departed client identities to remember


@dataclass(slots=True)
class ClientRecord:
    """A connected client: when it was last heard from, its live tasks, the functions it sent, its credits."""

    last_seen: float
    tasks: set[bytes] = field(default_factory=set)
    functions: set[bytes] = field(default_factory=set)
    credits_held: int = 0  # its tasks that hold a backpressure credit (waiting in the queue since submission)
    credits_due: int = 0  # credits freed since it was last sent a TaskCredit
    output: OutputThrottle | None = None  # its tasks' output, bounded; made at its first TaskLog
    connected_since: float = 0.0  # for the status feed: when it registered
    done: int = 0  # its tasks that ended with a result, since it connected
    failed: int = 0  # ... with a failure
    cancelled: int = 0  # ... cancelled (or dropped)

    @property
    def waiting(self) -> int:
        """``credits_held``, under the word Scaler's ``max_number_of_tasks_waiting`` uses for it."""
        return self.credits_held


class ClientTable(Mapping[bytes, ClientRecord]):
    """Connected clients by identity, and the recently departed; see the module docstring."""

    def __init__(self, memory: int = DEPARTED_MEMORY) -> None:
        self._records: dict[bytes, ClientRecord] = {}
        self._departed: OrderedDict[bytes, str] = OrderedDict()  # identity -> why it left
        self._memory = memory

    def __getitem__(self, client_id: bytes) -> ClientRecord:
        return self._records[client_id]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._records

    def get(self, client_id: bytes, default: None = None) -> ClientRecord | None:  # type: ignore[override]
        """The client's record, or None (faster than ``Mapping.get``, which goes through an exception)."""
        return self._records.get(client_id)

    def register_or_refresh(self, client_id: bytes, now: float) -> tuple[ClientRecord, bool]:
        """Note that the client spoke at ``now``; return its record, and True if it is new (registered now)."""
        client = self._records.get(client_id)
        if client is not None:
            client.last_seen = now
            return client, False
        client = self._records[client_id] = ClientRecord(last_seen=now, connected_since=now)
        return client, True

    def departure(self, client_id: bytes) -> str | None:
        """Why this identity left, if it is a client that left (recently), else None."""
        return self._departed.get(client_id)

    def remove(self, client_id: bytes, reason: str) -> ClientRecord | None:
        """The client left for ``reason``: forget it (remembering why); return its record if it was connected."""
        self._departed[client_id] = reason
        self._departed.move_to_end(client_id)
        if len(self._departed) > self._memory:
            self._departed.popitem(last=False)
        return self._records.pop(client_id, None)

    def silent(self, now: float, timeout: float) -> list[bytes]:
        """The clients not heard from for more than ``timeout`` seconds at ``now``."""
        return [client_id for client_id, client in self._records.items() if now - client.last_seen > timeout]

    def validate(self) -> None:
        """Raise ``InvariantError`` if a client is both connected and departed, or memory overflows."""
        require(len(self._departed) <= self._memory, "more departed clients remembered than allowed")
        require(not any(client_id in self._departed for client_id in self._records), "a departed client came back")
