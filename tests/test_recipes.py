"""The recipe registry and `ftkit recipes list | show | copy`, all fed by the one registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftkit.config_load import from_dict, load_yaml_file
from ftkit.errors import FtkitError
from ftkit.recipes import all_recipes, get_recipe, load_config, recipes_dir

RECIPE_FILES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
REGISTRY = all_recipes()


def test_the_registry_is_the_recipes_folder():
    assert RECIPE_FILES, "no recipes/*.yaml found"
    assert [r.name for r in REGISTRY] == [p.stem for p in RECIPE_FILES]
    # an installed wheel carries its own copy of recipes/: same files, maybe another folder
    assert [r.path.read_bytes() for r in REGISTRY] == [p.read_bytes() for p in RECIPE_FILES]
    assert all(r.path.parent == recipes_dir() for r in REGISTRY)


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: p.stem)
def test_every_recipe_file_validates_and_is_named_after_its_file(path: Path):
    config = from_dict(load_yaml_file(path), source=str(path))
    assert config.name == path.stem
    assert config.description.strip(), "a recipe describes itself for `recipes list`"
    assert config.expect, "a recipe states the bar it is expected to reach"


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: p.stem)
def test_every_recipe_opens_with_the_command_that_runs_it(path: Path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    command = f"# ftkit finetune {path.stem}"
    assert first == command or first.startswith(command + " "), first


def test_a_recipe_named_unlike_its_file_is_refused(tmp_path: Path, monkeypatch):
    (tmp_path / "alpha.yaml").write_text("name: beta\ntask: causal-lm\nmodel: m\n", encoding="utf-8")
    monkeypatch.setattr("ftkit.recipes.recipes_dir", lambda: tmp_path)
    with pytest.raises(FtkitError) as info:
        all_recipes()
    assert info.value.message == f"{tmp_path / 'alpha.yaml'}: 'name' is 'beta' but the file is alpha.yaml"


def test_get_recipe_returns_the_registry_entry():
    for recipe in REGISTRY:
        found = get_recipe(recipe.name)
        assert (found.name, found.path, found.config) == (recipe.name, recipe.path, recipe.config)


def test_metric_bar_joins_the_expect_bars():
    assert {r.name: r.metric_bar for r in REGISTRY}["sentiment"] == "accuracy >= 0.91"


def test_get_recipe_unknown_name_suggests_the_closest():
    name = REGISTRY[0].name
    typo = name[:-1] + ("x" if name[-1] != "x" else "y")
    with pytest.raises(FtkitError) as info:
        get_recipe(typo)
    available = ", ".join(r.name for r in REGISTRY)
    assert info.value.message == (
        f"unknown recipe '{typo}'. Did you mean '{name}'? "
        f"Available: {available} (see `ftkit recipes list`), or pass a YAML file."
    )


def test_get_recipe_unknown_name_far_from_all_lists_them():
    with pytest.raises(FtkitError) as info:
        get_recipe("qqqqqqqq")
    assert "Did you mean" not in info.value.message
    assert all(r.name in info.value.message for r in REGISTRY)


def test_load_config_by_name():
    recipe = REGISTRY[0]
    assert load_config(recipe.name) == (recipe.config, recipe.path)


def test_load_config_by_file_path(tmp_path: Path):
    source = REGISTRY[0].path.read_text(encoding="utf-8")
    path = tmp_path / "mine.yml"
    assert "\n  seed: 42" in source
    path.write_text(source.replace("\n  seed: 42", "\n  seed: 7"), encoding="utf-8")
    config, found = load_config(str(path))
    assert found == path
    assert config.train.seed == 7
    assert config.name == REGISTRY[0].name  # a copied file keeps its recipe's name


def test_load_config_file_path_without_yaml_suffix(tmp_path: Path):
    path = tmp_path / "config"
    path.write_text("name: x\ntask: causal-lm\nmodel: m\n", encoding="utf-8")
    config, _ = load_config(str(path))  # a '/' marks it as a path
    assert (config.name, config.task) == ("x", "causal-lm")


def test_load_config_missing_file(tmp_path: Path):
    path = tmp_path / "gone.yaml"
    with pytest.raises(FtkitError) as info:
        load_config(str(path))
    assert info.value.message == f"{path}: no such recipe file. Try `ftkit recipes list` for shipped recipes."


def test_load_config_invalid_file_names_it_and_the_key(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntask: causal-lm\nmodel: m\ntrain:\n  epoch: 3\n", encoding="utf-8")
    with pytest.raises(FtkitError) as info:
        load_config(str(path))
    assert info.value.message.startswith(f"{path}: unknown key 'train.epoch'. Did you mean 'epochs'?")


# ---------------------------------------------------------------------------- the CLI


def table_rows(out: str) -> list[list[str]]:
    """The body cells of a rich table, one list per row."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]


