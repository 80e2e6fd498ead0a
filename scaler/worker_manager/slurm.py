"""The ``slurm`` adapter: one ``sbatch`` job per worker, followed through ``squeue``, stopped by ``scancel``.

Each worker is a batch job named after it (``MANAGER.HEX``), from a script this module writes
(``job_script``) and hands to ``sbatch`` on its stdin. The script ``exec``s the worker, so the
worker *is* the batch step's process: ``scancel --batch --signal=TERM JOB`` reaches it and it
drains (a plain ``scancel --signal=TERM`` signals job steps only, which a batch script started
directly is not). A restarted manager finds its jobs again by their names in ``squeue``.

A job that cannot start is cleaned up: pending for a reason Slurm will not get over (a constraint
no node has, a time over the partition's limit...; ``FATAL_PENDING_REASONS``, held for
``FATAL_CONFIRM_SECONDS``), or pending past
``pending_timeout_seconds``, it is cancelled and reported FAILED with the reason. A job that ended
without being asked (killed, failed, timed out) is reported FAILED with what ``scontrol`` says.

The command lines and the parsing of ``squeue`` and ``scontrol`` output are pure functions, tested
without Slurm; ``SlurmAdapter`` only runs them.
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
import re
import shlex
import subprocess
import time
from collections.abc import Sequence

from scaler.protocol.messages import ManagedWorkerState
from scaler.worker_manager.adapter import EngineAdapter, WorkerCommand, WorkerStatus, check_manager_name, owned_by

logger = logging.getLogger(__name__)

SQUEUE_FORMAT = "%i|%j|%T|%r"
# A fatal pending reason must hold this long before the job is given up: Slurm shows some of them
# (PartitionConfig) for a moment while it settles on the final one.
FATAL_CONFIRM_SECONDS = 3.0
_COMMAND_SECONDS = 30.0

# Pending reasons that no amount of waiting fixes: the job is cancelled and reported FAILED.
FATAL_PENDING_REASONS = frozenset(
    {
        "BadConstraints",
        "PartitionConfig",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "InvalidAccount",
        "InvalidQOS",
        "AccountNotAllowed",
        "QOSNotAllowed",
        "DependencyNeverSatisfied",
        "ReqNodeNotAvail, UnavailableNodes",
    }
)
_STARTING_STATES = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "RESIZING"})
_RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"})


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """The ``#SBATCH`` options of every worker job; empty strings and 0 leave Slurm's defaults."""

    partition: str = ""
    time: str = ""
    cpus_per_task: int = 0
    mem: str = ""
    account: str = ""
    output: str = "scaler-%x-%j.out"
    extra_sbatch: tuple[str, ...] = ()  # more options, as they follow ``#SBATCH``, e.g. "--constraint=gpu"
    setup: tuple[str, ...] = ()  # shell lines run before the worker, e.g. "module load python"
    pending_timeout_seconds: float = 0.0  # cancel a job pending longer than this (0: never)


@dataclasses.dataclass(frozen=True)
class SqueueJob:
    """One line of ``squeue -o SQUEUE_FORMAT``."""

    job_id: str
    name: str
    state: str
    reason: str


def job_script(name: str, command: WorkerCommand, options: SlurmOptions) -> str:
    """The batch script of worker ``name``: its ``#SBATCH`` lines, then the worker, ``exec``ed."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}"]
    if options.output:
        lines.append(f"#SBATCH --output={options.output}")
    for flag, value in (
        ("--partition", options.partition),
        ("--time", options.time),
        ("--cpus-per-task", str(options.cpus_per_task) if options.cpus_per_task > 0 else ""),
        ("--mem", options.mem),
        ("--account", options.account),
    ):
        if value:
            lines.append(f"#SBATCH {flag}={value}")
    lines += [f"#SBATCH {extra.strip()}" for extra in options.extra_sbatch if extra.strip()]
    lines += [
        f"# One scaler worker, started by worker manager {name.rpartition('.')[0]}. It is exec'ed, so that",
        "# `scancel --batch --signal=TERM` reaches it: it hands its queued tasks back, finishes the running one.",
        *options.setup,
        f"export SCALER_WORKER_NAME={shlex.quote(name)}",
        "exec " + shlex.join(command.argv(name)),
        "",
    ]
    return "\n".join(lines)


def sbatch_argv() -> list[str]:
    """``sbatch`` reading the script from stdin, printing only the job id."""
    return ["sbatch", "--parsable"]


def parse_sbatch(output: str) -> str:
    """The job id in ``sbatch --parsable`` output (``ID`` or ``ID;CLUSTER``); ValueError if there is none."""
    text = output.strip().splitlines()[-1] if output.strip() else ""
    job_id = text.split(";")[0].strip()
    if not job_id.isdigit():
        raise ValueError(f"sbatch printed no job id: {output.strip()!r}")
    return job_id


def squeue_argv(user: str) -> list[str]:
    """``squeue`` listing ``user``'s jobs (pending and running), one ``SQUEUE_FORMAT`` line each."""
    return ["squeue", "--noheader", f"--user={user}", f"--format={SQUEUE_FORMAT}"]


