"""`ftkit finetune` and `ftkit reproduce`: flags -> resolved config -> the training loop."""

from __future__ import annotations

import inspect
import os
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ftkit.cli import flags
from ftkit.cli import options as o
from ftkit.cli.tables import print_bars, print_metrics
from ftkit.config import RunConfig
from ftkit.config_load import apply_overrides, flatten, parse_set
from ftkit.errors import FtkitError

if TYPE_CHECKING:  # loaded when a run starts, not at `ftkit --help`
    from ftkit.rundir import RunFolder

RecipeArg = Annotated[str, typer.Argument(help="A recipe name (see `ftkit recipes list`) or a YAML file.", show_default=False, autocompletion=o.recipe_names)]


def finetune(**args: Any) -> None:
    """Fine-tune a model with a recipe; writes model/, metrics.json, config.yaml, log.jsonl.

    [dim]ftkit finetune sentiment --model bert-base-uncased
    ftkit finetune spam --model ./minilm --train train.jsonl --test test.jsonl --epochs 2
    ftkit finetune sentiment --model ./minilm --max-train-samples 64 --max-eval-samples 32 --max-steps 10   # a smoke run[/dim]
    """
    run(args, check_expect=False)


def reproduce(**args: Any) -> None:
    """Fine-tune, then check the recipe's `expect:` bars: exit 0 if all pass, 1 if any fails.

    [dim]ftkit reproduce sentiment --model bert-base-uncased   # in CI: fails when a metric regresses[/dim]
    """
    run(args, check_expect=True)


# Both take the recipe and every flag of the table in ftkit/flagtable.py (Typer reads the signature).
finetune.__signature__ = reproduce.__signature__ = flags.signature(  # type: ignore[attr-defined]
    inspect.Parameter("recipe", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=RecipeArg)
)


def resolve(args: dict[str, Any]) -> tuple[RunConfig, list[str]]:
    """The recipe with flags and --set applied, checked; plus notes for the user."""
    from ftkit.data import check_local_files
    from ftkit.recipes import load_config
    from ftkit.tasks import get_task

    config, _ = load_config(args["recipe"])
    config = apply_overrides(config, _overrides(args), source="command line")
    config = _absolute_model(_local_files_win(config))
    folders = get_task(config.task).LOCAL_FOLDERS  # e.g. an audio folder: the family reads it
    check_local_files(config.data, folders)  # every file, before any is read: a FIFO or a loop fails here
    if not config.data.train or (folders and Path(config.data.train).is_dir()):
        return config, []
    return _adapt_columns(config, args)


def _overrides(args: dict[str, Any]) -> dict[str, Any]:
    """Dotted config key -> value of every flag given, then of every --set (which wins)."""
    out: dict[str, Any] = {}
    for flag, key in flags.FLAG_KEYS.items():
        value = args.get(flag)
        if value is not None and value is not False:  # an absent flag keeps the recipe's value
            # Saved config.yaml must rerun from anywhere: store data files as absolute paths.
            out[key] = _absolute(value) if isinstance(value, Path) else value
    local = [f"--{split}" for split in ("train", "validation", "test") if args.get(split)]
    if args.get("dataset") and local:  # the Hub dataset would be dropped without a word
        raise FtkitError(f"--dataset (a Hub dataset) and {'/'.join(local)} (local files) both name the data: pass one of them")
    if args.get("dataset"):
        out.update({"data.train": None, "data.validation": None, "data.test": None})
    out.update(parse_set(args.get("set") or []))
    return out


def _local_files_win(config: RunConfig) -> RunConfig:
    """Local files win and the Hub dataset is never read (no split of it, not even a missing
    test): config.yaml must say what the run read."""
    if config.data.train and (config.data.dataset or config.data.dataset_config):
        return apply_overrides(config, {"data.dataset": None, "data.dataset_config": None}, source="command line")
    return config


def _absolute_model(config: RunConfig) -> RunConfig:
    """A local model (folder or .gguf file) by its absolute path: config.yaml and the card's
    reproduce command must load the same model from any folder."""
    model = os.path.expanduser(config.model)
    if os.path.lexists(model) and not os.path.isabs(model):
        return apply_overrides(config, {"model": os.path.abspath(model)}, source="command line")
    return config


