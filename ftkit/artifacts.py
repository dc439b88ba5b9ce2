"""The output folder contract.

    OUT/
      model/          save_pretrained model + tokenizer (safetensors) + README.md model card
                      (+ plots/ it shows); loads with transformers.pipeline(TASK, model="OUT/model").
                      A LoRA run writes it with --merge only.
      adapter/        LoRA runs: the PEFT adapter, tokenizer and card (see ftkit.lora)
      plots/          PNGs: loss and learning rate, the recipe's metric per evaluation, and per
                      family a confusion matrix, entity F1 bars or generated/reference lengths
      metrics.json    {"train": {...}, "validation": {...}, "test": {...}}
      config.yaml     the fully resolved config: `ftkit finetune OUT/config.yaml` reruns the run
      log.jsonl       one JSON object per logging step and per evaluation
      tensorboard/    with --report-to tensorboard: the event files

`model/`, `adapter/` and `metrics.json` appear only complete: each is written under a temporary
name and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ftkit.config import RunConfig, from_dict, load_yaml_file
from ftkit.errors import FtkitError
from ftkit.models import is_model_folder, max_positions

RUN_FILES = ("model", "adapter", "plots", "tensorboard", "metrics.json", "config.yaml", "log.jsonl", "checkpoints")


def prepare_output_dir(out: Path, overwrite: bool) -> None:
    """Create `out`, refusing a file, an unwritable place or a finished run (unless overwrite)."""
    if out.exists() and not out.is_dir():
        raise FtkitError(f"{out}: is a file, not a folder; choose another --output-dir")
    earlier = out.is_dir() and any(out.iterdir())
    if earlier and not overwrite:
        if (out / "checkpoints").is_dir() and not (out / "metrics.json").exists():
            raise FtkitError(f"{out}: holds an unfinished run with checkpoints; add --resume to continue it, or --overwrite to start again")
        raise FtkitError(f"{out}: the folder is not empty (an earlier run?); pass --overwrite or another --output-dir")
    created = not out.exists()
    probe = out / ".ftkit-write-test"
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Write a few bytes, not just create: a full disk still lets an empty file be made.
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        # Leave nothing behind: a half-written probe, or the folder this call created.
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise FtkitError(f"{out}: cannot write there ({err.strerror or err}); choose another --output-dir") from None
    if earlier:  # only once the folder is known writable, so a failed check keeps the old run
        for name in RUN_FILES:  # remove only what a run writes, never the user's other files
            target = out / name
            try:
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            except OSError as err:
                raise FtkitError(f"{target}: cannot remove the earlier run's file ({err.strerror or err}); remove it yourself or choose another --output-dir") from None


class JsonlLog:
    """Appends one JSON object per line, flushed, so a crashed run keeps its history."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, default=float) + "\n")


def write_json(path: Path, data: Any) -> None:
    """Write JSON under a temporary name, then rename: readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_config(path: Path, config: RunConfig) -> None:
    import yaml

    header = f"# Resolved config of an ftkit run. Rerun it with: ftkit finetune {path}\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(header + yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
    os.replace(tmp, path)


def save_run(out: Path, model: Any, tokenizer: Any, config: RunConfig, results: dict, command: str, pipeline_tag: str) -> None:
    """Write plots/, model/ and (LoRA) adapter/ (each atomically, with its card), config.yaml
    and metrics.json. `model` is a PEFT model when config.lora.enabled."""
    from ftkit import card, lora

    plots = write_plots(out, config, results)
    limit = max_positions(model.config)
    if limit and tokenizer.model_max_length > limit:  # else pipeline() may feed more than it reads
        tokenizer.model_max_length = limit
    if config.lora.enabled:
        adapter_card = card.render(config, results, command, pipeline_tag, plots, adapter=True)
        _write_folder(out, "adapter", lambda tmp: lora.save_adapter(tmp, model, tokenizer, lora.base_source(config.model)), adapter_card)
        model = model.merge_and_unload() if config.lora.merge else None  # merged once the adapter is safe on disk
    if model is not None:
        model_card = card.render(config, results, command, pipeline_tag, plots)

        def save_model(tmp: Path) -> None:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)

        _write_folder(out, "model", save_model, model_card)
    save_config(out / "config.yaml", config)
    write_json(out / "metrics.json", results)


def _write_folder(out: Path, name: str, fill: Any, readme: str) -> None:
    """out/name written as out/name.tmp by `fill`, with README.md and the plots, then renamed."""
    tmp, final = out / f"{name}.tmp", out / name
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        fill(tmp)
        (tmp / "README.md").write_text(readme, encoding="utf-8")
        if (out / "plots").is_dir():  # the card shows them: the folder must carry them to the Hub
            shutil.copytree(out / "plots", tmp / "plots")
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written stays behind
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def write_plots(out: Path, config: RunConfig, results: dict) -> list[tuple[str, str]]:
    """OUT/plots/*.png from log.jsonl and the metrics; [(file, caption)]. A plotting failure
    warns and costs the plots, never the trained model."""
    import sys

    from ftkit import plots
    from ftkit.runs import read_log

    try:
        log = read_log(out / "log.jsonl")
        return plots.write_plots(out / "plots", log, results, config.metrics.primary, config.metrics.greater_is_better)
    except OSError:
        raise
    except Exception as err:  # a bug in plotting: the run's real results still get saved
        print(f"warning: plots not written ({type(err).__name__}: {err})", file=sys.stderr)
        return []


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
