"""`ftkit push`: a finished run's model (or LoRA adapter), card, plots, metrics and config to the Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RunArg = Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A finished run folder (the --output-dir of `ftkit finetune`).", show_default=False)]
RepoArg = Annotated[str, typer.Argument(metavar="REPO_ID", help="The Hub model repo: OWNER/NAME (created if missing).", show_default=False)]
PrivateOpt = Annotated[bool, typer.Option("--private", help="Create the repo private (an existing repo keeps its visibility) \\[default: the owner's default, public for a user].", show_default=False)]
AdapterOpt = Annotated[bool, typer.Option("--adapter", help="Push the LoRA adapter (RUN_DIR/adapter) instead of model/.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="List the files that would go, with their sizes; upload nothing (works offline).")]


def push(run_dir: RunArg, repo_id: RepoArg, private: PrivateOpt = False, adapter: AdapterOpt = False, dry_run: DryRunOpt = False) -> None:
    """Upload a run's model/ (or adapter/) with its card, plots, metrics.json and config.yaml to a Hub model repo.

    The token comes from HF_TOKEN or `hf auth login`; it is never printed. Checkpoints and the run's other files stay here.

    [dim]ftkit push runs/sentiment-20260101-120000 your-name/sentiment-bert --dry-run
    ftkit push runs/sentiment-20260101-120000 your-name/sentiment-bert --private
    ftkit push runs/ner-lora-20260101-120000 your-name/ner-lora --adapter[/dim]
    """
    from ftkit import push as hub_push

    plan = hub_push.plan(run_dir, repo_id, adapter)
    token = None if dry_run else hub_push.token_for_push()  # offline or logged out: one line, before the notes
    for note in plan.notes:
        typer.echo(f"note: {note}", err=True)
    if token is None:
        typer.echo(hub_push.listing(plan, private))
        return
    url = hub_push.upload(plan, private, token)
    typer.echo(f"pushed {len(plan.files)} files ({hub_push.human_size(plan.size)}) from {plan.folder} to {url}")
