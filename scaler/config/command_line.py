"""The command line of a role, derived from its settings: the parser, and what a command line said.

Every flag defaults to ``argparse.SUPPRESS``, so only the flags actually given reach the
configuration, and a value from a ``-c`` file is never masked by a parser default.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from scaler.config.settings import GROUPS, LOGGING_LEVELS, describe_default, optional_of, settings_of


@dataclasses.dataclass(frozen=True)
class Unsupported:
    """A Scaler or opengris-scaler flag (or keyword argument) whose mechanism scaler does not have.

    Accepted and logged once at INFO with ``reason``, what scaler does instead; or, when
    ``refused``, an error (a security setting that cannot be honoured must never be ignored).
    """

    flags: tuple[str, ...]
    reason: str
    kwarg: str | None = None  # its name as a keyword argument of SchedulerClusterCombo or Cluster
    nargs: int | str | None = None  # argparse nargs: None for one value, 0 for a switch, "*" for a list
    refused: bool = False

    @property
    def name(self) -> str:
        """The long flag, or the keyword argument for a keyword-only entry."""
        return next((flag for flag in self.flags if flag.startswith("--")), self.kwarg or self.flags[0])

    def message(self) -> str:
        """The INFO line (or, refused, the error) for someone who used it."""
        if self.refused:
            return f"{self.name} is not supported: {self.reason}"
        return f"{self.name} is accepted for compatibility with Scaler and has no effect: {self.reason}"


class _Refuse(argparse.Action):
    """A refused flag: a usage error at once, naming what to use instead."""

    def __init__(self, option_strings: Sequence[str], dest: str, unsupported: Unsupported, **kwargs: Any) -> None:
        self.unsupported = unsupported
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None) -> None:
        parser.error(self.unsupported.message())


_UNSUPPORTED_DEST = "unsupported:"
_CONFIG_DEST = "config"


def build_parser(
    cls: type, prog: str, description: str, unsupported: Iterable[Unsupported] = (), epilog: str | None = None
) -> argparse.ArgumentParser:
    """The argparse parser of ``cls``'s command: one flag per setting, grouped, each showing its default.

    Builds and returns the parser only; it reads no file and changes nothing.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a misspelt or foreign flag is an error, never a silent match of another one
    )
    groups: dict[str, Any] = {}

    def group(title: str) -> Any:
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        return groups[title]

    fields = sorted(settings_of(cls), key=lambda field: GROUPS.index(field.meta.group))
    if any(field.meta.positional for field in fields):
        group("arguments")
    group("configuration file").add_argument(
        "-c",
        "--config",
        dest=_CONFIG_DEST,
        metavar="FILE.toml",
        default=argparse.SUPPRESS,
        help="read settings from the section of FILE.toml that this command owns; flags given here win over it",
    )
    for field in fields:
        meta = field.meta
        shown = meta.help
        if not meta.positional and "(default" not in meta.help:
            shown = f"{meta.help} (default: {describe_default(field)})"
        help_text = argparse.SUPPRESS if meta.hidden else shown.replace("%", "%%")
        if meta.positional:
            group(meta.group).add_argument(
                field.name,
                nargs="?",
                default=argparse.SUPPRESS,
                metavar=meta.metavar or field.name.upper(),
                help=help_text,
            )
            continue
        options: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS, "help": help_text}
        kind = optional_of(field.type) or field.type
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif meta.parse is not None:
            options["type"] = meta.parse
        elif typing.get_origin(kind) is tuple:
            options["nargs"] = "+"
        elif kind in (int, float):
            options["type"] = kind
        if meta.choices is not None:
            options["choices"] = meta.choices
            options["type"] = str.upper if meta.choices == LOGGING_LEVELS else options.get("type")
        if meta.metavar is not None:
            options["metavar"] = meta.metavar
        elif kind is not bool and meta.choices is None:
            options["metavar"] = _metavar(field.name, kind)
        group(meta.group).add_argument(*field.option_strings, **options)
    unsupported = list(unsupported)
    if unsupported:
        compat = parser.add_argument_group(
            "Scaler and opengris-scaler flags accepted for compatibility",
            "Each is accepted and logged at INFO with what scaler does instead, except those marked refused.",
        )
        for entry in unsupported:
            if not entry.flags:
                continue
            shown = f"refused: {entry.reason}" if entry.refused else f"no effect: {entry.reason}"
            extra: dict[str, Any]
            if entry.refused:
                extra = {"action": _Refuse, "unsupported": entry, "nargs": entry.nargs, "metavar": "VALUE"}
            elif entry.nargs == 0:
                extra = {"action": "store_true"}
            else:
                extra = {"nargs": entry.nargs, "metavar": "VALUE"}
            compat.add_argument(
                *entry.flags,
                dest=_UNSUPPORTED_DEST + entry.name,
                default=argparse.SUPPRESS,
                help=shown.replace("%", "%%"),
                **extra,
            )
    return parser


def _metavar(name: str, kind: Any) -> str:
    for unit in ("seconds", "bytes"):
        if name.endswith("_" + unit):
            return unit.upper()
    return "N" if kind in (int, float) else "TEXT"


@dataclasses.dataclass(frozen=True)
class CommandLine:
    """What a command line said: its settings, its config file if any, and the unsupported flags used."""

    values: dict[str, Any]
    config_file: str | None
    unsupported: list[str]  # the INFO lines to log once logging is set up


def _is_address(text: str) -> bool:
    return text.startswith(("tcp://", "ipc://", "inproc://"))


def parse_command_line(
    parser: argparse.ArgumentParser, cls: type, argv: Sequence[str] | None, unsupported: Iterable[Unsupported] = ()
) -> CommandLine:
    """Parse ``argv``; only the flags actually given appear in ``values``."""
    values = dict(vars(parser.parse_args(argv)))
    config_file = values.pop(_CONFIG_DEST, None)
    by_name = {entry.name: entry for entry in unsupported}
    used = [key for key in values if key.startswith(_UNSUPPORTED_DEST)]
    positional = next((field.name for field in settings_of(cls) if field.meta.positional), None)
    if positional is not None and positional not in values:
        # Scaler's list flags (``-lp a.log tcp://host:port``) swallow a positional address that
        # follows them, as argparse's greedy nargs does; Scaler's own examples are written so.
        for value in values.values():
            if isinstance(value, list) and len(value) > 1 and _is_address(value[-1]):
                values[positional] = value.pop()
                break
    messages = [by_name[key[len(_UNSUPPORTED_DEST) :]].message() for key in used]
    for key in used:
        del values[key]
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
    return CommandLine(values, config_file, messages)
