"""The model card (README.md) of a saved model or adapter: Hub metadata, what the model is for,
its data, metrics, plots, training settings, the command that reproduces it, and how to load it.

The metadata is built with huggingface_hub's ModelCardData, so the Hub reads it as it reads its
own cards (base_model, datasets, metrics, pipeline_tag, license, and model-index results).
"""

from __future__ import annotations

import os
import shlex
from importlib import metadata
from pathlib import Path
from typing import Any

from ftkit.config import RunConfig
from ftkit.tasks import get_task

# Not scores for model-index: sizes, losses, and calibration error (how trustworthy the scores
# are, lower is better; the card's metrics table shows it)
NOT_A_SCORE = ("samples", "step", "epoch", "tokens", "entities", "loss", "gen_len", "ece", "ece_uncalibrated")
# The local paths a run reads (config key -> flag), the flags that set them, and the flags a
# reproduce command drops: its own run folder is new (runs/<recipe>-<time>)
PATH_KEYS = {"model": "--model", "data.train": "--train", "data.validation": "--validation", "data.test": "--test"}
FLAG_KEYS = {"-m": "model", **{flag: key for key, flag in PATH_KEYS.items()}}
DROPPED_FLAGS = ("--output-dir", "-o", "--overwrite")
VALUE_FLAGS = (*FLAG_KEYS, "--output-dir", "-o", "--set")


def render(config: RunConfig, results: dict, command: str, pipeline_tag: str, plots: list[tuple[str, str]], adapter: bool = False) -> str:
    """README.md for model/ (adapter=False) or adapter/ (a LoRA adapter)."""
    section = "test" if results.get("test") else "validation"
    scores = results.get(section, {})
    lines = [
        "---", metadata_yaml(config, scores, section, pipeline_tag, adapter), "---", "",
        f"# {config.name}: {base_name(config.model)} fine-tuned with ftkit" + (" (LoRA adapter)" if adapter else ""), "",
        config.description, "",
        "## Intended use", "", *intended_use(config, scores, section, adapter), "",
        "## Training data", "", f"- {_data_line(config)}", f"- {get_task(config.task).data_columns(config)}", "",
        f"## Metrics ({section})", "", *metrics_table(scores), "",
        f"The {section} rows the model got wrong (or scored worst) are in the run folder's errors.jsonl, worst first.", "",
    ]
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{caption}](plots/{name})\n\n*{caption}*\n" for name, caption in plots]
    lines += [
        "## Training", "", *training_lines(config, results.get("train", {}), scores, section), "",
        "## Reproduce", "",
        "On the machine that trained it, from any folder (its local files by their absolute paths; the run goes to a new runs/ folder):", "",
        "```", reproduce_command(config, command), "```", "",
        "Or rerun the resolved config of this run: `ftkit finetune RUN_DIR/config.yaml`.", "",
        "## Use", "", "```python", *(adapter_usage(config, pipeline_tag) if adapter else usage(config, pipeline_tag)), "```", "",
        "## Framework versions", "", *[f"- {name} {version}" for name, version in versions()], "",
    ]
    return "\n".join(lines)


def metadata_yaml(config: RunConfig, scores: dict, section: str, pipeline_tag: str, adapter: bool) -> str:
    import math

    from huggingface_hub import EvalResult, ModelCardData

    d = config.data
    dataset = d.dataset if d.dataset and not d.train else None
    hub_base = None if Path(config.model).expanduser().exists() else config.model  # a local path is no Hub id
    results = [
        EvalResult(
            task_type=pipeline_tag, dataset_type=dataset or "local", dataset_name=dataset or _data_line(config),
            dataset_config=d.dataset_config if dataset else None, dataset_split=section, metric_type=key.split(".")[-1],
            metric_name=key, metric_value=round(value, 6),
        )
        for key, value in _scores(scores, config.metrics.primary)
        if math.isfinite(value)  # a NaN (Pearson r of constant predictions) is no score, nor a JSON number for the Hub
    ]
    card = ModelCardData(
        library_name="peft" if adapter else "transformers", pipeline_tag=pipeline_tag, base_model=hub_base,
        datasets=[dataset] if dataset else None, metrics=get_task(config.task).hub_metrics(config) or None,
        license="other",  # placeholder: set the license that the base model and the data allow
        tags=["ftkit", config.name, config.task] + (["lora"] if config.lora.enabled else []),
        model_name=f"{config.name}-{base_name(config.model)}", eval_results=results or None,
    )
    return card.to_yaml()


def _scores(scores: dict, primary: str) -> list[tuple[str, float]]:
    """(name, value) of the split's top-level scores, the recipe's metric first (it may be nested)."""
    from ftkit.metrics import lookup

    out = [(k, float(v)) for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_A_SCORE]
    value = lookup(scores, primary)
    if value is not None:
        out = [(primary, value)] + [(k, v) for k, v in out if k != primary]
    return out