def _adapt_columns(config: RunConfig, args: dict[str, Any]) -> tuple[RunConfig, list[str]]:
    """The family's column names fitted to the local training file (a recipe names its Hub
    dataset's columns; see ftkit.data.adapt_columns), plus notes saying what changed."""
    from ftkit.data import adapt_columns
    from ftkit.tasks import get_task

    explicit = {role for role in ("text", "text_pair", "label", "image") if args.get(f"{role}_column")}
    task = get_task(config.task)
    wanted = task.columns(config)
    adapted, notes = adapt_columns(
        Path(config.data.train), wanted, explicit, config.data.encoding, config.data.format, task.normalizer(config), task.CONVENTIONAL_COLUMNS
    )
    changes = {f"data.{role}_column": adapted[role] for role in wanted if adapted.get(role) != wanted.get(role)}
    if changes:
        config = apply_overrides(config, changes, source="command line")
    return config, notes


def _absolute(path: Path) -> str:
    """Absolute path(s) of a data file, or of both sides of an aligned 'src.txt:tgt.txt' pair."""
    from ftkit.data import aligned_pair

    # abspath, not resolve(): a symbolic link loop must reach check_local_files' clear refusal
    pair = aligned_pair(str(path))
    return ":".join(os.path.abspath(p) for p in pair) if pair else os.path.abspath(path)


def run(args: dict[str, Any], check_expect: bool) -> None:
    """Check everything, then train in a run folder that is made only once the inputs are accepted."""
    o.apply_policy(args.get("trust_remote_code", False), args.get("allow_pickle", False))
    try:
        config, notes = resolve(args)
        if check_expect and not config.expect:  # known now, not after an hour of training
            raise FtkitError(f"recipe '{config.name}' has no expect: bars to check; add some or use `ftkit finetune`")
        from ftkit.train import check_trackers

        check_trackers(config.train.trackers())  # a missing package fails before any work
        folder, checkpoint = open_folder(config, args)
    except KeyboardInterrupt:  # Typer would exit 130 without a word; nothing is written this early
        from ftkit.rundir import NOT_STARTED

        raise FtkitError(NOT_STARTED, exit_code=130) from None
    from ftkit.cli import invoked

    command = "ftkit " + shlex.join(_without_resume(invoked)) if invoked else f"ftkit finetune {shlex.quote(args['recipe'])}"
    with folder.lifetime(command):  # the lock until the end; a failure removes what the run made
        results = train_in(folder, config, checkpoint, command, notes, quiet=args.get("quiet", False))
        if o.main_process():  # every process has the same results; one reports them
            report(results, config, folder.out, check_expect)


def train_in(folder: RunFolder, config: RunConfig, checkpoint: Path | None, command: str, notes: list[str], quiet: bool) -> dict[str, Any]:
    """Train `config` in `folder` (inside its lifetime), from `checkpoint` when resuming; the results, saved."""
    from ftkit.progress import Reporter
    from ftkit.train import finetune as train_run  # heavy imports only once the input is checked

    reporter = Reporter(quiet=quiet)
    for note in notes:
        reporter.note(note)
    try:
        results = train_run(config, folder.out, reporter, command, resume=checkpoint, accepted=folder.accept)
    finally:
        reporter.finish()  # a live progress bar would swallow the last line
    folder.done()
    return results


def open_folder(config: RunConfig, args: dict[str, Any]) -> tuple[RunFolder, Path | None]:
    """The run folder (checked, not yet made) and, for --resume, the checkpoint to continue from.
    Only the main process makes, locks and cleans the folder; the others get an inert one."""
    from ftkit.rundir import RunFolder

    if args.get("resume") is not None:  # "" for a bare --resume, else the folder it names
        if args.get("overwrite"):
            raise FtkitError("--resume continues a run and --overwrite starts it again: pass one of them")
        out, checkpoint = resume_target(config, args.get("output_dir"), Path(args["resume"]) if args["resume"] else None)
        return (RunFolder.resume(out) if o.main_process() else RunFolder(out, writer=False)), checkpoint
    if args.get("output_dir") is None and o.world_size() > 1:  # each process would pick its own time stamp
        raise FtkitError("several processes (accelerate launch / torchrun) share one run folder: pass --output-dir")
    out = args.get("output_dir") or Path("runs") / f"{config.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    if not o.main_process():
        return RunFolder(out, writer=False), None
    return RunFolder.new(out, overwrite=args.get("overwrite", False), inputs=local_inputs(config)), None


