"""``--plot FILE.png``: throughput against the number of workers, from ``--scale-workers``.

matplotlib is imported only here, and only when a plot is asked for (``pip install 'scaler[bench]'``).
"""

from __future__ import annotations

from typing import Any

INSTALL_HINT = "--plot needs matplotlib: pip install 'scaler[bench]' (or pip install matplotlib)"


def require_matplotlib() -> None:
    """Raise ``RuntimeError`` with the install hint if matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise RuntimeError(f"{INSTALL_HINT} ({error})") from None


def plot_workers(entries: list[dict[str, Any]], path: str) -> None:
    """Draw tasks/s of scaler and ProcessPoolExecutor, and scaler's tasks per scheduler CPU-second, to ``path``."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt

    workers = [entry["workers"] for entry in entries]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    axes.plot(workers, [e["scaler_tasks_per_s"] for e in entries], "o-", label="scaler, tasks/s")
    axes.plot(workers, [e["ppe_tasks_per_s"] for e in entries], "s-", label="ProcessPoolExecutor, tasks/s")
    axes.plot(
        workers,
        [e["tasks_per_scheduler_cpu_s"] for e in entries],
        "^--",
        label="scaler, tasks per scheduler CPU-second",
    )
    axes.set_xscale("log", base=2)
    axes.set_xticks(workers, [str(count) for count in workers])
    axes.set_xlabel("workers")
    axes.set_ylabel("no-op tasks per second")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    tasks = entries[0]["tasks"] if entries else 0
    axes.set_title(f"No-op throughput against workers ({tasks:,} tasks, median of rounds)")
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
