"""Options shared by several commands, as typed aliases (one definition, one help text)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id or local folder of the pretrained checkpoint.", rich_help_panel="Model and data")]
DatasetOpt = Annotated[Optional[str], typer.Option("--dataset", help="Hub dataset id (replaces the recipe's).", rich_help_panel="Model and data")]
TrainOpt = Annotated[Optional[Path], typer.Option("--train", help="Local training file: csv, tsv, json, jsonl or parquet.", rich_help_panel="Model and data")]
ValidationOpt = Annotated[Optional[Path], typer.Option("--validation", help="Local validation file (else carved from train).", rich_help_panel="Model and data")]
TestOpt = Annotated[Optional[Path], typer.Option("--test", help="Local test file.", rich_help_panel="Model and data")]
TextColumnOpt = Annotated[Optional[str], typer.Option("--text-column", help="Column holding the input text.", rich_help_panel="Model and data")]
LabelColumnOpt = Annotated[Optional[str], typer.Option("--label-column", help="Column holding the label.", rich_help_panel="Model and data")]
EncodingOpt = Annotated[Optional[str], typer.Option("--encoding", help="Text encoding of local files (default utf-8).", rich_help_panel="Model and data")]
OutputDirOpt = Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="Run folder \\[default: runs/<recipe>-<UTC time>].", rich_help_panel="Run")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace the earlier ftkit run in --output-dir (only its own files, once the new inputs are accepted; a folder holding other files is refused).", rich_help_panel="Run")]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="Training epochs.", rich_help_panel="Training")]
MaxStepsOpt = Annotated[Optional[int], typer.Option("--max-steps", help="Stop after N optimizer steps (overrides --epochs).", rich_help_panel="Training")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Examples per device per step.", rich_help_panel="Training")]
LearningRateOpt = Annotated[Optional[float], typer.Option("--learning-rate", "--lr", help="Peak learning rate (AdamW, linear warmup and decay).", rich_help_panel="Training")]
MaxLengthOpt = Annotated[Optional[int], typer.Option("--max-length", help="Tokens per example; longer inputs are truncated.", rich_help_panel="Training")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed (data order, head init, carved splits).", rich_help_panel="Training")]
PrecisionOpt = Annotated[Optional[str], typer.Option("--mixed-precision", help="no, fp16 or bf16 \\[default: bf16 where the GPU supports it, else no].", rich_help_panel="Training")]
CompileOpt = Annotated[Optional[str], typer.Option("--compile", help="torch.compile the training step: no, default, reduce-overhead (CUDA graphs; pays on long GPU runs) or max-autotune.", rich_help_panel="Training", show_default=False)]
EarlyStoppingOpt = Annotated[Optional[int], typer.Option("--early-stopping-patience", help="Stop after N evaluations without a better recipe metric; the best model is kept.", rich_help_panel="Training", show_default=False)]
ClassWeightsOpt = Annotated[Optional[str], typer.Option("--class-weights", help="Classification: 'balanced' weighs each class's loss by its rarity (for imbalanced data such as spam).", rich_help_panel="Training", show_default=False)]
ReportToOpt = Annotated[Optional[str], typer.Option("--report-to", help="Trackers, comma-separated: tensorboard (writes OUT/tensorboard), wandb, mlflow, or none.", rich_help_panel="Run", show_default=False)]
LoraOpt = Annotated[bool, typer.Option("--lora", help="Train a LoRA adapter (PEFT) instead of every weight; saves OUT/adapter.", rich_help_panel="LoRA")]
LoraROpt = Annotated[Optional[int], typer.Option("--lora-r", help="LoRA rank \\[default: 8].", rich_help_panel="LoRA", show_default=False)]
LoraAlphaOpt = Annotated[Optional[int], typer.Option("--lora-alpha", help="LoRA scaling numerator (update x alpha/r) \\[default: 16].", rich_help_panel="LoRA", show_default=False)]
LoraDropoutOpt = Annotated[Optional[float], typer.Option("--lora-dropout", help="Dropout on the LoRA branch \\[default: 0.1].", rich_help_panel="LoRA", show_default=False)]
MergeOpt = Annotated[bool, typer.Option("--merge", help="With --lora: also save model/, the base with the adapter merged in (loads in pipeline()).", rich_help_panel="LoRA")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Any config key: --set train.warmup_ratio=0.06 (repeatable).", rich_help_panel="Training")]
FormatOpt = Annotated[str, typer.Option("--format", help="auto, or conll to read a .txt file as CoNLL (token ... tag per line).", rich_help_panel="Model and data")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Refuse malformed input (IOB1 / broken NER tags) instead of repairing it.", rich_help_panel="Model and data")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final metrics (and errors).", rich_help_panel="Run")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --output-dir (default: the newest runs/<recipe>-*) from its latest checkpoint; `--resume PATH` names a run or checkpoint folder.", rich_help_panel="Run")]
ResumeFromOpt = Annotated[Optional[Path], typer.Option("--resume-from", help="Continue from this run folder or checkpoints/step-N folder.", rich_help_panel="Run", show_default=False)]
TrustRemoteCodeOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Run Python code shipped in the model repository (off: only architectures transformers knows).", rich_help_panel="Security")]
AllowPickleOpt = Annotated[bool, typer.Option("--allow-pickle", help="Load pickle weights (pytorch_model.bin), which can run code; default: safetensors only.", rich_help_panel="Security")]


def recipe_names(incomplete: str) -> list[str]:
    """Shell completion for a recipe argument: the registry's names (no torch import)."""
    from ftkit.recipes import all_recipes

    return [r.name for r in all_recipes() if r.name.startswith(incomplete)]


def apply_policy(trust_remote_code: bool, allow_pickle: bool) -> None:
    """Set the checkpoint load policy for this process; warn when code from a repo may run."""
    from ftkit.models import set_policy

    if trust_remote_code:
        typer.echo("warning: --trust-remote-code: Python code from the model repository will run; use it only with repositories you trust", err=True)
    set_policy(trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)


def world_size() -> int:
    """Processes started together by accelerate launch / torchrun (from their environment), else 1."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def main_process() -> bool:
    """Whether this is the process that writes files and prints results (rank 0)."""
    return int(os.environ.get("RANK", "0") or 0) == 0
