"""Task families: one module each, all with the same functions (data, not subclasses).

A family module provides:
  AUTO_MODEL, PIPELINE_TAG     the transformers Auto class and pipeline task it maps to
  columns(config)              role -> column name of the data it reads
  check_model(model_config, name)
  prepare(splits, config, tokenizer, names=None) -> Prepared   labels + tokenized features
  load_model(source, prepared, tokenizer)
  collator(tokenizer, pad_to_multiple_of)
  eval_outputs(model, batch) -> dict of tensors to gather across processes
  compute_metrics(gathered, prepared) -> dict
  predict(model, tokenizer, texts, options) -> list of output records
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ftkit.errors import FtkitError

# Families with code; the recipe schema already accepts all four (see config.TASK_FAMILIES).
FAMILY_MODULES = {
    "sequence-classification": "ftkit.tasks.classification",
}


def get_task(family: str) -> ModuleType:
    """The module implementing `family`, or a clear error if this ftkit does not have it yet."""
    if family not in FAMILY_MODULES:
        raise FtkitError(
            f"task family '{family}' is not available in this version of ftkit "
            f"(available: {', '.join(FAMILY_MODULES)})"
        )
    return importlib.import_module(FAMILY_MODULES[family])
