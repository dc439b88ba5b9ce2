"""`--help` of every command, README's Options table and the flags table agree; the flags that
item 14 added or reshaped work end to end (--max-train/eval-samples, --resume [PATH], the saved
config of a local-files run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from ftkit.cli import flags

README = Path(__file__).resolve().parent.parent / "README.md"
# What Typer prints for a value when nobody names it: <bool>, <str>, <path>, <list[Path]>, <int|float>
PYTHON_TYPE = re.compile(r"<(bool|str|int|float|path|Path|text|file|datetime|list\[[^\]]*\]|tuple\[[^\]]*\]|\w+\|[\w|]+)>")


def commands() -> list[tuple[list[str], object]]:
    """(argv path, click command) of the app and every command and group under it."""
    from typer.main import get_command

    from ftkit.cli import app

    found, todo = [], [([], get_command(app))]
    while todo:
        path, command = todo.pop()
        found.append((path, command))
        todo += [([*path, name], sub) for name, sub in getattr(command, "commands", {}).items()]
    return found


def command_at(path: list[str]) -> object:
    return {tuple(p): c for p, c in commands()}[tuple(path)]


def one_line(text: str) -> str:
    """Text as one line: help panels' borders and line wrapping dropped."""
    return " ".join(text.replace("│", " ").split())


def test_every_command_exists():
    names = {" ".join(path) for path, _ in commands()}
    assert {"finetune", "reproduce", "evaluate", "predict", "env", "recipes list", "recipes show", "recipes copy", "runs show", "runs compare", "data check", "export", "sweep", "push"} <= names


@pytest.mark.parametrize("path", [path for path, _ in commands()], ids=lambda p: " ".join(p) or "ftkit")
def test_help_names_values_with_words_not_python_types(cli, path):
    """No <bool>, <str>, <list[Path]> beside an option and no {recipe} in the usage line; a switch shows no value."""
    code, out, err = cli(*path, "--help")
    assert code == 0, err
    assert not PYTHON_TYPE.search(out), PYTHON_TYPE.search(out).group(0)
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    assert not re.search(r"\{\w+\}", usage), usage
    command = command_at(path)
    import typer._click as click

    ctx = click.Context(command, info_name="ftkit")
    for param in command.get_params(ctx):
        shown = param.display_type_rich(ctx) or ""
        assert not PYTHON_TYPE.search(f"<{shown.strip('<>')}>"), (param.name, shown)
        if getattr(param, "is_flag", False):
            assert shown == "", f"{param.opts}: a switch shows {shown!r}"
        elif param.param_type_name == "option":
            assert shown and shown == shown.upper(), f"{param.opts}: {shown!r}"


def test_usage_lines_name_arguments_plainly(cli):
    for argv, usage in ((["finetune"], "ftkit finetune [OPTIONS] RECIPE"), (["runs", "compare"], "ftkit runs compare [OPTIONS] RUN_DIR..."),
                        (["recipes", "copy"], "ftkit recipes copy [OPTIONS] NAME DEST")):
        assert usage in cli(*argv, "--help")[1]


def test_readme_options_table_is_the_flags_table():
    table = flags.readme_table(README.read_text(encoding="utf-8"))
    assert table == flags.markdown(), (
        "README's '### Options' table differs from ftkit/cli/flags.py; regenerate it with: "
        "python -c \"from ftkit.cli.flags import update_readme; update_readme()\""
    )


@pytest.mark.parametrize("name", ["finetune", "reproduce"])
def test_every_option_is_a_row_of_the_table_with_its_help(name):
    """finetune and reproduce take exactly the table's flags, each with the table's names, help,
    metavar, panel and config key."""
    import typer._click as click

    command = command_at([name])
    options = [p for p in command.get_params(click.Context(command)) if p.param_type_name == "option" and "--help" not in p.opts]
    assert sorted(n for p in options for n in p.opts) == sorted(n for f in flags.FLAGS for n in f.names)
    for param in options:
        flag = flags.BY_NAME[param.opts[0]]
        assert (param.help, param.metavar, param.rich_help_panel) == (flag.text, flag.metavar, flag.panel), param.opts
        assert flags.FLAG_KEYS.get(param.name) == flag.key
        assert f"`{flag.names[0]}" in README.read_text(encoding="utf-8")


def test_config_keys_of_the_table_exist():
    from ftkit.config_load import all_keys

    keys = all_keys()
    assert {f.key for f in flags.FLAGS if f.key} <= set(keys)
    assert {key for _, key, _ in flags.SETTINGS} <= set(keys)


@pytest.mark.parametrize("flag", [f for f in flags.FLAGS if f.key and f.metavar == "N"], ids=lambda f: f.names[0])
def test_a_value_out_of_range_names_the_flag_that_sets_it(cli, flag):
    """Each count flag refuses 0 or below at load time, and the line names the flag (not only
    the config key) before anything is read."""
    code, _, err = cli("finetune", "sentiment", flag.names[0], "-5")
    assert code == 2, err
    assert f"'{flag.key}'" in err and f"set it with {flag.names[0]} N" in err, err


