"""The pure parts of CURVE security: version floor, loopback rule, key files, ZAP answers, handshake verdicts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import zmq
from zmq.utils import z85

from scaler import AuthenticationError, DisconnectedError, InsecureBindError
from scaler.cli.keygen import add_key, make_keys
from scaler.io import keys
from scaler.io.security import (
    NO_DETAIL_LIMIT,
    HandshakeWatch,
    PeerKeys,
    SchedulerKeys,
    check_bind,
    is_loopback,
    libzmq_is_supported,
    parse_version,
    require_libzmq,
)
from scaler.io.sockets import bind_router
from scaler.io.zap import AllowListAuthenticator, zap_reply

# -- the libzmq floor --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4.3.5", (4, 3, 5)), ("4.3", (4, 3)), ("4.3.2-rc1", (4, 3, 2)), ("10.0.1", (10, 0, 1)), ("", ()), ("x", ())],
)
def test_parse_version(text: str, expected: tuple[int, ...]) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize(
    ("found", "supported"),
    [
        ("4.3.2", True),
        ("4.3.5", True),
        ("4.4", True),
        ("5.0.0", True),
        ("4.10.0", True),  # compared as numbers, not as text
        ("4.3.1", False),
        ("4.2.9", False),
        ("4.3", False),  # 4.3 is 4.3.0
        ("3.9.9", False),
        ("garbage", False),
    ],
)
def test_libzmq_floor(found: str, supported: bool) -> None:
    assert libzmq_is_supported(found) is supported


def test_an_old_libzmq_is_refused_with_what_to_do() -> None:
    with pytest.raises(RuntimeError) as refused:
        require_libzmq("4.2.5")
    assert "4.2.5" in str(refused.value) and "4.3.2" in str(refused.value)
    assert "pip install -U pyzmq" in str(refused.value)
    require_libzmq()  # the one this test runs with is recent enough


# -- where a scheduler may bind ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("tcp://127.0.0.1:8516", True),
        ("tcp://127.1.2.3:8516", True),
        ("tcp://localhost:8516", True),
        ("tcp://[::1]:8516", True),
        ("tcp://[::ffff:127.0.0.1]:8516", True),
        ("ipc:///tmp/scaler.sock", True),
        ("inproc://scheduler", True),
        ("tcp://0.0.0.0:8516", False),
        ("tcp://*:8516", False),
        ("tcp://10.0.0.5:8516", False),
        ("tcp://[::]:8516", False),
        ("tcp://eth0:8516", False),
        ("tcp://scheduler.example.com:8516", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_a_public_bind_needs_keys_or_insecure(tmp_path: Path) -> None:
    with pytest.raises(InsecureBindError) as refused:
        check_bind("tcp://0.0.0.0:8516", None, insecure=False)
    message = str(refused.value)
    assert "scaler_keygen DIR" in message and "--keys-dir DIR" in message and "--insecure" in message
    check_bind("tcp://0.0.0.0:8516", None, insecure=True)
    check_bind("tcp://127.0.0.1:8516", None, insecure=False)
    make_keys(tmp_path)
    check_bind("tcp://0.0.0.0:8516", SchedulerKeys.load(tmp_path), insecure=False)


# -- key files ---------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keygen_writes_the_layout_with_private_secrets(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    instructions = make_keys(directory)
    names = {path.name for path in directory.iterdir()}
    assert names == {
        "scheduler.key",
        "scheduler.key_secret",
        "client.key",
        "client.key_secret",
        "worker.key",
        "worker.key_secret",
        "monitor.key",
        "monitor.key_secret",
        "manager.key",
        "manager.key_secret",
        "allowed_keys",
    }
    assert _mode(directory) == 0o700
    for name in ("scheduler", "client", "worker", "monitor", "manager"):
        assert _mode(directory / f"{name}.key_secret") == 0o600
        public, secret = keys.read_key_pair(directory / f"{name}.key_secret", name)
        assert zmq.curve_public(secret) == public == keys.read_public_key(directory / f"{name}.key", name)
    allowed = keys.read_allow_list(directory / "allowed_keys")
    assert allowed == {
        keys.read_public_key(directory / "client.key", "c"): "client",
        keys.read_public_key(directory / "worker.key", "w"): "worker",
        keys.read_public_key(directory / "monitor.key", "m"): "monitor",
        keys.read_public_key(directory / "manager.key", "m"): "manager",
    }
    assert "client.key_secret scheduler.key" in instructions
    assert "monitor.key_secret scheduler.key" in instructions
    with pytest.raises(ValueError, match="already holds"):
        make_keys(directory)


def test_keygen_add_puts_one_more_key_on_the_allow_list(tmp_path: Path) -> None:
    make_keys(tmp_path)
    add_key(tmp_path, "alice")
    assert _mode(tmp_path / "alice.key_secret") == 0o600
    allowed = keys.read_allow_list(tmp_path / "allowed_keys")
    assert allowed[keys.read_public_key(tmp_path / "alice.key", "alice")] == "alice"
    assert len(allowed) == 5  # client, worker, monitor, manager, alice
    for bad in ("alice", "scheduler", "../evil", ""):
        with pytest.raises(ValueError):
            add_key(tmp_path, bad)
    with pytest.raises(ValueError, match="scaler_keygen"):
        add_key(tmp_path / "missing", "bob")


def test_allow_list_parsing(tmp_path: Path) -> None:
    key = z85.encode(os.urandom(32))
    hashed = next(k for k in iter(lambda: z85.encode(os.urandom(32)), None) if b"#" in k)  # Z85 uses '#' too
    path = tmp_path / "allowed"
    path.write_text(f"# a comment\n\n  alice {key.decode()}  \nbob {hashed.decode()}\n")
    assert keys.read_allow_list(path) == {key: "alice", hashed: "bob"}
    for bad_line in (
        key.decode(),
        f"alice {key.decode()[:-1]}",
        f"alice {key.decode()}x",
        f"x# {key.decode()}",
        f"a b {key.decode()}",
    ):
        path.write_text(f"{bad_line}\n")
        with pytest.raises(ValueError, match="line 1"):
            keys.read_allow_list(path)


def test_a_public_key_file_is_not_a_key_pair(tmp_path: Path) -> None:
    make_keys(tmp_path)
    with pytest.raises(ValueError, match="not the .key file"):
        keys.read_key_pair(tmp_path / "client.key", "client key pair")
    text = (tmp_path / "client.key_secret").read_text()
    other_public = keys.read_public_key(tmp_path / "worker.key", "w").decode()
    own_public = keys.read_public_key(tmp_path / "client.key", "c").decode()
    damaged = tmp_path / "damaged.key_secret"
    damaged.write_text(text.replace(own_public, other_public))
    with pytest.raises(ValueError, match="damaged"):
        keys.read_key_pair(damaged, "client key pair")


# -- loading a role's keys ---------------------------------------------------------------------


def test_peer_keys_from_a_directory_or_files(tmp_path: Path) -> None:
    make_keys(tmp_path)
    assert PeerKeys.load("client") is None
    from_dir = PeerKeys.load("worker", keys_dir=tmp_path)
    assert from_dir is not None
    assert from_dir.key_file == str(tmp_path / "worker.key_secret")
    assert from_dir.scheduler_key == keys.read_public_key(tmp_path / "scheduler.key", "s")
    assert "secret" not in repr(from_dir).replace("key_secret", "")  # the secret never shows in logs
    host = tmp_path / "client-host"  # what a client host holds: its key pair and the scheduler's public key
    host.mkdir()
    for name in ("client.key_secret", "scheduler.key"):
        (host / name).write_bytes((tmp_path / name).read_bytes())
    assert PeerKeys.load("client", keys_dir=host) is not None
    explicit = PeerKeys.load("client", key_file=host / "client.key_secret", scheduler_key_file=host / "scheduler.key")
    assert explicit is not None and explicit.public_key == keys.read_public_key(tmp_path / "client.key", "c")
    with pytest.raises(ValueError, match="scheduler_key_file"):
        PeerKeys.load("client", key_file=host / "client.key_secret")
    with pytest.raises(ValueError, match="worker.key_secret"):
        PeerKeys.load("worker", keys_dir=host)
    with pytest.raises(ValueError, match="scaler_keygen"):
        PeerKeys.load("client", keys_dir=tmp_path / "nowhere")


def test_scheduler_keys_need_a_non_empty_allow_list(tmp_path: Path) -> None:
    make_keys(tmp_path)
    loaded = SchedulerKeys.load(tmp_path)
    assert loaded is not None and set(loaded.allowed.values()) == {"client", "worker", "monitor", "manager"}
    assert SchedulerKeys.load() is None
    empty = tmp_path / "empty"
    empty.write_text("# nobody\n")
    with pytest.raises(ValueError, match="holds no key"):
        SchedulerKeys.load(tmp_path, allow_list_file=empty)
    with pytest.raises(ValueError, match="allow_list_file"):
        SchedulerKeys.load(key_file=tmp_path / "scheduler.key_secret")


# -- ZAP answers -------------------------------------------------------------------------------


def _zap_request(mechanism: bytes, *credentials: bytes) -> list[bytes]:
    return [b"1.0", b"7", b"scaler", b"10.0.0.9", b"", mechanism, *credentials]


def test_zap_accepts_only_listed_curve_keys() -> None:
    listed, unlisted = os.urandom(32), os.urandom(32)
    allowed = {z85.encode(listed): "alice"}
    reply, refused = zap_reply(_zap_request(b"CURVE", listed), allowed)
    assert reply == [b"1.0", b"7", b"200", b"OK", b"alice", b""] and refused is None
    reply, refused = zap_reply(_zap_request(b"CURVE", unlisted), allowed)
    assert reply[2] == b"400" and refused is not None
    assert z85.encode(unlisted).decode() in refused and "10.0.0.9" in refused
    for request in (_zap_request(b"NULL"), _zap_request(b"PLAIN", b"user", b"pass"), _zap_request(b"CURVE", b"short")):
        reply, refused = zap_reply(request, allowed)
        assert reply[2] == b"400" and refused is not None
    reply, refused = zap_reply([b"9.9", b"7"], allowed)
    assert reply[:3] == [b"1.0", b"7", b"500"] and refused is not None


# -- handshake verdicts ------------------------------------------------------------------------


@pytest.fixture
def peer_keys(tmp_path: Path) -> PeerKeys:
    make_keys(tmp_path)
    loaded = PeerKeys.load("client", keys_dir=tmp_path)
    assert loaded is not None
    return loaded


def test_an_allow_list_refusal_is_final_and_names_the_key(peer_keys: PeerKeys) -> None:
    watch = HandshakeWatch("tcp://h:1", peer_keys, "client")
    error = watch.on_event(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400)
    assert isinstance(error, AuthenticationError)
    assert peer_keys.public_key.decode() in str(error) and peer_keys.key_file in str(error)
    assert "allowed_keys" in str(error)


def test_keys_on_one_side_only_is_final_either_way(peer_keys: PeerKeys) -> None:
    mismatch = zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
    plain = HandshakeWatch("tcp://h:1", None, "client").on_event(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, mismatch)
    assert isinstance(plain, AuthenticationError) and "requires keys" in str(plain) and "keys_dir" in str(plain)
    keyed = HandshakeWatch("tcp://h:1", peer_keys, "worker").on_event(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, mismatch)
    assert isinstance(keyed, AuthenticationError) and "runs without keys" in str(keyed)


def test_handshakes_cut_short_are_final_only_for_a_connecting_keyed_client(peer_keys: PeerKeys) -> None:
    cut = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    keyed = HandshakeWatch("tcp://h:1", peer_keys, "client")
    for _ in range(NO_DETAIL_LIMIT - 1):
        assert keyed.on_event(cut, 32) is None
    error = keyed.on_event(cut, 32)
    assert isinstance(error, AuthenticationError) and peer_keys.scheduler_key_file in str(error)
    connected = HandshakeWatch("tcp://h:1", peer_keys, "client")  # once in, cut short is a blip, not a key
    connected.on_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0)
    assert all(connected.on_event(cut, 104) is None for _ in range(10 * NO_DETAIL_LIMIT))
    worker = HandshakeWatch("tcp://h:1", peer_keys, "worker", cut_short_is_final=False)  # its death timeout decides
    assert all(worker.on_event(cut, 32) is None for _ in range(10 * NO_DETAIL_LIMIT))
    assert peer_keys.scheduler_key_file in (worker.suspicion() or "")
    plain = HandshakeWatch("tcp://h:1", None, "client")
    assert all(plain.on_event(cut, 104) is None for _ in range(10 * NO_DETAIL_LIMIT))  # a blip, or a proxy
    assert plain.suspicion() is None
    at_timeout = plain.timeout_error(5)
    assert type(at_timeout) is DisconnectedError and "keys_dir" in str(at_timeout)
    assert HandshakeWatch("tcp://h:1", None, "client").timeout_error(5) is None
    assert keyed.on_event(zmq.EVENT_CONNECTED, 12) is None  # other events are not handshakes


@pytest.mark.timeout(30)
def test_the_allow_list_fails_closed_when_its_thread_is_gone(tmp_path) -> None:
    """libzmq lets every key in when no ZAP handler answers, unless the socket enforces the domain."""
    make_keys(str(tmp_path / "keys"))
    keys = SchedulerKeys.load(str(tmp_path / "keys"))
    intruder_public, intruder_secret = zmq.curve_keypair()
    context = zmq.Context()
    authenticator = AllowListAuthenticator(context, keys.allowed)
    router = bind_router(context, "tcp://127.0.0.1:0", keys)
    address = router.getsockopt(zmq.LAST_ENDPOINT).decode()

    def intruder_gets_in() -> bool:
        peer_context = zmq.Context()
        peer = peer_context.socket(zmq.DEALER)
        peer.curve_secretkey, peer.curve_publickey, peer.curve_serverkey = (
            intruder_secret,
            intruder_public,
            keys.public_key,
        )
        peer.connect(address)
        peer.send(b"hello")
        got = bool(router.poll(1500))
        if got:
            router.recv_multipart()
        peer.close(0)
        peer_context.term()
        return got

    try:
        assert not intruder_gets_in()
        authenticator.stop()  # as if its thread had died
        assert not intruder_gets_in()
    finally:
        router.close(0)
        context.term()
