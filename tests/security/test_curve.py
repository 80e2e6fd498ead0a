"""CURVE keys with real processes on 127.0.0.1: who gets in, how fast a refusal is told, and the bind rule.

Each process is given only the key files its host would hold across machines: the scheduler its key
pair and the allow-list, a worker or a client its own key pair and the scheduler's public key.
Refusal tests give the client a long connect timeout (``CONNECT_TIMEOUT``) and check that the
``AuthenticationError`` comes well within it (``FAST``), not when it runs out.
"""

from __future__ import annotations

import pickle
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest
import zmq

from scaler import AuthenticationError, Client, Cluster, InsecureBindError, SchedulerClusterCombo
from scaler.cli.keygen import make_keys
from scaler.io.security import PeerKeys, SchedulerKeys
from scaler.io.sockets import bind_router, connect_dealer, free_tcp_address
from scaler.io.zap import AllowListAuthenticator
from scaler.protocol.codec import encode_one
from scaler.protocol.messages import ClientHeartbeat, Message
from scaler.scheduler.server import SchedulerServer
from scaler.scheduler.state import Instruction
from tests.faults.support import agent_of
from tests.integration.conftest import descendants, wait_no_descendants
from tests.security import curve_tasks

cloudpickle.register_pickle_by_value(curve_tasks)

CONNECT_TIMEOUT = 20.0
FAST = 5.0  # a refusal must be told this soon; CONNECT_TIMEOUT is what waiting it out would take

# -- keys, hosts and processes -----------------------------------------------------------------


