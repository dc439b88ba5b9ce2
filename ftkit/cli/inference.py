"""`ftkit predict` and `ftkit evaluate` on a run folder or a model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ftkit.cli import options as o
from ftkit.errors import FtkitError, closest

AGGREGATIONS = ("simple", "first", "average", "max")

RunArg = Annotated[Path, typer.Argument(help="A run folder (--output-dir of finetune) or a model folder.", show_default=False)]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Examples per forward pass.")]


def predict(
    run_dir: RunArg,
    input: Annotated[str, typer.Argument(help="A .txt (one text per line), csv/tsv/json/jsonl/parquet with a text column, or - for stdin.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", help="Write JSONL here [default: stdout].")] = None,
    batch_size: BatchOpt = 32,
    top_k: Annotated[int, typer.Option("--top-k", help="Also list the K most likely labels.")] = 1,
    text_column: o.TextColumnOpt = None,
    encoding: Annotated[str, typer.Option("--encoding", help="Text encoding of the input file.")] = "utf-8",
    aggregation: Annotated[str, typer.Option("--aggregation", help="NER: how sub-tokens make entities: simple, first, average or max.")] = "first",
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", help="Generation: tokens to generate \\[default: the run's].", rich_help_panel="Generation")] = None,
    num_beams: Annotated[Optional[int], typer.Option("--num-beams", help="Generation: beam search width \\[default: the run's].", rich_help_panel="Generation")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Generation: sample with this temperature.", rich_help_panel="Generation")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Generation: sample from the top-p nucleus.", rich_help_panel="Generation")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Generation: seed for sampling (repeatable outputs).", rich_help_panel="Generation")] = None,
    stride: Annotated[Optional[int], typer.Option("--stride", help="NER: tokens shared by the windows over texts longer than the model reads \\[default: the run's train.stride].", show_default=False)] = None,
) -> None:
    """Predict each input; JSONL in input order, streamed: {"text", "label", "score"} for a
    classifier, {"text", "entities": [...]} (or {"tokens", "tags"}) for NER.

    [dim]ftkit predict runs/sentiment-20260101-120000 reviews.txt --output predictions.jsonl
    cat reviews.txt | ftkit predict runs/sentiment-20260101-120000 -
    ftkit predict runs/ner-20260101-120000 articles.txt --aggregation simple[/dim]
    """
    if batch_size <= 0 or top_k <= 0:
        raise FtkitError("--batch-size and --top-k must be positive integers")
    if aggregation not in AGGREGATIONS:
        raise FtkitError(f"--aggregation must be one of {', '.join(AGGREGATIONS)}, got '{aggregation}'.{closest(aggregation, AGGREGATIONS)}")
    if stride is not None and stride < 0:
        raise FtkitError("--stride must not be negative")
    from ftkit.artifacts import resolve_model_dir
    from ftkit.predict import PredictOptions, predict as run_predict

    model_dir, config = resolve_model_dir(run_dir)
    for flag, value in (("--max-new-tokens", max_new_tokens), ("--num-beams", num_beams), ("--temperature", temperature), ("--top-p", top_p)):
        if value is not None and value <= 0:
            raise FtkitError(f"{flag} must be positive, got {value}")
    if top_p is not None and top_p > 1:
        raise FtkitError(f"--top-p must be in (0, 1], got {top_p}")
    if seed is not None:
        from transformers import set_seed

        set_seed(seed)
    options = PredictOptions(
        batch_size=batch_size, top_k=top_k, aggregation=aggregation, stride=stride,
        max_new_tokens=max_new_tokens, num_beams=num_beams, temperature=temperature, top_p=top_p,
    )
    count = run_predict(model_dir, config, input, output, text_column, encoding, options)
    if output is not None:
        typer.echo(f"wrote {count} predictions to {output}", err=True)


def evaluate(
    run_dir: RunArg,
    data: Annotated[Path, typer.Option("--data", help="Labelled file: csv, tsv, json, jsonl or parquet.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", help="Also write the metrics as JSON here.")] = None,
    text_column: o.TextColumnOpt = None,
    label_column: o.LabelColumnOpt = None,
    batch_size: BatchOpt = 64,
    encoding: Annotated[str, typer.Option("--encoding", help="Text encoding of the data file.")] = "utf-8",
    fmt: o.FormatOpt = "auto",
) -> None:
    """Metrics of a fine-tuned model on a labelled file: a table, and JSON with --output.

    [dim]ftkit evaluate runs/spam-20260101-120000 --data holdout.csv --output holdout-metrics.json[/dim]
    """
    if batch_size <= 0:
        raise FtkitError("--batch-size must be a positive integer")
    from ftkit.artifacts import resolve_model_dir, write_json
    from ftkit.cli.tables import print_metrics
    from ftkit.predict import evaluate as run_evaluate

    model_dir, config = resolve_model_dir(run_dir)
    result = run_evaluate(model_dir, config, data, text_column, label_column, batch_size, encoding, fmt)
    print_metrics({"test": result})
    if output is not None:
        try:
            write_json(output, result)
        except OSError as err:
            raise FtkitError(f"{output}: cannot write ({err.strerror or err})", exit_code=1) from None
        typer.echo(f"wrote {output}", err=True)
