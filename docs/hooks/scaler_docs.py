"""MkDocs hooks for scaler's site: the CLI reference, rendered from the commands' own parsers, and a
check that the API reference covers every public name.

CLI reference: every console script in pyproject.toml's ``[project.scripts]`` names a module; the hook
imports it, calls its ``build_parser()`` (which must build the parser without side effects) and puts
its ``--help`` text where ``reference/cli.md`` has the marker line. A new command appears without an
edit here, and a command whose module has no ``build_parser()`` fails the build.

API reference: each name in ``scaler.__all__`` must appear as ``::: scaler.NAME`` on a page under
``reference/``, so a public name added to the package without a reference entry fails the build.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CLI_PAGE = "reference/cli.md"
CLI_MARKER = "<!-- scaler-cli-reference -->"
HELP_COLUMNS = "100"


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Import scaler from this checkout, not from wherever it happens to be installed."""
    root = str(_root(config))
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Fail early if a public name has no API reference entry, or the CLI page lost its marker."""
    import scaler

    documented: set[str] = set()
    for file in files.documentation_pages():
        if file.src_uri.startswith("reference/"):
            documented.update(re.findall(r"^::: scaler\.(\w+)\s*$", file.content_string, flags=re.MULTILINE))
    missing = sorted(set(scaler.__all__) - {"__version__"} - documented)
    if missing:
        raise PluginError(f"public names with no '::: scaler.NAME' entry under docs/reference/: {', '.join(missing)}")
    cli_page = files.get_file_from_path(CLI_PAGE)
    if cli_page is None or CLI_MARKER not in cli_page.content_string:
        raise PluginError(f"docs/{CLI_PAGE} must exist and hold the line {CLI_MARKER}")
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replace the marker on the CLI page with every command's ``--help``."""
    if page.file.src_uri != CLI_PAGE:
        return markdown
    return markdown.replace(CLI_MARKER, _cli_reference(_root(config)))


def _cli_reference(root: Path) -> str:
    with (root / "pyproject.toml").open("rb") as file:
        scripts: dict[str, str] = tomllib.load(file)["project"]["scripts"]
    sections = []
    for command, target in scripts.items():  # in pyproject order
        module_name = target.partition(":")[0]
        module = importlib.import_module(module_name)
        build_parser = getattr(module, "build_parser", None)
        if build_parser is None:
            raise PluginError(f"{module_name} (the `{command}` command) has no build_parser() for the CLI reference")
        parser = build_parser()
        if not isinstance(parser, argparse.ArgumentParser):
            raise PluginError(f"{module_name}.build_parser() returned {type(parser).__name__}, not an ArgumentParser")
        sections.append(
            f"## `{command}`\n\n{_first_line(module.__doc__)}\n\n```text\n{_help_text(parser, command)}\n```\n"
        )
    return "\n".join(sections)


def _first_line(docstring: str | None) -> str:
    return (docstring or "").strip().split("\n\n")[0].replace("\n", " ")


def _help_text(parser: argparse.ArgumentParser, command: str) -> str:
    parser.prog = command
    if hasattr(parser, "color"):  # Python 3.14+: no ANSI colours in the page
        parser.color = False
    with _environment(COLUMNS=HELP_COLUMNS, NO_COLOR="1"):  # the same width on every machine
        return parser.format_help().rstrip()


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved: dict[str, Any] = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
