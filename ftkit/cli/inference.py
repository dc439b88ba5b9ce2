"""`ftkit predict` and `ftkit evaluate` on a run folder or a model folder."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ftkit.cli import options as o
from ftkit.errors import FtkitError, closest

if TYPE_CHECKING:
    from collections.abc import Callable

    from ftkit.config import RunConfig

AGGREGATIONS = ("simple", "first", "average", "max")

RunArg = Annotated[Path, typer.Argument(help="A run folder (--output-dir of finetune) or a model folder.", show_default=False)]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Examples per forward pass.")]


def predict(
    run_dir: RunArg,
    input: Annotated[str | None, typer.Argument(help="A .txt (one text per line), csv/tsv/json/jsonl/parquet with a text column, or - for stdin (texts themselves: --text).", show_default=False)] = None,
    texts: Annotated[list[str] | None, typer.Option("--text", help="Predict this text instead of an input file (repeatable).", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="Write JSONL here \\[default: stdout].")] = None,
    batch_size: BatchOpt = 32,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Classification, images: also list the K most likely labels \\[default: 1]; fill-mask: the K most likely tokens \\[default: 5].")] = None,
    text_column: o.TextColumnOpt = None,
    encoding: Annotated[str, typer.Option("--encoding", help="Text encoding of the input file.")] = "utf-8",
    aggregation: Annotated[str, typer.Option("--aggregation", help="NER: how sub-tokens make entities: simple, first, average or max.")] = "first",
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", help="Generation: tokens to generate \\[default: the run's].", rich_help_panel="Generation")] = None,
    num_beams: Annotated[Optional[int], typer.Option("--num-beams", help="Generation: beam search width \\[default: the run's].", rich_help_panel="Generation")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Generation: sample with this temperature.", rich_help_panel="Generation")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Generation: sample from the top-p nucleus.", rich_help_panel="Generation")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Generation: seed for sampling (repeatable outputs).", rich_help_panel="Generation")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted predict: keep the predictions already in --output (checked to be this input's, with this model and options) and predict the rest.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output file.")] = False,
    stride: Annotated[Optional[int], typer.Option("--stride", help="NER: tokens shared by the windows over texts longer than the model reads \\[default: the run's train.stride].", show_default=False)] = None,
    runtime: Annotated[str, typer.Option("--runtime", help="torch, or onnx / onnx-int8: the run's `ftkit export` in ONNX Runtime (CPU; same output records).")] = "torch",
    trust_remote_code: o.TrustRemoteCodeOpt = False,
    allow_pickle: o.AllowPickleOpt = False,
) -> None:
    """Predict each input; JSONL in input order, streamed: {"text", "label", "score"} for a
    classifier, {"text", "entities": [...]} (or {"tokens", "tags"}) for NER.

    [dim]ftkit predict runs/sentiment-20260101-120000 reviews.txt --output predictions.jsonl
    ftkit predict runs/sentiment-20260101-120000 --text "Great movie!" --text "Dull plot."
    cat reviews.txt | ftkit predict runs/sentiment-20260101-120000 -
    ftkit predict runs/ner-20260101-120000 articles.txt --aggregation simple
    ftkit predict runs/sentiment-20260101-120000 reviews.txt --output predictions.jsonl --resume
    ftkit predict runs/sentiment-20260101-120000 reviews.txt --runtime onnx   (after ftkit export RUN --format onnx)[/dim]
    """
    from ftkit.checks import check_flag

    # Each number feeds torch: the same ranges as the config keys they stand for (a seed past
    # 2**32 or a beam count of 10**20 would be an internal error deep in torch otherwise).
    for flag, key, value in (
        ("--batch-size", "train.eval_batch_size", batch_size), ("--top-k", "train.batch_size", top_k),
        ("--stride", "train.stride", stride), ("--seed", "train.seed", seed),
        ("--max-new-tokens", "generation.max_new_tokens", max_new_tokens), ("--num-beams", "generation.num_beams", num_beams),
        ("--temperature", "generation.temperature", temperature), ("--top-p", "generation.top_p", top_p),
    ):
        check_flag(flag, key, value)
    if aggregation not in AGGREGATIONS:
        raise FtkitError(f"--aggregation must be one of {', '.join(AGGREGATIONS)}, got '{aggregation}'.{closest(aggregation, AGGREGATIONS)}")
    _check_resume_flags(output, resume, overwrite)
    from ftkit.runfiles import resolve_model_dir
    from ftkit.data import CONLL_SUFFIXES, MEDIA_SUFFIXES, TABLE_SUFFIXES, TEXT_SUFFIXES, check_readable
    from ftkit.inference import files_read
    from ftkit.onnx_runtime import check as check_runtime
    from ftkit.predict import PredictOptions, predict as run_predict

    # Every argument is checked before the model loads (seconds) and before anything is written;
    # whether an existing --output may be replaced or continued is decided once it is locked.
    o.apply_policy(trust_remote_code, allow_pickle)
    _check_run_dir(run_dir)
    source = _predict_source(input, texts)
    if isinstance(source, str) and source != "-" and not os.path.isdir(source):  # a folder: the family's predict_inputs checks it
        check_readable(Path(source), TABLE_SUFFIXES + TEXT_SUFFIXES + CONLL_SUFFIXES + MEDIA_SUFFIXES)
    model_dir, config = resolve_model_dir(run_dir)
    graph = [] if runtime == "torch" else [check_runtime(model_dir, config, runtime)]  # exported, and from this model
    if output is not None:
        _check_output(output, [*([source] if isinstance(source, str) else []), *files_read(model_dir), *graph])
    options = PredictOptions(
        batch_size=batch_size, top_k=top_k, aggregation=aggregation, stride=stride,
        max_new_tokens=max_new_tokens, num_beams=num_beams, temperature=temperature, top_p=top_p, seed=seed, runtime=runtime,
    )
    count = run_predict(model_dir, config, source, output, text_column, encoding, options, resume=resume, overwrite=overwrite)
    if output is not None and o.main_process():
        typer.echo(f"wrote {count} predictions to {output}", err=True)


def evaluate(
    run_dir: RunArg,
    data: Annotated[Path, typer.Option("--data", help="Labelled file: csv, tsv, json, jsonl or parquet.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", help="Also write the metrics as JSON here.")] = None,
    errors: Annotated[Optional[Path], typer.Option("--errors", help="Also write the rows the model got wrong (or scored worst), worst first, as JSONL here.", show_default=False)] = None,
    text_column: o.TextColumnOpt = None,
    label_column: o.LabelColumnOpt = None,
    batch_size: BatchOpt = 64,
    encoding: Annotated[str, typer.Option("--encoding", help="Text encoding of the data file.")] = "utf-8",
    fmt: o.FormatOpt = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output or --errors file.")] = False,
    trust_remote_code: o.TrustRemoteCodeOpt = False,
    allow_pickle: o.AllowPickleOpt = False,
) -> None:
    """Metrics of a fine-tuned model on a labelled file: a table, JSON with --output, and the rows it
    got wrong with --errors (as RUN/errors.jsonl lists the test split's).

    [dim]ftkit evaluate runs/spam-20260101-120000 --data holdout.csv --output holdout-metrics.json
    ftkit evaluate runs/spam-20260101-120000 --data holdout.csv --errors holdout-errors.jsonl[/dim]
    """
    from ftkit.checks import check_flag

    check_flag("--batch-size", "train.eval_batch_size", batch_size)
    from ftkit.runfiles import resolve_model_dir
    from ftkit.evaluate import evaluation_inputs
    from ftkit.inference import files_read
    from ftkit.fsguard import same_file
    from ftkit.predict_output import is_stream, refuse_replacing

    o.apply_policy(trust_remote_code, allow_pickle)
    _check_run_dir(run_dir)
    inputs = evaluation_inputs(data, fmt)  # every file it reads, checked before any model loads
    model_dir, config = resolve_model_dir(run_dir)
    if output is not None:
        _check_output(output, [*inputs, *files_read(model_dir)])
        if not overwrite and not is_stream(output):
            refuse_replacing(output)
    if errors is not None:  # checked as --output is
        if output is not None and same_file(errors, output) and not is_stream(errors):  # a pipe may take both
            raise FtkitError(f"--errors {errors} is the --output file too: give each its own file (e.g. --errors errors.jsonl)")
        _check_output(errors, [*inputs, *files_read(model_dir)], "--errors")
        if not overwrite and not is_stream(errors) and errors.is_file() and errors.stat().st_size > 0:
            raise FtkitError(f"{errors}: already exists; pass --overwrite to replace it, or choose another --errors")
    try:
        _evaluate(model_dir, config, data, output, text_column, label_column, batch_size, encoding, fmt, errors)
    except KeyboardInterrupt:
        kept = "".join(f", {path} was not written" for path in (output, errors) if path is not None)
        raise FtkitError(f"interrupted before the evaluation finished{kept}; nothing changed; rerun the same command", exit_code=130) from None


def _evaluate(model_dir: Path, config: RunConfig | None, data: Path, output: Optional[Path], text_column: Optional[str], label_column: Optional[str], batch_size: int, encoding: str, fmt: str,
              errors: Optional[Path] = None) -> None:
    """Evaluate, print the table, write --output and --errors (regular files replaced whole by a rename)."""
    from ftkit.artifacts import write_json, write_jsonl
    from ftkit.cli.tables import print_metrics
    from ftkit.evaluate import evaluate as run_evaluate

    found: dict[str, list[dict]] | None = {} if errors is not None else None
    result = run_evaluate(model_dir, config, data, text_column, label_column, batch_size, encoding, fmt, errors=found)
    if not o.main_process():  # launched on several processes: each holds the same gathered metrics
        return
    from ftkit.data import file_names

    # The column names what was scored: the file (both sides of a 'src.txt:tgt.txt' pair).
    print_metrics({"test": result}, headers={"test": file_names(data)})
    if output is not None:
        _write_result(output, "--output", lambda path: write_json(path, result), lambda: json.dumps(result, indent=2, default=float) + "\n")
        typer.echo(f"wrote {output}", err=True)
    if errors is not None and found is not None:
        if "test" not in found:  # listing them failed: the warning above says why
            raise FtkitError(f"{errors} was not written: the wrong rows could not be listed (see the warning); the metrics above stand", exit_code=1)
        rows = found["test"]
        _write_result(errors, "--errors", lambda path: write_jsonl(path, rows), lambda: "".join(json.dumps(r, ensure_ascii=False, default=float) + "\n" for r in rows))
        typer.echo(f"wrote {len(rows)} wrong (or worst-scored) row(s) to {errors}", err=True)


def _write_result(path: Path, flag: str, write: Callable[[Path], None], text: Callable[[], str]) -> None:
    """`write(path)` (whole, by a rename), or `text()` in place into a device or pipe; one line on failure."""
    from ftkit.predict_output import is_stream

    try:
        if is_stream(path):  # a device or pipe: written in place (a rename would replace it)
            path.write_text(text(), encoding="utf-8")
        else:
            write(path)
    except OSError as err:
        raise FtkitError(f"{path}: cannot write ({err.strerror or err}); choose another {flag}") from None


def _check_run_dir(path: Path) -> None:
    if not path.exists():
        raise FtkitError(
            f"{path}: no such folder; pass the --output-dir of a finished `ftkit finetune`, or a model folder (with config.json)"
        )


def _predict_source(input: str | None, texts: list[str] | None) -> str | list[str]:
    """What predict reads: a file, - (stdin), or the literal texts of --text (exactly one of them)."""
    if input is not None and texts:
        raise FtkitError(f"pass an input file or --text, not both (got {_quoted(input)} and --text)")
    if texts:
        if any(not text.strip() for text in texts):
            raise FtkitError("--text: an empty text; pass the text to predict, e.g. --text \"Great movie!\"")
        return texts
    if input is None:
        raise FtkitError("nothing to predict: pass an input file, - for standard input, or --text \"Great movie!\"")
    from ftkit.data import CONLL_SUFFIXES, TABLE_SUFFIXES, TEXT_SUFFIXES

    # A sentence typed where a file name goes: no such file, and no data file's extension either.
    if input != "-" and not os.path.lexists(input) and Path(input).suffix.lower() not in TABLE_SUFFIXES + TEXT_SUFFIXES + CONLL_SUFFIXES:
        raise FtkitError(f"{_quoted(input)}: no such file; to predict a literal text use --text {_quoted(input)}")
    return input


def _quoted(text: str) -> str:
    """`text` as a shell argument on one line: in double quotes where that is literal, cut when long."""
    from ftkit.bounded import cut

    text = cut(text, 80)
    if text.isprintable() and not set(text) & set('"$`\\'):
        return f'"{text}"'
    return shlex.quote(text) if text.isprintable() else json.dumps(text, ensure_ascii=False)


def _check_resume_flags(output: Optional[Path], resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise FtkitError("--resume keeps the predictions already in --output and --overwrite replaces them: pass one of them")
    if resume and _is_device(output):
        raise FtkitError(f"--resume continues an --output file, and {output} is a device or pipe; rerun without --resume")


def _is_device(path: Optional[Path]) -> bool:
    from ftkit.predict_output import is_stream

    return path is not None and is_stream(path)


def _check_output(output: Path, reads: list[Path | str], flag: str = "--output") -> None:
    """An output file (`flag`: --output, --errors) is none of the files the command reads (any
    spelling, link or hard link), and a place a file can be written (a device or pipe is written in place)."""
    from ftkit.fsguard import refuse_overlap

    refuse_overlap(output, reads, flag)
    if os.path.lexists(output) and not output.exists():
        raise FtkitError(f"{output}: a symlink to nothing (or a symlink loop); pass a file name for {flag}")
    if not _is_device(output):
        _check_writable(output, flag)


def _check_writable(path: Path, flag: str = "--output") -> None:
    """Fail before any work when the output file cannot be written: a folder, no such folder,
    no permission, a full disk (a probe file with a few bytes beside it finds all of these)."""
    if path.is_dir():
        raise FtkitError(f"{path}: is a folder; pass a file name for {flag} (e.g. {path / 'predictions.jsonl'})")
    folder = path.parent
    if not folder.is_dir():
        raise FtkitError(f"{folder}: no such folder for {flag} {path}; create it or choose another {flag}")
    if path.is_file() and not os.access(path, os.W_OK):
        raise FtkitError(f"{path}: cannot write (Permission denied); choose another {flag}")
    from ftkit.fsguard import probe_writable

    try:  # a fresh exclusive name: a file or link planted beside the output is never written through
        probe_writable(folder)
    except OSError as err:
        raise FtkitError(f"{path}: cannot write there ({err.strerror or err}); choose another {flag}") from None

