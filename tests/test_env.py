"""`ftkit env` reports the installed versions, devices and Hub state it claims; shell completion
answers through `main()` (not standalone) and the scripts Typer writes for it work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

import ftkit
from ftkit.cli import env as env_command

FAKE_TOKEN = "hf_FaKeT0kenThatMustNeverBePrinted"


def installed(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def lines(out: str) -> set[str]:
    return set(out.splitlines())


def ftkit_env(tmp_path: Path, *args: str, **variables: str | None) -> subprocess.CompletedProcess:
    """`python -m ftkit env ARGS` with a clean Hugging Face home under tmp_path and `variables` set (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_OIDC_RESOURCE")}
    env["HF_HOME"] = str(tmp_path / "hf")
    for name, value in variables.items():
        env.pop(name, None)
        if value is not None:
            env[name] = value
    return subprocess.run([sys.executable, "-m", "ftkit", "env", *args], check=False, capture_output=True, text=True, timeout=120, env=env)


def test_env_reports_the_installed_versions(cli):
    code, out, err = cli("env")
    assert code == 0, err
    got = lines(out)
    assert f"- ftkit: {ftkit.__version__}" in got
    assert f"- python executable: {sys.executable}" in got
    for name in env_command.PACKAGES + env_command.TRACKERS:
        assert f"- {name}: {installed(name)}" in got, name
    assert installed("torch") != "not installed" and installed("transformers") != "not installed"
    assert "### packages" in got and "### devices" in got and "Traceback" not in out + err


def test_env_device_section_matches_torch(cli):
    import torch

    from ftkit.train import resolve_precision

    code, out, _ = cli("env")
    assert code == 0
    got = lines(out)
    cuda = torch.cuda.is_available()
    assert f"- cuda available: {'yes' if cuda else 'no'}" in got
    assert f"- cuda devices: {torch.cuda.device_count() if cuda else 0}" in got
    assert f"- mps available: {'yes' if torch.backends.mps.is_available() else 'no'}" in got
    assert f"- default mixed precision: {resolve_precision('auto')}" in got
    gpu_lines = [line for line in got if line.startswith("- gpu ")]
    assert len(gpu_lines) == (torch.cuda.device_count() if cuda else 0)
    if not cuda:
        assert "- bf16 supported: no" in got
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        assert "- torch built with: CPU only" in got
    else:
        assert any(line.startswith("- torch built with: ") and line != "- torch built with: CPU only" for line in got)


def test_env_lists_each_gpu(cli, monkeypatch):
    """No GPU here: torch.cuda answers as on a two-GPU H100 machine, to check the GPU lines."""
    import torch

    props = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=85_031_714_816, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    code, out, _ = cli("env")
    assert code == 0
    got = lines(out)
    assert {"- cuda available: yes", "- cuda devices: 2", "- bf16 supported: yes", "- default mixed precision: bf16"} <= got
    assert {f"- gpu {i}: NVIDIA H100 80GB HBM3, 79.2 GiB, compute capability 9.0" for i in (0, 1)} <= got
    _, out, _ = cli("env", "--json")
    assert json.loads(out)["devices"]["gpus"][1] == {"name": "NVIDIA H100 80GB HBM3", "memory": "79.2 GiB", "compute capability": "9.0"}


def test_env_json_has_the_same_facts(cli):
    import torch

    code, out, _ = cli("env", "--json")
    assert code == 0
    report = json.loads(out)
    assert list(report) == ["system", "packages", "trackers", "devices", "hugging face", "launch"]
    assert report["packages"]["torch"] == installed("torch")
    assert report["packages"]["transformers"] == installed("transformers")
    assert report["devices"]["cuda available"] is torch.cuda.is_available()
    assert report["system"]["ftkit"] == ftkit.__version__
    _, text, _ = cli("env")
    got = lines(text)
    for section, facts in report.items():
        assert f"### {section}" in got
        for key, value in facts.items():
            if key != "gpus":
                shown = ("yes" if value else "no") if isinstance(value, bool) else str(value)
                assert f"- {key}: {shown}" in got, (section, key)


def test_env_shows_offline_variables_and_never_the_token(tmp_path):
    (tmp_path / "hf" / "accelerate").mkdir(parents=True)
    config = tmp_path / "hf" / "accelerate" / "default_config.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\n")
    result = ftkit_env(tmp_path, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE=None, HF_DATASETS_OFFLINE="0", HF_TOKEN=FAKE_TOKEN, WORLD_SIZE="3")
    assert result.returncode == 0, result.stderr
    got = lines(result.stdout)
    assert {"- HF_HUB_OFFLINE: 1", "- TRANSFORMERS_OFFLINE: unset", "- HF_DATASETS_OFFLINE: 0", "- hub offline: yes"} <= got
    assert f"- cache: {tmp_path / 'hf' / 'hub'}" in got
    assert f"- accelerate config: {config}" in got
    assert "- WORLD_SIZE: 3" in got
    assert "- token set: yes" in got
    assert FAKE_TOKEN not in result.stdout + result.stderr and FAKE_TOKEN[3:12] not in result.stdout


