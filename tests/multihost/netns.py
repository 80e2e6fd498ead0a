"""Simulated hosts: Linux network namespaces joined by a bridge that lives in a namespace of its own.

Each host is a namespace with one interface, ``eth0``, at ``10.77.0.I/24``. Its peer end, ``pI``, is a
port of the bridge ``br0`` in the switch namespace. Nothing is added to the root namespace: the test
addresses exist only inside the namespaces, which have no default route, so an unplugged host is
really unreachable (from the root namespace the sandbox's own networking makes connects to any
address "succeed", so reachability is only ever tested from inside). Needs root, ``ip`` (iproute2)
and ``nft`` (nftables); ``missing_requirements()`` says what is missing.

Every namespace of a run is named ``scmh<PID>-...`` after the pytest process, so two runs never touch
each other's namespaces, and a later run removes those of a run whose process is gone (a crash, a
SIGKILLed pytest). ``SimulatedHosts.teardown()`` kills every process inside the run's namespaces before it
deletes them: a namespace with a process still in it lives on after ``ip netns del``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

NAME_BASE = "scmh"
NETWORK = "10.77.0"  # a private test range, used only inside the namespaces
_RUN_NAME = re.compile(rf"^{NAME_BASE}(\d+)-")
_CHAOS_TABLE = "scmh_chaos"


def missing_requirements() -> str | None:
    """Why the multi-host tests cannot run here, or ``None`` when they can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "building network namespaces needs root (run the suite as root, as .ci/run does)"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found: apt-get install iproute2 nftables"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def list_namespaces() -> list[str]:
    """The names of every network namespace ``ip netns`` knows."""
    out = _ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def namespace_pids(namespace: str) -> list[int]:
    """The pids of the processes inside ``namespace``."""
    result = _ip("netns", "pids", namespace, check=False)
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def kill_namespace(namespace: str, timeout: float = 10.0) -> None:
    """SIGKILL every process inside ``namespace``, wait until they are gone, then delete it."""
    deadline = time.monotonic() + timeout
    pids = namespace_pids(namespace)
    while pids and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:  # reap our own children, so they do not linger as zombies
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
        pids = namespace_pids(namespace)
    _ip("netns", "del", namespace, check=False)


def remove_leftovers() -> list[str]:
    """Delete the namespaces of earlier runs whose pytest process is gone; return their names."""
    removed = []
    for namespace in list_namespaces():
        match = _RUN_NAME.match(namespace)
        if match and not psutil.pid_exists(int(match.group(1))):
            kill_namespace(namespace)
            removed.append(namespace)
    # Hosts before switches does not matter here: deleting a namespace removes its veth ends too.
    return removed


@dataclass(frozen=True)
class Host:
    """One simulated host: its role name, namespace, address and bridge port."""

    name: str
    namespace: str
    address: str
    port: str  # the bridge port in the switch namespace that plugs this host in


class SimulatedHosts:
    """Hosts named ``host_names`` on one bridge; ``build()`` makes them, ``teardown()`` removes everything."""

    def __init__(self, host_names: Sequence[str], prefix: str | None = None) -> None:
        self.prefix = prefix or f"{NAME_BASE}{os.getpid()}-"
        self.switch = f"{self.prefix}sw"
        self.hosts = {
            name: Host(name, f"{self.prefix}{name}", f"{NETWORK}.{index}", f"p{index}")
            for index, name in enumerate(host_names, start=1)
        }
        self._processes: list[subprocess.Popen[bytes]] = []
        self._made: list[str] = []  # namespaces created so far, so a half-built testbed is torn down too

    def build(self) -> None:
        """Create the switch and the hosts (about 0.1 s)."""
        self._add_namespace(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts.values():
            self._add_namespace(host.namespace)
            # Both veth ends are created straight inside their namespaces: no name ever appears in the root one.
            _ip("link", "add", "eth0", "netns", host.namespace, "type", "veth", "peer", "name", host.port, "netns",
                self.switch)  # fmt: skip
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.namespace, "link", "set", "eth0", "up")
            _ip("-n", self.switch, "link", "set", host.port, "master", "br0")
            _ip("-n", self.switch, "link", "set", host.port, "up")

    def _add_namespace(self, namespace: str) -> None:
        _ip("netns", "add", namespace)
        self._made.append(namespace)
        _ip("-n", namespace, "link", "set", "lo", "up")

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.hosts[host].namespace, *argv]

    def start(
        self, host: str, argv: Sequence[str], env: Mapping[str, str] | None = None, **popen: Any
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``host``'s namespace; ``teardown()`` kills it if nobody else has."""
        process = subprocess.Popen(self.command(host, argv), env=dict(env) if env is not None else None, **popen)
        self._processes.append(process)
        return process

    def run(
        self, host: str, argv: Sequence[str], timeout: float = 30.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``host``'s namespace to its end; its output is captured as text."""
        return subprocess.run(self.command(host, argv), capture_output=True, text=True, timeout=timeout, env=env)

    def unplug(self, host: str) -> None:
        """Cut ``host`` off: its bridge port goes down, so nothing it sends or should receive gets through."""
        _ip("-n", self.switch, "link", "set", self.hosts[host].port, "down")

    def plug(self, host: str) -> None:
        """Bring ``host``'s bridge port back up."""
        _ip("-n", self.switch, "link", "set", self.hosts[host].port, "up")

    def set_loss(self, host: str, percent: int) -> None:
        """Drop ``percent`` % of the packets ``host`` sends on its network (nftables; this kernel has no netem).

        Applied on every host, each packet that crosses the bridge is dropped once with that chance.
        """
        rules = (
            f"table inet {_CHAOS_TABLE} {{\n"
            "  chain out {\n"
            "    type filter hook output priority 0;\n"
            f'    oifname "eth0" numgen random mod 100 < {int(percent)} counter drop\n'
            "  }\n"
            "}\n"
        )
        subprocess.run(self.command(host, ["nft", "-f", "-"]), input=rules, text=True, check=True, timeout=30)

    def dropped_packets(self, host: str) -> int:
        """How many packets ``set_loss``'s rule has dropped on ``host`` so far."""
        listed = self.run(host, ["nft", "list", "table", "inet", _CHAOS_TABLE]).stdout
        return sum(int(count) for count in re.findall(r"counter packets (\d+)", listed))

    def clear_loss(self, host: str) -> None:
        """Remove ``set_loss``'s rule from ``host``, if it is there."""
        self.run(host, ["nft", "delete", "table", "inet", _CHAOS_TABLE])

    def reset(self) -> None:
        """Between tests: every host plugged in, no loss rule, and no process left inside a host."""
        for name, host in self.hosts.items():
            self.plug(name)
            self.clear_loss(name)
            for pid in namespace_pids(host.namespace):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
            if process.poll() is not None:
                for pipe in (process.stdin, process.stdout, process.stderr):
                    if pipe is not None:
                        pipe.close()
        self._processes = [process for process in self._processes if process.poll() is None]

    def teardown(self) -> None:
        """Kill every process this testbed started or that runs in its namespaces, then delete the namespaces."""
        for process in self._processes:
            if process.poll() is None:
                process.kill()
        for namespace in reversed(self._made):
            kill_namespace(namespace)
        self._reap()
        self._made.clear()
