"""Across simulated hosts: the safe-bind rule, then correctness and throughput on a plain, slow and lossy network.

The scheduler serves its address on the test network (10.77.0.1) with CURVE keys, a worker runs on
each of two other hosts, and the client on a fourth. Latency comes from a delaying TCP proxy on the
scheduler's host that the workers and the client connect through; loss from an nftables rule on
every host (this kernel has no netem). The figures are printed (``pytest -s``); nothing asserts a
speed.
"""

from __future__ import annotations

import sys

import pytest

from tests.multihost.netns import SimulatedHosts
from tests.multihost.support import SCHEDULER_PORT, Deployment, figure, host_env

pytestmark = [pytest.mark.multihost, pytest.mark.slow]

N_TASKS = 2000
BIG_BYTES = 8 * 1024 * 1024


PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 9), timeout=1.0)
except OSError as error:
    print(type(error).__name__)
"""


@pytest.mark.timeout(60)
def test_a_host_is_reachable_only_while_plugged_in(testbed: SimulatedHosts) -> None:
    def probe() -> str:  # port 9 has no listener: "refused" means the host answered
        return testbed.run("cli", [sys.executable, "-c", PROBE, testbed.hosts["w1"].address]).stdout.strip()

    assert probe() == "ConnectionRefusedError"
    testbed.unplug("w1")
    try:
        assert probe() == "TimeoutError"
    finally:
        testbed.plug("w1")
    assert probe() == "ConnectionRefusedError"


@pytest.mark.timeout(60)
def test_a_scheduler_on_a_network_address_without_keys_refuses_to_start(testbed: SimulatedHosts) -> None:
    address = f"tcp://{testbed.hosts['sched'].address}:{SCHEDULER_PORT}"
    refused = testbed.run("sched", [sys.executable, "-m", "scaler.cli.scheduler", address], env=host_env("sched"))
    assert refused.returncode == 2, (refused.returncode, refused.stderr)
    assert f"refusing to serve {address} without keys" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    listening = testbed.run("sched", ["cat", "/proc/net/tcp"]).stdout.upper()
    assert f":{SCHEDULER_PORT:X} " not in listening


@pytest.mark.timeout(240)
@pytest.mark.parametrize("network", ["plain", "1 ms latency", "1 % loss"])
def test_tasks_big_objects_and_a_graph_cross_the_hosts_correctly(deployment: Deployment, network: str) -> None:
    hosts = ["sched", *deployment.worker_hosts, "cli"]
    if network == "1 % loss":
        for host in hosts:  # each packet on the bridge is dropped once with 1 % chance, whoever sends it
            deployment.testbed.set_loss(host, 1)
    deployment.start_scheduler()
    address = None
    if network == "1 ms latency":
        address = deployment.start_proxy("sched", 0.001)
    deployment.start_workers(address)
    deployment.wait_workers(len(deployment.worker_hosts))

    remote = deployment.client("cli", "workload", address=address, n_tasks=N_TASKS, big_bytes=BIG_BYTES)
    result = remote.wait("done", timeout=200)
    assert remote.close() == 0

    assert result["wrong"] == 0
    assert sum(result["hosts"].values()) == N_TASKS
    assert set(result["hosts"]) == set(deployment.worker_hosts), result["hosts"]  # both worker hosts took part
    assert result["big_argument_ok"] and result["big_result_ok"]
    assert result["graph_ok"]
    lost = ""
    if network == "1 % loss":
        dropped = {host: deployment.testbed.dropped_packets(host) for host in hosts}
        assert sum(dropped.values()) > 0, "the loss rule dropped nothing"
        lost = f"; packets dropped per host {dropped}"
    figure(
        f"multihost {network}",
        f"{N_TASKS} tasks from host cli to workers on {', '.join(deployment.worker_hosts)}: "
        f"{result['tasks_per_second']:.0f} tasks/s ({result['seconds']:.2f} s, per host {result['hosts']}); "
        f"one task's round trip (median of 20): {result['round_trip_median'] * 1000:.1f} ms; "
        f"8 MiB argument + 8 MiB result: {result['big_seconds']:.2f} s; 0 wrong{lost}",
    )
