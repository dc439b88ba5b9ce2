"""`ftkit env`: versions, devices and offline state, as lines to paste into a bug report."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any

import typer

from ftkit.errors import first_line

# Distribution names as pip spells them; the version comes from the installed metadata, so
# nothing here is imported just to learn its version.
PACKAGES = (
    "torch", "transformers", "accelerate", "datasets", "tokenizers", "safetensors", "huggingface_hub",
    "peft", "scikit-learn", "seqeval", "rouge-score", "sacrebleu", "matplotlib", "typer", "rich",
)
TRACKERS = ("tensorboard", "wandb", "mlflow")
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
MISSING = "not installed"
UNSET = "unset"

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of lines.")]


def env(as_json: JsonOpt = False) -> None:
    """Versions, devices and offline state, to paste into a bug report.

    [dim]ftkit env                # paste the output into the issue
    ftkit env --json > env.json[/dim]
    """
    report = collect()
    typer.echo(json.dumps(report, indent=2) if as_json else render(report))


def collect() -> dict[str, dict[str, Any]]:
    """Every fact, by section; a package that is missing or broken shows up as such, never raises."""
    return {
        "system": _system(),
        "packages": {name: version(name) for name in PACKAGES},
        "trackers": {name: version(name) for name in TRACKERS},
        "devices": _guarded(_devices),
        "hugging face": _guarded(_hub),
        "launch": _guarded(_launch),
    }


def render(report: dict[str, dict[str, Any]]) -> str:
    """Plain `- key: value` lines under one heading per section (Markdown lists in an issue)."""
    lines: list[str] = []
    for section, facts in report.items():
        lines += ["", f"### {section}"] if lines else [f"### {section}"]
        for key, value in facts.items():
            if key == "gpus":  # one line per GPU reads better than a nested list
                lines += [f"- gpu {i}: {gpu['name']}, {gpu['memory']}, compute capability {gpu['compute capability']}" for i, gpu in enumerate(value)]
            else:
                lines.append(f"- {key}: {_text(value)}")
    return "\n".join(lines)


def version(distribution: str) -> str:
    """The installed version of a distribution, or 'not installed'."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return MISSING


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _guarded(probe: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one section's probe; a broken install (a driver error, a half-removed package) becomes
    an `error` line in that section, not a crash: the report is most needed when something is broken."""
    try:
        return probe()
    except Exception as err:
        if os.environ.get("FTKIT_DEBUG", "") not in ("", "0"):
            raise
        return {"error": f"{type(err).__name__}: {first_line(err, empty='')[:200]}"}


def _system() -> dict[str, Any]:
    from ftkit import __version__

    facts: dict[str, Any] = {
        "ftkit": __version__,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "python executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count() or "unknown",
    }
    if hasattr(os, "sched_getaffinity"):  # containers and taskset limit the CPUs a run can use
        facts["cpus usable"] = len(os.sched_getaffinity(0))
    try:
        facts["ram"] = _gib(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # no sysconf on Windows
        facts["ram"] = "unknown"
    return facts


def _devices() -> dict[str, Any]:
    if find_spec("torch") is None:
        return {"torch": MISSING}
    import torch

    from ftkit.train import resolve_precision

    cuda = torch.cuda.is_available()
    built = "CPU only"
    if torch.version.cuda:
        built = f"CUDA {torch.version.cuda}"
    elif getattr(torch.version, "hip", None):  # ROCm builds answer through torch.cuda too
        built = f"ROCm {torch.version.hip}"
    facts: dict[str, Any] = {
        "torch built with": built,
        "cudnn": torch.backends.cudnn.version() or "none",
        "cuda available": cuda,
        "cuda devices": torch.cuda.device_count() if cuda else 0,
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", UNSET),
    }
    if cuda:
        facts["gpus"] = [_gpu(torch, i) for i in range(torch.cuda.device_count())]
    facts["bf16 supported"] = bool(cuda and torch.cuda.is_bf16_supported())
    facts["mps available"] = torch.backends.mps.is_available()
    # find_spec, not import: importing torch_xla starts the TPU runtime
    facts["torch_xla (TPU)"] = version("torch_xla") if find_spec("torch_xla") is not None else MISSING
    facts["default mixed precision"] = resolve_precision("auto")
    return facts


def _gpu(torch: Any, index: int) -> dict[str, str]:
    props = torch.cuda.get_device_properties(index)
    return {"name": props.name, "memory": _gib(props.total_memory), "compute capability": f"{props.major}.{props.minor}"}


def _hub() -> dict[str, Any]:
    facts: dict[str, Any] = {name: os.environ.get(name, UNSET) for name in OFFLINE_VARS}
    if find_spec("huggingface_hub") is None:
        return {**facts, "huggingface_hub": MISSING}
    from huggingface_hub import constants

    facts["hub offline"] = bool(constants.HF_HUB_OFFLINE)  # as huggingface_hub reads the variables
    facts["cache"] = constants.HF_HUB_CACHE
    facts["token set"] = _token_set(constants.HF_TOKEN_PATH)
    return facts


def _token_set(token_path: str) -> bool:
    """Whether a Hub token is there (HF_TOKEN, or saved by `hf auth login`); never the token itself.

    Reads what huggingface_hub.get_token() reads, but not through it: get_token() may go to the
    network (an OIDC exchange, refreshing an OAuth token) and rewrite the token file.
    """
    if (os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or "").strip():
        return True
    try:
        return bool(Path(token_path).read_text(encoding="utf-8").strip())
    except OSError:  # no file (not logged in), or not readable
        return False


def _launch() -> dict[str, Any]:
    """The config file `accelerate launch` reads by default (or 'none'), and the process count."""
    facts: dict[str, Any] = {"accelerate config": MISSING, "WORLD_SIZE": os.environ.get("WORLD_SIZE", UNSET)}
    if find_spec("accelerate") is not None:
        from accelerate.commands.config import default_config_file

        facts["accelerate config"] = default_config_file if os.path.isfile(default_config_file) else "none"
    return facts


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"
