"""`ftkit recipes list | show | copy`: everything comes from the one registry."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from ftkit.cli import options as o
from ftkit.errors import FtkitError

app = typer.Typer(help="List, show and copy the shipped recipes.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Recipe name (see `ftkit recipes list`).", show_default=False, autocompletion=o.recipe_names)]


@app.command("list")
def list_() -> None:
    """Table of recipes: name, task family, default model, default dataset, metric bar."""
    from rich.console import Console
    from rich.table import Table

    from ftkit.recipes import all_recipes

    table = Table(title="ftkit recipes", title_justify="left")
    for column in ("name", "task family", "default model", "default dataset", "metric bar"):
        table.add_column(column, overflow="fold")
    for recipe in all_recipes():
        c = recipe.config
        table.add_row(recipe.name, c.task, c.model, c.data.dataset or "-", recipe.metric_bar)
    console = Console()
    if not console.is_terminal:  # piped: no terminal width to respect, keep rows whole
        console = Console(width=200)
    console.print(table)


@app.command("show")
def show(name: NameArg) -> None:
    """Print a recipe's YAML, comments included."""
    from ftkit.recipes import get_recipe

    typer.echo(get_recipe(name).path.read_text(encoding="utf-8"), nl=False)


@app.command("copy")
def copy(
    name: NameArg,
    dest: Annotated[Path, typer.Argument(help="Where to write the YAML file.", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Overwrite DEST if it exists.")] = False,
) -> None:
    """Copy a recipe to a YAML file to edit; run it with `ftkit finetune DEST.yaml`."""
    from ftkit.recipes import get_recipe

    recipe = get_recipe(name)
    if dest.is_dir():
        dest = dest / f"{name}.yaml"
    if dest.is_symlink():  # the copy would land wherever the link points, not where asked
        raise FtkitError(f"{dest}: is a symbolic link; give the real file or folder to write")
    if dest.exists() and not force:
        raise FtkitError(f"{dest}: already exists; pass --force to overwrite it")
    if not dest.parent.is_dir():
        raise FtkitError(f"{dest.parent}: no such folder")
    from ftkit.fsguard import refuse_overlap

    refuse_overlap(dest, [recipe.path], "DEST")
    # Written beside DEST and renamed: a Ctrl-C or a full disk never leaves half a recipe.
    tmp = dest.with_name(f".{dest.name}.ftkit-tmp")
    try:
        shutil.copyfile(recipe.path, tmp)
        os.replace(tmp, dest)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise FtkitError(f"{dest}: cannot write ({err.strerror or err})") from None
    except KeyboardInterrupt:
        tmp.unlink(missing_ok=True)
        raise
    typer.echo(f"copied {name} to {dest}; edit it, then: ftkit finetune {dest}")