def test_env_json_sees_a_saved_token_and_its_absence(cli, monkeypatch, tmp_path):
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    token_file = tmp_path / "token"  # where `hf auth login` saves it
    token_file.write_text(FAKE_TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))
    code, out, err = cli("env", "--json")
    assert code == 0 and FAKE_TOKEN not in out + err
    report = json.loads(out)
    assert report["hugging face"]["token set"] is True
    assert report["launch"]["WORLD_SIZE"] == "unset"
    token_file.unlink()
    _, out, _ = cli("env", "--json")
    assert json.loads(out)["hugging face"]["token set"] is False


def test_env_survives_missing_and_broken_packages(cli, monkeypatch):
    hidden = {"torch", "peft", "huggingface_hub", "accelerate", "wandb"}
    real_version, real_find_spec = env_command.version, env_command.find_spec
    monkeypatch.setattr(env_command, "version", lambda name: "not installed" if name in hidden else real_version(name))
    monkeypatch.setattr(env_command, "find_spec", lambda name: None if name in hidden else real_find_spec(name))
    code, out, err = cli("env")
    assert code == 0, err
    got = lines(out)
    assert {"- torch: not installed", "- peft: not installed", "- wandb: not installed", "- huggingface_hub: not installed", "- accelerate config: not installed"} <= got
    assert f"- transformers: {installed('transformers')}" in got

    def broken() -> dict:
        raise RuntimeError("The NVIDIA driver on your system is too old\nsecond line")

    monkeypatch.setattr(env_command, "_devices", broken)
    code, out, _ = cli("env", "--json")
    assert code == 0
    assert json.loads(out)["devices"] == {"error": "RuntimeError: The NVIDIA driver on your system is too old"}


# Runs main() in a fresh interpreter and reports which heavy modules the call imported.
PROBE = """
import sys
from ftkit.cli import main
try:
    main({argv!r})
except SystemExit as e:
    code = e.code or 0
else:
    code = 0
print("HEAVY:", ",".join(m for m in ("torch", "transformers", "accelerate", "datasets") if m in sys.modules))
sys.exit(code)
"""


def probe(argv: list[str], **variables: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **variables}
    return subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], check=False, capture_output=True, text=True, timeout=120, env=env)


def test_env_help_does_not_import_torch():
    result = probe(["env", "--help"])
    assert result.returncode == 0 and "--json" in result.stdout
    assert result.stdout.strip().endswith("HEAVY:"), result.stdout[-300:]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("ftkit fine", ["finetune"]),
        ("ftkit e", ["evaluate", "export", "env"]),
        ("ftkit recipes ", ["list", "show", "copy"]),
        ("ftkit env --j", ["--json"]),
    ],
)
def test_commands_complete_without_torch(words, expected):
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    result = probe([], _FTKIT_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(cword))
    assert result.returncode == 0, result.stderr
    *completions, heavy = result.stdout.strip().splitlines()
    assert completions == expected
    assert heavy == "HEAVY:"  # each TAB press must not pay for torch


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o default -F _ftkit_completion ftkit"), ("zsh", "#compdef ftkit"), ("fish", "complete --command ftkit")])
def test_show_completion_for_a_named_shell(shell, marker):
    # The named shell wins over the one running the tests (Typer alone would detect the parent shell).
    result = subprocess.run([sys.executable, "-m", "ftkit", "--show-completion", shell], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "_FTKIT_COMPLETE=complete_" + shell in result.stdout and marker in result.stdout


def test_show_completion_refuses_an_unknown_shell():
    result = subprocess.run([sys.executable, "-m", "ftkit", "--show-completion=dash"], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == "error: --show-completion: unknown shell 'dash'; choose one of bash, zsh, fish, powershell, pwsh"


def test_install_completion_writes_the_script_and_sources_it(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "ftkit", "--install-completion", "bash"], check=False, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    script = tmp_path / ".bash_completions" / "ftkit.sh"
    assert f"installed in {script}" in result.stdout
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
    assert "_FTKIT_COMPLETE=complete_bash" in script.read_text()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_script_completes_in_a_real_bash(tmp_path):
    # `ftkit` on PATH as the completion function calls it: this interpreter, this checkout.
    (tmp_path / "ftkit").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ftkit "$@"\n')
    (tmp_path / "ftkit").chmod(0o755)
    steps = 'eval "$(ftkit --show-completion bash)"; COMP_WORDS=(ftkit recipes s); COMP_CWORD=2; _ftkit_completion ftkit; printf "%s\\n" "${COMPREPLY[@]}"'
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", steps], check=False, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["show"]
