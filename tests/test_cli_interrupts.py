"""Ctrl-C in a command that does not catch it itself: one line on stderr, exit 130.

Typer turns a KeyboardInterrupt inside a command into a silent exit 130; `ftkit.cli.main` must
still say something. Commands that write files (finetune, predict, evaluate, recipes copy) say
what they saved; their own tests cover that.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _interrupt(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    raise KeyboardInterrupt


def test_ctrl_c_in_a_read_only_command_is_one_line(cli, monkeypatch, tmp_path):
    import ftkit.runs

    monkeypatch.setattr(ftkit.runs, "read_run", _interrupt)
    code, out, err = cli("runs", "show", tmp_path)
    assert code == 130
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and "nothing changed" in lines[0]


def test_recipes_copy_interrupted_leaves_no_partial_file(cli, monkeypatch, tmp_path):
    import shutil

    def half_copy(src, dst):  # noqa: ANN001, ANN202
        Path(dst).write_text("model: half")
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfile", half_copy)
    dest = tmp_path / "mine.yaml"
    code, _, err = cli("recipes", "copy", "sentiment", dest)
    assert code == 130 and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # neither DEST nor the temporary file


def test_recipes_copy_onto_its_own_source_is_refused(cli):
    from ftkit.recipes import get_recipe

    source = get_recipe("sentiment").path
    before = source.read_bytes()
    code, _, err = cli("recipes", "copy", "sentiment", source, "--force")
    assert code == 2 and "is the input file" in err and len(err.strip().splitlines()) == 1
    assert source.read_bytes() == before


@pytest.mark.parametrize("spelling", ["link", "dotted"])
def test_recipes_copy_onto_its_source_by_another_name_is_refused(cli, tmp_path, spelling):
    from ftkit.recipes import get_recipe

    source = get_recipe("sentiment").path
    if spelling == "link":
        dest = tmp_path / "alias.yaml"
        dest.symlink_to(source)
    else:
        dest = source.parent / "." / source.name
    before = source.read_bytes()
    code, _, err = cli("recipes", "copy", "sentiment", dest, "--force")
    assert code == 2
    assert source.read_bytes() == before
