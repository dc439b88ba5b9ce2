"""Task families: one module each, all with the same functions (data, not subclasses).

A family module provides:
  AUTO_MODEL                   the transformers Auto class
  pipeline_tag(config)         the pipeline() task the saved model serves
  STRATIFY                     the column that carved splits are stratified by (or None)
  META_KEYS                    batch keys gathered for metrics but never given to the model
  PREFIX_SPACE                 whether byte-level BPE tokenizers need add_prefix_space
  CONVENTIONAL_COLUMNS         role -> the column name local files usually use
  COLUMN_KINDS                 role -> what its column holds (text, labels, words, tags: ftkit.columns.KINDS)
  LOCAL_MODEL                  what to pass as --model offline (ends the unreachable-model error)
  GGUF                         whether --model may be a .gguf file (loaded by transformers)
  columns(config)              Roles: role -> column name of the data it reads, carrying COLUMN_KINDS
  normalizer(config)           None, or a function rewriting each raw record before reading
  check_model(model_config, name)
  prepare(splits, config, tokenizer, names=None) -> Prepared   labels + tokenized features
  check_metric_keys(config, names)   the primary metric and bars exist, before training
  load_model(source, prepared, tokenizer, config)
  collator(tokenizer, pad_to_multiple_of)
  eval_outputs(model, batch) -> dict of tensors to gather across processes
  compute_metrics(gathered, prepared, split) -> dict
  predictor(model, tokenizer, options) -> function from input records to output records
  class_weights(prepared)      classification only: per-class loss weights (train.class_weights)
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ftkit.errors import FtkitError

# Families with code; the recipe schema already accepts all four (see config.TASK_FAMILIES).
FAMILY_MODULES = {
    "sequence-classification": "ftkit.tasks.classification",
    "token-classification": "ftkit.tasks.tokens",
    "seq2seq": "ftkit.tasks.seq2seq",
    "causal-lm": "ftkit.tasks.causal_lm",
}


def get_task(family: str) -> ModuleType:
    """The module implementing `family`, or a clear error if this ftkit does not have it yet."""
    if family not in FAMILY_MODULES:
        raise FtkitError(
            f"task family '{family}' is not available in this version of ftkit "
            f"(available: {', '.join(FAMILY_MODULES)})"
        )
    return importlib.import_module(FAMILY_MODULES[family])
