"""The output folder contract.

    OUT/
      model/          save_pretrained model + tokenizer (safetensors) + README.md model card;
                      loads with transformers.pipeline(TASK, model="OUT/model")
      metrics.json    {"train": {...}, "validation": {...}, "test": {...}}
      config.yaml     the fully resolved config: `ftkit finetune OUT/config.yaml` reruns the run
      log.jsonl       one JSON object per logging step and per evaluation

`model/` and `metrics.json` appear only complete: each is written under a temporary name and
renamed into place.
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
from ftkit.models import max_positions

RUN_FILES = ("model", "metrics.json", "config.yaml", "log.jsonl", "checkpoints")
# pipeline task -> (example input, extra pipeline() arguments) for the model card
USAGE = {
    "text-classification": ("A gripping, beautifully shot film.", ""),
    "token-classification": ("Angela Merkel met Emmanuel Macron in Paris.", ', aggregation_strategy="first"'),
}


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
    """Write model/ (atomically), the model card, config.yaml and metrics.json."""
    tmp = out / "model.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        limit = max_positions(model.config)
        if limit and tokenizer.model_max_length > limit:  # else pipeline() may feed more than it reads
            tokenizer.model_max_length = limit
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(config, results, command, pipeline_tag), encoding="utf-8")
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written stays behind
        raise
    final = out / "model"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    save_config(out / "config.yaml", config)
    write_json(out / "metrics.json", results)


def model_card(config: RunConfig, results: dict, command: str, pipeline_tag: str) -> str:
    """A README.md with Hub metadata, data, hyper-parameters, metrics and the command."""
    import yaml

    t, d = config.train, config.data
    data_desc = ", ".join(f"{s}: {getattr(d, s)}" for s in ("train", "validation", "test") if getattr(d, s)) or (
        f"{d.dataset}" + (f" ({d.dataset_config})" if d.dataset_config else "")
    )
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": pipeline_tag,
        "base_model": config.model,
        "tags": ["ftkit", config.name, config.task],
        "license": "other",  # placeholder: set the license that the base model and data allow
    }
    if d.dataset and not d.train:
        meta["datasets"] = [d.dataset]
    section = "test" if results.get("test") else "validation"
    scores = results.get(section, {})
    rows = [f"| {k} | {v:.4f} |" for k, v in scores.items() if isinstance(v, float)]
    hp = {
        "epochs": t.epochs, "max_steps": t.max_steps, "batch_size": t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps, "learning_rate": t.learning_rate,
        "weight_decay": t.weight_decay, "warmup_ratio": t.warmup_ratio, "max_length": t.max_length,
        "seed": t.seed, "mixed_precision": t.mixed_precision,
    }
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
        f"# {config.name}: {config.model} fine-tuned with ftkit", "",
        config.description, "",
        "## Data", "", f"- {data_desc}",
        f"- {_columns_line(config)}", "",
        f"## Metrics ({section})", "", "| metric | value |", "| --- | --- |", *rows, "",
    ]
    for group, title in (("per_class", "class"), ("per_type", "entity type")):  # classification / NER
        if scores.get(group):
            lines += [f"| {title} | precision | recall | f1 | support |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| {n} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['support']} |" for n, v in scores[group].items()]
            lines.append("")
    example, extra = USAGE.get(pipeline_tag, ("Some text.", ""))
    if pipeline_tag in ("summarization", "translation"):  # transformers 5 removed these pipelines
        use = [
            "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer", "",
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
            'model = AutoModelForSeq2SeqLM.from_pretrained("path/to/this/folder")  # decodes with its generation_config',
            f"inputs = tokenizer({d.prefix + example!r}, return_tensors=\"pt\")",
            "print(tokenizer.decode(model.generate(**inputs)[0], skip_special_tokens=True))",
        ]
    else:
        use = ["from transformers import pipeline", "", f'model = pipeline("{pipeline_tag}", model="path/to/this/folder"{extra})', f"print(model({example!r}))"]
    lines += [
        "## Hyper-parameters", "", *[f"- {k}: {v}" for k, v in hp.items() if v is not None], "",
        "## Reproduce", "", "```", command, "```", "",
        "Or rerun the resolved config of this run: `ftkit finetune RUN_DIR/config.yaml`.", "",
        "## Use", "", "```python", *use, "```", "",
    ]
    return "\n".join(lines)


def _columns_line(config: RunConfig) -> str:
    """Which columns the run read, in the terms of its task family."""
    d = config.data
    if config.task == "seq2seq":
        if d.source_lang and d.target_lang:
            return f"translation {d.source_lang} -> {d.target_lang}" + (f", prefix `{d.prefix}`" if d.prefix else "")
        return f"source column `{d.text_column}`, target column `{d.target_column}`" + (f", prefix `{d.prefix}`" if d.prefix else "")
    if config.task == "causal-lm":
        return f"text column `{d.text_column}`, blocks of {config.train.max_length} tokens"
    return f"text column `{d.text_column}`, label column `{d.label_column}`"


def resolve_model_dir(path: Path) -> tuple[Path, RunConfig | None]:
    """A run folder (OUT/) or a model folder -> (model folder, the run's config if any)."""
    if not path.exists():
        raise FtkitError(f"{path}: no such folder")
    if (path / "model" / "config.json").is_file():
        config_file = path / "config.yaml"
        config = from_dict(load_yaml_file(config_file), str(config_file)) if config_file.is_file() else None
        return path / "model", config
    if (path / "config.json").is_file():
        parent_config = path.parent / "config.yaml"
        config = None
        if path.name == "model" and parent_config.is_file():
            config = from_dict(load_yaml_file(parent_config), str(parent_config))
        return path, config
    raise FtkitError(
        f"{path}: not an ftkit run folder (no model/config.json) nor a model folder (no config.json). "
        "Pass the --output-dir of a finished `ftkit finetune`, or a folder written by save_pretrained."
    )
