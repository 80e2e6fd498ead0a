"""Shared pieces of the hostile-input tests (``test_hostile_*.py``).

- ``HostileScheduler``: a real scheduler run as ``python -c SCHEDULER_SCRIPT`` (so that an audit hook
  can be installed before scaler is imported), its log in a file, and real workers that offer the
  capability ``legit``.
- ``RawPeer``: a bare zmq DEALER that sends whatever frames a test likes and reads what comes back.
- ``Bystander``: the pass criterion every test ends with. A legitimate client keeps tasks in flight
  across the attack (they wait for a release file, and ask for ``legit``, so a fake worker is never
  given them); afterwards the scheduler must still run, those tasks must end with the right results,
  each exactly once, and a fresh ``Client`` must round-trip ``round(3.14)`` within a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import itertools
import os
import pickle
import subprocess
import sys
import time
import typing
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import psutil
import zmq

from scaler import Client
from scaler.cluster.cluster import Cluster
from scaler.io.sockets import free_tcp_address
from scaler.protocol.buffers import decode_parts
from scaler.protocol.codec import encode
from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ArgumentKind,
    ClientHeartbeat,
    ClientHeartbeatEcho,
    DisconnectRequest,
    DisconnectResponse,
    Message,
    Record,
    Task,
    TaskArgument,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
)
from scaler.protocol.version import PROTOCOL_VERSION
from tests.security import hostile_tasks

AnswerT = TypeVar("AnswerT", bound=Message)

LEGIT = {"legit": 1}  # what real workers offer and bystander tasks ask for; fake workers never offer it
NOWHERE = {"nowhere": 1}  # no worker offers it: a task that asks for it stays queued, where a cancel finds it
ROUND_TRIP_LIMIT_SECONDS = 1.0
# What the scheduler sends a client unasked (flow control). No test here is about it, so RawPeer
# drops it; named, not imported, so that these tests do not follow every change of that protocol.
UNSOLICITED = frozenset({"TaskCredit"})

# The scheduler's entry point behind an optional audit hook. With HOSTILE_AUDIT_MARKER set, every
# audit event that unpickling or running a command raises in the scheduler process, and every open()
# of a path under HOSTILE_AUDIT_WATCH, is written to the marker file. HOSTILE_AUDIT_CONTROL (a hex
# pickle) is the control case: the process unpickles it under the hook and exits, without serving.
SCHEDULER_SCRIPT = r"""
import os, sys
marker = os.environ.get("HOSTILE_AUDIT_MARKER")
if marker:
    events = {"pickle.find_class", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen"}
    watched = os.environ["HOSTILE_AUDIT_WATCH"]
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def hook(event, args):
        if event in events or (event == "open" and args and watched in str(args[0])):
            os.write(fd, f"{event} {str(args)[:200]}\n".encode())

    sys.addaudithook(hook)
    if os.environ.get("HOSTILE_AUDIT_CONTROL"):
        import pickle
        pickle.loads(bytes.fromhex(os.environ["HOSTILE_AUDIT_CONTROL"]))
        sys.exit(0)
from scaler.cli.scheduler import main
main(sys.argv[1:])
"""


class _OpenCanary:
    """Unpickling this creates ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return open, (self.path, "w")


class _SystemCanary:
    """Unpickling this runs ``touch path`` in a shell."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (f"touch {self.path}",)


def canary_pickle(directory: Path) -> bytes:
    """A pickle whose loading creates ``directory/opened`` and ``directory/touched``."""
    return pickle.dumps([_OpenCanary(str(directory / "opened")), _SystemCanary(str(directory / "touched"))])


def canary_fired(directory: Path) -> list[str]:
    """Which of a canary's files exist."""
    return [name for name in ("opened", "touched") if (directory / name).exists()]


def audit_environment(marker: Path, watched: Path, control: bytes | None = None) -> dict[str, str]:
    """Environment variables that turn SCHEDULER_SCRIPT's audit hook on."""
    env = {"HOSTILE_AUDIT_MARKER": str(marker), "HOSTILE_AUDIT_WATCH": str(watched)}
    if control is not None:
        env["HOSTILE_AUDIT_CONTROL"] = control.hex()
    return env


class HostileScheduler:
    """A real scheduler subprocess (log in ``log_path``) and ``n_workers`` real workers offering ``legit``."""

    def __init__(self, directory: Path, n_workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.address = free_tcp_address()
        self.log_path = directory / f"scheduler-{uuid.uuid4().hex[:6]}.log"
        command = [sys.executable, "-c", SCHEDULER_SCRIPT, self.address, "--logging-level=INFO", "--exit-with-parent"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        self._clusters: list[Cluster] = []
        if n_workers:
            self.start_workers(n_workers)

    def start_workers(self, n_workers: int, capabilities: dict[str, int] | None = None) -> None:
        """Start real workers offering ``capabilities`` (by default ``legit``, for the bystander's tasks)."""
        offered = LEGIT if capabilities is None else capabilities
        cluster = Cluster(
            self.address, n_workers, logging_level="WARNING", exit_with_parent=True, per_worker_capabilities=offered
        )
        cluster.start()
        self._clusters.append(cluster)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss(self) -> int:
        """The scheduler's resident memory now, in bytes."""
        return int(psutil.Process(self.pid).memory_info().rss)

    def reset_peak_rss(self) -> None:
        """Start ``peak_rss`` again from the memory in use now (Linux 4.0 and later)."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as clear_refs:
            clear_refs.write("5")

    def peak_rss(self) -> int:
        """The most resident memory the scheduler has had since ``reset_peak_rss`` (Linux VmHWM), in bytes."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/PID/status")

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_lines()[-lines:])

    def close(self) -> None:
        for cluster in self._clusters:
            cluster.shutdown()
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> HostileScheduler:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class RawPeer:
    """A bare DEALER socket: no heartbeats, no checks, whatever frames the test sends.

    ``exchange`` and the syncs built on it return the messages received, less ``UNSOLICITED`` ones.
    """

    def __init__(self, address: str, identity: bytes | None = None, context: zmq.Context[Any] | None = None) -> None:
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.identity = identity or f"hostile|{uuid.uuid4().hex[:8]}".encode()
        self.capabilities: dict[str, int] = {}  # what it offers, once it poses as a worker
        self._backlog: list[Message] = []  # decoded, not yet returned
        self.socket: zmq.Socket[Any] = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, self.identity)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 0)  # a flood is queued, never blocks or drops
        self.socket.setsockopt(zmq.RCVHWM, 0)
        self.socket.connect(address)

    def send_frames(self, frames: list[bytes]) -> None:
        """One zmq message of these frames (the scheduler's ROUTER sees the identity in front)."""
        self.socket.send_multipart(frames)

    def send(self, *messages: Message) -> None:
        self.socket.send(encode(messages))

    def receive_raw(self, timeout: float, count: int | None = None) -> list[bytes]:
        """The frames that arrive within ``timeout`` seconds (or the first ``count`` of them)."""
        assert not self._backlog, "messages read by exchange() are still waiting: read them with it"
        frames: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(frames) != count and self.socket.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            frames.append(self.socket.recv())
        return frames

    def exchange(self, message: Message, answer: type[AnswerT], timeout: float = 15.0) -> tuple[AnswerT, list[Message]]:
        """Send ``message`` and read until a message of type ``answer`` comes: return it, and all read before it.

        The scheduler handles one connection's frames in order, so when the answer comes, every
        frame this peer sent earlier has been handled.
        """
        self.send(message)
        received: list[Message] = []
        deadline = time.monotonic() + timeout
        while True:
            while self._backlog:
                item = self._backlog.pop(0)
                if type(item) is answer:
                    return item, received
                received.append(item)
            remaining = deadline - time.monotonic()
            assert remaining > 0 and self.socket.poll(int(remaining * 1000)), f"no {answer.__name__} in {timeout}s"
            # What follows the answer in its frame is kept for the next call.
            parts = self.socket.recv_multipart()  # big payloads come as extra frames (protocol/buffers.py)
            self._backlog = [item for item in decode_parts(parts) if type(item).__name__ not in UNSOLICITED]

    def ping(self, timeout: float = 15.0) -> list[Message]:
        """Sync without registering as anything (a non-worker's DisconnectRequest is only answered).

        Returns what came before the answer.
        """
        return self.exchange(DisconnectRequest(), DisconnectResponse, timeout)[1]

    def client_sync(self, timeout: float = 15.0) -> list[Message]:
        """Sync as a client (a heartbeat makes this peer one); returns what came before the echo."""
        return self.exchange(ClientHeartbeat(time.time()), ClientHeartbeatEcho, timeout)[1]

    def worker_sync(self, capabilities: dict[str, int] | None = None) -> list[Message]:
        """Sync as a worker: the first call poses as one (a worker is whoever sends a WorkerHeartbeat).

        Every heartbeat states the worker's capabilities: ``capabilities`` replaces those of earlier calls.
        """
        if capabilities is not None:
            self.capabilities = dict(capabilities)
        heartbeat = WorkerHeartbeat(time.time(), 0, 0.0, 0, dict(self.capabilities))
        return self.exchange(heartbeat, WorkerHeartbeatEcho)[1]

    def leave_as_worker(self) -> list[Message]:
        """A fake worker leaves (whatever it held is requeued for real workers)."""
        return self.exchange(DisconnectRequest(), DisconnectResponse)[1]

    def close(self) -> None:
        self.socket.close(linger=0)
        if self._own_context:
            self.context.term()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def wire_frame(*wire_messages: Any, version: Any = PROTOCOL_VERSION) -> bytes:
    """A hand-built frame ``[version, [TYPE, field, ...], ...]`` for fields of any type."""
    frame: bytes = msgpack.packb([version, *wire_messages], use_bin_type=True)
    return frame


