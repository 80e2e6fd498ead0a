"""The scheduler's function registry: pickled functions by id, kept while a connected client uses them.

A client sends a function's bytes with its first task that needs it; later tasks name it by id.
The registry counts the clients that use each function (each client keeps the set of ids it
used, in its ``ClientRecord``). When the last of them leaves, the function is dropped, and the
scheduler tells the workers that hold it to drop it too: a long-lived cluster serving clients that
send many distinct closures would otherwise keep every one of them forever.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from scaler.protocol.content_id import content_id
from scaler.utility.invariants import require


class FunctionRegistry:
    """Function bytes by id, with their number of users; see the module docstring."""

    def __init__(self) -> None:
        self._functions: dict[bytes, bytes] = {}
        self._users: dict[bytes, int] = {}
        self._ids: dict[bytes, bytes] = {}  # each id to the one bytes object the scheduler keeps for it

    def __contains__(self, function_id: object) -> bool:
        return function_id in self._functions

    def __len__(self) -> int:
        return len(self._functions)

    def get(self, function_id: bytes) -> bytes:
        """The function's bytes (``KeyError`` if unknown)."""
        return self._functions[function_id]

    def canonical(self, function_id: bytes) -> bytes:
        """The registry's own bytes object for a known id (equal to ``function_id``), to share among tasks."""
        return self._ids.get(function_id, function_id)

    def accept(self, function_id: bytes, function: bytes, new_user: bool) -> str | None:
        """Take a function sent with a task (``function`` empty if the task only names it).

        Returns why the task cannot run, if it cannot. Otherwise ``new_user`` (a client that had not
        used it before) counts one more user.
        """
        if function and content_id(function) != function_id:
            return "the function's id is not the hash of its bytes"
        if function and function_id not in self._functions:
            self._functions[function_id] = function
            self._users[function_id] = 0
            self._ids[function_id] = function_id
        if function_id not in self._functions:
            return "the scheduler does not know this task's function; the client must resend it"
        if new_user:
            self._users[function_id] += 1
        return None

    def remove_user(self, function_ids: Iterable[bytes]) -> list[bytes]:
        """A client that used these functions left: return the ids dropped because nobody uses them now."""
        dropped: list[bytes] = []
        for function_id in function_ids:
            self._users[function_id] -= 1
            if self._users[function_id] == 0:
                del self._users[function_id]
                del self._functions[function_id]
                del self._ids[function_id]
                dropped.append(function_id)
        return dropped

    def validate(self, used: Iterable[Collection[bytes]]) -> None:
        """Raise ``InvariantError`` unless the counts match ``used``, each connected client's function ids."""
        counts: dict[bytes, int] = {}
        for function_ids in used:
            for function_id in function_ids:
                counts[function_id] = counts.get(function_id, 0) + 1
        require(set(self._users) == set(self._functions), "a function without a count, or a count without it")
        require(self._ids.keys() == self._functions.keys(), "a function's shared id is missing, or outlives it")
        require(counts == self._users, "a function's count of users is off, or one is kept that nobody uses")