def intended_use(config: RunConfig, scores: dict, section: str, adapter: bool) -> list[str]:
    """What the model does, for which data, and what was not checked."""
    names = list(scores.get("per_class") or scores.get("per_type") or scores.get("per_label") or [])  # the classes or entity types scored
    family = get_task(config.task)
    does, use = family.describe(config, names), family.usage(config)
    lines = [
        f"{does} It learned from the data below and was scored on its {section} split only: expect these "
        f"numbers on {use.inputs} like that data, and measure it on yours before relying on it "
        f"(`ftkit evaluate RUN_DIR --data {use.eval_data}`).",
        "",
        "Not checked: other domains or languages, robustness to adversarial input, and biases the base model "
        "or the data carry. Do not use it for decisions about people without such checks.",
    ]
    if adapter:
        lines += ["", "This folder is a LoRA adapter: it needs its base model to run (see Use below). "
                  "`--merge` writes a standalone model that `pipeline()` loads directly."]
    return lines


def metrics_table(scores: dict) -> list[str]:
    rows = ["| metric | value |", "| --- | --- |"]
    rows += [f"| {k} | {v:.4f} |" for k, v in scores.items() if isinstance(v, float)]
    for group, title in (("per_class", "class"), ("per_type", "entity type"), ("per_label", "label")):  # classification / NER / multi-label
        if scores.get(group):
            rows += ["", f"| {title} | precision | recall | f1 | support |", "| --- | --- | --- | --- | --- |"]
            rows += [f"| {n} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['support']} |" for n, v in scores[group].items()]
    return rows


def training_lines(config: RunConfig, train: dict, scores: dict | None = None, section: str = "test") -> list[str]:
    t, lo = config.train, config.lora
    hp: dict[str, Any] = {
        "epochs": t.epochs, "max_steps": t.max_steps, "batch_size": t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps, "learning_rate": t.learning_rate,
        "weight_decay": t.weight_decay, "warmup_ratio": t.warmup_ratio,
        **{key: getattr(t, key) for key in get_task(config.task).usage(config).limits},  # what bounds its inputs
        "seed": t.seed, "mixed_precision": t.mixed_precision, "class_weights": t.class_weights,
        "early_stopping_patience": t.early_stopping_patience,
    }
    if lo.enabled:
        hp["lora"] = f"r={lo.r}, alpha={lo.alpha}, dropout={lo.dropout}, target_modules={lo.target_modules or 'per architecture'}"
    lines = [f"- {k}: {v}" for k, v in hp.items() if v is not None]
    if train:
        lines.append(f"- result: {train.get('steps')} optimizer steps ({train.get('epochs')} epochs) in {train.get('runtime_s', 0):.1f} s, "
                     f"final training loss {train.get('loss', float('nan')):.4f}")
        if train.get("parameters"):
            lines.append(f"- trained parameters: {train['trainable_parameters']:,} of {train['parameters']:,}")
        if train.get("stopped_early"):
            lines.append("- stopped early: the recipe's metric stopped improving; the best evaluation's weights were kept")
        if isinstance(train.get("calibration"), dict):
            lines.append(calibration_line(train["calibration"], scores or {}, section))
    return lines


def calibration_line(fitted: dict, scores: dict, section: str) -> str:
    """--calibrate's line: the temperature, and the ECE it changed (test, else validation)."""
    before, after = scores.get("ece_uncalibrated"), scores.get("ece")
    if before is None or after is None:  # no test split: the validation split it was fitted on
        section, before, after = "validation", fitted["validation_ece_before"], fitted["validation_ece_after"]
    return (f"- scores calibrated by temperature scaling (T={fitted['temperature']:.2f}, fitted on validation): "
            f"{section} ECE {before:.3f} -> {after:.3f}")


def usage(config: RunConfig, pipeline_tag: str) -> list[str]:
    """The saved model at work: through pipeline(), or its Auto class and generate() where the
    family says so (transformers 5 has no pipeline for it)."""
    task = get_task(config.task)
    use = task.usage(config)
    if use.generate:
        return [
            f"from transformers import {task.AUTO_MODEL}, AutoTokenizer", "",
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
            f'model = {task.AUTO_MODEL}.from_pretrained("path/to/this/folder")  # decodes with its generation_config',
            *_generate_lines(use.example),
        ]
    return [
        "from transformers import pipeline", "",
        f'model = pipeline("{pipeline_tag}", model="path/to/this/folder"{use.pipeline_args})', f"print(model({use.example!r}))",
    ]


def adapter_usage(config: RunConfig, pipeline_tag: str) -> list[str]:
    """Base model (with this run's labels) + adapter, merged, then used like any model."""
    from ftkit.lora import MODEL_CONFIG

    task = get_task(config.task)
    auto = task.AUTO_MODEL
    lines = [
        "import json", "", "from peft import PeftModel",
        f"from transformers import AutoConfig, AutoTokenizer, {auto}", "",
        'folder = "path/to/this/folder"',
        'base = json.load(open(f"{folder}/adapter_config.json"))["base_model_name_or_path"]',
        f'config = AutoConfig.from_pretrained(f"{{folder}}/{MODEL_CONFIG}")  # labels of this run',
        f"model = PeftModel.from_pretrained({auto}.from_pretrained(base, config=config), folder).merge_and_unload()",
        "tokenizer = AutoTokenizer.from_pretrained(folder)",
    ]
    use = task.usage(config)
    if use.generate:
        return lines + _generate_lines(use.example)
    return lines + ["", "from transformers import pipeline", "", f'print(pipeline("{pipeline_tag}", model=model, tokenizer=tokenizer{use.pipeline_args})({use.example!r}))']


