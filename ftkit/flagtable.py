"""The options of `ftkit finetune` and `ftkit reproduce`, in one table.

Each row is one flag: its names, the placeholder `--help` shows for its value, the config key it
sets, its help text and its help panel. The Typer options and README's Options table
(ftkit/cli/flags.py), the flag -> config key map, and the flag an error about a key names
(ftkit/checks.py) are all made from it. No typer here: core modules read it too.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftkit.config_load import all_keys

DATA, RUN, TRAINING, LORA, SECURITY = "Model and data", "Run", "Training", "LoRA", "Security"


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]  # long name first: "--model", "-m"
    metavar: str  # what stands for the value in --help; "" for a switch (no value)
    help: str  # "{choices}" stands for the values the config key accepts
    panel: str
    key: str | None = None  # the config key it sets; None: it steers the command, not the run
    type: Any = str  # the value's Python type: str, int, float, Path, bool, list[str]

    @property
    def param(self) -> str:
        """The name the command receives it under: --learning-rate -> learning_rate."""
        return self.names[0].removeprefix("--").replace("-", "_")

    @property
    def text(self) -> str:
        """The help text, with the accepted values filled in from the config key's type."""
        return self.help.replace("{choices}", spoken(choices(self.key))) if "{choices}" in self.help else self.help


FLAGS: tuple[Flag, ...] = (
    Flag(("--model", "-m"), "NAME_OR_PATH", "Hub id or local folder of the pretrained checkpoint (causal LM: also a .gguf file).", DATA, "model"),
    Flag(("--dataset",), "HUB_ID", "Hub dataset id (replaces the recipe's; local files go with --train instead).", DATA, "data.dataset"),
    Flag(("--train",), "FILE", "Local training file: csv, tsv, json, jsonl or parquet (.txt with --format); the recipe's Hub dataset is then not read at all.", DATA, "data.train", Path),
    Flag(("--validation",), "FILE", "Local validation file \\[default: carved from --train: data.validation_fraction, with --seed].", DATA, "data.validation", Path),
    Flag(("--test",), "FILE", "Local test file \\[default: none, or carved from --train: data.test_fraction].", DATA, "data.test", Path),
    Flag(("--text-column",), "COLUMN", "Column holding the input text.", DATA, "data.text_column"),
    Flag(("--text-pair-column",), "COLUMN", "Classification, multi-label, regression: column holding the second text of a pair (NLI, paraphrase, question/answer).", DATA, "data.text_pair_column"),
    Flag(("--label-column",), "COLUMN", "Column holding the label (regression: the number; multi-label: a list, or labels joined by --label-separator).", DATA, "data.label_column"),
    Flag(("--label-separator",), "TEXT", "Multi-label: what separates the labels in a csv/tsv cell \\[default: ,].", DATA, "data.label_separator"),
    Flag(("--image-column",), "COLUMN", "Image classification: column holding each image's path (relative to the file) \\[default: image].", DATA, "data.image_column"),
    Flag(("--encoding",), "CODEC", "Text encoding of local files \\[default: utf-8].", DATA, "data.encoding"),
    Flag(("--format",), "FORMAT", "How local files are read: {choices}. auto: by suffix (a .txt file needs one of the others); conll: .txt as CoNLL (token ... tag per line); text: .txt as documents separated by blank lines.", DATA, "data.format"),
    Flag(("--strict",), "", "Refuse malformed input (IOB1 / broken NER tags) instead of repairing it.", DATA, "data.strict", bool),
    Flag(("--source-lang",), "LANG", "Translation: source language key (e.g. en).", DATA, "data.source_lang"),
    Flag(("--target-lang",), "LANG", "Translation: target language key (e.g. de).", DATA, "data.target_lang"),
    Flag(("--language",), "LANG", "Speech recognition: the language spoken (e.g. english) for a multilingual Whisper; English-only (.en) checkpoints take none.", DATA, "data.language"),
    Flag(("--max-train-samples",), "N", "Train on the first N training rows only (after validation/test are carved), for a quick run.", DATA, "data.max_train_samples", int),
    Flag(("--max-eval-samples",), "N", "Score the first N validation and test rows only, for a quick run.", DATA, "data.max_eval_samples", int),
    Flag(("--output-dir", "-o"), "DIR", "Run folder \\[default: runs/<recipe>-<UTC time>].", RUN, type=Path),
    Flag(("--overwrite",), "", "Replace the earlier ftkit run in --output-dir (only its own files, once the new inputs are accepted; a folder holding other files is refused).", RUN, type=bool),
    Flag(("--resume",), "[RUN_OR_CHECKPOINT]", "Continue an interrupted run from its latest checkpoint: alone, the run in --output-dir (else the newest unfinished runs/<recipe>-*); with a path, that run folder or one of its checkpoints/step-N folders.", RUN),
    Flag(("--report-to",), "TRACKERS", "Experiment trackers, comma-separated: {choices} (tensorboard writes OUT/tensorboard).", RUN, "train.report_to"),
    Flag(("--quiet", "-q"), "", "Print only the final metrics (and errors).", RUN, type=bool),
    Flag(("--epochs",), "N", "Training epochs.", TRAINING, "train.epochs", int),
    Flag(("--max-steps",), "N", "Stop after N optimizer steps (overrides --epochs).", TRAINING, "train.max_steps", int),
    Flag(("--batch-size",), "N", "Examples per device per step.", TRAINING, "train.batch_size", int),
    Flag(("--learning-rate", "--lr"), "RATE", "Peak learning rate (AdamW, linear warmup and decay).", TRAINING, "train.learning_rate", float),
    Flag(("--max-length",), "N", "Tokens per example; longer inputs are truncated (checked against the model's limit).", TRAINING, "train.max_length", int),
    Flag(("--seed",), "N", "Random seed (data order, head init, carved splits).", TRAINING, "train.seed", int),
    Flag(("--mixed-precision",), "MODE", "Mixed precision: {choices} \\[default: auto: bf16 where the GPU supports it, else no].", TRAINING, "train.mixed_precision"),
    Flag(("--compile",), "MODE", "torch.compile the training step: {choices} (reduce-overhead: CUDA graphs; pays on long GPU runs) \\[default: no].", TRAINING, "train.compile"),
    Flag(("--early-stopping-patience",), "N", "Stop after N evaluations without a better recipe metric; the best model is kept.", TRAINING, "train.early_stopping_patience", int),
    Flag(("--class-weights",), "MODE", "Classification: {choices} weighs each class's loss by its rarity (for imbalanced data such as spam) \\[default: unweighted].", TRAINING, "train.class_weights"),
    Flag(("--calibrate",), "", "Classification: fit temperature scaling on validation after training; the saved model gives calibrated scores (same labels), metrics.json the calibration error before and after.", TRAINING, "train.calibrate", bool),
    Flag(("--augment",), "MODE", "Image classification: training augmentation, {choices} (none: the images as they are) \\[default: crop-flip].", TRAINING, "train.augment"),
    Flag(("--set",), "KEY=VALUE", "Any config key, repeatable: --set train.warmup_ratio=0.06; a unique leaf name is enough (--set learning_rate=5e-5); `ftkit recipes show RECIPE` shows the keys.", TRAINING, type=list[str]),
    Flag(("--lora",), "", "Train a LoRA adapter (PEFT) instead of every weight; saves OUT/adapter.", LORA, "lora.enabled", bool),
    Flag(("--lora-r",), "N", "LoRA rank \\[default: 8].", LORA, "lora.r", int),
    Flag(("--lora-alpha",), "N", "LoRA scaling numerator (update x alpha/r) \\[default: 16].", LORA, "lora.alpha", int),
    Flag(("--lora-dropout",), "RATE", "Dropout on the LoRA branch \\[default: 0.1].", LORA, "lora.dropout", float),
    Flag(("--merge",), "", "With --lora: also save model/, the base with the adapter merged in (loads in pipeline()).", LORA, "lora.merge", bool),
    Flag(("--trust-remote-code",), "", "Run Python code shipped in the model repository (off: only architectures transformers knows).", SECURITY, type=bool),
    Flag(("--allow-pickle",), "", "Load pickle weights (pytorch_model.bin), which can run code; default: safetensors only.", SECURITY, type=bool),
)
BY_NAME = {name: flag for flag in FLAGS for name in flag.names}

