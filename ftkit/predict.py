"""Inference on a finished run or model folder: streaming `predict` and `evaluate`.

`predict` reads its input record by record and writes each result as it goes: memory stays
flat however large the input. Within a bounded chunk, inputs are sorted by length so batches
carry little padding; results go out in input order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftkit import lora
from ftkit.config import RunConfig
from ftkit.data import CONLL_SUFFIXES, TABLE_SUFFIXES, TEXT_SUFFIXES, check_readable, file_names, iter_records, read_columns
from ftkit.columns import Roles, missing_column
from ftkit.errors import FtkitError
from ftkit.models import ADAPTER_CONFIG, quiet_transformers
from ftkit.predict_output import OutputFile, StreamSink, sink_for
from ftkit.progress import Pass, Reporter
from ftkit.tasks import FAMILY_MODULES, get_task
from ftkit.values import as_text

CHUNK_BATCHES = 16  # batches per sorted chunk: bounds memory, keeps padding low
ARCHITECTURE_FAMILIES = {
    "ForSequenceClassification": "sequence-classification",
    "ForTokenClassification": "token-classification",
    "ForConditionalGeneration": "seq2seq",
    "MTModel": "seq2seq",  # MarianMTModel
    "ForCausalLM": "causal-lm",
    "LMHeadModel": "causal-lm",  # GPT2LMHeadModel
}


@dataclass
class PredictOptions:
    """What the task families' predictors read; each takes what applies to it."""

    batch_size: int = 32
    top_k: int = 1  # classification: also list the K most likely labels
    max_length: int = 512
    aggregation: str = "first"  # token classification: pipeline aggregation strategy
    pipeline_tag: str = ""  # seq2seq: summarization or translation (names the output key)
    prefix: str = ""  # seq2seq: the run's input prefix (T5 task prefixes)
    max_new_tokens: int | None = None  # generation flags; None keeps the model's generation_config
    num_beams: int | None = None
    temperature: float | None = None  # given: sample with this temperature
    top_p: float | None = None  # given: sample from the top-p nucleus
    stride: int | None = None  # token classification: overlap of windows over long inputs; None: the run's
    seed: int | None = None  # generation: sampling seed, set once the model is loaded (loading may draw numbers)


    def generation_overrides(self) -> dict[str, Any]:
        """generate() arguments the command line set; sampling when temperature or top_p is set."""
        out: dict[str, Any] = {k: v for k, v in (("max_new_tokens", self.max_new_tokens), ("num_beams", self.num_beams)) if v is not None}
        if self.temperature is not None or self.top_p is not None:
            out["do_sample"] = True
            out.update({k: v for k, v in (("temperature", self.temperature), ("top_p", self.top_p)) if v is not None})
        return out


def family_of(model_config: Any, run_config: RunConfig | None) -> str:
    """The task family of a model folder: from the run's config, else from its architecture."""
    if run_config is not None:
        return run_config.task
    for arch in getattr(model_config, "architectures", None) or []:
        for suffix, family in ARCHITECTURE_FAMILIES.items():
            if arch.endswith(suffix):
                return family
    raise FtkitError(
        f"cannot tell which task this model does (architectures: {getattr(model_config, 'architectures', None)}); "
        f"ftkit predicts with: {', '.join(FAMILY_MODULES)}"
    )


def load_for_inference(model_dir: Path, run_config: RunConfig | None) -> tuple[Any, Any, Any]:
    """(task module, model on the best device in eval mode, tokenizer)."""
    import torch
    import transformers

    from ftkit.models import check_weights, load_model_config, load_pretrained, load_tokenizer

    quiet_transformers()
    check_weights(str(model_dir))
    if lora.is_adapter(model_dir):  # a LoRA run without --merge: base model + adapter, merged here
        task = get_task(family_of(lora.model_config(model_dir), run_config))
        model = lora.load_merged(getattr(transformers, task.AUTO_MODEL), model_dir)
    else:
        task = get_task(family_of(load_model_config(str(model_dir)), run_config))
        model = load_pretrained(getattr(transformers, task.AUTO_MODEL), str(model_dir))
    procs = processes()
    device = procs.device if procs else "cuda" if torch.cuda.is_available() else "cpu"  # launched: this process's device
    model.to(device).eval()
    return task, model, load_tokenizer(str(model_dir), task.PREFIX_SPACE)


