"""The compatibility tables of ``docs/cli.md``, made from the settings and ``compat.py``.

``python -m scaler.config.compat_tables`` prints them; a test checks that ``docs/cli.md`` holds
exactly this text between its markers.
"""

from __future__ import annotations

from collections.abc import Iterable

from scaler.config.cluster import ClusterConfig
from scaler.config.command_line import Unsupported
from scaler.config.compat import (
    CLUSTER_UNSUPPORTED,
    COMBO_UNSUPPORTED_KWARGS,
    SCALER_KWARGS,
    SCHEDULER_UNSUPPORTED,
)
from scaler.config.scheduler import SchedulerConfig
from scaler.config.settings import SAME, settings_of

Row = tuple[str, str, str]


def _flags(flags: Iterable[str]) -> str:
    ordered = sorted(flags, key=lambda flag: (flag.startswith("--"), len(flag)))
    return ", ".join(f"`{flag}`" for flag in ordered)


def _status(meaning: str) -> tuple[str, str]:
    return ("same", "") if meaning == SAME else ("mapped", meaning.removeprefix("mapped: "))


def flag_rows(cls: type, unsupported: Iterable[Unsupported]) -> list[Row]:
    """(flags, status, what scaler does) for every Scaler/opengris flag of ``cls``'s command."""
    rows = [("`ADDRESS` (positional)", "same", "")]
    for field in settings_of(cls):
        if field.meta.scaler_flags:
            status, detail = _status(field.meta.scaler_meaning)
            rows.append((_flags(field.meta.scaler_flags), status, detail or field.meta.help))
    rows.append(("`-c`, `--config`", "same", "a TOML file; see [Configuration files](#configuration-files)"))
    for entry in unsupported:
        rows.append((_flags(entry.flags), "refused" if entry.refused else "no effect", entry.reason))
    return rows


def kwarg_rows() -> list[Row]:
    """(keyword, status, what scaler does) for the keyword arguments of Scaler's combo and Cluster."""
    fields = {field.name: field for cls in (SchedulerConfig, ClusterConfig) for field in settings_of(cls)}
    rows = []
    for name in SCALER_KWARGS:
        entry = COMBO_UNSUPPORTED_KWARGS.get(name)
        if entry is not None:
            rows.append((f"`{name}`", "refused unless None" if entry.refused else "no effect", entry.reason))
        elif name in fields:
            status, detail = _status(fields[name].meta.scaler_meaning)
            rows.append((f"`{name}`", status, detail or fields[name].meta.help))
        else:
            raise AssertionError(f"{name} is neither a setting nor listed in compat.py")
    return rows


def _table(rows: list[Row], first: str) -> str:
    lines = [f"| {first} | here | what scaler does |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def counts(rows: list[Row]) -> dict[str, int]:
    """How many rows have each status."""
    result: dict[str, int] = {}
    for _, status, _ in rows:
        result[status] = result.get(status, 0) + 1
    return result


def markdown() -> str:
    """The compatibility tables, as ``docs/cli.md`` holds them between its markers."""
    tables = {
        "`scaler_scheduler`": (flag_rows(SchedulerConfig, SCHEDULER_UNSUPPORTED), "Scaler / opengris flag"),
        "`scaler_cluster`": (flag_rows(ClusterConfig, CLUSTER_UNSUPPORTED), "Scaler / opengris flag"),
        "Keyword arguments of `SchedulerClusterCombo` and `Cluster`": (kwarg_rows(), "Scaler / opengris keyword"),
    }
    parts = []
    for title, (rows, first) in tables.items():
        parts += [f"### {title}", "", _table(rows, first), ""]
    summary = "; ".join(
        f"{title}: " + ", ".join(f"{count} {status}" for status, count in counts(rows).items())
        for title, (rows, _) in tables.items()
    )
    parts.append(f"Counts: {summary}.")
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown())