def parse_squeue(output: str) -> list[SqueueJob]:
    """The jobs in ``squeue --format=SQUEUE_FORMAT`` output; malformed lines are skipped."""
    jobs = []
    for line in output.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) != 4 or not parts[0]:
            continue
        jobs.append(SqueueJob(*(part.strip() for part in parts)))
    return jobs


def scancel_argv(job_id: str, graceful: bool) -> list[str]:
    """Graceful: SIGTERM to the batch step (the exec'ed worker), so it drains; else cancel the job outright."""
    return ["scancel", "--batch", "--signal=TERM", job_id] if graceful else ["scancel", job_id]


def scontrol_argv(job_id: str) -> list[str]:
    """``scontrol show job`` on one line."""
    return ["scontrol", "--oneliner", "show", "job", job_id]


def parse_scontrol(output: str) -> dict[str, str]:
    """``Key=Value`` pairs of ``scontrol --oneliner show job`` (values without spaces suffice here)."""
    return dict(re.findall(r"(?:^|\s)([A-Za-z][A-Za-z:/]*)=(\S*)", output))


def pending_failure(job: SqueueJob) -> str | None:
    """Why a pending job will never start, or None if it may yet."""
    if job.state == "PENDING" and (job.reason in FATAL_PENDING_REASONS or job.reason.startswith("BadConstraints")):
        return f"job {job.job_id} cannot start: pending with reason {job.reason}"
    return None


def give_up(
    job: SqueueJob, now: float, submitted_at: float, fatal_since: float | None, options: SlurmOptions
) -> tuple[float | None, str | None]:
    """Whether to cancel a queued job that has not started: ``(fatal_since, why)``, ``why`` None to keep waiting.

    A fatal pending reason must hold for ``FATAL_CONFIRM_SECONDS`` (``fatal_since`` carries when it
    was first seen from one poll to the next); any pending job is given up after the options'
    ``pending_timeout_seconds``, if set.
    """
    why = pending_failure(job)
    if why is None:
        fatal_since = None
    elif fatal_since is None or now - fatal_since < FATAL_CONFIRM_SECONDS:
        fatal_since = now if fatal_since is None else fatal_since
        why = None
    timeout = options.pending_timeout_seconds
    if why is None and job.state == "PENDING" and timeout > 0 and now - submitted_at > timeout:
        why = f"job {job.job_id} still pending after {timeout:g} s (reason {job.reason})"
    return fatal_since, why


def status_of(job: SqueueJob) -> ManagedWorkerState:
    """What a job's squeue state means for its worker."""
    return ManagedWorkerState.RUNNING if job.state in _RUNNING_STATES else ManagedWorkerState.STARTING


def describe_end(job_id: str, fields: dict[str, str]) -> str | None:
    """Why a job that left the queue unasked ended, from ``scontrol``; None for a clean end (COMPLETED, exit 0)."""
    state = fields.get("JobState", "")
    if not state:
        return f"job {job_id} left the queue (Slurm no longer knows it)"
    if state == "COMPLETED" and fields.get("ExitCode", "0:0") == "0:0":
        return None
    return (
        f"job {job_id} ended {state} (reason {fields.get('Reason', 'None')}, exit code {fields.get('ExitCode', '?')})"
    )


@dataclasses.dataclass
class _Job:
    job_id: str
    submitted_at: float
    state: str = "PENDING"
    fatal_since: float | None = None  # when a fatal pending reason was first seen


