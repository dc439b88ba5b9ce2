"""`ftkit sweep`: finetune's flags -> the base config -> trials under one folder (ftkit.sweep)."""

from __future__ import annotations

import inspect
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from ftkit.cli import finetune, flags
from ftkit.cli import options as o
from ftkit.config import RunConfig
from ftkit.errors import FtkitError

TrialsOpt = Annotated[int | None, typer.Option("--trials", metavar="N", rich_help_panel="Sweep", show_default=False,
                                               help="Trials to finish, counting those a continued sweep has \\[default: the recipe's sweep.trials].")]


def sweep(**args: Any) -> None:
    """Search hyper-parameters with Optuna over the recipe's sweep.space; each trial is a run folder.

    Every finetune flag applies to every trial; --output-dir is the sweep's folder (trial-000, trial-001, ..., sweep.json, best.yaml). The same command with the same --output-dir continues a stopped sweep.

    [dim]ftkit sweep sentiment --model ./minilm --train train.jsonl --trials 8 --output-dir runs/sst-sweep
    ftkit runs compare runs/sst-sweep          # the trials side by side
    ftkit finetune runs/sst-sweep/best.yaml    # the best trial's settings, trained again[/dim]
    """
    from ftkit import sweep as search
    from ftkit.checks import check_flag

    o.apply_policy(args.get("trust_remote_code", False), args.get("allow_pickle", False))
    if args.get("overwrite"):
        raise FtkitError("--overwrite: ftkit sweep continues the sweep in an existing --output-dir and never clears one; choose another --output-dir to start again")
    if o.world_size() > 1:
        raise FtkitError("ftkit sweep trains its trials one after another in one process; run it without accelerate launch / torchrun")
    check_flag("--trials", "sweep.trials", args.get("trials"))
    try:
        base, notes = finetune.resolve(args)
        search.check_trials(base)
        from ftkit.train import check_trackers

        check_trackers(base.train.trackers())
        parent = search.parent_folder(base, args.get("output_dir"), args.get("resume"))
        search.prepare(parent, base)
    except KeyboardInterrupt:
        from ftkit.rundir import NOT_STARTED

        raise FtkitError(NOT_STARTED, exit_code=130) from None
    quiet = args.get("quiet", False)
    for note in notes:
        typer.echo(f"note: {note}", err=True)

    def train(config: RunConfig, out: Path, checkpoint: Path | None) -> dict[str, Any]:
        return train_trial(config, out, checkpoint, quiet)

    def say(line: str, result: bool) -> None:
        if result or not quiet:
            typer.echo(line, err=True)

    summary = search.run_sweep(base, parent, args.get("trials") or base.sweep.trials, train, say, again=_again(args, parent))
    print_summary(summary, parent)
    if summary["best"] is None:
        raise FtkitError(f"no trial of the sweep completed; {parent / search.SUMMARY} holds each trial's error", exit_code=1)


sweep.__signature__ = flags.signature(  # type: ignore[attr-defined]
    inspect.Parameter("recipe", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=finetune.RecipeArg),
    inspect.Parameter("trials", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=TrialsOpt),
)


def train_trial(config: RunConfig, out: Path, checkpoint: Path | None, quiet: bool) -> dict[str, Any]:
    """One trial, as `ftkit finetune` trains a run: its folder checked, made once the inputs are
    accepted, cleaned on a failure; resumed from `checkpoint` when there is one."""
    from ftkit.rundir import RunFolder

    # A trial folder is the sweep's: what a killed trial left before its first checkpoint is cleared.
    folder = RunFolder.resume(out) if checkpoint else RunFolder.new(out, overwrite=True, inputs=finetune.local_inputs(config))
    command = f"ftkit finetune {shlex.quote(str(out / 'config.yaml'))}"  # the trial alone, again (the card says it)
    with folder.lifetime(command):
        return finetune.train_in(folder, config, checkpoint, command, [], quiet)


def _again(args: dict[str, Any], parent: Path) -> str:
    """The command that continues this sweep: the one typed, with --output-dir naming its folder."""
    from ftkit.cli import invoked

    argv = finetune._without_resume(invoked) if invoked else ["sweep", args["recipe"]]
    if not any(a in ("--output-dir", "-o") or a.startswith("--output-dir=") for a in argv):
        argv = [*argv, "--output-dir", str(parent)]
    return "ftkit " + shlex.join(argv)


def print_summary(summary: dict[str, Any], parent: Path) -> None:
    """The trials as a table, then the best trial's parameters and where its config is."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    metric, rows = summary["metric"], summary["trials"]
    keys = list(dict.fromkeys(k for row in rows for k in row["params"]))
    table = Table(title=f"{len(rows)} trial(s) in {escape(str(parent))}", title_justify="left")
    for column in ("trial", "state", *(k.rsplit(".", 1)[-1] for k in keys), metric):
        table.add_column(escape(column), justify="left" if column in ("trial", "state") else "right")
    best = (summary["best"] or {}).get("trial")
    for row in rows:
        cells = [row["trial"], row["state"], *(_cell(row["params"].get(k)) for k in keys), "-" if row["value"] is None else f"{row['value']:.4f}"]
        table.add_row(*(f"[bold green]{escape(c)}[/]" if row["trial"] == best else escape(c) for c in cells))
    console = Console()
    if not console.is_terminal:  # piped: no terminal width to respect, keep rows whole
        console = Console(width=160 + 14 * len(keys))
    console.print(table)
    if best is None:
        return
    params = " ".join(f"{k.rsplit('.', 1)[-1]}={_cell(v)}" for k, v in summary["best"]["params"].items())
    config = parent / summary["best"]["config"]
    console.print(f"best: {best}, {escape(metric)} {summary['best']['value']:.4f}: {escape(params)}", highlight=False, soft_wrap=True)
    console.print(f"its config: {escape(str(config))} (train it again: ftkit finetune {escape(shlex.quote(str(config)))}); "
                  f"the trials side by side: ftkit runs compare {escape(shlex.quote(str(parent)))}", highlight=False, soft_wrap=True)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
