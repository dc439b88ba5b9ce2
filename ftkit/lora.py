"""LoRA through PEFT: which layers get an adapter, what trains, and the adapter on disk.

    OUT/adapter/         adapter_config.json + adapter_model.safetensors (PEFT's format), the
                         tokenizer, model_config.json (the fine-tuned model's config: labels,
                         pad id) and README.md; `--merge` also writes OUT/model/, the base model
                         with the update merged in, which pipeline() loads like any model.

The new head of a family that adds one (its NEW_HEAD: a classifier's, a tagger's) trains in full
(PEFT's modules_to_save) and is saved with the adapter: a LoRA run learns the same task as a
full fine-tune.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from ftkit.config import RunConfig
from ftkit.errors import FtkitError, first_line
from ftkit.models import ADAPTER_CONFIG
from ftkit.tasks import get_task

MODEL_CONFIG = "model_config.json"  # not config.json: transformers would take the folder for a full model


def head_modules(model: Any, new_head: bool) -> list[str]:
    """A classifier's or tagger's new head (`new_head`: the family's NEW_HEAD): the top-level
    modules beside the pretrained body (classifier; score; DistilBERT's pre_classifier too; T5's
    classification_head). They are newly initialised, so they train in full. Generative families
    keep their pretrained LM head."""
    if not new_head:
        return []
    body = model.base_model_prefix
    return [name for name, child in model.named_children() if name != body and any(True for _ in child.parameters())]


def target_modules(model: Any, configured: list[str] | None, heads: list[str]) -> list[str]:
    """The recipe's layers, else PEFT's for the architecture (attention query and value, as in
    the LoRA paper), else every linear layer of the body (as QLoRA does), head and LM head apart."""
    if configured:
        return list(configured)
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    known = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model.config.model_type)
    if known:
        return list(known)
    import torch
    from transformers.pytorch_utils import Conv1D

    output = model.get_output_embeddings()
    return sorted(
        name for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, Conv1D)) and name.split(".")[0] not in heads and module is not output
    )


def wrap(model: Any, config: RunConfig) -> Any:
    """`model` with LoRA adapters added; only they (and a new task head) train."""
    from peft import LoraConfig, TaskType, get_peft_model

    settings, task = config.lora, get_task(config.task)
    heads = head_modules(model, task.NEW_HEAD)
    peft_config = LoraConfig(
        task_type=TaskType[task.PEFT_TASK] if task.PEFT_TASK else None, r=settings.r, lora_alpha=settings.alpha,
        lora_dropout=settings.dropout, target_modules=target_modules(model, settings.target_modules, heads),
        modules_to_save=heads or None,
    )
    try:
        with warnings.catch_warnings():  # GPT-2's Conv1D: PEFT notes that it flips fan_in_fan_out itself
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)  # PEFT calls an API transformers 5 deprecates
            return get_peft_model(model, peft_config)
    except (ValueError, TypeError) as err:  # e.g. target modules not found in the model
        raise FtkitError(
            f"--lora: {first_line(err)[:300]}. Name layers of this '{model.config.model_type}' model with "
            "--set lora.target_modules=[name,...] (e.g. query,value)"
        ) from None


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def save_adapter(folder: Path, model: Any, tokenizer: Any, base: str) -> None:
    """PEFT's adapter files, the tokenizer and the fine-tuned model's config into `folder`."""
    model.peft_config["default"].base_model_name_or_path = base
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    inner = model.get_base_model()
    inner.config.architectures = [type(inner).__name__]  # as save_pretrained records it: tells the task
    inner.config.to_json_file(folder / MODEL_CONFIG)
    if getattr(inner, "generation_config", None) is not None and inner.can_generate():
        inner.generation_config.save_pretrained(folder)


def base_source(model: str) -> str:
    """Where the adapter's base model comes from: a local folder as an absolute path (so the
    adapter loads from any working folder), else the Hub id."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def is_adapter(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file()


def model_config(folder: Path) -> Any:
    """The fine-tuned model's config saved beside the adapter (labels, pad id)."""
    from transformers import AutoConfig

    path = folder / MODEL_CONFIG
    if not path.is_file():
        raise FtkitError(f"{folder}: a LoRA adapter without {MODEL_CONFIG}, so its labels are unknown; load it with PEFT yourself")
    return AutoConfig.from_pretrained(str(path))


def load_merged(auto_class: Any, folder: Path) -> Any:
    """The base model (from the adapter's base_model_name_or_path) with the adapter merged in."""
    from peft import PeftModel

    from ftkit.models import load_pretrained, model_source

    base_name = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base_name:
        raise FtkitError(f"{folder / ADAPTER_CONFIG}: no base_model_name_or_path, so the base model is unknown")
    # The run's head (labels) on the base: a base with another head is replaced, as in training.
    base = load_pretrained(auto_class, model_source(base_name), new_head=True, config=model_config(folder))
    # Merged once at load time: inference runs at the speed of a plain model.
    with warnings.catch_warnings():  # PEFT calls a transformers API that transformers 5 deprecates
        warnings.simplefilter("ignore", FutureWarning)
        model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    if (folder / "generation_config.json").is_file():  # the run's decoding (beams, lengths), not the base's
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(str(folder))
    return model
