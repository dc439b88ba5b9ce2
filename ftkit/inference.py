"""A finished run's model folder, loaded for inference (`predict`, `evaluate`): which family it
belongs to, which files loading it reads, and on which device it runs.

A run folder's config.yaml names the family; a bare model folder tells it by its architecture,
matched against each registered family's ARCHITECTURES.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftkit import lora
from ftkit.config import RunConfig
from ftkit.errors import FtkitError
from ftkit.models import ADAPTER_CONFIG, quiet_transformers
from ftkit.tasks import families, get_task

if TYPE_CHECKING:
    from ftkit.tasks.family import Family


def family_of(model_config: Any, run_config: RunConfig | None) -> str:
    """The task family of a model folder: from the run's config, else from its architecture."""
    if run_config is not None:
        return run_config.task
    registered = families()
    # The longest matching ending wins: WhisperForConditionalGeneration is speech, not text seq2seq.
    matches = [(len(end), name) for arch in getattr(model_config, "architectures", None) or []
               for name, task in registered.items() for end in task.ARCHITECTURES
               if arch.endswith(end) and task.serves(model_config)]
    if matches:
        return max(matches, key=lambda match: match[0])[1]
    raise FtkitError(
        f"cannot tell which task this model does (architectures: {getattr(model_config, 'architectures', None)}); "
        f"ftkit predicts with: {', '.join(registered)}"
    )


def task_of(model_dir: Path, run_config: RunConfig | None) -> Family:
    """The family of a model folder before its weights load (predict reads its input the
    family's way first): the run's, else the one its config.json's architecture names."""
    if run_config is not None:
        return get_task(run_config.task)
    return get_task(family_of(_model_config(model_dir), None))


def _model_config(model_dir: Path) -> Any:
    """The model's config: a LoRA adapter's is saved beside it, a model folder's is its config.json."""
    from ftkit.models import load_model_config

    return lora.model_config(model_dir) if lora.is_adapter(model_dir) else load_model_config(str(model_dir))


def load_for_inference(model_dir: Path, run_config: RunConfig | None, runtime: str = "torch") -> tuple[Any, Any, Any]:
    """(task module, model on the best device in eval mode, its processor: the tokenizer).
    runtime "onnx" / "onnx-int8": the run's ONNX export in ONNX Runtime instead (ftkit.onnx_runtime)."""
    import torch
    import transformers

    from ftkit.models import check_weights, load_pretrained

    if runtime != "torch":
        from ftkit import onnx_runtime

        return onnx_runtime.load(model_dir, run_config, runtime)
    quiet_transformers()
    check_weights(str(model_dir))
    task = get_task(family_of(_model_config(model_dir), run_config))  # the config is read (checked) either way
    if lora.is_adapter(model_dir):  # a LoRA run without --merge: base model + adapter, merged here
        model = lora.load_merged(getattr(transformers, task.AUTO_MODEL), model_dir)
    else:
        model = load_pretrained(getattr(transformers, task.AUTO_MODEL), str(model_dir))
    procs = processes()
    device = procs.device if procs else "cuda" if torch.cuda.is_available() else "cpu"  # launched: this process's device
    model.to(device).eval()
    return task, model, task.load_processor(str(model_dir))


def default_max_length(model: Any, tokenizer: Any) -> int:
    """For a bare model folder: what both the tokenizer and the position embeddings allow."""
    from ftkit.models import max_positions

    # an image or speech processor has no model_max_length: its inputs are not token sequences
    return min(getattr(tokenizer, "model_max_length", 512), max_positions(model.config) or 512, 512)


def processes() -> Any:
    """accelerate's PartialState when launched on several processes (accelerate launch /
    torchrun), else None: a plain `ftkit predict` never sets up distributed state."""
    from ftkit.launch import world_size

    if world_size() == 1:
        return None
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # As Accelerator does: without cpu=True, CPU processes (ACCELERATE_USE_CPU) would each take
    # themselves for the only one, and all of them would write the output.
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def files_read(model_dir: Path) -> list[Path]:
    """The files that loading `model_dir` for inference reads: its own files, the run's
    config.yaml beside a model/ or adapter/ folder, and a LoRA adapter's local base model."""
    folders = [model_dir]
    base = _adapter_base(model_dir) if lora.is_adapter(model_dir) else None
    if base is not None and base.is_dir():
        folders.append(base)
    found = [p for folder in folders for p in sorted(folder.iterdir()) if p.is_file()]
    if model_dir.name in ("model", "adapter") and (model_dir.parent / "config.yaml").is_file():
        found.append(model_dir.parent / "config.yaml")
    return found


def _adapter_base(adapter: Path) -> Path | None:
    """The adapter's base_model_name_or_path as a path (a Hub id names no local folder)."""
    config = adapter / ADAPTER_CONFIG
    try:
        if config.stat().st_size > 1 << 20:  # an adapter config is a few hundred bytes
            return None
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None  # the load refuses it with its own line
    return Path(base) if isinstance(base, str) and base else None
