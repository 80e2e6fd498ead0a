"""A real single-node Slurm for the tests: munge, slurmctld and slurmd started as root in a temporary directory.

Follows ../shared/notes/deployment-testbeds.md. ``SlurmBed.unavailable()`` says why it cannot run
here (not root, packages missing); ``start()`` brings the node up (idle in ``sinfo``), and
``stop()`` cancels every job, waits for an empty queue, shuts the daemons down and stops munged if
it started it, whatever state the start got to.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

TOOLS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "slurmctld", "slurmd", "munge", "munged")
MUNGE_KEY = Path("/etc/munge/munge.key")


def unavailable() -> str | None:
    """Why a Slurm test bed cannot run here, or None."""
    if os.geteuid() != 0:
        return "the Slurm tests start slurmctld, slurmd and munged as root; run them as root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"Slurm or munge is not installed (missing {', '.join(missing)}): "
            "apt-get install --no-install-recommends slurm-wlm munge"
        )
    return None


def _conf(directory: Path, host: str, cpus: int) -> str:
    return f"""ClusterName=scalertest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=300
MailProg=/bin/true
StateSaveLocation={directory}/state
SlurmdSpoolDir={directory}/spool
SlurmctldPidFile={directory}/slurmctld.pid
SlurmdPidFile={directory}/slurmd.pid
SlurmctldLogFile={directory}/slurmctld.log
SlurmdLogFile={directory}/slurmd.log
NodeName={host} CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=60 State=UP
"""


class SlurmBed:
    """One single-node Slurm cluster under ``directory``; ``env`` is what its commands need (SLURM_CONF)."""

    def __init__(self, directory: Path, cpus: int = 8) -> None:
        self.directory = directory
        self.cpus = cpus
        self.conf = directory / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self._munged_pid: int | None = None

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> str:
        """Run a Slurm command against this cluster; its stdout."""
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def start(self) -> None:
        """Start munged (unless one runs), slurmctld and slurmd; wait until the node is idle."""
        host = socket.gethostname().split(".")[0]
        try:
            socket.gethostbyname(host)
        except OSError:
            with open("/etc/hosts", "a") as hosts:  # Slurm looks its own host name up
                hosts.write(f"127.0.0.1 {host}\n")
        (self.directory / "state").mkdir(parents=True, exist_ok=True)
        (self.directory / "spool").mkdir(exist_ok=True)
        self.conf.write_text(_conf(self.directory, host, self.cpus))
        self._start_munge()
        subprocess.run(["slurmctld"], env=self.env, check=True, timeout=30)
        subprocess.run(["slurmd"], env=self.env, check=True, timeout=30)
        deadline = time.monotonic() + 30
        while self.run("sinfo", "--noheader", "--format=%T", check=False).strip() != "idle":
            if time.monotonic() > deadline:
                raise RuntimeError(f"Slurm did not come up: {self.logs()}")
            time.sleep(0.25)

    def _start_munge(self) -> None:
        if subprocess.run(["munge", "-n"], capture_output=True, check=False).returncode == 0:
            return  # a munged runs already: use it, and leave it running
        if not MUNGE_KEY.exists() or MUNGE_KEY.stat().st_size == 0:
            subprocess.run(["mungekey", "--create", f"--keyfile={MUNGE_KEY}"], check=True, timeout=30)
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)
        for directory in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
            Path(directory).mkdir(parents=True, exist_ok=True)
            shutil.chown(directory, "munge", "munge")
        Path("/run/munge").chmod(0o755)
        subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"], check=True, timeout=30)
        with contextlib.suppress(OSError, ValueError):
            self._munged_pid = int(Path("/run/munge/munged.pid").read_text().strip())

    def jobs(self) -> list[str]:
        """Every job id in the queue."""
        return self.run("squeue", "--noheader", "--format=%i", check=False).split()

    def stop(self) -> None:
        """Cancel every job, wait for an empty queue, stop the daemons, stop munged if started here."""
        if self.conf.exists():
            with contextlib.suppress(Exception):
                self.run("scancel", "--user=root", "--full", check=False)
                deadline = time.monotonic() + 20
                while self.jobs() and time.monotonic() < deadline:
                    time.sleep(0.25)
            with contextlib.suppress(Exception):
                self.run("scontrol", "shutdown", check=False)
        for pid_file in ("slurmctld.pid", "slurmd.pid"):
            _stop_pid_file(self.directory / pid_file)
        if self._munged_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._munged_pid, signal.SIGTERM)
            _wait_pid(self._munged_pid)

    def logs(self) -> str:
        """The last lines of the daemons' logs, for a failure message."""
        text = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.directory / name
            if path.exists():
                text.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(text)


def _stop_pid_file(path: Path) -> None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    if not _wait_pid(pid, 10):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_pid(pid, 5):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _wait_pid(pid: int, timeout: float = 10) -> bool:
    """Wait until ``pid`` is gone; True if it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False
