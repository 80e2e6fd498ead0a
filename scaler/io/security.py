"""CURVE security for scaler's sockets: which keys a process uses, where a scheduler may bind, and
what a failed handshake means.

- ``PeerKeys`` (a client or a worker) and ``SchedulerKeys`` are loaded from key files
  (``keys.py``) once, checked, and passed down to ``connect_dealer`` / ``bind_router``, which call
  their ``configure(socket)``. Secret bytes stay in memory: subprocesses, nested clients and
  pickled clients get the files' paths.
- ``check_bind`` refuses a non-loopback bind without keys unless ``insecure`` is set;
  ``bind_router`` calls it, so every way of starting a scheduler is covered.
- ``require_libzmq`` refuses a libzmq older than 4.3.2.
- ``HandshakeWatch`` reads a DEALER's socket-monitor events and turns a refused handshake into an
  ``AuthenticationError`` that says which key file to check.

The scheduler's allow-list is enforced by ``zap.py``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import zmq

from scaler.errors import AuthenticationError, DisconnectedError, InsecureBindError
from scaler.io.keys import (
    ALLOW_LIST,
    SCHEDULER,
    PathLike,
    is_private,
    key_pair_path,
    public_key_path,
    read_allow_list,
    read_key_pair,
    read_public_key,
)

logger = logging.getLogger(__name__)

MIN_LIBZMQ = (4, 3, 2)
ZAP_DOMAIN = b"scaler"
ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq looks for a context's authentication handler
# Contexts an AllowListAuthenticator serves (zap.py adds and removes them); a CURVE ROUTER is bound
# only in one of them, since without a handler libzmq would let every key in.
ZAP_SERVED: weakref.WeakSet[zmq.Context[Any]] = weakref.WeakSet()

HANDSHAKE_FAILED_EVENTS = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
HANDSHAKE_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | HANDSHAKE_FAILED_EVENTS
NO_DETAIL_LIMIT = 3  # a keyed peer whose handshakes fail this often in a row, without detail, gives up

_KEYGEN_ADVICE = "`scaler_keygen DIR` makes a matching set"


# -- the libzmq floor --------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, ...]:
    """``"4.3.5"`` -> ``(4, 3, 5)``; a non-numeric part ends the version (``"4.3.2-rc1"`` -> ``(4, 3, 2)``)."""
    numbers: list[int] = []
    for part in text.strip().split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        numbers.append(int(digits))
        if len(digits) != len(part):
            break
    return tuple(numbers)


def libzmq_is_supported(found: str, floor: tuple[int, ...] = MIN_LIBZMQ) -> bool:
    """True if the libzmq version ``found`` is at least ``floor``."""
    version = parse_version(found)
    return bool(version) and version + (0,) * (len(floor) - len(version)) >= floor


def require_libzmq(found: str | None = None) -> None:
    """Raise ``RuntimeError`` if this process's libzmq is older than 4.3.2 (CURVE fixes scaler relies on)."""
    found = zmq.zmq_version() if found is None else found
    if not libzmq_is_supported(found):
        floor = ".".join(map(str, MIN_LIBZMQ))
        raise RuntimeError(
            f"scaler needs libzmq {floor} or newer, but pyzmq {zmq.pyzmq_version()} uses libzmq {found}: "
            f"run `pip install -U pyzmq` (its wheels bundle a recent libzmq), or upgrade the system libzmq "
            f"pyzmq was built against"
        )


# -- where a scheduler may bind ----------------------------------------------------------------