def local_inputs(config: RunConfig) -> list[tuple[str, str]]:
    """(flag, path) of every local file or folder the run reads: --overwrite must not delete one."""
    from ftkit.data import aligned_pair

    named = {"--model": config.model, "--dataset": config.data.dataset}
    named.update({f"--{split}": getattr(config.data, split) for split in ("train", "validation", "test")})
    found = []
    for flag, value in named.items():
        if value:  # a translation pair 'src.txt:tgt.txt' is two files
            paths = aligned_pair(str(value)) or (Path(str(value)).expanduser(),)
            found += [(flag, str(path)) for path in paths if os.path.lexists(path)]
    return found


def report(results: dict[str, Any], config: RunConfig, out: Path, check_expect: bool) -> None:
    """The metrics table, the run folder and (reproduce) the expect: bars; exit 1 if one fails."""
    print_metrics(results)
    typer.echo(f"run folder: {out}", err=True)
    if check_expect:
        section = "test" if results.get("test") else "validation"
        if not print_bars(config.expect, results[section], section):
            raise typer.Exit(1)


# Settings a resumed run may change: they do not alter what is computed.
RESUME_MAY_CHANGE = ("train.checkpoint_every", "train.keep_checkpoints", "train.report_to")


def resume_target(config: RunConfig, output_dir: Path | None, named: Path | None) -> tuple[Path, Path]:
    """(run folder, checkpoint) to resume (`named` by `--resume PATH`, else --output-dir's or the
    newest unfinished run); refuses a finished run or changed settings."""
    from ftkit import checkpoints
    from ftkit.config_load import from_dict, load_yaml_file

    where = named or output_dir
    if where is None:  # the newest unfinished runs/<recipe>-* with a checkpoint
        runs = sorted(Path("runs").glob(f"{config.name}-*"))
        where = next((r for r in reversed(runs) if checkpoints.latest(r) and not (r / "metrics.json").exists()), None)
        if where is None:
            raise FtkitError(f"--resume: no unfinished run of '{config.name}' with a checkpoint under runs/; pass --output-dir of the run to continue")
    if (where / "metrics.json").is_file():
        raise FtkitError(f"{where}: this run finished (metrics.json is there); nothing to resume. Pass --overwrite to run it again")
    checkpoint = checkpoints.find(where)
    out = checkpoint.parent.parent
    if output_dir is not None and output_dir.resolve() != out.resolve():
        raise FtkitError(f"{checkpoint} belongs to the run in {out}, not --output-dir {output_dir}; drop --output-dir or make them match")
    saved_file = out / "config.yaml"
    if not saved_file.is_file():
        raise FtkitError(f"{saved_file}: missing, so the run's settings are unknown; cannot resume {out}")
    saved = flatten(from_dict(load_yaml_file(saved_file), str(saved_file)).to_dict())
    now = flatten(config.to_dict())
    changed = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k) and k not in RESUME_MAY_CHANGE]
    if changed:
        from ftkit.bounded import shown

        diffs = "; ".join(f"{k}: {shown(saved.get(k))} -> {shown(now.get(k))}" for k in changed[:6])
        raise FtkitError(
            f"{out}: the run was started with other settings ({diffs}). Resume with the same command, "
            "or start a new run in another --output-dir"
        )
    return out, checkpoint


def _without_resume(argv: list[str]) -> list[str]:
    """The command that started the run, without its --resume: main() has spelled a bare
    `--resume` as `--resume=`, so a `--resume` left is followed by the folder it names."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            out.append(arg)
    return out
