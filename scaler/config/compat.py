"""What scaler does with the flags and keyword arguments of Scaler 1.9 and opengris-scaler 2.x.

Flags that mean the same here, or something close, are spellings of scaler's own settings
(``scaler_flags`` in each role's class). The others are listed here: their mechanism does not
exist in scaler, so they are accepted and logged once at INFO with what scaler does instead,
except the security ones scaler cannot honour, which are refused so that nobody who asked for
encryption gets a plain-text scheduler.

``python -m scaler.config.compat`` prints the compatibility tables of ``docs/cli.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from scaler.config.cluster import ClusterConfig
from scaler.config.scheduler import SchedulerConfig
from scaler.config.settings import SAME, Unsupported, settings_of

_IO_THREADS = "each scaler process uses one ZeroMQ I/O thread; the count is not configurable"
_EVENT_LOOP = "scaler runs its own poll loop, with no asyncio event loop to choose"
_OBJECT_STORAGE = "objects are stored in the scheduler itself; there is no separate object storage server"
_NO_MONITOR = "scaler has no monitor feed yet"
_POLICY = "there is one placement policy: each task goes to the least-loaded worker with the capabilities it asks for"
_BALANCE = "the scheduler moves queued tasks to a worker as soon as that worker goes idle, not on a timer"
_NO_ADAPTERS = "scaler has no worker adapters and does not start or stop workers itself; start them with scaler_cluster"
_TLS = (
    "scaler encrypts with ZeroMQ CURVE keys, not TLS: make keys with `scaler_keygen DIR` and start the scheduler "
    "with --keys-dir DIR (or --key-file and --allow-list-file); it never serves plain text in place of encryption"
)

SCHEDULER_UNSUPPORTED: tuple[Unsupported, ...] = (
    Unsupported(("--io-threads", "-it"), _IO_THREADS, kwarg="scheduler_io_threads"),
    Unsupported(("--worker-io-threads", "-wit"), _IO_THREADS),
    Unsupported(("--event-loop", "-e", "-el"), _EVENT_LOOP, kwarg="event_loop"),
    Unsupported(
        ("--object-retention-seconds", "-ot"),
        "functions and objects are freed as soon as no client, graph or task needs them, not after a time",
        kwarg="object_retention_seconds",
    ),
    Unsupported(("--load-balance-seconds", "-ls"), _BALANCE, kwarg="load_balance_seconds"),
    Unsupported(("--load-balance-trigger-times", "-lbt"), _BALANCE, kwarg="load_balance_trigger_times"),
    Unsupported(("--allocate-policy", "-ap"), _POLICY, kwarg="allocate_policy"),
    Unsupported(("--policy-engine-type", "-et"), _POLICY),
    Unsupported(("--policy-content", "-pc"), _POLICY),
    Unsupported(("--scaling-controller-strategy", "-scs"), _NO_ADAPTERS),
    Unsupported(("--adapter-webhook-urls", "--adapter-webhook-url", "-awu"), _NO_ADAPTERS, nargs="*"),
    Unsupported(("--monitor-address", "-ma"), _NO_MONITOR, kwarg="monitor_address"),
    Unsupported(("--status-report-interval-seconds", "-sri"), _NO_MONITOR),
    Unsupported(("--status-report-worker-limit", "-srwl"), _NO_MONITOR),
    Unsupported(("--object-storage-address", "-osa"), _OBJECT_STORAGE, kwarg="object_storage_address"),
    Unsupported(("--advertised-object-storage-address", "-aosa"), _OBJECT_STORAGE),
    Unsupported(("--object-storage-backend", "-osb"), _OBJECT_STORAGE),
    Unsupported(("--tls-cert", "-tc"), _TLS, refused=True),
    Unsupported(("--tls-key", "-tk"), _TLS, refused=True),
)

CLUSTER_UNSUPPORTED: tuple[Unsupported, ...] = (
    Unsupported(("--io-threads", "-it"), _IO_THREADS, kwarg="worker_io_threads"),
    Unsupported(("--worker-io-threads", "-wit"), _IO_THREADS),
    Unsupported(("--event-loop", "-e", "-el"), _EVENT_LOOP, kwarg="event_loop"),
    Unsupported(
        ("--garbage-collect-interval-seconds", "-gc"),
        "processors leave garbage collection to Python's own collector",
        kwarg="garbage_collect_interval_seconds",
    ),
    Unsupported(
        ("--trim-memory-threshold-bytes", "-tm"),
        "scaler does not ask libc to trim memory; a processor that crashed or was cancelled is replaced",
        kwarg="trim_memory_threshold_bytes",
    ),
    Unsupported(
        ("--hard-processor-suspend", "-hps"),
        "a processor parked while its task waits on other tasks is blocked in that wait: there is nothing to suspend",
        kwarg="hard_processor_suspend",
        nargs=0,
    ),
    Unsupported(("--log-hub-address", "-la"), "each worker logs to its own --logging-paths"),
    Unsupported(
        ("--per-worker-task-queue-size", "-wtqs"),
        "the scheduler's --per-worker-queue-size bounds each worker's queue",
        kwarg="per_worker_task_queue_size",
    ),
    Unsupported(("--object-storage-address", "-osa"), _OBJECT_STORAGE, kwarg="object_storage_address"),
    Unsupported(
        ("--preload",),
        "scaler runs no code in a processor before its tasks; import or set up the module in the task function, "
        "which would otherwise run without it",
        kwarg="preload",
        refused=True,
    ),
)

# Keyword arguments of Scaler's and opengris's SchedulerClusterCombo and Cluster that no flag spells.
_KWARG_ONLY: tuple[Unsupported, ...] = (
    Unsupported((), _OBJECT_STORAGE, kwarg="object_storage_config"),
    Unsupported((), _POLICY, kwarg="scaler_policy"),
    Unsupported((), "scaler has no worker managers; the combo's workers are its own", kwarg="worker_manager_id"),
    Unsupported((), _TLS, kwarg="security_config", refused=True),
)


def _kwargs(entries: Iterable[Unsupported]) -> dict[str, Unsupported]:
    result: dict[str, Unsupported] = {}
    for entry in entries:
        if entry.kwarg is not None:
            result.setdefault(entry.kwarg, entry)
    return result


COMBO_UNSUPPORTED_KWARGS = _kwargs((*SCHEDULER_UNSUPPORTED, *CLUSTER_UNSUPPORTED, *_KWARG_ONLY))
CLUSTER_UNSUPPORTED_KWARGS = _kwargs(CLUSTER_UNSUPPORTED)


def split_unsupported(
    owner: str, kwargs: Mapping[str, Any], unsupported: Mapping[str, Unsupported], logger: logging.Logger
) -> dict[str, Any]:
    """``kwargs`` without Scaler's unsupported ones, each logged once at INFO; refused ones raise ValueError.

    A refused keyword whose value is None asks for nothing, and passes.
    """
    rest = {}
    for key, value in kwargs.items():
        entry = unsupported.get(key)
        if entry is None:
            rest[key] = value
        elif entry.refused:
            if value is not None:
                raise ValueError(f"{owner}: {key}={value!r} is not supported: {entry.reason}")
        else:
            logger.info("%s: %s=%r is accepted for compatibility with Scaler and has no effect: %s",
                        owner, key, value, entry.reason)  # fmt: skip
    return rest


# -- the tables of docs/cli.md -------------------------------------------------------------------


def _flags(flags: Iterable[str]) -> str:
    ordered = sorted(flags, key=lambda flag: (flag.startswith("--"), len(flag)))
    return ", ".join(f"`{flag}`" for flag in ordered)


def flag_rows(cls: type, unsupported: Iterable[Unsupported]) -> list[tuple[str, str, str]]:
    """(flags, status, what scaler does) for every Scaler/opengris flag of ``cls``'s command."""
    rows = [("`ADDRESS` (positional)", "same", "")]
    for field in settings_of(cls):
        if not field.meta.scaler_flags:
            continue
        meaning = field.meta.scaler_meaning
        if meaning == SAME:
            rows.append((_flags(field.meta.scaler_flags), "same", f"`{field.flag}`"))
        else:
            detail = meaning.removeprefix("mapped: ")
            rows.append((_flags(field.meta.scaler_flags), "mapped", f"`{field.flag}`: {detail}"))
    rows.append(("`-c`, `--config`", "same", "a TOML file; see [Configuration files](#configuration-files)"))
    for entry in unsupported:
        rows.append((_flags(entry.flags), "refused" if entry.refused else "no effect", entry.reason))
    return rows


