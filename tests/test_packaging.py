"""The wheel carries recipes/ as package data, and the registry finds them there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_every_recipe(tmp_path):
    build = pytest.importorskip("hatchling.build")
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        wheel = tmp_path / build.build_wheel(str(tmp_path))
    finally:
        os.chdir(cwd)
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("ftkit/recipes/")}
    expected = {f"ftkit/recipes/{p.name}" for p in (ROOT / "recipes").glob("*.yaml")}
    assert expected and expected <= shipped

    # Unpacked alone (no repository around it), the registry lists the same recipes.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = "from ftkit.recipes import all_recipes, recipes_dir; print(recipes_dir()); print(sorted(r.name for r in all_recipes()))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={"PYTHONPATH": str(site), "PATH": ""}, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    where, names = result.stdout.splitlines()
    assert where.startswith(str(site))
    assert names == str(sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml")))
