"""Every flag of Scaler 1.9's and opengris-scaler 2.x's scaler_scheduler and scaler_cluster parses here."""

from __future__ import annotations

import argparse
import pathlib
import typing
from collections.abc import Callable
from typing import Any

import pytest

from scaler.cli import cluster as cluster_cli
from scaler.cli import scheduler as scheduler_cli
from scaler.config import compat, compat_tables
from scaler.config.cluster import ClusterConfig
from scaler.config.command_line import Unsupported, parse_command_line
from scaler.config.scheduler import SchedulerConfig
from scaler.config.settings import Field, settings_of

ADDRESS = "tcp://127.0.0.1:8516"

COMMANDS: dict[str, tuple[Callable[[], argparse.ArgumentParser], type, tuple[Unsupported, ...]]] = {
    "scaler_scheduler": (scheduler_cli.build_parser, SchedulerConfig, compat.SCHEDULER_UNSUPPORTED),
    "scaler_cluster": (cluster_cli.build_parser, ClusterConfig, compat.CLUSTER_UNSUPPORTED),
}


def sample(field: Field) -> tuple[list[str], Any]:
    """A value for ``field`` as Scaler's command line spells it, and what it must parse to."""
    kind = field.type
    if typing.get_origin(kind) is typing.Union or type(kind).__name__ == "UnionType":
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if kind is bool:
        return [], True
    if field.name == "worker_names":
        return ["a,b"], ("a", "b")
    if typing.get_origin(kind) is dict:
        return ["gpu=2,linux"], {"gpu": 2, "linux": 1}
    if typing.get_origin(kind) is tuple:
        return ["/tmp/one.log", "/tmp/two.log"], ("/tmp/one.log", "/tmp/two.log")
    if field.name == "logging_level":
        return ["warning"], "WARNING"
    if kind is str:
        return ["/tmp/logging.conf"], "/tmp/logging.conf"
    return ["7"], kind(7)


def mapped_flags() -> list[Any]:
    params = []
    for command, (_, cls, _) in COMMANDS.items():
        for field in settings_of(cls):
            for flag in field.meta.scaler_flags:
                params.append(pytest.param(command, field, flag, id=f"{command} {flag}"))
    return params


def unsupported_flags() -> list[Any]:
    return [
        pytest.param(command, entry, flag, id=f"{command} {flag}")
        for command, (_, _, entries) in COMMANDS.items()
        for entry in entries
        for flag in entry.flags
    ]


@pytest.mark.parametrize(("command", "field", "flag"), mapped_flags())
def test_a_scaler_flag_sets_its_setting(command: str, field: Field, flag: str) -> None:
    build, cls, unsupported = COMMANDS[command]
    words, expected = sample(field)
    line = parse_command_line(build(), cls, [flag, *words, ADDRESS], unsupported)
    assert line.values[field.name] == expected
    assert line.values["address"] == ADDRESS  # also after a list flag, which swallows it first
    assert line.unsupported == []


@pytest.mark.parametrize(("command", "entry", "flag"), unsupported_flags())
def test_a_scaler_flag_without_a_mechanism_is_accepted_and_explained_or_refused(
    command: str, entry: Unsupported, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    build, cls, unsupported = COMMANDS[command]
    words = [] if entry.nargs == 0 else ["http://a/hook", "http://b/hook"] if entry.nargs == "*" else ["1"]
    argv = [flag, *words, ADDRESS]
    if entry.refused:
        with pytest.raises(SystemExit) as caught:
            parse_command_line(build(), cls, argv, unsupported)
        assert caught.value.code == 2
        error = capsys.readouterr().err
        assert f"{entry.name} is not supported" in error
        assert ("--keys-dir" in error) if "tls" in entry.name else ("task function" in error)
        return
    line = parse_command_line(build(), cls, argv, unsupported)
    assert line.values == {"address": ADDRESS}  # changes no setting
    assert line.unsupported == [entry.message()]
    assert "has no effect" in line.unsupported[0] and entry.reason in line.unsupported[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_short_flags_are_unique_and_every_table_row_is_tested(command: str) -> None:
    build, cls, unsupported = COMMANDS[command]
    parser = build()
    strings = [string for action in parser._actions for string in action.option_strings]
    assert len(strings) == len(set(strings))
    rows = compat_tables.flag_rows(cls, unsupported)
    flags_in_table = {flag.strip("`") for first, _, _ in rows[1:] for flag in first.split(", ")}
    tested = {flag for field in settings_of(cls) for flag in field.meta.scaler_flags}
    tested |= {flag for entry in unsupported for flag in entry.flags} | {"-c", "--config"}
    assert flags_in_table == tested


def test_the_example_command_lines_of_the_issue_parse() -> None:
    scheduler = (
        "-mt 1000 -ct 60 -wt 60 -qs 1000 -p -ll INFO -lp /var/log/s.log -lc logging.conf "
        "-ma tcp://127.0.0.1:8518 -e builtin --io-threads 1 tcp://127.0.0.1:8516"
    )
    line = parse_command_line(
        scheduler_cli.build_parser(), SchedulerConfig, scheduler.split(), compat.SCHEDULER_UNSUPPORTED
    )
    config = SchedulerConfig(**line.values)
    assert (config.max_number_of_tasks_waiting, config.client_timeout_seconds, config.worker_timeout_seconds) == (
        1000,
        60,
        60,
    )
    assert config.per_worker_queue_size == 1000 and config.protected and config.logging_level == "INFO"
    assert config.logging_paths == ("/var/log/s.log",) and config.logging_config_file == "logging.conf"
    assert config.address == "tcp://127.0.0.1:8516" and config.monitor_address == "tcp://127.0.0.1:8518"
    assert [message.split()[0] for message in line.unsupported] == ["--event-loop", "--io-threads"]
    cluster = (
        "-n 4 -wn a,b,c,d -hi 2 -tts 0 -ds 300 -gc 30 -tm 1073741824 -el builtin -it 1 -ll INFO "
        "-lp /var/log/w.log tcp://127.0.0.1:8516"
    )
    line = parse_command_line(cluster_cli.build_parser(), ClusterConfig, cluster.split(), compat.CLUSTER_UNSUPPORTED)
    workers = ClusterConfig(**line.values)
    assert workers.n_workers == 4 and workers.worker_names == ("a", "b", "c", "d")
    assert (workers.heartbeat_interval_seconds, workers.task_timeout_seconds, workers.death_timeout_seconds) == (
        2,
        0,
        300,
    )
    assert workers.logging_paths == ("/var/log/w.log",) and workers.address == "tcp://127.0.0.1:8516"
    assert len(line.unsupported) == 4


def test_the_table_in_docs_cli_md_is_the_generated_one() -> None:
    text = (pathlib.Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    start, end = "<!-- compatibility tables: python -m scaler.config.compat_tables -->\n", "\n<!-- end of tables -->"
    assert start in text and end in text, "docs/cli.md lost its markers"
    assert text.split(start)[1].split(end)[0] == compat_tables.markdown(), "run python -m scaler.config.compat_tables"
