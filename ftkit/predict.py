"""`predict`: streaming batch inference with a finished run or model folder.

It reads its input record by record (the family's way: `task.predict_inputs`) and writes each
result as it goes: memory stays flat however large the input. Within a bounded chunk, inputs
are sorted by size (`task.input_size`) so batches carry little padding; results go out in
input order. Loading the model folder is ftkit.inference; `evaluate` is ftkit.evaluate.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftkit import inference
from ftkit.config import RunConfig
from ftkit.errors import FtkitError
from ftkit.predict_output import OutputFile, StreamSink, sink_for
from ftkit.progress import Pass, Reporter

CHUNK_BATCHES = 16  # batches per sorted chunk: bounds memory, keeps padding low


@dataclass
class PredictOptions:
    """What the task families' predictors read; each takes what applies to it. The command line
    sets the flags; `max_length` comes from the run (or the model), and the run-dependent ones
    (prefix, pipeline_tag, stride) from the family's `predict_defaults`."""

    batch_size: int = 32
    top_k: int | None = None  # classification: also list the K most likely labels; fill-mask: tokens (None: the family's default)
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
    runtime: str = "torch"  # "onnx" / "onnx-int8": the run's ONNX export in ONNX Runtime (ftkit.onnx_runtime.RUNTIMES)


    def generation_overrides(self) -> dict[str, Any]:
        """generate() arguments the command line set; sampling when temperature or top_p is set."""
        out: dict[str, Any] = {k: v for k, v in (("max_new_tokens", self.max_new_tokens), ("num_beams", self.num_beams)) if v is not None}
        if self.temperature is not None or self.top_p is not None:
            out["do_sample"] = True
            out.update({k: v for k, v in (("temperature", self.temperature), ("top_p", self.top_p)) if v is not None})
        return out


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
    procs = inference.processes()
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
    task = inference.task_of(model_dir, run_config)  # the family reads the input its own way
    records = task.predict_inputs(input_path, text_column, run_config, encoding)
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
    task, model, tokenizer = inference.load_for_inference(model_dir, run_config, options.runtime)
    options.max_length = run_config.train.max_length if run_config else inference.default_max_length(model, tokenizer)
    if run_config is not None:  # a bare model folder has no run to take them from
        task.predict_defaults(options, run_config)
    if options.seed is not None:
        from transformers import set_seed

        set_seed(options.seed)
    _write_all(task.predictor(model, tokenizer, options), records, sink, options.batch_size, procs, task.input_size)


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
    folder (its path, its files' sizes and times), the runtime and the ONNX graph it runs, and the
    flags that change results (not --batch-size: a resume may need a smaller one)."""
    stamp = hashlib.sha256()
    for path in inference.files_read(model_dir) + _graph(model_dir, options.runtime):
        with contextlib.suppress(OSError):
            info = path.stat()
            stamp.update(f"{path.resolve()}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    flags = {
        "--top-k": options.top_k, "--aggregation": options.aggregation, "--max-new-tokens": options.max_new_tokens,
        "--num-beams": options.num_beams, "--temperature": options.temperature, "--top-p": options.top_p,
        "--stride": options.stride, "--seed": options.seed, "--text-column": text_column, "--encoding": encoding,
    }
    if options.runtime != "torch":  # absent for the default: an output written before --runtime existed still resumes
        flags["--runtime"] = options.runtime
    return {"model": str(model_dir.resolve()), "model files": stamp.hexdigest(), **flags}


def _graph(model_dir: Path, runtime: str) -> list[Path]:
    """The ONNX graph `runtime` runs, wherever a run or model folder keeps it ([] for torch)."""
    from ftkit.onnx_runtime import FOLDER, RUNTIMES

    file = RUNTIMES.get(runtime)
    return [] if file is None else [model_dir.parent / FOLDER / file, model_dir / FOLDER / file]


def _write_all(
    run: Callable[[list[dict]], list[dict]], records: Iterator[dict], out: Any, batch_size: int, procs: Any = None,
    size: Callable[[dict], int] | None = None,
) -> None:
    """Predict `records` chunk by chunk into `out`: a sink of ftkit.predict_output, or a text stream.
    `size`: a record's size (the family's input_size) to sort each chunk by; None keeps input order."""
    sink = out if isinstance(out, (StreamSink, OutputFile)) else StreamSink(out)
    chunk: list[dict] = []
    with _progress(sink, procs) as progress:
        for record in records:
            chunk.append(record)
            if len(chunk) == batch_size * CHUNK_BATCHES:
                _write_chunk(run, chunk, sink, batch_size, procs, progress, size)
                chunk = []
        if chunk:
            _write_chunk(run, chunk, sink, batch_size, procs, progress, size)


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


def _write_chunk(
    run: Callable[[list[dict]], list[dict]], chunk: list[dict], sink: Any, batch_size: int, procs: Any, progress: Pass,
    size: Callable[[dict], int] | None = None,
) -> None:
    """Predict a chunk in size-sorted batches (less padding); write its results in input order.

    Launched on several processes, every process reads the same chunk and takes every n-th of
    the sorted examples (balanced lengths); the results are gathered and the main one writes.
    """
    order = list(range(len(chunk))) if size is None else sorted(range(len(chunk)), key=lambda i: size(chunk[i]))
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
