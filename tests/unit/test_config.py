"""Configuration: one class per role, and the parsers, TOML sections, kwargs and argv derived from it."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scaler import Client
from scaler.cli import cluster as cluster_cli
from scaler.cli import scheduler as scheduler_cli
from scaler.cli import worker as worker_cli
from scaler.cli.common import parse_command
from scaler.cli.launcher import plan
from scaler.config.client import ClientConfig
from scaler.config.cluster import ClusterConfig
from scaler.config.command_line import parse_command_line
from scaler.config.roles import ROLES, load_config
from scaler.config.scheduler import SchedulerConfig
from scaler.config.settings import ConfigError, settings_of, to_argv
from scaler.config.worker import WorkerConfig

ADDRESS = "tcp://127.0.0.1:8516"


def write(tmp_path: Path, text: str, name: str = "scaler.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def parse(build: Callable[[], argparse.ArgumentParser], cls: type, section: str, argv: list[str]) -> Any:
    config, _ = parse_command(build(), cls, section, argv)
    return config


# -- precedence: the command line beats the file, the file beats the defaults ------------------


COMMANDS = [
    pytest.param(
        scheduler_cli.build_parser, SchedulerConfig, "scheduler", "client_timeout_seconds", "-ct", id="scheduler"
    ),
    pytest.param(cluster_cli.build_parser, ClusterConfig, "cluster", "death_timeout_seconds", "-ds", id="cluster"),
    pytest.param(worker_cli.build_parser, WorkerConfig, "worker", "task_timeout_seconds", "-tts", id="worker"),
]


@pytest.mark.parametrize(("build", "cls", "section", "key", "flag"), COMMANDS)
def test_command_line_beats_file_beats_default(
    tmp_path: Path, build: Callable[[], argparse.ArgumentParser], cls: type, section: str, key: str, flag: str
) -> None:
    default = getattr(cls(), key)
    path = write(tmp_path, f'[{section}]\naddress = "{ADDRESS}"\n{key} = 77\n')
    assert getattr(parse(build, cls, section, [ADDRESS]), key) == default
    assert getattr(parse(build, cls, section, ["-c", path]), key) == 77
    assert getattr(parse(build, cls, section, ["-c", path, flag, "5"]), key) == 5
    assert getattr(parse(build, cls, section, [flag, "5", "--config", path]), key) == 5  # order does not matter
    assert parse(build, cls, section, ["-c", path]).address == ADDRESS  # the address may come from the file


def test_client_keywords_beat_file_beat_default(tmp_path: Path) -> None:
    path = write(tmp_path, "[client]\ntimeout_seconds = 7\n")
    assert load_config(ClientConfig, "client").timeout_seconds == 60
    assert load_config(ClientConfig, "client", path).timeout_seconds == 7
    assert load_config(ClientConfig, "client", path, {"timeout_seconds": 3}).timeout_seconds == 3


def test_a_switch_on_the_command_line_beats_the_file_both_ways(tmp_path: Path) -> None:
    off = write(tmp_path, f'[scheduler]\naddress = "{ADDRESS}"\nprotected = false\n', "off.toml")
    on = write(tmp_path, f'[scheduler]\naddress = "{ADDRESS}"\nprotected = true\n', "on.toml")
    build = scheduler_cli.build_parser
    assert parse(build, SchedulerConfig, "scheduler", ["-c", off]).protected is False
    assert parse(build, SchedulerConfig, "scheduler", ["-c", off, "-p"]).protected is True
    assert parse(build, SchedulerConfig, "scheduler", ["-c", on, "--no-protected"]).protected is False


def test_the_client_takes_its_defaults_from_its_config() -> None:
    parameters = inspect.signature(Client).parameters
    for field in settings_of(ClientConfig):
        assert parameters[field.name].default == field.default, field.name


def test_the_worker_agent_takes_its_defaults_from_the_worker_config() -> None:
    from scaler.worker.agent import WorkerAgent

    parameters = inspect.signature(WorkerAgent).parameters
    for name in ("heartbeat_interval_seconds", "death_timeout_seconds", "task_timeout_seconds", "grace_period_seconds"):
        assert parameters[name].default == getattr(WorkerConfig(), name)


# -- errors: each names the file, the key, and the closest valid key ---------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[scheduler]\nclient_timeout_second = 3\n",
            ["[scheduler]", "'client_timeout_second'", "'client_timeout_seconds'"],
        ),
        ("[scheduler]\nprotect = false\n", ["did you mean 'protected'?"]),
        ("[schedulr]\naddress = 'tcp://127.0.0.1:1'\n", ["unknown section [schedulr]", "did you mean 'scheduler'?"]),
        ("[scheduler]\nclient_timeout_seconds = 'ten'\n", ["client_timeout_seconds", "expected a number", "'ten'"]),
        ("[scheduler]\nper_worker_queue_size = 1.5\n", ["per_worker_queue_size", "expected a whole number"]),
        ("[scheduler]\nprotected = 'yes'\n", ["protected", "expected true or false"]),
        ("[scheduler]\nlogging_paths = [1, 2]\n", ["logging_paths", "expected a list of strings"]),
        ("[scheduler]\nclient_timeout_seconds = 0\n", ["[scheduler]", "client_timeout_seconds must be more than 0"]),
        ("[scheduler]\nlogging_level = 'LOUD'\n", ["[scheduler]", "logging_level must be one of"]),
        ("[scheduler]\naddress = '127.0.0.1:8516'\n", ["[scheduler]", "invalid scheduler address"]),
        ("[cluster]\nper_worker_capabilities = { gpu = -1 }\n", ["[cluster]", "bad capability"]),
        ("[cluster]\nper_worker_capabilities = 'gpu=x'\n", ["[cluster] per_worker_capabilities", "whole number"]),
        ("[cluster]\nn_workers = 2\nworker_names = ['a']\n", ["[cluster]", "1 worker names for 2 workers"]),
        ("scheduler = 3\n", ["scheduler must be a section"]),
        ("[scheduler\naddress = 1\n", ["not a valid TOML file", "line 1"]),
    ],
)
def test_every_file_error_names_the_file_and_the_key(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write(tmp_path, text)
    section = "cluster" if "[cluster]" in text else "scheduler"
    cls = ClusterConfig if section == "cluster" else SchedulerConfig
    with pytest.raises(ConfigError) as caught:
        load_config(cls, section, path)
    message = str(caught.value)
    assert message.startswith(path + ":"), message
    for part in expected:
        assert part in message, message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read the configuration file"):
        load_config(SchedulerConfig, "scheduler", str(tmp_path / "missing.toml"))


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"[scheduler]\naddress = '\xff'\n")
    with pytest.raises(ConfigError, match="binary.toml: not a valid TOML file"):
        load_config(SchedulerConfig, "scheduler", str(path))


def test_the_command_reports_a_file_error_as_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[scheduler]\nworker_timeout = 3\n")
    with pytest.raises(SystemExit) as caught:
        parse(scheduler_cli.build_parser, SchedulerConfig, "scheduler", ["-c", path, ADDRESS])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert path in error and "'worker_timeout'" in error and "did you mean 'worker_timeout_seconds'?" in error


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "the address is missing"),
        ([ADDRESS, "-ct", "abc"], "invalid float value"),
        ([ADDRESS, "-ct", "0"], "client_timeout_seconds must be more than 0"),
        ([ADDRESS, "--client-timeout", "3"], "unrecognized arguments: --client-timeout"),  # no abbreviations
        (["127.0.0.1:8516"], "invalid scheduler address"),
        ([ADDRESS, "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_command_line_errors(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse(scheduler_cli.build_parser, SchedulerConfig, "scheduler", argv)
    assert caught.value.code == 2
    assert expected in capsys.readouterr().err


# -- keyword arguments -------------------------------------------------------------------------


def test_an_unknown_keyword_is_a_type_error_naming_the_closest() -> None:
    from scaler import Cluster, SchedulerClusterCombo

    with pytest.raises(TypeError, match=r"Cluster\(\) got an unexpected keyword argument 'heartbeat_interval'.*"):
        Cluster(ADDRESS, 1, heartbeat_interval=1)
    with pytest.raises(TypeError, match="did you mean 'per_worker_queue_size'"):
        SchedulerClusterCombo(n_workers=1, per_worker_queue_sise=3)
    with pytest.raises(TypeError, match="no_such_thing"):
        SchedulerClusterCombo(n_workers=1, no_such_thing=3)
    with pytest.raises(TypeError, match="'task_timeout_seconds': expected a number, got 'soon'"):
        Cluster(ADDRESS, 1, task_timeout_seconds="soon")


# -- argv for child processes ------------------------------------------------------------------


CHANGED: dict[type, dict[str, Any]] = {
    SchedulerConfig: {
        "address": ADDRESS,
        "protected": False,
        "client_timeout_seconds": 1.5,
        "max_number_of_tasks_waiting": -1,
        "logging_paths": ("/dev/stderr", "/tmp/a b.log"),
        "logging_level": "DEBUG",
        "logging_format": "%(message)s",
        "keys_dir": "/tmp/keys",
        "exit_with_parent": True,
    },
    ClusterConfig: {
        "address": ADDRESS,
        "n_workers": 2,
        "worker_names": ("a", "b"),
        "per_worker_capabilities": {"gpu": 1, "fpga": 2},
        "logging_config_file": "/tmp/logging.conf",
        "heartbeat_interval_seconds": 0.25,
    },
    WorkerConfig: {"address": ADDRESS, "name": "w1", "grace_period_seconds": 0.0, "exit_with_parent": True},
}


@pytest.mark.parametrize(
    ("build", "cls", "section"),
    [
        (scheduler_cli.build_parser, SchedulerConfig, "scheduler"),
        (cluster_cli.build_parser, ClusterConfig, "cluster"),
        (worker_cli.build_parser, WorkerConfig, "worker"),
    ],
)
def test_argv_for_a_child_gives_it_the_same_config(
    build: Callable[[], argparse.ArgumentParser], cls: type, section: str
) -> None:
    config = cls(**CHANGED[cls])
    assert parse(build, cls, section, to_argv(config)) == config
    assert to_argv(cls(address=ADDRESS)) == [ADDRESS]  # defaults are not repeated


def test_every_setting_has_a_flag_help_and_a_known_type() -> None:
    for role in ROLES:
        for field in settings_of(role.config):
            assert field.meta.help, (role.section, field.name)
            assert field.default is not dataclasses.MISSING


# -- --help ------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [scheduler_cli.build_parser, cluster_cli.build_parser, worker_cli.build_parser])
def test_help_groups_flags_and_shows_defaults(build: Callable[[], argparse.ArgumentParser]) -> None:
    text = build().format_help()
    for title in ("\narguments:\n", "\nconfiguration file:\n", "\ntimeouts:\n", "\nkeys:\n", "\nlogging:\n"):
        assert title in text
    flat = " ".join(text.split())
    assert "(default: /dev/stdout)" in flat and "(default: INFO)" in flat
    assert "-c FILE.toml, --config FILE.toml" in flat


def test_scheduler_help_shows_each_default() -> None:
    text = " ".join(scheduler_cli.build_parser().format_help().split())
    for shown in ("(default: 1000)", "(default: 60)", "(default: 3)", "(default: true)", "(default: /dev/stdout)"):
        assert shown in text


# -- the launcher's plan -----------------------------------------------------------------------


def test_the_launcher_plan_gives_the_cluster_the_scheduler_address(tmp_path: Path) -> None:
    path = write(tmp_path, '[scheduler]\naddress = "tcp://0.0.0.0:9999"\ninsecure = true\n[cluster]\nn_workers = 2\n')
    children = plan(path)
    assert [child.role.section for child in children] == ["scheduler", "cluster"]
    assert children[1].command[-1] == "tcp://127.0.0.1:9999"  # a wildcard bind is reached on loopback
    assert children[1].stop_seconds > 30  # the workers' grace period, and then some


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[cluster]\nn_workers = 2\n", "[cluster] needs the scheduler's address"),
        ("[scheduler]\n", "[scheduler] needs an address"),
        ("[client]\ntimeout_seconds = 3\n", "nothing to start"),
        ('[scheduler]\naddress = "tcp://0.0.0.0:9999"\n', "refusing to serve"),
        ('[scheduler]\naddress = "tcp://127.0.0.1:9999"\n[cluster]\nn_worker = 2\n', "did you mean 'n_workers'"),
    ],
)
def test_the_launcher_checks_every_section_before_starting(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        plan(write(tmp_path, text))


def test_scaler_flags_that_swallow_the_address_give_it_back() -> None:
    line = parse_command_line(
        cluster_cli.build_parser(), ClusterConfig, ["-lp", "/tmp/w.log", ADDRESS], cluster_cli.CLUSTER_UNSUPPORTED
    )
    assert line.values == {"logging_paths": ("/tmp/w.log",), "address": ADDRESS}


def test_no_module_outside_the_cli_imports_it() -> None:
    import ast

    root = Path(__file__).parents[2] / "scaler"
    for path in root.rglob("*.py"):
        if path.is_relative_to(root / "cli") or path.name == "__main__.py":  # entry points are command lines
            continue
        if path == root / "cluster" / "boot.py":  # one too: ``python -m scaler.cluster.boot`` runs the commands' mains
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(name == "scaler.cli" or name.startswith("scaler.cli.") for name in names), path
