"""Each processor leads its own process group, so that stopping it stops every program its tasks started.

A processor calls ``lead_own_group()`` first thing; whatever its tasks start (``subprocess.run``,
a shell pipeline, a pool of workers) then shares its process group. ``kill_group(pid)`` is how
its agent stops it (cancel, timeout, restart, crash, worker stop), and ``kill_own_group()`` how
it stops itself once its agent is gone. Each SIGKILLs the whole group, and the
descendants that had moved to a group of their own (``start_new_session=True``) while they
were still below the processor. A descendant that left the group *and* lost its parent (a
daemon's double fork) cannot be found, and outlives its task.

Programs a task starts do not inherit the processor's SIGTERM/SIGINT handlers (a handler
resets on ``exec``); in a group of their own they are out of reach of a terminal's Ctrl-C to
the worker, which is what we want: only the agent stops tasks.

A group, not a session (``setsid``): with the kernel's autogroup scheduling (on by default on
desktops and many servers) each session is scheduled as a unit, so a processor in a session of
its own competes with its agent for the CPU instead of sharing the worker's share, and on a busy
machine the agent-processor ping-pong of every task slowed down (about 1,700 against 2,300
no-op tasks/s on a loaded 2-core VM; see docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import os
import signal

import psutil

_PROC_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def lead_own_group() -> bool:
    """Make the calling process the leader of a new process group; False if it cannot."""
    try:
        os.setpgid(0, 0)
    except (AttributeError, OSError):  # no setpgid (Windows)
        return False
    return True


def _children(pid: int) -> list[int]:
    # /proc/PID/task/TID/children costs microseconds per process; psutil's walk reads every
    # process on the machine (~10 ms), which would delay each cancel by as much.
    if not _PROC_CHILDREN:
        with contextlib.suppress(psutil.Error):
            return [child.pid for child in psutil.Process(pid).children()]
        return []
    found: list[int] = []
    with contextlib.suppress(OSError):
        for thread in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{thread}/children") as children:
                found += [int(child) for child in children.read().split()]
    return found


def escaped_descendants(leader: int) -> list[psutil.Process]:
    """Processes below ``leader`` (a live group leader) that are no longer in its group."""
    escaped: list[psutil.Process] = []
    below, seen = _children(leader), {leader}
    while below:
        pid = below.pop()
        if pid in seen:
            continue
        seen.add(pid)
        below += _children(pid)
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(pid) != leader:
                escaped.append(psutil.Process(pid))  # remembers its start time: a reused pid is never hit
    return escaped


def kill_group(leader: int, leader_alive: bool = True) -> None:
    """SIGKILL the process group led by ``leader`` (a processor's pid), and what escaped it.

    ``leader`` must be a pid that called ``lead_own_group()``, never any other: the group id is
    the pid itself, so this cannot reach the caller's own group. With ``leader_alive`` False
    (it crashed) its remaining group is still killed, but escaped descendants can no longer
    be found: its exit handed them to init.
    """
    if leader <= 1:
        raise ValueError(f"{leader} is not a processor's pid")  # killpg(0) would hit the caller's own group
    escaped = escaped_descendants(leader) if leader_alive else []
    with contextlib.suppress(ProcessLookupError, PermissionError):  # no such group: it led none, or all are gone
        os.killpg(leader, signal.SIGKILL)
    for process in escaped:
        with contextlib.suppress(psutil.Error):
            process.kill()


def kill_own_group() -> None:
    """End the calling processor: what escaped its group, then the group with itself in it.

    If it leads no group of its own (``lead_own_group`` failed), it only exits: a group it did
    not make is never killed.
    """
    me = os.getpid()
    if os.getpgid(0) != me:
        os._exit(1)  # never a group this process did not make
    for process in escaped_descendants(me):
        with contextlib.suppress(psutil.Error):
            process.kill()
    os.killpg(me, signal.SIGKILL)