def default_max_length(model: Any, tokenizer: Any) -> int:
    """For a bare model folder: what both the tokenizer and the position embeddings allow."""
    from ftkit.models import max_positions

    return min(tokenizer.model_max_length, max_positions(model.config) or 512, 512)


def records_from(input_path: str | list[str], text_column: str | None, run_config: RunConfig | None, encoding: str) -> Iterator[dict[str, Any]]:
    """Input records in order: {"text"} from lines of a .txt / stdin (blank lines skipped), a
    table's text column or the literal texts of --text (a list); {"tokens"} from a table or
    CoNLL file holding pre-split words."""
    if isinstance(input_path, list):
        yield from ({"text": text} for text in input_path)
        return
    if input_path != "-":
        check_readable(Path(input_path), TABLE_SUFFIXES + TEXT_SUFFIXES + CONLL_SUFFIXES)
    plain = input_path == "-" or Path(input_path).suffix.lower() in TEXT_SUFFIXES
    words_column = run_config.data.text_column if run_config and run_config.task == "token-classification" else "tokens"
    default_column = run_config.data.text_column if run_config and run_config.task != "token-classification" else "text"
    if run_config and run_config.data.source_lang and run_config.data.target_lang:
        default_column = run_config.data.source_lang  # translation: the source language's column
    column = None
    for n, record in iter_records(input_path, encoding):
        if plain:
            if record["text"].strip():
                yield {"text": record["text"]}
            continue
        if isinstance(record.get("translation"), dict):  # {"translation": {"en": ..., "de": ...}} rows, as training reads
            record = {**record, **record["translation"]}
        if column is None:
            column = _pick_column(input_path, n, record, text_column, [default_column, "text", words_column])
        if column not in record:
            raise FtkitError(f"{input_path}: line/row {n} has no column '{column}'")
        value = record[column]
        if isinstance(value, list):
            yield {"tokens": value}
        else:
            yield {"text": as_text(value, input_path, n)}  # a dict or bytes is refused, not stringified


def _pick_column(path: str, n: int, record: dict, explicit: str | None, defaults: list[str]) -> str:
    column = explicit or next((c for c in defaults if c in record), None)
    if column is None or column not in record:  # suggest by name, or a column whose value reads as text / words
        wanted = Roles({"text": explicit or defaults[0]}, {"text": ("text", "words")})
        raise FtkitError(missing_column(path, n, wanted, list(record), [record]))
    return column


def predict(
    model_dir: Path, run_config: RunConfig | None, input_path: str | list[str], output: Path | None, text_column: str | None, encoding: str,
    options: PredictOptions, resume: bool = False, overwrite: bool = False,
) -> int:
    """Write one JSON line per input record (to `output`, else stdout); return the count written.
    `input_path` is a file, "-" (stdin), or a list of literal texts (--text).

    Each chunk's lines are flushed as soon as they are computed, so a killed run leaves a prefix
    of complete lines that `resume` continues (see ftkit.predict_output). An existing `output`
    is replaced only with `overwrite`. Ctrl-C ends with one line saying what was written.
    """
    if resume and output is None:
        raise FtkitError("--resume continues an --output file; pass --output FILE")
    procs = processes()
    main = procs is None or procs.is_main_process
    sink = sink_for(output, main, producer(model_dir, options, text_column, encoding), overwrite=overwrite, resume=resume)
    try:
        with sink:
            _predict_into(sink, model_dir, run_config, input_path, text_column, encoding, options, procs)
            sink.finish()
            return sink.count
    except KeyboardInterrupt:
        raise FtkitError(sink.interrupted(), exit_code=130) from None
    except FtkitError as err:  # the sinks turn their own write failures (disk full...) into FtkitError
        raise FtkitError(err.message + sink.kept(), err.exit_code) from None