def parked_task(task_id: bytes | None = None) -> Task:
    """A well-formed task that stays queued (no worker offers ``nowhere``); its function is never run."""
    function = b"not a pickle, and never unpickled"
    argument = TaskArgument("", ArgumentKind.INLINE, b"an argument")
    return Task(task_id or os.urandom(16), content_id(function), function, [argument], 0, capabilities=dict(NOWHERE))


def _sample(annotation: Any, leaf: Callable[[str], bytes], path: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin is list:
        return [_sample(typing.get_args(annotation)[0], leaf, f"{path}[0]")]
    if origin is dict:
        return dict(NOWHERE)
    if annotation is bytes:
        return leaf(path)
    if annotation in (str, int, float, bool):
        return {str: "text", int: 1, float: 1.0, bool: False}[annotation]
    if isinstance(annotation, type) and issubclass(annotation, enum.IntEnum):
        return next(iter(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Record):
        hints = typing.get_type_hints(annotation)
        fields = dataclasses.fields(annotation)  # type: ignore[arg-type]
        return annotation(*[_sample(hints[f.name], leaf, f"{path}.{f.name}") for f in fields])
    raise TypeError(f"no sample for fields of type {annotation!r}: teach _sample about it")


def sample_message(kind: type[Message], leaf: Callable[[str], bytes] = lambda path: b"x" * 16) -> Message:
    """A message of ``kind`` built from its annotations; ``leaf(path)`` gives each bytes field's value."""
    hints = typing.get_type_hints(kind)
    fields = dataclasses.fields(kind)  # type: ignore[arg-type]
    message: Message = kind(*[_sample(hints[f.name], leaf, f"{kind.__name__}.{f.name}") for f in fields])
    return message


def with_each_bytes_field(kind: type[Message], payload: bytes) -> Iterator[tuple[str, Message]]:
    """(path, message) for each bytes field of ``kind`` (nested ones too): ``payload`` there, filler elsewhere."""
    for index in itertools.count():
        placed: list[str] = []
        message = sample_message(kind, _nth_leaf(index, payload, placed))
        if not placed:
            return
        yield placed[0], message


def _nth_leaf(index: int, payload: bytes, placed: list[str]) -> Callable[[str], bytes]:
    """A ``leaf`` for ``sample_message`` that puts ``payload`` in the index-th bytes field (noting its path)."""
    counter = itertools.count()

    def leaf(path: str) -> bytes:
        if next(counter) == index:
            placed.append(path)
            return payload
        return b"x" * 16

    return leaf


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.01)


def fresh_round_trip(address: str) -> float:
    """Seconds for a new Client to connect and get ``round(3.14)`` back from a worker."""
    started = time.monotonic()
    client = Client(address, timeout_seconds=5)
    try:
        value = client.submit(round, 3.14).result(timeout=5)
        elapsed = time.monotonic() - started
    finally:
        client.disconnect()
    assert value == 3
    return elapsed


class Bystander:
    """A legitimate client whose tasks stay in flight across an attack; ``check()`` is the pass criterion."""

    def __init__(self, scheduler: HostileScheduler, count: int = 4, wait_started: bool = True) -> None:
        assert scheduler.alive(), f"the scheduler is dead:\n{scheduler.log_tail()}"
        self.scheduler = scheduler
        self.release = scheduler.directory / f"release-{uuid.uuid4().hex[:6]}"
        self.client = Client(scheduler.address, timeout_seconds=30)
        self.callbacks = [0] * count
        self.futures = []
        for index in range(count):
            future = self.client.submit_verbose(
                hostile_tasks.square_when_released, (str(self.release), index), {}, capabilities=LEGIT
            )
            future.add_done_callback(lambda _, index=index: self._called(index))
            self.futures.append(future)
        if wait_started:  # a real worker runs one of them: the cluster is up before the attack starts
            wait_for(lambda: any(self._started()) or not scheduler.alive(), 30, "a bystander task to start")
            assert scheduler.alive(), f"the scheduler died:\n{scheduler.log_tail()}"

    def _called(self, index: int) -> None:
        self.callbacks[index] += 1

    def _started(self) -> Iterable[bool]:
        return (Path(f"{self.release}.started.{index}").exists() for index in range(len(self.futures)))

    @property
    def task_ids(self) -> list[bytes]:
        return [future.task_id for future in self.futures]

    def check(self) -> float:
        """The scheduler lives, the in-flight tasks end right and once, and a fresh client is served in < 1 s.

        Returns the fresh client's round-trip time.
        """
        assert self.scheduler.alive(), f"the scheduler died:\n{self.scheduler.log_tail()}"
        assert not any(future.done() for future in self.futures), "bystander tasks ended before the attack did"
        self.release.touch()
        results = [future.result(timeout=30) for future in self.futures]
        assert results == [index * index for index in range(len(self.futures))]
        wait_for(lambda: all(self.callbacks), 5, "the bystander's done callbacks")
        time.sleep(0.05)  # a second notification would come now
        assert self.callbacks == [1] * len(self.futures)
        elapsed = fresh_round_trip(self.scheduler.address)
        assert elapsed < ROUND_TRIP_LIMIT_SECONDS, f"a fresh client's round trip took {elapsed:.3f}s"
        assert self.scheduler.alive(), f"the scheduler died:\n{self.scheduler.log_tail()}"
        return elapsed

    def close(self) -> None:
        self.release.touch()  # never leave a worker stuck in a task
        with contextlib.suppress(Exception):
            self.client.disconnect()