def test_listed_choices_are_exactly_what_the_config_accepts(cli):
    """--format, --mixed-precision, --compile, --class-weights, --report-to: the help lists the
    values the config check takes (from the key's type), and each of them is taken."""
    from ftkit.config_load import apply_overrides
    from ftkit.errors import FtkitError
    from ftkit.recipes import load_config

    listed = {f.names[0]: f for f in flags.FLAGS if "{choices}" in f.help}
    assert {"--format", "--mixed-precision", "--compile", "--class-weights", "--report-to"} <= set(listed)
    assert "auto" in flags.choices("train.mixed_precision") and "text" in flags.choices("data.format")
    help_text = one_line(cli("finetune", "--help")[1])
    config, _ = load_config("sentiment")
    for name, flag in listed.items():
        values = flags.choices(flag.key)
        assert values and flags.spoken(values) in help_text, name
        for value in values:
            apply_overrides(config, {flag.key: value}, source="test")  # accepted
        with pytest.raises(FtkitError):
            apply_overrides(config, {flag.key: "surely-not-a-choice"}, source="test")
    # a key with a fixed set of values whose flag does not list them would hide them
    assert all("{choices}" in f.help for f in flags.FLAGS if f.key and flags.choices(f.key) and f.type is not bool)


# ------------------------------------------------------------------------------- the flags at work


@pytest.fixture(scope="module")
def smoke_run(tiny_models, sentiment_files, tmp_path_factory):
    """A 2-step run on local files, validation carved from train, capped by the new flags."""
    from ftkit.cli import main

    out = tmp_path_factory.mktemp("smoke") / "run"
    argv = ["finetune", "sentiment", "--model", str(tiny_models["bert"]), "--train", str(sentiment_files["train"]),
            "--test", str(sentiment_files["test"]), "--max-train-samples", "8", "--max-eval-samples", "4",
            "--max-steps", "2", "--batch-size", "4", "-o", str(out)]
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exit_:
            assert exit_.code in (0, None), err.getvalue()[-2000:]
    return out, err.getvalue()


def test_max_samples_cap_each_split_after_carving_and_say_so(smoke_run):
    out, err = smoke_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["samples"] == 4 and metrics["test"]["samples"] == 4
    said = one_line(err)
    # 160 rows: 16 carved for validation, 144 left to train on, then the caps
    assert "no validation split: carved 16 rows (10%) from train" in said
    assert "validation: the first 4 of 16 rows (--max-eval-samples)" in said
    assert "train: the first 8 of 144 rows (--max-train-samples)" in said
    assert "test: the first 4 of 48 rows (--max-eval-samples)" in said
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["max_train_samples"] == 8 and saved["data"]["max_eval_samples"] == 4


def test_a_local_files_run_saves_no_hub_dataset_and_reruns_from_its_config(smoke_run, cli, tmp_path):
    """The recipe names stanfordnlp/sst2, but only local files were read: config.yaml says so,
    and `ftkit finetune RUN/config.yaml` reruns it (offline, from the same files)."""
    out, _ = smoke_run
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["dataset"] is None and saved["data"]["dataset_config"] is None
    assert Path(saved["data"]["train"]).is_absolute()
    code, _, err = cli("finetune", out / "config.yaml", "-o", tmp_path / "again", "--quiet")
    assert code == 0, err
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["validation"]["samples"] == 4


def test_dataset_and_local_files_together_are_refused(cli, sentiment_files, tmp_path):
    code, _, err = cli("finetune", "sentiment", "--model", "m", "--dataset", "stanfordnlp/sst2", "--train", sentiment_files["train"], "-o", tmp_path / "o")
    assert code == 2 and "--dataset (a Hub dataset) and --train (local files) both name the data: pass one of them" in err
    assert not (tmp_path / "o").exists()


def test_resume_takes_an_optional_folder(cli, tmp_path, monkeypatch):
    """Bare --resume (even before the recipe) looks for the newest unfinished run; --resume PATH
    (an existing folder, or a path that is not there) names one; --resume=PATH too."""
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("finetune", "--resume", "sentiment", "--model", "m")
    assert code == 2 and "--resume: no unfinished run of 'sentiment' with a checkpoint under runs/" in err
    (tmp_path / "runs" / "old").mkdir(parents=True)
    for argv in (["--resume", "runs/old"], ["--resume=runs/old"], ["--resume", "runs/gone"]):
        code, _, err = cli("finetune", "sentiment", "--model", "m", *argv, "--quiet")
        assert code == 2 and "no complete checkpoint here" in err and argv[-1].split("=")[-1] in err, (argv, err)


def test_the_recorded_command_drops_resume_and_its_folder():
    from ftkit.cli import _resume_path
    from ftkit.cli.finetune import _without_resume

    for argv in (["finetune", "s", "--resume", "-q"], ["finetune", "--resume", "s", "-q"], ["finetune", "s", "--resume=runs/x", "-q"], ["finetune", "s", "--resume", "/no/such/run", "-q"]):
        assert _without_resume(_resume_path(argv)) == ["finetune", "s", "-q"], argv
    assert _resume_path(["predict", "--resume", "/tmp"]) == ["predict", "--resume", "/tmp"]  # predict's --resume is a switch
