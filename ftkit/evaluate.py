"""`evaluate`: metrics of a saved model on a labelled file, through the training loop's evaluation.

A run folder's config says which columns, prefix and languages the model was trained with; a
bare model folder's family (told by its architecture) says which columns local files usually
use (its CONVENTIONAL_COLUMNS). Either way only this file is read: no Hub, no carving.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from ftkit import inference
from ftkit.config import RunConfig
from ftkit.data import TEXT_SUFFIXES, check_readable, file_names, read_columns
from ftkit.progress import Reporter


def evaluation_inputs(data_path: Path, fmt: str = "auto") -> list[Path]:
    """The files `evaluate` reads its examples from (both sides of 'SRC.txt:TGT.txt'), each
    checked to be a readable data file: called before any model loads."""
    from ftkit.data import aligned_pair, data_suffixes

    pair = aligned_pair(str(data_path))
    for path in pair or ():
        check_readable(path, TEXT_SUFFIXES)
    if pair:
        return list(pair)
    if data_path.is_dir():  # an audio or image folder: the family's read_local checks what it holds
        return [data_path]
    check_readable(data_path, data_suffixes(fmt))
    return [data_path]


def evaluate(model_dir: Path, run_config: RunConfig | None, data_path: Path, text_column: str | None, label_column: str | None, batch_size: int, encoding: str, fmt: str = "auto",
             errors: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Metrics of a saved model on a labelled file, through the training loop's evaluation;
    `errors` given: errors["test"] is set to the file's wrong rows, worst first (as RUN/errors.jsonl)."""
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from ftkit.data import adapt_columns
    from ftkit.train import run_evaluation

    evaluation_inputs(data_path, fmt)
    task, model, tokenizer = inference.load_for_inference(model_dir, run_config)
    config = _evaluation_config(model_dir, run_config, task, model, tokenizer, text_column, label_column, encoding, fmt)
    split = task.read_local(data_path, config)  # a family's own data (an audio folder), else records
    if split is None:
        wanted = task.columns(config)
        # the pair column is the model's input as trained: never dropped (a file without it is refused)
        explicit = {role for role, flag in (("text", text_column), ("label", label_column)) if flag} | {"text_pair"}
        adapted, notes = adapt_columns(data_path, wanted, explicit, encoding, fmt, task.normalizer(config), task.CONVENTIONAL_COLUMNS)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        split = read_columns(data_path, adapted, encoding, fmt, task.normalizer(config))
    for note in split.notes:
        print(f"note: {note}", file=sys.stderr)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    prepared = task.prepare({"test": split}, config, tokenizer, names=names)
    accelerator = Accelerator()
    loader = DataLoader(prepared.features["test"], batch_size=batch_size, collate_fn=task.collator(tokenizer, None))
    model, loader = accelerator.prepare(model, loader)
    reporter = Reporter()
    reporter.main_process = accelerator.is_main_process
    return run_evaluation(model, loader, accelerator, task, prepared, "test", reporter=reporter, label=file_names(data_path), errors=errors)


def _evaluation_config(
    model_dir: Path, run_config: RunConfig | None, task: Any, model: Any, tokenizer: Any,
    text_column: str | None, label_column: str | None, encoding: str, fmt: str,
) -> RunConfig:
    """The run's columns, prefix and languages (a bare model folder: its family's conventional
    columns), with the command line's columns, encoding and format, reading only this file."""
    from ftkit.config import DataConfig, TrainConfig

    base = run_config or RunConfig(
        name="evaluate", task=inference.family_of(model.config, None), model=str(model_dir),
        train=TrainConfig(max_length=inference.default_max_length(model, tokenizer)),
        data=DataConfig(**{f"{role}_column": name for role, name in task.CONVENTIONAL_COLUMNS.items()}),
    )
    data = base.data
    return RunConfig(
        name=base.name, task=base.task, model=str(model_dir), train=base.train, metrics=base.metrics, generation=base.generation,
        data=dataclasses.replace(
            DataConfig(), text_column=text_column or data.text_column, label_column=label_column or data.label_column,
            text_pair_column=data.text_pair_column, target_column=data.target_column, source_lang=data.source_lang,
            target_lang=data.target_lang, labels=data.labels, prefix=data.prefix, encoding=encoding, format=fmt,
            audio_column=data.audio_column, language=data.language, image_column=data.image_column, label_separator=data.label_separator,
        ),
    )
