"""Settings declared once, on a frozen dataclass, and everything derived from them.

A role's configuration class (``SchedulerConfig``, ``ClusterConfig``, ...) declares each setting
with ``setting(default, help=..., group=...)``: its type is the annotation, its unit is in its
name, and its metadata holds the one-line description, the ``--help`` group, and the spellings
Scaler and opengris-scaler used for the same flag. From that one declaration this module derives:

- the argparse parser of the role's command (``command_line.build_parser``), whose defaults
  never mask a value from a config file (every flag defaults to ``argparse.SUPPRESS``);
- the TOML section loader (``read_toml``, ``section_values``), whose errors name the file, the
  key, and the closest valid key;
- the checking of keyword arguments (``kwargs_values``), which raises ``TypeError`` for an unknown
  name as Python does;
- the argv that hands a configuration to a child process (``to_argv``).

Precedence: the command line beats the file, and the file beats the defaults (``resolve``).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

SAME = "same"
_KEY = "scaler.setting"

# --help groups, in the order they are shown.
GROUPS = (
    "arguments",
    "scheduler",
    "worker manager",
    "native adapter",
    "slurm adapter",
    "kubernetes adapter",
    "workers",
    "dashboard",
    "timeouts",
    "keys",
    "logging",
    "configuration file",
)

LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

Config = TypeVar("Config")


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message says where and why."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """What ``setting()`` records about one field, besides its type and default."""

    help: str
    group: str
    flag: str | None  # scaler's own long flag; None: ``--`` + the field name with dashes
    scaler_flags: tuple[str, ...]  # the spellings of Scaler 1.9 and opengris-scaler 2.x, added as aliases
    scaler_meaning: str  # SAME, or how scaler's meaning differs ("mapped: ...")
    positional: bool
    hidden: bool
    choices: tuple[str, ...] | None
    metavar: str | None
    parse: Callable[[str], Any] | None  # how the command line spells it, when not the type's own way
    format: Callable[[Any], str] | None  # the inverse of ``parse``, for argv and --help


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    group: str,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    flag: str | None = None,
    scaler_flags: Sequence[str] = (),
    scaler_meaning: str = SAME,
    positional: bool = False,
    hidden: bool = False,
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    format: Callable[[Any], str] | None = None,
) -> Any:
    """Declare one setting of a configuration class (use as the field's default)."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; add it to GROUPS")
    meta = Setting(
        help,
        group,
        flag,
        tuple(scaler_flags),
        scaler_meaning,
        positional,
        hidden,
        tuple(choices) if choices is not None else None,
        metavar,
        parse,
        format,
    )
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={_KEY: meta})
    return dataclasses.field(default=default, metadata={_KEY: meta})


@dataclasses.dataclass(frozen=True)
class Field:
    """One setting of a configuration class, with everything needed to derive its interfaces."""

    name: str
    type: Any
    default: Any
    meta: Setting

    @property
    def flag(self) -> str:
        """The setting's main command-line flag."""
        return self.meta.flag or "--" + self.name.replace("_", "-")

    @property
    def option_strings(self) -> list[str]:
        """scaler's own flag first, then Scaler's other spellings (short ones last, as argparse shows them)."""
        strings = [self.flag, *(f for f in self.meta.scaler_flags if f.startswith("--") and f != self.flag)]
        return strings + [f for f in self.meta.scaler_flags if not f.startswith("--")]


def settings_of(cls: type) -> list[Field]:
    """The settings of configuration class ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    result = []
    for field in dataclasses.fields(cls):
        meta = field.metadata.get(_KEY)
        if meta is None:
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{field.name} needs a default")
        result.append(Field(field.name, hints[field.name], default, meta))
    return result


# -- types -------------------------------------------------------------------------------------


def optional_of(kind: Any) -> Any:
    """``X`` for ``X | None``; None for any other type."""
    args = typing.get_args(kind)
    if len(args) == 2 and type(None) in args:
        return next(arg for arg in args if arg is not type(None))
    return None


def describe_type(kind: Any) -> str:
    """How an error message names a setting's type."""
    inner = optional_of(kind)
    if inner is not None:
        return describe_type(inner)
    if typing.get_origin(kind) is tuple:
        return "a list of strings"
    if typing.get_origin(kind) is dict:
        return "a table of names to whole numbers"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}[kind]


def convert(kind: Any, value: Any) -> Any:
    """``value`` (from a TOML file or a keyword argument) as a value of ``kind``; TypeError if it is not one.

    Whole numbers are numbers; a string is a one-item list; nothing else is converted.
    """
    inner = optional_of(kind)
    if inner is not None:
        return None if value is None else convert(inner, value)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):  # keys_dir=Path(...) and the like
            return os.fspath(value)
    elif typing.get_origin(kind) is tuple:
        if isinstance(value, str):
            return (value,)
        if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            return tuple(value)
    elif typing.get_origin(kind) is dict and isinstance(value, Mapping):
        return dict(value)  # the configuration class checks the names and counts
    raise TypeError(f"expected {describe_type(kind)}, got {value!r}")


