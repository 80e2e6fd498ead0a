"""What scaler does with the flags and keyword arguments of Scaler 1.9 and opengris-scaler 2.x.

Flags that mean the same here, or something close, are spellings of scaler's own settings
(``scaler_flags`` in each role's class). The others are listed here: their mechanism does not
exist in scaler, so they are accepted and logged once at INFO with what scaler does instead,
except the security ones scaler cannot honour, which are refused so that nobody who asked for
encryption gets a plain-text scheduler.

``python -m scaler.config.compat_tables`` prints the compatibility tables of ``docs/cli.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from scaler.config.command_line import Unsupported

_IO_THREADS = "each scaler process uses one ZeroMQ I/O thread; the count is not configurable"
_EVENT_LOOP = "scaler runs its own poll loop, with no asyncio event loop to choose"
_OBJECT_STORAGE = "objects are stored in the scheduler itself; there is no separate object storage server"
_WORKER_LIMIT = "every snapshot of the status feed lists every worker"
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
    Unsupported(("--status-report-worker-limit", "-srwl"), _WORKER_LIMIT),
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


# Every keyword argument of Scaler's and opengris's SchedulerClusterCombo and Cluster.
SCALER_KWARGS: tuple[str, ...] = (
    "n_workers", "address", "object_storage_config", "object_storage_address", "monitor_address",
    "worker_io_threads", "scheduler_io_threads", "max_number_of_tasks_waiting", "heartbeat_interval_seconds",
    "client_timeout_seconds", "worker_timeout_seconds", "object_retention_seconds", "task_timeout_seconds",
    "death_timeout_seconds", "load_balance_seconds", "load_balance_trigger_times",
    "garbage_collect_interval_seconds", "trim_memory_threshold_bytes", "per_worker_queue_size",
    "per_worker_task_queue_size", "per_worker_capabilities", "hard_processor_suspend", "protected",
    "scaler_policy", "event_loop", "logging_paths", "logging_level", "logging_config_file", "logging_format",
    "worker_manager_id", "security_config", "worker_names", "preload",
)  # fmt: skip

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
