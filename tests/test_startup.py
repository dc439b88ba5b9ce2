"""`ftkit --help` and `ftkit recipes list` answer without importing torch or transformers."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from ftkit.cli import main
code = 0
try:
    main({argv!r})
except SystemExit as e:
    code = e.code or 0
heavy = sorted(m for m in ("torch", "transformers", "accelerate", "datasets", "sklearn") if m in sys.modules)
print("HEAVY:", ",".join(heavy))
sys.exit(code)
"""


@pytest.mark.parametrize("argv", [["--help"], ["recipes", "list"], ["recipes", "show", "spam"], ["finetune", "--help"], ["predict", "--help"],
                                  ["data", "check", "--help"], ["export", "--help"], ["sweep", "--help"], ["push", "--help"]])
def test_light_commands_do_not_import_torch(argv):
    result = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("HEAVY:"), result.stdout[-300:]


def test_python_dash_m_and_version():
    result = subprocess.run([sys.executable, "-m", "ftkit", "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("ftkit ")


def test_debug_variable_shows_traceback():
    quiet = subprocess.run([sys.executable, "-m", "ftkit", "finetune", "nope"], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr and quiet.stderr.startswith("error: unknown recipe 'nope'")
    loud = subprocess.run([sys.executable, "-m", "ftkit", "finetune", "nope"], capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "FTKIT_DEBUG": "1"})
    assert loud.returncode != 0 and "Traceback" in loud.stderr
