"""What the scheduler's core returns to its shell, and how it names peers and ids in its logs."""

from __future__ import annotations

from dataclasses import dataclass

from scaler.protocol.messages import Message


@dataclass(frozen=True, slots=True)
class Send:
    """Instruction: send ``message`` to the peer whose socket identity is ``to``."""

    to: bytes
    message: Message


@dataclass(frozen=True, slots=True)
class Stop:
    """Instruction: the scheduler must stop."""

    reason: str


Instruction = Send | Stop


def peer_text(identity: bytes) -> str:
    """A peer's identity for logs: readable for scaler peers, escaped for anything else."""
    return identity[:80].decode(errors="backslashreplace")


def id_text(identifier: bytes) -> str:
    """An id for logs and error texts: scaler's are 16 bytes; a longer one (a hostile peer's) is clipped."""
    if len(identifier) <= 32:
        return identifier.hex()
    return f"{identifier[:16].hex()}...({len(identifier)} bytes)"