def is_loopback(address: str) -> bool:
    """True for addresses only this host can reach: 127.0.0.0/8, ::1, localhost, ipc:// and inproc://."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    if not address.startswith("tcp://"):
        return False
    host = address[len("tcp://") :].rpartition(":")[0].strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # an interface name, '*' or a host name: assume it can be reached from elsewhere
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def check_bind(address: str, keys: SchedulerKeys | None, insecure: bool) -> None:
    """Raise ``InsecureBindError`` for a non-loopback ``address`` without keys, unless ``insecure``."""
    if keys is not None or insecure or is_loopback(address):
        return
    raise InsecureBindError(
        f"refusing to serve {address} without keys: anyone who can reach it could run code on every worker. "
        f"Either make keys with `scaler_keygen DIR` and start the scheduler with `--keys-dir DIR` "
        f"(keys_dir=DIR; then give workers and clients their keys too), or, if every host that can reach "
        f"this address is trusted, pass `--insecure` (insecure=True). A loopback address such as "
        f"tcp://127.0.0.1:PORT needs neither."
    )


# -- keys --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerKeys:
    """What a client or a worker needs to connect to a CURVE scheduler: its key pair and the scheduler's key.

    ``key_file`` and ``scheduler_key_file`` are absolute paths: they, never the secret, are what
    is handed to subprocesses, to clients created inside tasks, and to pickled clients.
    """

    role: str
    key_file: str
    scheduler_key_file: str
    public_key: bytes
    secret_key: bytes = field(repr=False)
    scheduler_key: bytes

    @classmethod
    def load(
        cls,
        role: str,
        keys_dir: PathLike | None = None,
        key_file: PathLike | None = None,
        scheduler_key_file: PathLike | None = None,
    ) -> PeerKeys | None:
        """Read the keys of ``role`` (``"client"`` or ``"worker"``); None when nothing is given.

        ``keys_dir`` picks ``ROLE.key_secret`` and ``scheduler.key`` from a ``scaler_keygen``
        directory; ``key_file`` and ``scheduler_key_file`` name the files themselves and win
        over ``keys_dir``. Raises ``ValueError`` saying what is missing.
        """
        if keys_dir is None and key_file is None and scheduler_key_file is None:
            return None
        keys_dir, key_file, scheduler_key_file = map(_expand, (keys_dir, key_file, scheduler_key_file))
        if keys_dir is not None:
            _check_directory(keys_dir)
            key_file = key_file if key_file is not None else key_pair_path(keys_dir, role)
            if scheduler_key_file is None:
                scheduler_key_file = public_key_path(keys_dir, SCHEDULER)
        elif key_file is None or scheduler_key_file is None:
            missing = "key_file (--key-file)" if key_file is None else "scheduler_key_file (--scheduler-key-file)"
            raise ValueError(
                f"a {role} with keys needs its own key pair and the scheduler's public key: pass {missing} too, "
                f"or keys_dir (--keys-dir) for a directory made by `scaler_keygen`"
            )
        public, secret = read_key_pair(key_file, f"{role} key pair")
        scheduler_key = read_public_key(scheduler_key_file, "scheduler public key")
        _warn_if_readable(key_file)
        return cls(role, os.path.abspath(key_file), os.path.abspath(scheduler_key_file), public, secret, scheduler_key)

    def configure(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` (not yet connected) a CURVE client of the scheduler."""
        sock.curve_secretkey = self.secret_key
        sock.curve_publickey = self.public_key
        sock.curve_serverkey = self.scheduler_key


