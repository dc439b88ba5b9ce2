"""Options shared by several commands, as typed aliases (one definition, one help text), and the
help classes that make every command's --help name values with words (FILE, N), not Python types."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import typer
from typer._click import Context, Parameter
from typer.core import TyperArgument, TyperCommand, TyperGroup

from ftkit.cli.flags import option
from ftkit.launch import main_process, world_size  # noqa: F401 - the commands call them as o.world_size()

# The options predict and evaluate share with finetune: the same rows of the flags table.
TextColumnOpt = option("--text-column")
LabelColumnOpt = option("--label-column")
FormatOpt = option("--format")
TrustRemoteCodeOpt = option("--trust-remote-code")
AllowPickleOpt = option("--allow-pickle")


def plain_metavar(param: Parameter) -> str:
    """What stands for a value in --help when the option does not say: a word, never a Python
    type (Typer's default is '<str>', '<list[Path]>'); nothing for a switch."""
    if isinstance(param, TyperArgument):
        return (param.name or "").upper()
    if getattr(param, "is_flag", False):
        return ""
    desc = param.type_descriptor
    value = typing.get_args(desc.annotation)[0] if desc.is_list else desc.annotation
    return "PATH" if desc.is_path or value is Path else {int: "N", float: "NUMBER"}.get(value, "TEXT")


def _plain(params: list[Parameter]) -> list[Parameter]:
    """The command's parameters, each with a plain metavar (set once, kept where one was given)."""
    for param in params:
        if param.metavar is None:
            param.metavar = plain_metavar(param)
        if isinstance(param, TyperArgument) and not isinstance(param, PlainArgument):
            param.__class__ = PlainArgument  # Typer builds its arguments itself: no hook for the class
    return params


class PlainArgument(TyperArgument):
    """An argument shown by its NAME: no Python type beside it, no braces around it in the usage
    line (`ftkit finetune [OPTIONS] RECIPE`, `[NAME]` when optional, `NAME...` when repeated)."""

    def display_type_rich(self, ctx: Context) -> str | None:
        return None

    def get_usage_pieces(self, ctx: Context) -> list[str]:
        name = self.display_name_raw + ("..." if self.nargs != 1 else "")
        return [name if self.required else f"[{name}]"]


class PlainCommand(TyperCommand):
    """A command whose --help names values with plain words (see plain_metavar)."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        return _plain(super().get_params(ctx))


class PlainGroup(TyperGroup):
    """The ftkit app: its commands and command groups, however they were registered, show plain
    metavars too (Typer makes every command with its own class; they only gain get_params here)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _adopt(self)

    def get_params(self, ctx: Context) -> list[Parameter]:
        return _plain(super().get_params(ctx))


def _adopt(group: TyperGroup) -> None:
    """Give the commands under `group` (Typer made them before the group) the plain classes."""
    for command in group.commands.values():
        if type(command) is TyperGroup:
            command.__class__ = PlainGroup
            _adopt(command)
        elif type(command) is TyperCommand:
            command.__class__ = PlainCommand


def recipe_names(incomplete: str) -> list[str]:
    """Shell completion for a recipe argument: the registry's names (no torch import)."""
    from ftkit.recipes import all_recipes

    return [r.name for r in all_recipes() if r.name.startswith(incomplete)]


def apply_policy(trust_remote_code: bool, allow_pickle: bool) -> None:
    """Set the checkpoint load policy for this process; warn when code from a repo may run."""
    from ftkit.models import set_policy

    if trust_remote_code:
        typer.echo("warning: --trust-remote-code: Python code from the model repository will run; use it only with repositories you trust", err=True)
    set_policy(trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)


