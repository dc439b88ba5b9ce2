"""`ftkit data check`: a recipe's data, read as finetune reads it, checked before training."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ftkit.cli import finetune, flags
from ftkit.errors import FtkitError

if TYPE_CHECKING:
    from ftkit.datacheck import Report

app = typer.Typer(help="Check a recipe's data before training.", no_args_is_help=True)

# finetune's flags that say what data is read and how it is tokenized (each declared once, in ftkit/flagtable.py)
DATA_FLAGS = ("--model", "--dataset", "--train", "--validation", "--test", "--text-column", "--text-pair-column", "--label-column",
              "--label-separator", "--image-column", "--source-lang", "--target-lang", "--format", "--encoding", "--max-length", "--set")

REPORT = "Report"  # the help panel of the options below the data flags
STATUS = {"ok": "[green]ok[/green]", "warn": "[yellow]warn[/yellow]", "fail": "[red]FAIL[/red]", "skip": "[dim]skip[/dim]"}


def check(**args: Any) -> None:
    """Report label balance, empty/duplicate texts, train/test overlap, label sets and truncation; exit 1 when a fatal check fails.

    [dim]ftkit data check spam --train train.jsonl --validation val.jsonl --test test.jsonl --model ./minilm
    ftkit data check my-recipe.yaml --json > report.json   # in CI: data_checks.fatal decides the exit code
    ftkit data check sentiment --train data.jsonl --set data_checks.max_duplicates=0[/dim]
    """
    from ftkit import datacheck

    config, notes = finetune.resolve(args)
    if args.get("output") is not None:  # refused before the data is read
        _check_output(args["output"], [args["recipe"], *(path for _, path in finetune.local_inputs(config))], args.get("overwrite", False))
    report = datacheck.run(config)
    report.notes[:0] = notes
    if args.get("output") is not None:
        _write(args["output"], report)
    if args.get("json_"):
        typer.echo(json.dumps(report.to_dict(), indent=2))
        for note in report.notes:
            typer.echo(f"note: {note}", err=True)
    else:
        show(report)
    if report.failed:
        raise typer.Exit(1)


def _signature() -> inspect.Signature:
    """The recipe argument, the data flags of finetune, then --json, --output and --overwrite."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    data = [inspect.Parameter(flags.BY_NAME[name].param, keyword, default=None, annotation=flags.option(name)) for name in DATA_FLAGS]
    json_opt = Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout instead of tables.", rich_help_panel=REPORT)]
    output = Annotated[Optional[Path], typer.Option("--output", metavar="FILE", help="Also write the report as JSON to FILE.", rich_help_panel=REPORT)]
    overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output file.", rich_help_panel=REPORT)]
    return inspect.Signature([
        inspect.Parameter("recipe", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=finetune.RecipeArg),
        *data,
        inspect.Parameter("json_", keyword, default=False, annotation=json_opt),
        inspect.Parameter("output", keyword, default=None, annotation=output),
        inspect.Parameter("overwrite", keyword, default=False, annotation=overwrite),
    ], return_annotation=None)


check.__signature__ = _signature()  # type: ignore[attr-defined]
app.command("check", no_args_is_help=True)(check)


def _check_output(path: Path, inputs: list[str], overwrite: bool) -> None:
    """No input is written over; an existing report is replaced only with --overwrite."""
    from ftkit.fsguard import refuse_overlap
    from ftkit.predict_output import refuse_replacing

    if path.is_dir():
        raise FtkitError(f"--output {path}: is a folder; name a file to write the JSON report to")
    refuse_overlap(path, [p for p in inputs if Path(p).is_file()], "--output")
    if not overwrite:
        refuse_replacing(path)


def _write(path: Path, report: Report) -> None:
    from ftkit.writes import replace_text

    try:
        replace_text(path, json.dumps(report.to_dict(), indent=2) + "\n")
    except OSError as err:
        raise FtkitError(f"--output {path}: cannot write ({err.strerror or err}); pass another file") from None


def show(report: Report) -> None:
    """Two Rich tables: what each split holds, then each check's verdict."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not console.is_terminal:  # piped (CI logs): keep rows whole
        console = Console(width=200)
    for note in report.notes:
        console.print(Text.assemble(("note: ", "dim"), note), soft_wrap=True)  # Text: a path is not markup
    splits = Table(title="data", title_justify="left")
    for column in ("split", "rows", "labels", "empty", "duplicates", "also in train", f"> {report.max_length} tokens"):
        splits.add_column(column, justify="left" if column in ("split", "labels") else "right", overflow="fold")
    for name, f in report.splits.items():
        overlap = "-" if name == "train" else f"{f.in_train} ({f.in_train_exact} exact)"
        truncated = "-" if f.truncated is None else f"{f.truncated}/{f.measured}"
        splits.add_row(Text(name), str(f.rows), Text(_labels(f.labels)), str(f.empty), str(f.duplicates), overlap, truncated)
    console.print(splits)
    checks = Table(title="checks", title_justify="left")
    for column in ("check", "status", "value", "limit", "found"):
        checks.add_column(column, overflow="fold")
    for c in report.checks:
        checks.add_row(c.name, STATUS[c.status], _number(c.value, c.name), _number(c.limit, c.name), Text(c.detail))
    console.print(checks)
    verdict = f"[red]failed: {', '.join(report.failed)}[/red] (data_checks.fatal)" if report.failed else "[green]no fatal check failed[/green]"
    console.print(verdict)


def _labels(counts: dict[str, int] | None, shown: int = 6) -> str:
    """'ham 2176 (85%), spam 384 (15%)', the most frequent first, cut after `shown`."""
    if not counts:
        return "-"
    total = sum(counts.values())
    items = [f"{label} {n} ({100 * n / total:.0f}%)" for label, n in list(counts.items())[:shown]]
    return ", ".join(items) + (f", ... ({len(counts)} labels)" if len(counts) > shown else "")


def _number(value: float | None, name: str) -> str:
    """A share as a percentage, the balance ratio as 'N:1', a label count as is."""
    if value is None:
        return "-"
    if name == "balance":
        return f"{value:.1f}:1"
    if name == "label_sets":
        return str(int(value))
    return f"{100 * value:.1f}%"