@pytest.fixture(scope="module")
def key_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two independent ``scaler_keygen`` sets: ours (the scheduler's) and another one."""
    root = tmp_path_factory.mktemp("keys")
    make_keys(root / "ours")
    make_keys(root / "other")
    return root / "ours", root / "other"


def host_dir(target: Path, source: Path, *names: str) -> Path:
    """A directory holding only ``names`` from ``source``, as a host would after the copy."""
    target.mkdir(parents=True)
    for name in names:
        shutil.copy2(source / name, target / name)  # keeps mode 0600
    return target


def start_scheduler(address: str, *flags: str) -> subprocess.Popen[bytes]:
    """``scaler_scheduler`` as its own process; returns once it accepts TCP connections."""
    command = [sys.executable, "-m", "scaler.cli.scheduler", address, "--logging-level=WARNING", *flags]
    process = subprocess.Popen(command)
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, "the scheduler exited"
        try:
            socket.create_connection(("127.0.0.1" if host == "0.0.0.0" else host, int(port)), timeout=1).close()
            return process
        except OSError:
            assert time.monotonic() < deadline, "the scheduler never listened"
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    assert process.wait(timeout=15) == 0


class ThreadScheduler:
    """A keyed ``SchedulerServer`` on a thread, whose state records the source of every message it handles."""

    def __init__(self, keys_dir: Path) -> None:
        self.address = free_tcp_address()
        self.server = SchedulerServer(self.address, keys=SchedulerKeys.load(keys_dir))
        self.sources: list[bytes] = []
        handle = self.server.state.handle

        def recording(source: bytes, message: Message, now: float, dispatch: bool = True) -> list[Instruction]:
            self.sources.append(source)
            return handle(source, message, now, dispatch)

        self.server.state.handle = recording  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self.server.run, name="scheduler", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.stop()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()


def worker_command(address: str, key_file: Path, scheduler_key_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "scaler.cli.worker",
        address,
        f"--key-file={key_file}",
        f"--scheduler-key-file={scheduler_key_file}",
        "--death-timeout-seconds=60",
        "--logging-paths=/dev/stderr",  # the tests read why a worker was refused from its stderr
    ]


@pytest.fixture(scope="module")
def keyed_cluster(key_sets: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler with keys and one worker, as processes, each with only its host's files; yields the address."""
    ours, _ = key_sets
    hosts = tmp_path_factory.mktemp("hosts")
    scheduler_host = host_dir(hosts / "scheduler", ours, "scheduler.key_secret", "allowed_keys")
    worker_host = host_dir(hosts / "worker", ours, "worker.key_secret", "scheduler.key")
    address = free_tcp_address()
    scheduler = start_scheduler(address, f"--keys-dir={scheduler_host}")
    workers = Cluster(address, 1, keys_dir=worker_host, logging_level="WARNING")
    workers.start()
    try:
        yield address
    finally:
        workers.shutdown()
        stop(scheduler)


@pytest.fixture(scope="module")
def client_host(key_sets: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a client host holds: its key pair and the scheduler's public key, nothing else."""
    return host_dir(tmp_path_factory.mktemp("hosts") / "client", key_sets[0], "client.key_secret", "scheduler.key")


# -- who gets in ------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_keyed_clients_and_workers_run_tasks_nested_and_pickled(keyed_cluster: str, client_host: Path) -> None:
    with Client(keyed_cluster, keys_dir=client_host, timeout_seconds=30) as client:
        assert client.submit(pow, 2, 10).result(timeout=30) == 1024
        assert client.submit(curve_tasks.nested_pow, 5).result(timeout=30) == 32  # Client() in a task: worker keys
        assert client.submit(curve_tasks.pow_through, client, 2).result(timeout=30) == 9  # a Client as an argument
        # A client unpickled in another process connects with the key files it was made with.
        code = "import pickle, sys; print(pickle.loads(sys.stdin.buffer.read()).submit(pow, 2, 3).result(timeout=20))"
        other = subprocess.run(
            [sys.executable, "-c", code], input=pickle.dumps(client), capture_output=True, timeout=60
        )
        assert other.returncode == 0, other.stderr.decode()
        assert other.stdout.strip() == b"8"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", ["no keys", "wrong scheduler key", "key not on the allow-list"])
def test_a_refused_client_is_told_fast_what_to_check(
    keyed_cluster: str, key_sets: tuple[Path, Path], case: str
) -> None:
    ours, other = key_sets
    keys, told = {
        "no keys": ({}, "requires keys"),
        "wrong scheduler key": (
            {"key_file": ours / "client.key_secret", "scheduler_key_file": other / "scheduler.key"},
            str(other / "scheduler.key"),
        ),
        "key not on the allow-list": (
            {"key_file": other / "client.key_secret", "scheduler_key_file": ours / "scheduler.key"},
            "not on the scheduler's allow-list",
        ),
    }[case]
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as refused:
        Client(keyed_cluster, timeout_seconds=CONNECT_TIMEOUT, **keys)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert elapsed < FAST, f"{case}: refused after {elapsed:.2f}s"
    assert told in str(refused.value) and "scaler_keygen" in str(refused.value)


@pytest.mark.timeout(60)
def test_a_keyed_client_of_a_scheduler_without_keys_is_told(key_sets: tuple[Path, Path]) -> None:
    address = free_tcp_address()
    scheduler = start_scheduler(address)
    try:
        started = time.monotonic()
        with pytest.raises(AuthenticationError, match="runs without keys"):
            Client(address, keys_dir=key_sets[0], timeout_seconds=CONNECT_TIMEOUT)
        assert time.monotonic() - started < FAST
    finally:
        stop(scheduler)


@pytest.mark.timeout(90)
def test_refused_peers_never_reach_the_scheduler_state(key_sets: tuple[Path, Path]) -> None:
    ours, other = key_sets
    before = descendants()
    scheduler = ThreadScheduler(ours)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        unlisted = PeerKeys.load(
            "client", key_file=other / "client.key_secret", scheduler_key_file=ours / "scheduler.key"
        )
        wrong_server = PeerKeys.load(
            "client", key_file=ours / "client.key_secret", scheduler_key_file=other / "scheduler.key"
        )
        peers = [None, unlisted, wrong_server]  # raw sockets: no keys, a key not on the list, a wrong scheduler key
        raw = [connect_dealer(context, scheduler.address, b"intruder-%d" % i, keys) for i, keys in enumerate(peers)]
        for sock in raw:
            sock.send(encode_one(ClientHeartbeat(time.time())), zmq.NOBLOCK)
        for keys in ({}, {"keys_dir": other}):
            with pytest.raises(AuthenticationError):
                Client(scheduler.address, timeout_seconds=CONNECT_TIMEOUT, **keys)  # type: ignore[arg-type]
        worker = subprocess.run(
            worker_command(scheduler.address, other / "worker.key_secret", ours / "scheduler.key"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert worker.returncode == 1 and "not on the scheduler's allow-list" in worker.stderr, worker.stderr
        time.sleep(0.5)  # anything that got through would have been handled by now
        assert scheduler.sources == []
        statistics = scheduler.server.state.statistics()
        assert statistics["clients"] == statistics["workers"] == 0
        with Client(scheduler.address, keys_dir=ours, timeout_seconds=CONNECT_TIMEOUT):
            assert scheduler.sources  # the recording works: a listed client's messages do arrive
        for sock in raw:
            sock.close(linger=0)
    finally:
        context.term()
        scheduler.close()
    assert wait_no_descendants(before) == set()


@pytest.mark.timeout(90)
def test_an_unlisted_worker_exits_and_never_gets_a_task(key_sets: tuple[Path, Path]) -> None:
    ours, other = key_sets
    before = descendants()
    scheduler = ThreadScheduler(ours)
    try:
        with Client(scheduler.address, keys_dir=ours, timeout_seconds=CONNECT_TIMEOUT) as client:
            future = client.submit(curve_tasks.processor_pid)  # the only worker, next, is unlisted
            started = time.monotonic()
            unlisted = subprocess.run(
                worker_command(scheduler.address, other / "worker.key_secret", ours / "scheduler.key"),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert unlisted.returncode == 1, unlisted.stderr
            assert "not on the scheduler's allow-list" in unlisted.stderr
            assert time.monotonic() - started < 15  # it quits at once, not after its 60 s death timeout
            assert not future.done()
            statistics = scheduler.server.state.statistics()
            assert (statistics["workers"], statistics["queued"], statistics["assigned"]) == (0, 1, 0)
            listed = Cluster(scheduler.address, 1, keys_dir=ours, logging_level="WARNING")
            listed.start()
            try:
                assert agent_of(future.result(timeout=30), listed.pids()) is not None  # the listed worker ran it
            finally:
                listed.shutdown()
    finally:
        scheduler.close()
    assert wait_no_descendants(before) == set()


# -- binding -----------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_a_public_bind_needs_keys_or_insecure(key_sets: tuple[Path, Path]) -> None:
    port = free_tcp_address().rpartition(":")[2]
    public, local = f"tcp://0.0.0.0:{port}", f"tcp://127.0.0.1:{port}"
    started = time.monotonic()
    refused = subprocess.run(
        [sys.executable, "-m", "scaler.cli.scheduler", public], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 2
    for hint in ("scaler_keygen DIR", "--keys-dir DIR", "--insecure"):
        assert hint in refused.stderr, refused.stderr
    assert time.monotonic() - started < 10
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    with pytest.raises(InsecureBindError):  # the bind itself refuses, so every way to start a scheduler does
        bind_router(context, public)
    context.term()
    before = descendants()
    with pytest.raises(InsecureBindError, match="insecure=True"):
        SchedulerClusterCombo(address=public, n_workers=1)
    assert descendants() == before  # refused before any process started
    for flags, keys in (["--insecure"], {}), ([f"--keys-dir={key_sets[0]}"], {"keys_dir": key_sets[0]}):
        scheduler = start_scheduler(public, *flags)
        try:
            with Client(local, timeout_seconds=CONNECT_TIMEOUT, **keys) as client:  # type: ignore[arg-type]
                assert client.statistics()["pending"] == 0
        finally:
            stop(scheduler)


@pytest.mark.timeout(30)
def test_a_curve_router_is_never_bound_without_its_allow_list(key_sets: tuple[Path, Path]) -> None:
    keys = SchedulerKeys.load(key_sets[0])
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with pytest.raises(RuntimeError, match="AllowListAuthenticator"):  # libzmq would let every key in
            bind_router(context, free_tcp_address(), keys)
        authenticator = AllowListAuthenticator(context, keys.allowed if keys else {})
        try:
            bind_router(context, free_tcp_address(), keys).close(linger=0)
            with pytest.raises(zmq.ZMQError):  # one handler per context
                AllowListAuthenticator(context, {})
        finally:
            authenticator.stop()
    finally:
        context.term()


# -- scaler_keygen -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_keygen_command_layout_permissions_and_instructions(tmp_path: Path) -> None:
    directory = tmp_path / "cluster-keys"
    command = [sys.executable, "-m", "scaler.cli.keygen", str(directory)]
    made = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    secrets = {
        "scheduler.key_secret",
        "client.key_secret",
        "worker.key_secret",
        "monitor.key_secret",
        "manager.key_secret",
    }
    publics = {"scheduler.key", "client.key", "worker.key", "manager.key", "monitor.key", "allowed_keys"}
    assert {path.name for path in directory.iterdir()} == secrets | publics
    assert directory.stat().st_mode & 0o777 == 0o700
    for name in secrets:
        assert (directory / name).stat().st_mode & 0o777 == 0o600, name
    scheduler_keys = SchedulerKeys.load(directory)
    assert scheduler_keys is not None and sorted(scheduler_keys.allowed.values()) == [
        "client",
        "manager",
        "monitor",
        "worker",
    ]
    for role in ("client", "worker", "monitor"):
        peer = PeerKeys.load(role, keys_dir=directory)
        assert peer is not None and scheduler_keys.allowed[peer.public_key] == role
        assert peer.scheduler_key == scheduler_keys.public_key
    assert scheduler_keys.public_key not in scheduler_keys.allowed
    for line in (
        "scheduler host: scheduler.key_secret allowed_keys",
        "client hosts:   client.key_secret scheduler.key",
    ):
        assert line in made.stdout
    contents = {path.name: path.read_bytes() for path in directory.iterdir()}
    again = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert again.returncode != 0 and "already holds" in again.stderr
    assert {path.name: path.read_bytes() for path in directory.iterdir()} == contents  # nothing overwritten
    added = subprocess.run([*command, "--add", "alice"], capture_output=True, text=True, timeout=30)
    assert added.returncode == 0, added.stderr
    reloaded = SchedulerKeys.load(directory)
    assert reloaded is not None
    assert sorted(reloaded.allowed.values()) == ["alice", "client", "manager", "monitor", "worker"]
    assert subprocess.run(["scaler_keygen", "--help"], capture_output=True, timeout=30).returncode == 0