def _predict_into(sink: Any, model_dir: Path, run_config: RunConfig | None, input_path: str | list[str], text_column: str | None, encoding: str, options: PredictOptions, procs: Any) -> None:
    """Everything about the input and the output is settled before the model loads: the records
    an output keeps (checked on the main process, skipped on the others) and the first record."""
    records = records_from(input_path, text_column, run_config, encoding)
    done = _on_main(procs, lambda: sink.check(records, "--text" if isinstance(input_path, list) else input_path))
    if procs and not procs.is_main_process:
        for _ in itertools.islice(records, done):
            pass
    elif done:
        print(f"note: resuming after the {done} predictions already in {sink.path}", file=sys.stderr)
    # The first record is read before anything is written: an input refused at once (no such
    # column, not UTF-8) leaves an existing output file as it was.
    first = next(records, None)
    records = itertools.chain([] if first is None else [first], records)
    task, model, tokenizer = load_for_inference(model_dir, run_config)
    options.max_length = run_config.train.max_length if run_config else default_max_length(model, tokenizer)
    if run_config is not None:
        options.prefix = run_config.data.prefix
        options.pipeline_tag = task.pipeline_tag(run_config)
        if options.stride is None:  # windows overlap as in training
            options.stride = run_config.train.stride
    if options.seed is not None:
        from transformers import set_seed

        set_seed(options.seed)
    _write_all(task.predictor(model, tokenizer, options), records, sink, options.batch_size, procs)


def _on_main(procs: Any, compute: Callable[[], int]) -> int:
    """`compute()` on the main process, its answer shared with the others; a refusal there is
    raised on every process (none is left waiting for the others)."""
    answer, error = 0, None
    if procs is None or procs.is_main_process:
        try:
            answer = compute()
        except FtkitError as err:
            error = (err.message, err.exit_code)
    if procs:
        from accelerate.utils import broadcast_object_list

        answer, error = broadcast_object_list([answer, error])
    if error:
        raise FtkitError(*error)
    return answer


def producer(model_dir: Path, options: PredictOptions, text_column: str | None, encoding: str) -> dict[str, Any]:
    """What makes the predictions what they are, recorded beside an output for --resume: the model
    folder (its path, its files' sizes and times) and the flags that change results (not
    --batch-size: a resume may need a smaller one)."""
    stamp = hashlib.sha256()
    for path in files_read(model_dir):
        with contextlib.suppress(OSError):
            info = path.stat()
            stamp.update(f"{path.resolve()}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    flags = {
        "--top-k": options.top_k, "--aggregation": options.aggregation, "--max-new-tokens": options.max_new_tokens,
        "--num-beams": options.num_beams, "--temperature": options.temperature, "--top-p": options.top_p,
        "--stride": options.stride, "--seed": options.seed, "--text-column": text_column, "--encoding": encoding,
    }
    return {"model": str(model_dir.resolve()), "model files": stamp.hexdigest(), **flags}


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


def evaluation_inputs(data_path: Path, fmt: str = "auto") -> list[Path]:
    """The files `evaluate` reads its examples from (both sides of 'SRC.txt:TGT.txt'), each
    checked to be a readable data file: called before any model loads."""
    from ftkit.data import aligned_pair, data_suffixes

    pair = aligned_pair(str(data_path))
    for path in pair or ():
        check_readable(path, TEXT_SUFFIXES)
    if pair:
        return list(pair)
    check_readable(data_path, data_suffixes(fmt))
    return [data_path]


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