def _generate_lines(example: str) -> list[str]:
    """`tokenizer` and `model` at work on `example` through generate()."""
    return [
        f"inputs = tokenizer({example!r}, return_tensors=\"pt\")",
        "print(tokenizer.decode(model.generate(**inputs)[0], skip_special_tokens=True))",
    ]


def versions() -> list[tuple[str, str]]:
    out = []
    for name in ("ftkit", "transformers", "torch", "accelerate", "peft", "datasets", "tokenizers"):
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return out


def base_name(model: str) -> str:
    """The base model as the card names it: a Hub id as it is, a local folder by its name only
    (its path says where it sat on the training machine, e.g. inside a virtualenv)."""
    path = Path(model).expanduser()
    return Path(os.path.abspath(path)).name if path.exists() else model


def reproduce_command(config: RunConfig, command: str) -> str:
    """The command that made the run, as it runs when pasted in another folder: local files by
    absolute paths, no --output-dir (a rerun into the finished run's folder is refused: not
    empty), and offline when nothing came from the Hub (no minutes of Hub look-ups)."""
    out, given = _rewritten(config, shlex.split(command))
    return _offline_prefix(config) + shlex.join(out + _recipe_paths(config, given))


def _rewritten(config: RunConfig, args: list[str]) -> tuple[list[str], set[str]]:
    """The command's words with its local paths absolute and its output flags dropped, and the
    path keys (PATH_KEYS) it set. Consumes `args`."""
    out: list[str] = []
    given: set[str] = set()
    while args:
        arg = args.pop(0)
        flag, value = _flag(arg)
        if flag in VALUE_FLAGS and value is None and args:
            value = args.pop(0)
        if flag in DROPPED_FLAGS:
            continue
        key = _path_key(flag, value)
        if key in PATH_KEYS and _setting(config, key):
            given.add(key)
            path = _absolute(_setting(config, key))
            out += ["--set", f"{key}={path}"] if flag == "--set" else [flag, path]
        else:
            out += _kept(arg, flag, value)
    return out, given


def _path_key(flag: str, value: str | None) -> str | None:
    """The config key a flag sets: --train -> 'data.train'; --set data.train=x -> 'data.train'."""
    return FLAG_KEYS.get(flag) or (value.partition("=")[0].strip() if flag == "--set" and value else None)


def _kept(arg: str, flag: str, value: str | None) -> list[str]:
    """The words for an argument that sets no local path: as given, but the recipe as a file by its
    absolute path (a recipe's name runs anywhere)."""
    if value is not None:
        return [flag, value]
    if not arg.startswith("-") and (arg.endswith((".yaml", ".yml")) or "/" in arg) and Path(arg).is_file():
        return [os.path.abspath(arg)]
    return [arg]


def _recipe_paths(config: RunConfig, given: set[str]) -> list[str]:
    """Flags for the local paths the command did not set: a recipe file's relative paths are
    relative to where it ran."""
    out = []
    for key, flag in PATH_KEYS.items():
        value = _setting(config, key)
        if key not in given and value and _absolute(value) != value:
            out += [flag, _absolute(value)]
    return out


def _offline_prefix(config: RunConfig) -> str:
    """Offline when nothing comes from the Hub: no minutes of Hub look-ups before the run starts."""
    hub_data = config.data.dataset and not config.data.train
    offline = not hub_data and Path(config.model).expanduser().exists()
    return "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 " if offline else ""


def _flag(arg: str) -> tuple[str, str | None]:
    """(flag, value given in the same word): --output-dir=runs/x, -oruns/x; else (arg, None)."""
    if arg.startswith("--"):
        flag, sep, value = arg.partition("=")
        return flag, value if sep else None
    if len(arg) > 2 and arg[:2] in ("-m", "-o"):
        return arg[:2], arg[2:]
    return arg, None


def _setting(config: RunConfig, key: str) -> str | None:
    return config.model if key == "model" else getattr(config.data, key.removeprefix("data."))


def _absolute(value: str) -> str:
    """A local path (both sides of a 'src.txt:tgt.txt' pair) made absolute; a Hub id as it is."""
    from ftkit.data import aligned_pair

    parts = [str(p) for p in aligned_pair(value) or [value]]
    if not all(os.path.lexists(os.path.expanduser(p)) for p in parts):
        return value
    return ":".join(os.path.abspath(os.path.expanduser(p)) for p in parts)


def _data_line(config: RunConfig) -> str:
    d = config.data
    files = ", ".join(f"{s}: {Path(getattr(d, s)).name}" for s in ("train", "validation", "test") if getattr(d, s))
    return files or f"{d.dataset}" + (f" ({d.dataset_config})" if d.dataset_config else "")
