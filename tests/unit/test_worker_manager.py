"""The worker manager's pure parts: its decisions, the Slurm job script, and the parsing of Slurm's output."""

from __future__ import annotations

import itertools
import shlex
import sys

import pytest

from scaler.cli import worker_manager as cli
from scaler.config.roles import role
from scaler.config.worker import WorkerConfig
from scaler.config.worker_manager import WorkerManagerConfig
from scaler.protocol.messages import ManagedWorkerRecord, ManagedWorkerState, WorkerManagerCommand
from scaler.worker_manager.adapter import WorkerCommand, WorkerStatus, check_manager_name, owned_by
from scaler.worker_manager.core import (
    FIRST_BACKOFF_SECONDS,
    ForgetWorker,
    ManagerState,
    StartWorker,
    StopWorker,
)
from scaler.worker_manager.slurm import (
    FATAL_CONFIRM_SECONDS,
    SlurmOptions,
    SqueueJob,
    describe_end,
    give_up,
    job_script,
    parse_sbatch,
    parse_scontrol,
    parse_squeue,
    pending_failure,
    scancel_argv,
    squeue_argv,
    status_of,
)

ADDRESS = "tcp://127.0.0.1:8516"
RUNNING = WorkerStatus(ManagedWorkerState.RUNNING)
STARTING = WorkerStatus(ManagedWorkerState.STARTING)


def state(min_workers: int = 0, max_workers: int = 4, report_seconds: float = 10.0) -> ManagerState:
    counter = itertools.count()
    return ManagerState(min_workers, max_workers, lambda: f"m.{next(counter)}", report_seconds)


def command(target: int, *stop: str) -> WorkerManagerCommand:
    return WorkerManagerCommand(target=target, stop_workers=list(stop))


# -- ManagerState ---------------------------------------------------------------------------------


def test_it_starts_its_minimum_at_once_and_then_follows_the_target() -> None:
    manager = state(min_workers=2)
    assert manager.on_report({}, 0.0) == [StartWorker("m.0"), StartWorker("m.1")]
    assert manager.on_report({"m.0": STARTING, "m.1": STARTING}, 1.0) == []
    assert manager.on_command(command(3), 2.0) == [StartWorker("m.2")]
    assert [r.worker_name for r in manager.records()] == ["m.0", "m.1", "m.2"]


def test_the_target_is_clamped_to_the_limits() -> None:
    manager = state(min_workers=1, max_workers=3)
    manager.on_report({}, 0.0)
    assert len(manager.on_command(command(10), 1.0)) == 2 and manager.target == 3
    manager.on_command(command(0), 2.0)
    assert manager.target == 1


def test_a_lower_target_stops_nobody_but_the_named_workers_are_stopped_once() -> None:
    manager = state()
    manager.on_command(command(3), 0.0)
    running = {"m.0": RUNNING, "m.1": RUNNING, "m.2": RUNNING}
    manager.on_report(running, 1.0)
    assert manager.on_command(command(1), 2.0) == []  # the scheduler names who goes; nobody was named
    assert manager.on_command(command(2, "m.1"), 3.0) == [StopWorker("m.1")]
    assert manager.on_command(command(2, "m.1"), 4.0) == []  # asked again: not signalled twice
    assert manager.live() == 2
    assert manager.on_report(running, 5.0) == []  # still draining: no replacement, no second stop
    assert manager.on_report({"m.0": RUNNING, "m.2": RUNNING}, 6.0) == []
    assert manager.stopping() == frozenset()


def test_a_name_it_does_not_run_is_ignored() -> None:
    manager = state()
    manager.on_command(command(1), 0.0)
    assert manager.on_command(command(1, "other.7"), 1.0) == []


def test_a_failure_is_reported_then_forgotten_and_starts_back_off() -> None:
    manager = state(report_seconds=10.0)
    assert manager.on_command(command(1), 0.0) == [StartWorker("m.0")]
    failed = {"m.0": WorkerStatus(ManagedWorkerState.FAILED, "job 7 cannot start: BadConstraints")}
    assert manager.on_report(failed, 1.0) == []  # backing off: no replacement yet
    assert manager.records() == [
        ManagedWorkerRecord("m.0", ManagedWorkerState.FAILED, "job 7 cannot start: BadConstraints")
    ]
    assert manager.on_report(failed, 1.0 + FIRST_BACKOFF_SECONDS) == [StartWorker("m.1")]
    second = {**failed, "m.1": WorkerStatus(ManagedWorkerState.FAILED, "again")}
    assert manager.on_report(second, 3.0) == []
    assert manager.on_report(second, 3.0 + FIRST_BACKOFF_SECONDS) == []  # the back-off doubled
    assert StartWorker("m.2") in manager.on_report(second, 3.0 + 2 * FIRST_BACKOFF_SECONDS)
    assert ForgetWorker("m.0") in manager.on_report(second, 11.0)
    assert manager.statistics()["failed"] == 2