def _write_all(run: Callable[[list[dict]], list[dict]], records: Iterator[dict], out: Any, batch_size: int, procs: Any = None) -> None:
    """Predict `records` chunk by chunk into `out`: a sink of ftkit.predict_output, or a text stream."""
    sink = out if isinstance(out, (StreamSink, OutputFile)) else StreamSink(out)
    chunk: list[dict] = []
    with _progress(sink, procs) as progress:
        for record in records:
            chunk.append(record)
            if len(chunk) == batch_size * CHUNK_BATCHES:
                _write_chunk(run, chunk, sink, batch_size, procs, progress)
                chunk = []
        if chunk:
            _write_chunk(run, chunk, sink, batch_size, procs, progress)


def _progress(sink: Any, procs: Any) -> Pass:
    """Rows predicted, on stderr (the input's length is not known ahead: a count and its rate).

    Into --output: always (a bar, or plain lines in a log). Streamed to stdout: a bar only where
    stdout goes to a file or pipe and stderr is a terminal (`> out.jsonl`). On a terminal the
    lines themselves show the progress, and a bar would garble them; with both redirected (a
    script's pipeline), stderr keeps to problems."""
    reporter = Reporter()
    if isinstance(sink, StreamSink) and sink.path is None:
        reporter.quiet = sys.stdout.isatty() or not reporter.console.is_terminal
    reporter.main_process = procs is None or procs.is_main_process
    return reporter.track("predict", None, "rows")


def _write_chunk(run: Callable[[list[dict]], list[dict]], chunk: list[dict], sink: Any, batch_size: int, procs: Any, progress: Pass) -> None:
    """Predict a chunk in length-sorted batches; write its results in input order.

    Launched on several processes, every process reads the same chunk and takes every n-th of
    the sorted examples (balanced lengths); the results are gathered and the main one writes.
    """
    order = sorted(range(len(chunk)), key=lambda i: len(chunk[i].get("text") or chunk[i].get("tokens") or ""))
    if procs:
        order = order[procs.process_index :: procs.num_processes]
    results: dict[int, Any] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        results.update(zip(idx, run([chunk[i] for i in idx])))
        progress.advance(len(idx))  # per batch: generation is slow
    if procs:
        from accelerate.utils import gather_object

        results = dict(gather_object(list(results.items())))
        progress.advance(len(chunk) - len(order))  # the other processes' shares
    sink.write(chunk, "".join(json.dumps(results[i], ensure_ascii=False) + "\n" for i in range(len(chunk))))


def evaluate(model_dir: Path, run_config: RunConfig | None, data_path: Path, text_column: str | None, label_column: str | None, batch_size: int, encoding: str, fmt: str = "auto") -> dict[str, Any]:
    """Metrics of a saved model on a labelled file, through the training loop's evaluation."""
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from ftkit.config import DataConfig, RunConfig as Config, TrainConfig
    from ftkit.data import adapt_columns
    from ftkit.train import run_evaluation

    evaluation_inputs(data_path, fmt)
    task, model, tokenizer = load_for_inference(model_dir, run_config)
    base = run_config or Config(
        name="evaluate", task=family_of(model.config, None), model=str(model_dir),
        train=TrainConfig(max_length=default_max_length(model, tokenizer)),
        data=DataConfig(**{f"{role}_column": name for role, name in task.CONVENTIONAL_COLUMNS.items()}),
    )
    data = base.data
    # The run's columns, prefix and languages, reading only this file (no Hub, no carving).
    config = Config(
        name=base.name, task=base.task, model=str(model_dir), train=base.train, metrics=base.metrics, generation=base.generation,
        data=dataclasses.replace(
            DataConfig(), text_column=text_column or data.text_column, label_column=label_column or data.label_column,
            text_pair_column=data.text_pair_column, target_column=data.target_column, source_lang=data.source_lang,
            target_lang=data.target_lang, labels=data.labels, prefix=data.prefix, encoding=encoding, format=fmt,
        ),
    )
    wanted = task.columns(config)
    explicit = {role for role, flag in (("text", text_column), ("label", label_column)) if flag}
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
    return run_evaluation(model, loader, accelerator, task, prepared, "test", reporter=reporter, label=file_names(data_path))