class SlurmAdapter(EngineAdapter):
    """Worker jobs for the manager called ``manager_name``; see the module docstring."""

    kind = "slurm"

    def __init__(self, manager_name: str, command: WorkerCommand, options: SlurmOptions, user: str = "") -> None:
        self.manager_name = check_manager_name(manager_name)
        self.command = command
        self.options = options
        self.user = user or getpass.getuser()
        self._jobs: dict[str, _Job] = {}
        self._failed: dict[str, str] = {}
        self._stopping: set[str] = set()

    def job_id(self, name: str) -> str | None:
        """The Slurm job id of worker ``name``, if it has a job."""
        job = self._jobs.get(name)
        return job.job_id if job is not None else None

    def adopt(self) -> list[str]:
        """Take over the jobs in ``squeue`` named after this manager."""
        now = time.monotonic()
        for job in parse_squeue(self._run(squeue_argv(self.user))):
            if owned_by(self.manager_name, job.name):
                self._jobs[job.name] = _Job(job.job_id, now, job.state)
        return sorted(self._jobs)

    def start(self, name: str) -> None:
        """Submit worker ``name``'s job; a refused submission is FAILED with sbatch's error."""
        script = job_script(name, self.command, self.options)
        try:
            job_id = parse_sbatch(self._run(sbatch_argv(), stdin=script))
        except (OSError, ValueError, subprocess.SubprocessError) as error:
            self._failed[name] = f"sbatch refused the job: {error}"
            return
        self._jobs[name] = _Job(job_id, time.monotonic())
        logger.info("worker %s is Slurm job %s", name, job_id)

    def stop(self, name: str) -> None:
        """SIGTERM the worker through ``scancel --batch``, so it drains; a job not yet running is just cancelled."""
        job = self._jobs.get(name)
        if job is None or name in self._stopping:
            return
        self._stopping.add(name)
        self._cancel(job.job_id, graceful=job.state in _RUNNING_STATES)

    def poll(self) -> dict[str, WorkerStatus]:
        """Read ``squeue``; cancel jobs that cannot start; explain jobs that ended unasked."""
        now = time.monotonic()
        queued = {job.name: job for job in parse_squeue(self._run(squeue_argv(self.user)))}
        report: dict[str, WorkerStatus] = {}
        for name, job in list(self._jobs.items()):
            seen = queued.get(name)
            if seen is None or seen.job_id != job.job_id:
                del self._jobs[name]
                if name not in self._stopping:
                    why = self._why_ended(job.job_id)
                    if why is not None:
                        self._failed[name] = why
                self._stopping.discard(name)
                continue
            job.state = seen.state
            job.fatal_since, why = give_up(seen, now, job.submitted_at, job.fatal_since, self.options)
            if why is not None and name not in self._stopping:
                self._cancel(job.job_id, graceful=False)
                del self._jobs[name]
                self._failed[name] = why
                continue
            report[name] = WorkerStatus(status_of(seen), seen.reason if seen.state == "PENDING" else "")
        report.update({name: WorkerStatus(ManagedWorkerState.FAILED, why) for name, why in self._failed.items()})
        return report

    def forget(self, name: str) -> None:
        """Drop a FAILED worker (its job is already gone)."""
        self._failed.pop(name, None)

    def _why_ended(self, job_id: str) -> str | None:
        try:
            output = self._run(scontrol_argv(job_id), check=False)
        except (OSError, subprocess.SubprocessError) as error:  # it is gone either way: say so
            return f"job {job_id} left the queue (scontrol could not say how: {error})"
        return describe_end(job_id, parse_scontrol(output))

    def _cancel(self, job_id: str, graceful: bool) -> None:
        try:
            self._run(scancel_argv(job_id, graceful))
        except (OSError, subprocess.SubprocessError) as error:
            logger.warning("worker manager %s: scancel %s failed: %s", self.manager_name, job_id, error)

    def _run(self, argv: Sequence[str], stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=_COMMAND_SECONDS, check=False
        )
        if check and result.returncode != 0:
            raise subprocess.SubprocessError(
                f"{shlex.join(argv)} exited with {result.returncode}: {result.stderr.strip()}"
            )
        return result.stdout