def test_adopted_workers_count_against_the_target() -> None:
    manager = state(min_workers=1)
    manager.adopt(["m.old1", "m.old2"])
    assert manager.on_report({"m.old1": RUNNING, "m.old2": RUNNING}, 0.0) == []
    assert manager.on_command(command(1, "m.old1"), 1.0) == [StopWorker("m.old1")]
    # Below the minimum, a stop is still carried out, and a replacement started: the minimum holds.
    assert manager.on_command(command(0, "m.old2"), 2.0) == [StopWorker("m.old2"), StartWorker("m.0")]


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        state(min_workers=3, max_workers=2)


# -- names --------------------------------------------------------------------------------------------


def test_manager_names_keep_prefixes_apart() -> None:
    assert check_manager_name("slurm-vm_1") == "slurm-vm_1"
    for bad in ("", "a.b", "a|b", "a b", "-a", "x" * 61):
        with pytest.raises(ValueError):
            check_manager_name(bad)
    assert owned_by("a", "a.1f2e") and not owned_by("a", "a-b.1f2e") and not owned_by("a", "a.")


# -- the Slurm job script and Slurm's output ----------------------------------------------------------


def worker_command() -> WorkerCommand:
    return WorkerCommand(
        WorkerConfig(address=ADDRESS, per_worker_capabilities={"gpu": 1}, keys_dir="/keys dir"), python="/py/bin/python"
    )


def test_the_job_script_sets_the_options_and_execs_the_named_worker() -> None:
    options = SlurmOptions(
        partition="batch",
        time="1:00:00",
        cpus_per_task=2,
        mem="4G",
        account="proj",
        extra_sbatch=("--constraint=avx2", " --qos=low "),
        setup=("module load python",),
    )
    script = job_script("mgr.ab12", worker_command(), options)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    sbatch = [line for line in lines if line.startswith("#SBATCH")]
    assert sbatch == [
        "#SBATCH --job-name=mgr.ab12",
        "#SBATCH --output=scaler-%x-%j.out",
        "#SBATCH --partition=batch",
        "#SBATCH --time=1:00:00",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=4G",
        "#SBATCH --account=proj",
        "#SBATCH --constraint=avx2",
        "#SBATCH --qos=low",
    ]
    assert lines.index("module load python") < lines.index("export SCALER_WORKER_NAME=mgr.ab12")
    assert lines[-1].startswith("exec ")  # exec'ed: scancel --batch --signal=TERM reaches the worker itself
    argv = shlex.split(lines[-1])[1:]
    assert argv[:4] == ["/py/bin/python", "-m", "scaler.cli.worker", ADDRESS]
    assert "--name=mgr.ab12" in argv and "--keys-dir=/keys dir" in argv and "--per-worker-capabilities=gpu=1" in argv


def test_the_job_script_leaves_unset_options_to_slurm_and_defaults_to_this_python() -> None:
    script = job_script("m.1", WorkerCommand(WorkerConfig(address=ADDRESS)), SlurmOptions(output=""))
    assert [line for line in script.splitlines() if line.startswith("#SBATCH")] == ["#SBATCH --job-name=m.1"]
    assert shlex.split(script.splitlines()[-1])[1] == sys.executable


def test_sbatch_squeue_and_scancel_output_and_commands() -> None:
    assert parse_sbatch("42\n") == "42" and parse_sbatch("43;cluster\n") == "43"
    with pytest.raises(ValueError):
        parse_sbatch("sbatch: error: Batch job submission failed")
    assert squeue_argv("root") == ["squeue", "--noheader", "--user=root", "--format=%i|%j|%T|%r"]
    output = "12|m.a|RUNNING|None\n13|m.b|PENDING|PartitionTimeLimit\nbroken line\n14|other|PENDING|Resources\n"
    assert parse_squeue(output) == [
        SqueueJob("12", "m.a", "RUNNING", "None"),
        SqueueJob("13", "m.b", "PENDING", "PartitionTimeLimit"),
        SqueueJob("14", "other", "PENDING", "Resources"),
    ]
    assert scancel_argv("12", graceful=True) == ["scancel", "--batch", "--signal=TERM", "12"]
    assert scancel_argv("12", graceful=False) == ["scancel", "12"]


def test_pending_reasons_that_never_clear_fail_the_job_and_others_wait() -> None:
    assert "PartitionTimeLimit" in (pending_failure(SqueueJob("13", "m.b", "PENDING", "PartitionTimeLimit")) or "")
    assert pending_failure(SqueueJob("13", "m.b", "PENDING", "BadConstraints")) is not None
    for reason in ("Resources", "Priority", "None", "BeginTime"):
        assert pending_failure(SqueueJob("13", "m.b", "PENDING", reason)) is None
    assert pending_failure(SqueueJob("13", "m.b", "RUNNING", "PartitionTimeLimit")) is None
    assert status_of(SqueueJob("1", "m", "PENDING", "Resources")) == ManagedWorkerState.STARTING
    assert status_of(SqueueJob("1", "m", "CONFIGURING", "None")) == ManagedWorkerState.STARTING
    assert status_of(SqueueJob("1", "m", "RUNNING", "None")) == ManagedWorkerState.RUNNING


