"""Inference on a finished run or model folder: streaming `predict` and `evaluate`.

`predict` reads its input record by record and writes each result as it goes: memory stays
flat however large the input. Within a bounded chunk, texts are sorted by length so batches
carry little padding; results go out in input order.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ftkit.config import RunConfig
from ftkit.data import TABLE_SUFFIXES, TEXT_SUFFIXES, check_readable, iter_records, read_columns
from ftkit.errors import FtkitError, closest
from ftkit.models import quiet_transformers
from ftkit.tasks import FAMILY_MODULES, get_task

CHUNK_BATCHES = 16  # batches per sorted chunk: bounds memory, keeps padding low


def family_of(model_config: Any, run_config: RunConfig | None) -> str:
    """The task family of a model folder: from the run's config, else from its architecture."""
    if run_config is not None:
        return run_config.task
    suffixes = {"ForSequenceClassification": "sequence-classification"}
    for arch in getattr(model_config, "architectures", None) or []:
        for suffix, family in suffixes.items():
            if arch.endswith(suffix):
                return family
    raise FtkitError(
        f"cannot tell which task this model does (architectures: {getattr(model_config, 'architectures', None)}); "
        f"ftkit predicts with: {', '.join(FAMILY_MODULES)}"
    )


def load_for_inference(model_dir: Path, run_config: RunConfig | None) -> tuple[Any, Any, Any]:
    """(task module, model on the best device in eval mode, tokenizer)."""
    import torch
    from transformers import AutoConfig

    from ftkit.models import load_tokenizer

    quiet_transformers()
    task = get_task(family_of(AutoConfig.from_pretrained(model_dir), run_config))
    import transformers

    model = getattr(transformers, task.AUTO_MODEL).from_pretrained(model_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    return task, model, load_tokenizer(str(model_dir))


def default_max_length(model: Any, tokenizer: Any) -> int:
    """For a bare model folder: what both the tokenizer and the position embeddings allow."""
    from ftkit.models import max_positions

    return min(tokenizer.model_max_length, max_positions(model.config) or 512, 512)


def texts_from(input_path: str, text_column: str | None, default_column: str, encoding: str) -> Iterator[str]:
    """Texts of the input in order: lines of a .txt / stdin (blank lines skipped), or a column."""
    if input_path != "-":
        check_readable(Path(input_path), TABLE_SUFFIXES + TEXT_SUFFIXES)
    plain = input_path == "-" or Path(input_path).suffix.lower() in TEXT_SUFFIXES
    column = None
    for n, record in iter_records(input_path, encoding):
        if plain:
            if record["text"].strip():
                yield record["text"]
            continue
        if column is None:
            column = _pick_column(input_path, n, record, text_column, default_column)
        if column not in record:
            raise FtkitError(f"{input_path}: line/row {n} has no column '{column}'")
        value = record[column]
        yield "" if value is None else str(value)


def _pick_column(path: str, n: int, record: dict, explicit: str | None, default: str) -> str:
    if explicit:
        if explicit not in record:
            raise FtkitError(f"{path}: no column '{explicit}'.{closest(explicit, list(record))} Columns present: {', '.join(record)}")
        return explicit
    for candidate in (default, "text"):
        if candidate in record:
            return candidate
    raise FtkitError(f"{path}: no column '{default}'. Columns present: {', '.join(record)}. Choose one with --text-column.")


def predict(
    model_dir: Path,
    run_config: RunConfig | None,
    input_path: str,
    output: Path | None,
    batch_size: int,
    top_k: int,
    text_column: str | None,
    encoding: str,
) -> int:
    """Write one JSON line per input record (to `output`, else stdout); return the count."""
    task, model, tokenizer = load_for_inference(model_dir, run_config)
    max_length = run_config.train.max_length if run_config else default_max_length(model, tokenizer)
    default_column = run_config.data.text_column if run_config else "text"
    texts = texts_from(input_path, text_column, default_column, encoding)
    if output is None:
        return _write_all(task, model, tokenizer, texts, sys.stdout, batch_size, top_k, max_length)
    tmp = output.with_name(output.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            count = _write_all(task, model, tokenizer, texts, handle, batch_size, top_k, max_length)
        os.replace(tmp, output)  # the output appears only complete
    except OSError as err:
        raise FtkitError(f"{output}: cannot write ({err.strerror or err})", exit_code=1) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return count


def _write_all(task: Any, model: Any, tokenizer: Any, texts: Iterator[str], out: IO[str], batch_size: int, top_k: int, max_length: int) -> int:
    count = 0
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == batch_size * CHUNK_BATCHES:
            count += _write_chunk(task, model, tokenizer, chunk, out, batch_size, top_k, max_length)
            chunk = []
    if chunk:
        count += _write_chunk(task, model, tokenizer, chunk, out, batch_size, top_k, max_length)
    return count


def _write_chunk(task: Any, model: Any, tokenizer: Any, chunk: list[str], out: IO[str], batch_size: int, top_k: int, max_length: int) -> int:
    order = sorted(range(len(chunk)), key=lambda i: len(chunk[i]))
    results: list[Any] = [None] * len(chunk)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        for i, record in zip(idx, task.predict(model, tokenizer, [chunk[i] for i in idx], max_length, top_k)):
            results[i] = record
    out.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
    out.flush()
    return len(chunk)


def evaluate(model_dir: Path, run_config: RunConfig | None, data_path: Path, text_column: str | None, label_column: str | None, batch_size: int, encoding: str) -> dict[str, Any]:
    """Metrics of a saved model on a labelled file, through the training loop's evaluation."""
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from ftkit.config import DataConfig, RunConfig as Config, TrainConfig
    from ftkit.train import run_evaluation

    check_readable(data_path)
    task, model, tokenizer = load_for_inference(model_dir, run_config)
    base = run_config or Config(
        name="evaluate", task=family_of(model.config, None), model=str(model_dir),
        train=TrainConfig(max_length=default_max_length(model, tokenizer)),
    )
    data = base.data
    config = Config(
        name=base.name, task=base.task, model=str(model_dir), train=base.train, metrics=base.metrics,
        data=DataConfig(
            text_column=text_column or data.text_column, label_column=label_column or data.label_column,
            text_pair_column=data.text_pair_column, prefix=data.prefix, encoding=encoding,
        ),
    )
    split = read_columns(data_path, task.columns(config), encoding)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    prepared = task.prepare({"test": split}, config, tokenizer, names=names)
    accelerator = Accelerator()
    loader = DataLoader(prepared.features["test"], batch_size=batch_size, collate_fn=task.collator(tokenizer, None))
    model, loader = accelerator.prepare(model, loader)
    return run_evaluation(model, loader, accelerator, task, prepared)
