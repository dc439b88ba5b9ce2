"""The table's flags (ftkit/flagtable.py) as Typer options, and as README's Options table.

The commands' signatures, the shared option aliases (ftkit/cli/options.py) and README's Options
table are all made from the one table; tests/test_help.py holds README to it. Regenerate
README's table with `python -c "from ftkit.cli.flags import update_readme; update_readme()"`.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Annotated, Any

import typer

# The table itself lives in ftkit.flagtable (no typer there: ftkit.checks reads it too).
from ftkit.flagtable import BY_NAME, FLAG_KEYS, FLAGS, SETTINGS, Flag, choices, spoken  # noqa: F401


def option(flag: Flag | str) -> Any:
    """The typed Typer option of a flag (or of a flag's name), for a command's signature."""
    flag = BY_NAME[flag] if isinstance(flag, str) else flag
    value = flag.type if flag.type is bool else flag.type | None
    return Annotated[value, typer.Option(*flag.names, metavar=flag.metavar, help=flag.text, rich_help_panel=flag.panel)]


def signature(*leading: inspect.Parameter) -> inspect.Signature:
    """A command signature: the `leading` parameters (the recipe argument), then every flag."""
    params = [
        inspect.Parameter(flag.param, inspect.Parameter.KEYWORD_ONLY, default=False if flag.type is bool else None, annotation=option(flag))
        for flag in FLAGS
    ]
    return inspect.Signature([*leading, *params], return_annotation=None)


# ------------------------------------------------------------------------------- README


def markdown() -> str:
    """README's Options table: one row per flag, then the settings set with --set."""

    def cell(text: str) -> str:  # rich's escaped '\[' is a plain '['; '|' would end the cell, '<x>' be a tag
        text = text.replace("\\[", "[")
        for char in "|<*":
            text = text.replace(char, "\\" + char)
        return text

    rows = ["| flag | config key | meaning |", "| --- | --- | --- |"]
    for flag in FLAGS:
        names = [f"`{flag.names[0]} {flag.metavar}`" if flag.metavar else f"`{flag.names[0]}`", *(f"`{n}`" for n in flag.names[1:])]
        rows.append(f"| {', '.join(names)} | {f'`{flag.key}`' if flag.key else ''} | {cell(flag.text)} |")
    rows += [f"| `{example}` | `{key}` | {cell(meaning)} |" for example, key, meaning in SETTINGS]
    return "\n".join(rows) + "\n"


TABLE = re.compile(r"(### Options\n\n)(\|.*\n)+")


def readme_table(readme: str) -> str:
    """The Options table as README holds it ('' when README has none)."""
    match = TABLE.search(readme)
    return match.group(0).removeprefix(match.group(1)) if match else ""


def update_readme(path: Path = Path("README.md")) -> None:
    """Replace README's Options table with markdown()."""
    text = path.read_text(encoding="utf-8")
    if not readme_table(text):
        raise SystemExit(f"{path}: no '### Options' table to replace")
    path.write_text(TABLE.sub(lambda m: m.group(1) + markdown(), text, count=1), encoding="utf-8")

