"""Scaler users' command lines, run as they are (on a free port, logging to a temporary directory)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import time

import pytest

from scaler import Client
from scaler.io.sockets import free_tcp_address
from tests.integration.conftest import descendants, wait_no_descendants

LOGGING_CONF = """\
[loggers]
keys=root

[handlers]
keys=console

[formatters]
keys=plain

[logger_root]
level=INFO
handlers=console

[handler_console]
class=StreamHandler
level=INFO
formatter=plain
args=(sys.stderr,)

[formatter_plain]
format=FROM-LOGGING-CONF %(name)s: %(message)s
"""


def wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_the_scaler_example_command_lines_serve_a_client_and_log_where_they_say(tmp_path: pathlib.Path) -> None:
    before = descendants()
    address, monitor = free_tcp_address(), free_tcp_address()
    scheduler_log, workers_log = tmp_path / "s.log", tmp_path / "w.log"
    (tmp_path / "logging.conf").write_text(LOGGING_CONF)
    scheduler_command = (
        f"scaler_scheduler -mt 1000 -ct 60 -wt 60 -qs 1000 -p -ll INFO -lp {scheduler_log} -lc logging.conf "
        f"-ma {monitor} -e builtin --io-threads 1 {address}"
    )
    cluster_command = (
        f"scaler_cluster -n 4 -wn a,b,c,d -hi 2 -tts 0 -ds 300 -gc 30 -tm 1073741824 -el builtin -it 1 -ll INFO "
        f"-lp {workers_log} {address}"
    )
    scheduler_err = open(tmp_path / "scheduler.err", "wb")  # noqa: SIM115 - closed below
    scheduler = subprocess.Popen(scheduler_command.split(), cwd=tmp_path, stderr=scheduler_err)
    cluster = subprocess.Popen(cluster_command.split(), cwd=tmp_path)
    try:
        with Client(address, timeout_seconds=60) as client:
            assert client.map(pow, range(20), [2] * 20) == [i * i for i in range(20)]
            with pytest.raises(Exception, match="protected"):  # -p: clients cannot shut it down
                client.shutdown()
        worker_logs = {}
        wait_for(lambda: len(list(tmp_path.glob("w.log-*"))) == 4)
        for path in tmp_path.glob("w.log-*"):
            wait_for(lambda path=path: "serving" in path.read_text())
            worker_logs[path.name] = path.read_text()
        # A worker says "serving" before its first heartbeat, which waits for its first processor:
        # the scheduler may hear of a worker that served no task only a moment later.
        wait_for(lambda: all(f"worker worker|{name}|" in scheduler_log.read_text() for name in "abcd"))
    finally:
        cluster.terminate()
        cluster_status = cluster.wait(timeout=60)
        scheduler.terminate()
        scheduler_status = scheduler.wait(timeout=30)
        scheduler_err.close()
    assert (scheduler_status, cluster_status) == (0, 0)
    assert wait_no_descendants(before) == set()

    # The scheduler: -lp holds its lines, and so does the -lc file's handler (stderr here).
    scheduler_text = scheduler_log.read_text()
    assert f"scheduler serving {address} (protected=True" in scheduler_text
    assert f"scheduler publishes its status feed on {monitor}" in scheduler_text  # -ma
    for flag in ("--event-loop", "--io-threads"):
        assert f"{flag} is accepted for compatibility with Scaler and has no effect" in scheduler_text
    assert "FROM-LOGGING-CONF scaler.scheduler.server: scheduler serving" in (tmp_path / "scheduler.err").read_text()

    # The cluster command writes w.log; each of its 4 workers writes w.log-PID, named by -wn.
    cluster_text = workers_log.read_text()
    assert f"4 workers for {address}" in cluster_text
    for flag in ("--garbage-collect-interval-seconds", "--trim-memory-threshold-bytes", "--event-loop", "--io-threads"):
        assert f"{flag} is accepted for compatibility with Scaler and has no effect" in cluster_text
    pids = set(re.findall(r"pids \[([\d, ]+)\]", cluster_text)[0].replace(",", " ").split())
    assert {name.removeprefix("w.log-") for name in worker_logs} == pids
    names = {re.search(r"worker worker\|(\w)\|", text).group(1) for text in worker_logs.values()}  # type: ignore[union-attr]
    assert names == {"a", "b", "c", "d"}
    for name in "abcd":
        assert f"worker worker|{name}|" in scheduler_text  # the scheduler's log names them too