def test_a_fatal_reason_must_hold_before_the_job_is_given_up_and_the_pending_timeout_applies_to_any() -> None:
    fatal = SqueueJob("13", "m.b", "PENDING", "PartitionConfig")
    waiting = SqueueJob("13", "m.b", "PENDING", "Resources")
    options = SlurmOptions()
    assert give_up(fatal, 10.0, 9.0, None, options) == (10.0, None)  # first seen: wait to confirm
    assert give_up(fatal, 11.0, 9.0, 10.0, options) == (10.0, None)
    since, why = give_up(fatal, 10.0 + FATAL_CONFIRM_SECONDS, 9.0, 10.0, options)
    assert since == 10.0 and why is not None and "PartitionConfig" in why
    assert give_up(waiting, 11.0, 9.0, 10.0, options) == (None, None)  # a reason that cleared resets it
    assert give_up(waiting, 1000.0, 9.0, None, options) == (None, None)  # no timeout: waits for ever
    since, why = give_up(waiting, 100.0, 9.0, None, SlurmOptions(pending_timeout_seconds=60))
    assert why == "job 13 still pending after 60 s (reason Resources)"
    assert give_up(
        SqueueJob("13", "m.b", "RUNNING", "None"), 100.0, 9.0, None, SlurmOptions(pending_timeout_seconds=60)
    ) == (None, None)


def test_how_a_job_ended_comes_from_scontrol() -> None:
    line = (
        "JobId=4 JobName=m.a UserId=root(0) Priority=1 JobState=CANCELLED Reason=None Dependency=(null) "
        "Requeue=1 Restarts=0 BatchFlag=1 ExitCode=0:9 RunTime=00:00:03 Command=(null) WorkDir=/tmp"
    )
    fields = parse_scontrol(line)
    assert fields["JobState"] == "CANCELLED" and fields["ExitCode"] == "0:9" and fields["WorkDir"] == "/tmp"
    assert describe_end("4", fields) == "job 4 ended CANCELLED (reason None, exit code 0:9)"
    assert describe_end("4", {"JobState": "COMPLETED", "ExitCode": "0:0"}) is None
    assert "no longer knows" in (describe_end("4", parse_scontrol("")) or "")


# -- configuration and command line ----------------------------------------------------------------


def test_the_command_line_reads_adapter_then_address_and_hands_worker_settings_on() -> None:
    parser = cli.build_parser()
    config = cli.parse_config(
        parser,
        ["slurm", ADDRESS, "--min-workers", "1", "--max-workers", "5", "--slurm-sbatch=--constraint=a;--qos=b",
         "--grace-period-seconds", "7", "--name", "gpus"],
    )  # fmt: skip
    assert (config.adapter, config.address, config.min_workers, config.max_workers) == ("slurm", ADDRESS, 1, 5)
    assert config.slurm_sbatch == ("--constraint=a", "--qos=b") and config.manager_name == "gpus"
    worker = config.worker_config()
    assert worker.grace_period_seconds == 7 and worker.address == ADDRESS and not worker.exit_with_parent


def test_a_config_file_section_and_the_launchers_trailing_address(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[worker_manager]\nadapter = "native"\nmax_workers = 3\nslurm_sbatch = ["--qos=x"]\n')
    config = cli.parse_config(cli.build_parser(), ["-c", str(path), ADDRESS])
    assert (config.adapter, config.address, config.max_workers, config.slurm_sbatch) == (
        "native",
        ADDRESS,
        3,
        ("--qos=x",),
    )
    assert role("worker_manager").module == "scaler.cli.worker_manager"
    assert config.manager_name.startswith("native-")


def test_bad_settings_are_usage_errors(capsys) -> None:
    for argv in (["nomad", ADDRESS], ["native"], ["native", ADDRESS, "--min-workers", "3", "--max-workers", "2"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.parse_config(cli.build_parser(), argv)
        assert exit_info.value.code == 2
    with pytest.raises(ValueError):
        WorkerManagerConfig(adapter="native", address=ADDRESS, poll_interval_seconds=0)


def test_help_shows_each_default() -> None:
    text = " ".join(cli.build_parser().format_help().split())
    for shown in ("(default: 0)", "(default: 4)", "(default: scaler-%x-%j.out)", "ADAPTER", "slurm adapter:"):
        assert shown in text


def test_the_launcher_starts_a_worker_manager_section_with_the_scheduler_address(tmp_path) -> None:
    from scaler.cli.launcher import plan

    path = tmp_path / "c.toml"
    path.write_text(
        '[scheduler]\naddress = "tcp://127.0.0.1:9999"\n[worker_manager]\nadapter = "native"\nmax_workers = 2\n'
    )
    children = plan(str(path))
    assert [child.role.section for child in children] == ["scheduler", "worker_manager"]
    command = children[1].command
    assert command[1:3] == ["-m", "scaler.cli.worker_manager"] and command[-1] == "tcp://127.0.0.1:9999"
    config = cli.parse_config(cli.build_parser(), command[3:])
    assert (config.adapter, config.address, config.max_workers, config.exit_with_parent) == (
        "native",
        "tcp://127.0.0.1:9999",
        2,
        True,
    )
    assert not config.worker_config().exit_with_parent  # its workers outlive it
