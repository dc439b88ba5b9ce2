"""`ftkit recipes list | show | copy`: everything comes from the one registry."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import Annotated

import typer

from ftkit.cli import options as o
from ftkit.errors import FtkitError
from ftkit.writes import replace_whole

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
    # A string, not a Path: Path("newdir/") drops the slash that says "a folder".
    dest: Annotated[str, typer.Argument(help="Where to write the YAML file: a file name, or a folder (an existing one, or a new one ending in /) to write NAME.yaml in.", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Overwrite DEST if it exists.")] = False,
) -> None:
    """Copy a recipe to a YAML file to edit; run it with `ftkit finetune DEST.yaml`."""
    from ftkit.recipes import get_recipe

    recipe = get_recipe(name)
    target, new_folder = _destination(dest, name)
    if target.is_symlink():  # the copy would land wherever the link points, not where asked
        raise FtkitError(f"{target}: is a symbolic link; give the real file or folder to write")
    if target.exists() and not force:
        raise FtkitError(f"{target}: already exists; pass --force to overwrite it")
    from ftkit.fsguard import refuse_overlap

    refuse_overlap(target, [recipe.path], "DEST")
    if new_folder:
        try:
            target.parent.mkdir()
        except OSError as err:
            raise FtkitError(f"{target.parent}: cannot create the folder ({err.strerror or err})") from None
    try:
        _copy_file(recipe.path, target)
    except BaseException:
        if new_folder:
            shutil.rmtree(target.parent, ignore_errors=True)
        raise
    made = f"created {target.parent}/; " if new_folder else ""
    typer.echo(f"{made}wrote {target}; run it with: ftkit finetune {shlex.quote(_runnable(target))}")


def _destination(dest: str, name: str) -> tuple[Path, bool]:
    """The file to write, and whether its folder must be made: a folder DEST (an existing one,
    or any name ending in /) gets NAME.yaml inside; a missing folder is made only if its parent exists."""
    path = Path(dest)
    if not (path.is_dir() or dest.endswith(("/", os.sep))):
        if not path.parent.is_dir():
            raise FtkitError(f"{path.parent}: no such folder")
        return path, False
    if os.path.lexists(path) and not path.is_dir():
        raise FtkitError(f"{dest}: is a file, not a folder; drop the trailing / to write to it")
    if not path.is_dir() and not path.parent.is_dir():
        raise FtkitError(f"{path.parent}: no such folder (ftkit creates {path.name}/, not the folders above it)")
    return path / f"{name}.yaml", not path.is_dir()


def _copy_file(source: Path, dest: Path) -> None:
    """`source` to `dest` through a fresh file beside it, renamed over `dest`: a Ctrl-C or a full
    disk never leaves half a recipe, and a link planted at a guessable name is never written through."""
    try:
        replace_whole(dest, lambda tmp: shutil.copyfile(source, tmp))
    except OSError as err:
        raise FtkitError(f"{dest}: cannot write ({err.strerror or err})") from None


def _runnable(path: Path) -> str:
    """`path` as `ftkit finetune` reads it as a file: a bare name without .yaml would be taken for a recipe name."""
    text = str(path)
    return text if text.endswith((".yaml", ".yml")) or "/" in text else f"./{text}"