def format_value(field: Field, value: Any) -> str:
    """``value`` as the command line spells it."""
    if field.meta.format is not None:
        return field.meta.format(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def describe_default(field: Field) -> str:
    """The default of ``field`` as ``--help`` and the docs show it."""
    value = field.default
    if value is None or value == () or value == {}:
        return "none"
    if isinstance(value, tuple):
        return " ".join(value)
    return format_value(field, value)


# -- files ---------------------------------------------------------------------------------------


def closest(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the valid name closest to ``name``, or nothing."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def read_toml(path: str) -> dict[str, Any]:
    """The tables of TOML file ``path``; ConfigError naming the file if it cannot be read or parsed."""
    # Imported here: most processes read no file, and the parser costs every process's start-up.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as file:
            data: dict[str, Any] = tomllib.load(file)
            return data
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the configuration file: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not a valid TOML file: {error}") from None


def check_sections(path: str, data: Mapping[str, Any], known: Collection[str]) -> None:
    """ConfigError if ``data`` holds anything but tables named in ``known``."""
    for name, value in data.items():
        if name not in known:
            raise ConfigError(
                f"{path}: unknown section [{name}]{closest(name, known)} (sections: {', '.join(sorted(known))})"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {name} must be a section, [{name}], not a value")


def section_values(cls: type, path: str, data: Mapping[str, Any], section: str) -> dict[str, Any]:
    """The settings of ``cls`` in table ``section`` of ``data`` (read from ``path``), checked and converted."""
    table = data.get(section, {})
    fields = {field.name: field for field in settings_of(cls)}
    values = {}
    for key, value in table.items():
        field = fields.get(key)
        if field is None:
            raise ConfigError(f"{path}: [{section}] has no setting {key!r}{closest(key, fields)}")
        try:
            values[key] = _convert_file_value(field, value)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{path}: [{section}] {key}: {error}") from None
    return values


def _convert_file_value(field: Field, value: Any) -> Any:
    if field.meta.parse is not None and isinstance(value, str):
        try:
            return field.meta.parse(value)  # ``"gpu=1,fpga=2"`` as on the command line
        except argparse.ArgumentTypeError as error:
            raise ValueError(str(error)) from None
    return convert(field.type, value)


# -- keyword arguments ---------------------------------------------------------------------------


def kwargs_values(cls: type, owner: str, kwargs: Mapping[str, Any], exclude: Collection[str] = ()) -> dict[str, Any]:
    """``kwargs`` checked against the settings of ``cls`` (but those in ``exclude``), converted.

    An unknown name is a TypeError, as for any Python function; so is a value of the wrong type.
    """
    fields = {field.name: field for field in settings_of(cls) if field.name not in exclude}
    values = {}
    for key, value in kwargs.items():
        field = fields.get(key)
        if field is None:
            raise TypeError(f"{owner}() got an unexpected keyword argument {key!r}{closest(key, fields)}")
        try:
            values[key] = convert(field.type, value)
        except TypeError as error:
            raise TypeError(f"{owner}() argument {key!r}: {error}") from None
    return values


# -- putting it together -------------------------------------------------------------------------


def resolve(
    cls: type[Config],
    *,
    command_line: Mapping[str, Any] | None = None,
    file_values: Mapping[str, Any] | None = None,
    base: Config | None = None,
) -> Config:
    """``cls`` from its defaults (or ``base``), overridden by the file's values, then by the command line's."""
    values = {field.name: getattr(base, field.name) for field in settings_of(cls)} if base is not None else {}
    values.update(file_values or {})
    values.update(command_line or {})
    return cls(**values)


def to_argv(config: Any, exclude: Collection[str] = ()) -> list[str]:
    """The flags that give a child process ``config``: the positional setting first, then every non-default one."""
    positional: list[str] = []
    flags: list[str] = []
    lists: list[str] = []
    for field in settings_of(type(config)):
        value = getattr(config, field.name)
        if field.name in exclude or value == field.default:
            continue
        if field.meta.positional:
            positional.append(str(value))
        elif isinstance(value, bool):
            flags.append(field.flag if value else "--no-" + field.flag[2:])
        elif isinstance(value, tuple) and field.meta.parse is None:
            lists += [field.flag, *value]  # last, so that nothing after it reads as one of its items
        else:
            flags.append(f"{field.flag}={format_value(field, value)}")
    return positional + flags + lists
