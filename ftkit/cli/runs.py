"""`ftkit runs show | compare`: read finished (or unfinished) run folders; yaml, json and rich only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ftkit.errors import FtkitError

if TYPE_CHECKING:  # rich loads when a command runs, not at `ftkit --help`
    from rich.console import Console
    from rich.table import Table

app = typer.Typer(help="Show one run folder, or compare several side by side.", no_args_is_help=True)

RunArg = Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run folder (the --output-dir of `ftkit finetune`).", show_default=False)]
RunsArg = Annotated[list[Path], typer.Argument(metavar="RUN_DIR", help="Two or more run folders, or a folder of them (an `ftkit sweep` folder: its trials).", show_default=False)]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Metrics to compare: test or validation \\[default: test when every finished run has it, else validation].", show_default=False)]
MarkdownOpt = Annotated[bool, typer.Option("--markdown", help="Print a GitHub Markdown table (best value in bold), to paste into a PR.")]


@app.command("show")
def show(run_dir: RunArg) -> None:
    """Recipe, data, status, settings, metrics, training figures and files of one run.

    [dim]Example: ftkit runs show runs/sentiment-20261127-093012[/dim]
    """
    from ftkit.runs import read_run

    run = read_run(run_dir)
    console = _console()
    console.print(_overview(run))
    console.print(_settings(run))
    if run.metrics is not None:
        console.print(_metrics(run))
        for table in _group_tables(run):
            console.print(table)
        console.print(_training(run))
    elif (last := run.last("eval", "validation")) is not None:
        console.print(_last_eval(run, last))
    console.print(_files(run))


@app.command("compare")
def compare(run_dirs: RunsArg, split: SplitOpt = None, markdown: MarkdownOpt = False) -> None:
    """One column per run: key settings, every other setting that differs, metrics, speed.

    The best value of each metric row is marked (bold green; bold in Markdown): higher is better, except loss, perplexity and a primary metric with greater_is_better: false.

    [dim]Example: ftkit runs compare runs/sentiment-a runs/sentiment-b --markdown[/dim]
    """
    from ftkit import runs

    run_dirs = runs.expand(run_dirs)  # a sweep's folder stands for its trials
    if len(run_dirs) < 2:
        raise FtkitError(f"runs compare needs two or more run folders, got one; for a single run use: ftkit runs show {run_dirs[0]}")
    if split is not None and split not in runs.SPLITS:
        raise FtkitError(f"--split must be one of {', '.join(runs.SPLITS)}, got {split!r}")
    result = runs.compare(_runs_among(run_dirs), split)
    if markdown:
        typer.echo(_markdown(result), nl=False)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{len(result.names)} runs; metrics of the {result.split} split; best in green", title_justify="left")
    table.add_column("run", overflow="fold")
    for name in result.names:
        table.add_column(escape(name), justify="right", overflow="fold")
    for _, rows in result.sections:
        for row in rows:  # values come from files: escaped, so a '[red]' in a path prints as is
            cells = [f"[bold green]{escape(c)}[/]" if i in row.best else escape(c) for i, c in enumerate(row.cells)]
            table.add_row(escape(row.label), *cells)
        table.add_section()
    _console(extra=30 * len(result.names)).print(table)


def _runs_among(paths: list[Path]) -> list[Any]:
    """The runs among `paths` (`runs/*` may match a stray folder or file: skipped with a note);
    a damaged run is still an error. Two runs at least."""
    from ftkit import runs

    found, skipped = [], []
    for path in paths:
        try:
            found.append(runs.read_run(path))
        except runs.NotARun as err:
            skipped.append(err.message)
    if len(found) < 2:
        raise FtkitError(f"runs compare needs two or more run folders, found {len(found)} among the {len(paths)} given ({skipped[0]})")
    for message in skipped:
        typer.echo(f"note: skipped {message}", err=True)
    return found


def _markdown(result: Any) -> str:
    """A GitHub table: one column per run, sections in order, the best value of a row in bold."""

    def cell(text: str) -> str:
        return " ".join(text.split("\n")).replace("|", "\\|")

    lines = [
        "| run | " + " | ".join(cell(n) for n in result.names) + " |",
        "| --- |" + " ---: |" * len(result.names),
    ]
    for _, rows in result.sections:
        for row in rows:
            cells = [f"**{cell(c)}**" if i in row.best else cell(c) for i, c in enumerate(row.cells)]
            lines.append(f"| {cell(row.label)} | " + " | ".join(cells) + " |")
    lines += ["", f"Metrics of the {result.split} split; the best value of each row in **bold**."]
    return "\n".join(lines) + "\n"


def _console(extra: int = 0) -> Console:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped: no terminal width to respect, keep rows whole
        console = Console(width=160 + extra)
    return console


def _pairs(title: str, pairs: list[tuple[str, str]]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left", show_header=False, min_width=len(title))
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in pairs:
        table.add_row(escape(key), escape(value))
    return table


def _overview(run: Any) -> Table:
    from ftkit.runs import fmt, primary_value

    c, d = run.config, run.config.data
    files = [f"{s}: {getattr(d, s)}" for s in ("train", "validation", "test") if getattr(d, s)]
    data = ", ".join(files) if d.train else (d.dataset or "-") + (f" ({d.dataset_config})" if d.dataset_config else "")
    direction = "higher" if c.metrics.greater_is_better else "lower"
    pairs = [
        ("recipe", c.name), ("task family", c.task), ("model", c.model), ("data", data),
        ("primary metric", f"{c.metrics.primary} ({direction} is better)"),
    ]
    if run.status == "finished":
        best = run.split("validation")
        score = f"validation {c.metrics.primary} {fmt(primary_value(run, best))}"
        pairs += [("status", "finished"), ("best step", f"{fmt(best.get('step'))} (epoch {fmt(best.get('epoch'), 2)}), {score}")]
    elif run.status == "unfinished":
        resume = f"ftkit finetune {run.path / 'config.yaml'} --resume {run.path}"
        pairs += [("status", f"unfinished: latest checkpoint at step {run.checkpoint_step}; continue with: {resume}")]
    else:
        pairs += [("status", "incomplete: no metrics.json and no checkpoint (stopped before its first checkpoint, or still running)")]
    return _pairs(f"run {run.path}", pairs)


def _settings(run: Any) -> Table:
    from dataclasses import asdict

    from ftkit.config import LoraConfig, TrainConfig
    from ftkit.config_load import flatten
    from ftkit.runs import KEY_SETTINGS, fmt_setting

    flat = run.settings()
    skip = {"name", "task", "model"}  # already in the overview
    pairs = [(label, fmt_setting(flat.get(key), key in flat)) for label, key in KEY_SETTINGS if key not in skip]
    # and every training or LoRA setting the run changed from ftkit's default (class weights, early
    # stopping, ...): the sections' own defaults, the same for every task family
    default = flatten({"train": asdict(TrainConfig()), "lora": asdict(LoraConfig())}, whole=())
    shown = {key for _, key in KEY_SETTINGS}
    pairs += [(key, fmt_setting(value)) for key, value in flat.items()
              if key.startswith(("train.", "lora.")) and key not in shown and value != default.get(key)]
    return _pairs("hyper-parameters", pairs)


def _metrics(run: Any) -> Table:
    from rich.markup import escape
    from rich.table import Table

    from ftkit.runs import SPLITS, SUMMARY, fmt, metric, numbers

    splits = [s for s in SPLITS if run.split(s)]
    table = Table(title="metrics", title_justify="left")
    table.add_column("metric")
    for split in splits:
        table.add_column(split, justify="right")
    found = list(dict.fromkeys(k for s in splits for k in numbers(run.split(s))))
    primary = run.config.metrics.primary
    keys = [k for k in SUMMARY if k in found] + [k for k in found if k not in SUMMARY]
    if primary not in keys:  # a nested primary such as per_class.spam.f1 heads the table too
        keys.insert(0, primary)
    for key in sorted(keys, key=lambda k: k != primary):
        label = f"[bold]{escape(key)} (primary)[/]" if key == primary else escape(key)
        table.add_row(label, *[fmt(metric(run.split(s), key)) for s in splits])
    return table


def _group_tables(run: Any) -> list[Table]:
    """Per-class (classification) or per-type (NER) precision, recall, F1 and support, per split."""
    from rich.markup import escape
    from rich.table import Table

    from ftkit.runs import SPLITS, fmt, groups

    tables = []
    for split in SPLITS:
        for group, entries in groups(run.split(split)).items():
            table = Table(title=f"{group} ({split})", title_justify="left")
            for column in ("name", "precision", "recall", "f1", "support"):
                table.add_column(column, justify="left" if column == "name" else "right")
            for name, scores in entries.items():
                scores = scores if isinstance(scores, dict) else {}
                table.add_row(escape(str(name)), *[fmt(scores.get(k)) for k in ("precision", "recall", "f1", "support")])
            tables.append(table)
    return tables


def _training(run: Any) -> Table:
    from ftkit.runs import fmt

    t = run.split("train")
    last = run.last("train")
    pairs = [
        ("steps", fmt(t.get("steps"))), ("epochs trained", fmt(t.get("epochs"), 2)), ("samples seen", fmt(t.get("samples"))),
        ("runtime", f"{fmt(t.get('runtime_s'), 1)} s training, {fmt(t.get('eval_runtime_s'), 1)} s evaluating"),
        ("samples/s", fmt(t.get("samples_per_second"), 1)),
        ("train loss", f"{fmt(t.get('loss'))} mean over the run"
                 + (f", {fmt(last.get('loss'))} last logged (step {fmt(last.get('step'))})" if last else "")),
    ]
    return _pairs("training", pairs)


def _last_eval(run: Any, record: dict) -> Table:
    from rich.markup import escape
    from rich.table import Table

    from ftkit.runs import fmt, numbers

    title = f"last validation (step {fmt(record.get('step'))}, epoch {fmt(record.get('epoch'), 2)})"
    table = Table(title=title, title_justify="left", min_width=len(title))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in numbers(record).items():
        table.add_row(escape(key), fmt(value))
    return table


def _files(run: Any) -> Table:
    from ftkit.runs import human_size

    names = [p.split("/", 1)[1] for p in run.plots]
    rows = [(name, human_size(size) + (f": {', '.join(names)}" if name == "plots/" and names else "")) for name, size in run.files]
    return _pairs("files", rows)

