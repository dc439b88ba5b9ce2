"""A run folder read back: which of its entries are a run's (so `--overwrite` may clear them,
see ftkit.rundir), and the model folder (with the run's config) that evaluate and predict load.

What a run writes, and how, is ftkit.artifacts; the layout is documented there.
"""

from __future__ import annotations

from pathlib import Path

from ftkit.config import RunConfig
from ftkit.config_load import from_dict, load_yaml_file
from ftkit.errors import FtkitError
from ftkit.models import is_model_folder
from ftkit.writes import fresh_of

# The first file of every run folder ({"ftkit": version, "created": UTC time}): it makes the
# folder ftkit's, so --overwrite may clear it (ftkit.rundir).
MARKER = ".ftkit-run.json"
# Everything a run writes at the top of OUT; --overwrite removes these (and their `.tmp`
# partials) and nothing else.
RUN_FILES = (MARKER, "model", "adapter", "onnx", "plots", "tensorboard", "metrics.json", "errors.jsonl", "config.yaml", "log.jsonl", "checkpoints")
# How save_config's config.yaml opens: tells a run written before the marker existed.
CONFIG_HEADER = "# Resolved config of an ftkit run"


def is_run_file(name: str) -> bool:
    """Whether a top-level entry of OUT is one a run writes: a RUN_FILES name, or one of them
    under a temporary name a kill mid-write leaves (`NAME.tmp`, `.NAME.<random>.ftkit-tmp`)."""
    return name in RUN_FILES or (name.endswith(".tmp") and name[: -len(".tmp")] in RUN_FILES) or fresh_of(name) in RUN_FILES


def resolve_model_dir(path: Path) -> tuple[Path, RunConfig | None]:
    """A run folder (OUT/) or a model folder -> (model folder, the run's config if any)."""
    if not path.exists():
        raise FtkitError(f"{path}: no such folder")
    inner = path / "model" if (path / "model" / "config.json").is_file() else path / "adapter"
    if is_model_folder(inner):
        config_file = path / "config.yaml"
        config = from_dict(load_yaml_file(config_file), str(config_file)) if config_file.is_file() else None
        return inner, config
    if is_model_folder(path):
        parent_config = path.parent / "config.yaml"
        config = None
        if path.name in ("model", "adapter") and parent_config.is_file():
            config = from_dict(load_yaml_file(parent_config), str(parent_config))
        return path, config
    raise FtkitError(
        f"{path}: not an ftkit run folder (no model/config.json or adapter/) nor a model folder (no config.json). "
        "Pass the --output-dir of a finished `ftkit finetune`, or a folder written by save_pretrained."
    )