@dataclass(frozen=True)
class SchedulerKeys:
    """A scheduler's key pair and the allow-list of client and worker public keys it accepts."""

    key_file: str
    allow_list_file: str
    public_key: bytes
    secret_key: bytes = field(repr=False)
    allowed: Mapping[bytes, str] = field(repr=False)

    @classmethod
    def load(
        cls,
        keys_dir: PathLike | None = None,
        key_file: PathLike | None = None,
        allow_list_file: PathLike | None = None,
    ) -> SchedulerKeys | None:
        """Read the scheduler's keys; None when nothing is given.

        ``keys_dir`` picks ``scheduler.key_secret`` and ``allowed_keys`` from a ``scaler_keygen``
        directory; ``key_file`` and ``allow_list_file`` name the files and win over it.
        """
        if keys_dir is None and key_file is None and allow_list_file is None:
            return None
        keys_dir, key_file, allow_list_file = map(_expand, (keys_dir, key_file, allow_list_file))
        if keys_dir is not None:
            _check_directory(keys_dir)
            key_file = key_file if key_file is not None else key_pair_path(keys_dir, SCHEDULER)
            allow_list_file = allow_list_file if allow_list_file is not None else os.path.join(keys_dir, ALLOW_LIST)
        elif key_file is None or allow_list_file is None:
            missing = "key_file (--key-file)" if key_file is None else "allow_list_file (--allow-list-file)"
            raise ValueError(
                f"a scheduler with keys needs its key pair and an allow-list: pass {missing} too, "
                f"or keys_dir (--keys-dir) for a directory made by `scaler_keygen`"
            )
        public, secret = read_key_pair(key_file, "scheduler key pair")
        allowed = read_allow_list(allow_list_file)
        if not allowed:
            raise ValueError(
                f"the allow-list {allow_list_file} holds no key, so no client or worker could connect: "
                f"add keys with `scaler_keygen DIR --add NAME`"
            )
        _warn_if_readable(key_file)
        return cls(os.path.abspath(key_file), os.path.abspath(allow_list_file), public, secret, dict(allowed))

    def configure(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` (not yet bound) a CURVE server; the allow-list is applied by ``zap.py``."""
        sock.curve_server = True
        sock.curve_secretkey = self.secret_key
        sock.curve_publickey = self.public_key
        sock.zap_domain = ZAP_DOMAIN
        # Fail closed: should the allow-list thread ever stop, libzmq refuses every handshake
        # instead of its default of letting every key in.
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


def _expand(path: PathLike | None) -> str | None:
    """``~`` expanded, as a shell would have done on a command line."""
    return None if path is None else os.path.expanduser(os.fspath(path))


def _check_directory(keys_dir: PathLike) -> None:
    if not os.path.isdir(keys_dir):
        raise ValueError(f"keys directory {keys_dir} does not exist: make one with `scaler_keygen {keys_dir}`")


def _warn_if_readable(path: PathLike) -> None:
    if not is_private(path):
        logger.warning("key pair %s can be read by other users: run `chmod 600 %s`", path, path)


# -- handshakes --------------------------------------------------------------------------------


class HandshakeWatch:
    """Judges a client's or worker's handshake events: when has the scheduler refused it for good?

    Feed it ``(event, value)`` pairs from the DEALER's socket monitor (``on_event``). A refusal by
    the allow-list (``EVENT_HANDSHAKE_FAILED_AUTH``) or a protocol error such as keys on one side
    only (``EVENT_HANDSHAKE_FAILED_PROTOCOL``) is final at once. A handshake cut short without
    detail is what a wrong scheduler key looks like from this side, but also what a scheduler
    that is down behind a TCP proxy looks like. So it is final only with ``cut_short_is_final``
    (a client that is connecting: it would rather be told), for a peer with keys, after
    ``NO_DETAIL_LIMIT`` in a row and before any handshake succeeded; otherwise ``suspicion()``
    says what it suggests, and the peer's silence timeout decides.
    """

    def __init__(self, address: str, keys: PeerKeys | None, role: str, cut_short_is_final: bool = True) -> None:
        self.address = address
        self.keys = keys
        self.role = role
        self.cut_short_is_final = cut_short_is_final
        self.failures = 0  # handshakes failed since the last one that succeeded
        self.succeeded = False

    def on_event(self, event: int, value: int) -> AuthenticationError | None:
        """Take one monitor event; return the error to give up with, if the refusal is final."""
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.failures, self.succeeded = 0, True
            return None
        if not event & HANDSHAKE_FAILED_EVENTS:
            return None
        self.failures += 1
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return AuthenticationError(self._refused_key(value))
        if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                return AuthenticationError(self._keys_on_one_side())
            return AuthenticationError(
                f"the handshake with {self.address} failed (ZMTP protocol error {value:#x}): check that it is a "
                f"scaler scheduler, and that it and this {self.role} both use keys or both do not"
            )
        if self.cut_short_is_final and not self.succeeded and self.suspicion() is not None:
            return AuthenticationError(self._wrong_scheduler_key())
        return None

    def suspicion(self) -> str | None:
        """What the handshakes cut short in a row suggest (a wrong scheduler key), once there are enough."""
        if self.keys is None or self.failures < NO_DETAIL_LIMIT:
            return None
        return self._wrong_scheduler_key()

    def timeout_error(self, timeout_seconds: float) -> DisconnectedError | None:
        """The error to raise when nothing answered in time, if failed handshakes may explain why."""
        if not self.failures:
            return None
        if self.keys is not None:
            return AuthenticationError(self._wrong_scheduler_key())
        return DisconnectedError(
            f"no handshake with the scheduler at {self.address} succeeded within {timeout_seconds:g}s "
            f"({self.failures} were cut short): it may require keys, or something on the way cuts connections. "
            f"{self._how_to_pass_keys()}"
        )

    def _refused_key(self, status: int) -> str:
        if status != 400:
            return (
                f"the scheduler at {self.address} could not check this {self.role}'s key (ZAP status {status}): "
                f"see the scheduler's log"
            )
        if self.keys is None:
            return f"the scheduler at {self.address} refused this {self.role}. {self._how_to_pass_keys()}"
        public = self.keys.public_key.decode()
        return (
            f"the scheduler at {self.address} refused this {self.role}'s key: its public key {public} "
            f"(from {self.keys.key_file}) is not on the scheduler's allow-list. Add the line "
            f"'{self.role} {public}' to the scheduler's {ALLOW_LIST} file and restart it, or use a key pair that is "
            f"on it ({_KEYGEN_ADVICE})"
        )

    def _keys_on_one_side(self) -> str:
        if self.keys is None:
            return (
                f"the scheduler at {self.address} requires keys and this {self.role} has none. "
                f"{self._how_to_pass_keys()}"
            )
        return (
            f"the scheduler at {self.address} runs without keys, but this {self.role} has them "
            f"({self.keys.key_file}): start the scheduler with `--keys-dir DIR` (keys_dir=DIR), "
            f"or connect without keys"
        )

    def _wrong_scheduler_key(self) -> str:
        assert self.keys is not None
        return (
            f"the scheduler at {self.address} cut off {self.failures} handshakes in a row. Either the scheduler "
            f"key {self.keys.scheduler_key_file} is not this scheduler's public key: copy scheduler.key from the "
            f"keys directory the scheduler was started with ({_KEYGEN_ADVICE}). Or the scheduler runs without "
            f"keys: start it with `--keys-dir DIR`, or connect without keys"
        )

    def _how_to_pass_keys(self) -> str:
        return (
            f"Pass keys_dir=DIR (`--keys-dir DIR`), where DIR holds this {self.role}'s {self.role}.key_secret and "
            f"the scheduler's scheduler.key from the `scaler_keygen DIR` run the scheduler's keys came from"
        )


def describe_refused_handshake(event: int, value: int) -> str | None:
    """For the scheduler's log: why a peer's handshake failed, when that is worth a warning.

    None for refusals by the allow-list (``zap.py`` logs those) and for handshakes cut short.
    """
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return "a peer connected without keys (or with keys, to a scheduler that has none)"
        if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            return "a peer's handshake did not decrypt: it has another scheduler's public key"
        return f"a peer's handshake broke the protocol (ZMTP error {value:#x})"
    return None  # cut short without detail: a peer that died or a network blip as often as a refusal
