"""``SchedulerClusterCombo`` and ``Cluster`` honour Scaler's logging arguments and explain the rest."""

from __future__ import annotations

import logging
import pathlib
import time

import pytest

from scaler import Client, Cluster, SchedulerClusterCombo
from scaler.config.compat import COMBO_UNSUPPORTED_KWARGS
from tests.integration.conftest import descendants, wait_no_descendants


def wait_for_file_text(path: pathlib.Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}"
        time.sleep(0.1)


SCALER_ONLY = {  # what a Scaler 1.9 or opengris script passes, with values those accept
    "object_storage_config": None,
    "object_storage_address": None,
    "worker_io_threads": 1,
    "scheduler_io_threads": 1,
    "object_retention_seconds": 60,
    "load_balance_seconds": 1,
    "load_balance_trigger_times": 2,
    "garbage_collect_interval_seconds": 30,
    "trim_memory_threshold_bytes": 1024**3,
    "per_worker_task_queue_size": 1000,
    "hard_processor_suspend": False,
    "event_loop": "builtin",
    "scaler_policy": None,
    "worker_manager_id": "combo",
    "allocate_policy": "even",
}


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_combo_logs_where_scaler_arguments_point_and_explains_the_others(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert set(SCALER_ONLY) | {"security_config", "preload"} == set(COMBO_UNSUPPORTED_KWARGS)
    caplog.set_level(logging.INFO, logger="scaler.cluster.combo")
    before = descendants()
    log = tmp_path / "combo.log"
    with SchedulerClusterCombo(
        n_workers=2,
        logging_paths=[str(log)],
        logging_level="info",
        logging_format="COMBO %(name)s: %(message)s",
        security_config=None,  # asks for nothing
        **SCALER_ONLY,
    ) as combo:
        with Client(combo.get_address(), timeout_seconds=60) as client:
            assert client.submit(max, 1, 2).result() == 2
        workers = combo.worker_pids()
        for pid in workers:  # each worker appends its pid to the file's name
            wait_for_file_text(tmp_path / f"combo.log-{pid}", "COMBO scaler.worker.agent: worker worker|")
    assert wait_no_descendants(before) == set()
    assert "COMBO scaler.scheduler.server: scheduler serving" in log.read_text()
    explained = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    for name in SCALER_ONLY:
        lines = [line for line in explained if f": {name}=" in line]
        assert len(lines) == 1, (name, explained)  # once, at INFO, with what scaler does instead
        assert "has no effect: " + COMBO_UNSUPPORTED_KWARGS[name].reason in lines[0]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_cluster_takes_a_logging_config_file(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "from-conf.log"
    conf = tmp_path / "logging.conf"
    conf.write_text(
        "[loggers]\nkeys=root\n[handlers]\nkeys=file\n[formatters]\nkeys=plain\n"
        "[logger_root]\nlevel=INFO\nhandlers=file\n"
        f"[handler_file]\nclass=FileHandler\nlevel=INFO\nformatter=plain\nargs=({str(target)!r}, 'a')\n"
        "[formatter_plain]\nformat=CONF %(process)d %(message)s\n"
    )
    before = descendants()
    combo = SchedulerClusterCombo(n_workers=1, logging_level="WARNING")
    with combo, Cluster(combo.get_address(), 1, logging_config_file=str(conf)) as cluster:
        (pid,) = cluster.pids()
        wait_for_file_text(target, f"CONF {pid} worker worker|")
    assert wait_no_descendants(before) == set()


def test_security_settings_that_cannot_be_honoured_are_refused() -> None:
    before = descendants()
    with pytest.raises(ValueError, match="security_config=.* is not supported: .*--keys-dir DIR"):
        SchedulerClusterCombo(n_workers=1, security_config=object())
    with pytest.raises(ValueError, match="preload='pkg.mod:init' is not supported"):
        Cluster("tcp://127.0.0.1:1", 1, preload="pkg.mod:init")
    assert descendants() <= before  # refused before anything started


def test_a_name_that_is_neither_scaler_nor_scaler_s_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'logging_path'.*did you mean 'logging_paths'"):
        SchedulerClusterCombo(n_workers=1, logging_path="/tmp/x.log")
    with pytest.raises(TypeError, match="unexpected keyword argument 'event_loops'"):
        Cluster("tcp://127.0.0.1:1", 1, event_loops="builtin")