# Flag -> config key; a flag left out keeps the recipe's value.
FLAG_KEYS = {flag.param: flag.key for flag in FLAGS if flag.key}

# README rows for settings that have no flag of their own (set with --set); listed after the flags.
SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("--set checkpoint_every=500", "train.checkpoint_every", "Save a resumable checkpoint every N optimizer steps, `epoch` (default) or `null`."),
    ("--set keep_checkpoints=2", "train.keep_checkpoints", "Checkpoints kept (plus the best model so far)."),
    ("--set early_stopping_threshold=0.001", "train.early_stopping_threshold", "The least gain that counts as better (default 0)."),
    ("--set threshold=tune-per-label", "metrics.threshold", "Multi-label: the decision threshold, `tune` (one, tuned on validation; default), `tune-per-label` or a number in (0, 1)."),
    ("--set target_scaling=none", "train.target_scaling", "Regression: `standard` trains on standardised targets, the saved model still outputs the data's units (default); `none` trains on them as they are."),
    ("--set mlm_probability=0.15", "train.mlm_probability", "Masked-LM: the share of tokens masked (default 0.15)."),
    ("--set whole_word_mask=true", "train.whole_word_mask", "Masked-LM: mask all sub-tokens of a chosen word together (default false)."),
)


def choices(key: str | None) -> tuple[str, ...]:
    """The values a config key accepts when its type lists them (a Literal, maybe in a list or
    Optional): the same source the config check uses. () for free values."""
    hint = all_keys().get(key) if key else None
    while typing.get_origin(hint) in (typing.Union, types.UnionType, list):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return tuple(typing.get_args(hint)) if typing.get_origin(hint) is typing.Literal else ()


def spoken(values: tuple[str, ...]) -> str:
    """('a', 'b', 'c') -> 'a, b or c'."""
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"
