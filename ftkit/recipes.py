"""The recipe registry: every `recipes/*.yaml`, validated. It alone feeds `recipes list`,
`finetune NAME`, `reproduce NAME` and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ftkit.bounded import cut, shown
from ftkit.config import RunConfig
from ftkit.config_load import from_dict, load_yaml_file
from ftkit.errors import FtkitError, closest


@dataclass(frozen=True)
class Recipe:
    """One shipped recipe: its name, file and validated config."""

    name: str
    path: Path
    config: RunConfig

    @property
    def metric_bar(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.config.expect.items()) or "-"


def recipes_dir() -> Path:
    """The folder holding the shipped YAML files (inside the wheel, or the repository's)."""
    here = Path(__file__).resolve().parent
    packaged = here / "recipes"  # an installed wheel carries recipes/ inside the package
    return packaged if packaged.is_dir() else here.parent / "recipes"


def all_recipes() -> list[Recipe]:
    """Every recipe, sorted by name; a recipe that fails validation is an error here."""
    recipes = []
    for path in sorted(recipes_dir().glob("*.yaml")):
        config = from_dict(load_yaml_file(path), source=str(path))
        if config.name != path.stem:
            raise FtkitError(f"{path}: 'name' is {shown(config.name)} but the file is {path.stem}.yaml")
        recipes.append(Recipe(path.stem, path, config))
    return recipes


def get_recipe(name: str) -> Recipe:
    """The shipped recipe called `name`, or an error suggesting the closest one."""
    recipes = {r.name: r for r in all_recipes()}
    if name not in recipes:
        raise FtkitError(
            f"unknown recipe {shown(name)}.{closest(cut(name, 60), list(recipes))} "
            f"Available: {', '.join(recipes)} (see `ftkit recipes list`), or pass a YAML file."
        )
    return recipes[name]


def load_config(recipe_or_file: str) -> tuple[RunConfig, Path]:
    """A recipe name or a path to a YAML file -> its validated config and the file it came from."""
    looks_like_file = recipe_or_file.endswith((".yaml", ".yml")) or "/" in recipe_or_file
    if looks_like_file:
        path = Path(recipe_or_file)
        if not path.is_file():
            raise FtkitError(f"{path}: no such recipe file. Try `ftkit recipes list` for shipped recipes.")
        return from_dict(load_yaml_file(path), source=str(path)), path
    recipe = get_recipe(recipe_or_file)
    return recipe.config, recipe.path