def kwarg_rows() -> list[tuple[str, str, str]]:
    """(keyword, status, what scaler does) for the keyword arguments of Scaler's combo and Cluster."""
    rows = []
    ours = {field.name for cls in (SchedulerConfig, ClusterConfig) for field in settings_of(cls)}
    for name in ("n_workers", "address", "logging_paths", "logging_level", "logging_config_file", "logging_format"):
        rows.append((f"`{name}`", "same", ""))
    for name in ("heartbeat_interval_seconds", "client_timeout_seconds", "worker_timeout_seconds",
                 "task_timeout_seconds", "death_timeout_seconds", "per_worker_queue_size", "per_worker_capabilities",
                 "protected", "worker_names"):  # fmt: skip
        assert name in ours, name
        rows.append((f"`{name}`", "same", ""))
    rows.append(("`max_number_of_tasks_waiting`", "mapped", "a bound per client, past which `submit()` waits"))
    for name, entry in sorted(COMBO_UNSUPPORTED_KWARGS.items()):
        rows.append((f"`{name}`", "refused unless None" if entry.refused else "no effect", entry.reason))
    return rows


def _table(rows: list[tuple[str, str, str]], first: str) -> str:
    lines = [f"| {first} | here | what scaler does |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def counts(rows: list[tuple[str, str, str]]) -> dict[str, int]:
    """How many rows have each status."""
    result: dict[str, int] = {}
    for _, status, _ in rows:
        result[status] = result.get(status, 0) + 1
    return result


def markdown() -> str:
    """The compatibility tables, as ``docs/cli.md`` holds them between its markers."""
    scheduler = flag_rows(SchedulerConfig, SCHEDULER_UNSUPPORTED)
    cluster = flag_rows(ClusterConfig, CLUSTER_UNSUPPORTED)
    kwargs = kwarg_rows()
    parts = [
        "### `scaler_scheduler`",
        "",
        _table(scheduler, "Scaler / opengris flag"),
        "",
        "### `scaler_cluster`",
        "",
        _table(cluster, "Scaler / opengris flag"),
        "",
        "### Keyword arguments of `SchedulerClusterCombo` and `Cluster`",
        "",
        _table(kwargs, "Scaler / opengris keyword"),
        "",
        "Counts: "
        + "; ".join(
            f"{name}: " + ", ".join(f"{count} {status}" for status, count in counts(rows).items())
            for name, rows in (("scaler_scheduler", scheduler), ("scaler_cluster", cluster), ("keywords", kwargs))
        )
        + ".",
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown())