def test_recipes_list_shows_every_registry_entry(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # wide enough that no cell folds
    code, out, err = cli("recipes", "list")
    assert (code, err) == (0, "")
    expected = [
        [r.name, r.config.task, r.config.model, r.config.data.dataset or "-", r.metric_bar] for r in REGISTRY
    ]
    assert table_rows(out) == expected
    assert "spam" in [row[0] for row in expected] and "per_class.spam.f1 >= 0.90" in out


def test_recipes_show_prints_the_yaml_with_comments(cli):
    for recipe in REGISTRY:
        code, out, err = cli("recipes", "show", recipe.name)
        assert (code, err) == (0, "")
        assert out == recipe.path.read_text(encoding="utf-8")
        assert out.startswith(f"# ftkit finetune {recipe.name}")


def test_recipes_show_unknown_name(cli):
    code, out, err = cli("recipes", "show", "sentimen")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("error: unknown recipe 'sentimen'. Did you mean 'sentiment'?")


def test_recipes_copy_writes_a_loadable_file(cli, tmp_path: Path):
    dest = tmp_path / "my-spam.yaml"
    code, out, err = cli("recipes", "copy", "spam", dest)
    assert (code, err) == (0, "")
    assert out == f"wrote {dest}; run it with: ftkit finetune {dest}\n"
    assert dest.read_bytes() == get_recipe("spam").path.read_bytes()
    config, path = load_config(str(dest))
    assert path == dest and config == get_recipe("spam").config


def test_recipes_copy_into_a_folder_uses_the_recipe_name(cli, tmp_path: Path):
    code, out, _ = cli("recipes", "copy", "sentiment", tmp_path)
    assert code == 0
    assert load_config(str(tmp_path / "sentiment.yaml"))[0] == get_recipe("sentiment").config


def test_recipes_copy_refuses_to_overwrite_without_force(cli, tmp_path: Path):
    dest = tmp_path / "mine.yaml"
    dest.write_text("# my edits\n", encoding="utf-8")
    code, out, err = cli("recipes", "copy", "spam", dest)
    assert (code, out) == (2, "")
    assert err == f"error: {dest}: already exists; pass --force to overwrite it\n"
    assert dest.read_text(encoding="utf-8") == "# my edits\n"

    code, out, err = cli("recipes", "copy", "spam", dest, "--force")
    assert (code, err) == (0, "")
    assert dest.read_bytes() == get_recipe("spam").path.read_bytes()


def test_recipes_copy_into_a_missing_folder(cli, tmp_path: Path):
    dest = tmp_path / "nope" / "x.yaml"
    code, out, err = cli("recipes", "copy", "spam", dest)
    assert code == 2 and out == ""
    assert err == f"error: {tmp_path / 'nope'}: no such folder\n"
    assert not dest.parent.exists()


def test_recipes_copy_unknown_recipe_writes_nothing(cli, tmp_path: Path):
    code, _, err = cli("recipes", "copy", "spma", tmp_path / "x.yaml")
    assert code == 2 and err.startswith("error: unknown recipe 'spma'. Did you mean 'spam'?")
    assert list(tmp_path.iterdir()) == []
