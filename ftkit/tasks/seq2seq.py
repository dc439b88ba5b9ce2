"""Sequence to sequence: summarization and translation (T5, BART, Marian, mT5, ...).

Labels are the target's token ids, padded with -100 per batch; the model shifts them into
its decoder inputs itself. Evaluation generates with the recipe's `generation:` settings
(stored in the model's generation_config, so pipeline() decodes the same way) and scores
the decoded text against the raw references: ROUGE (rouge-score) for summaries, sacreBLEU
and chrF for translations.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ftkit import metrics
from ftkit.bounded import shown
from ftkit.columns import Roles
from ftkit.config import RunConfig
from ftkit.data import Split
from ftkit.errors import FtkitError
from ftkit.models import check_family, check_max_length, load_tokenizer
from ftkit.tasks.common import model_loss, records_read_by_ftkit, read_texts, token_batch_size, token_lengths, nothing_to_finalize, serves_any, refuse_calibration
from ftkit.tasks.common import ERRORS_CAP
from ftkit.tasks.family import Loss, Prepared, Usage
from ftkit.values import column_texts, cut_note, cut_texts, reads_at_most, text_limit

AUTO_MODEL = "AutoModelForSeq2SeqLM"
STRATIFY = None
META_KEYS = ("example_id",)
PREFIX_SPACE = False
CONVENTIONAL_COLUMNS = {"text": "document", "target": "summary"}
COLUMN_KINDS = {"text": "text", "target": "text"}  # the source, and the text to produce from it
# No PyPI package ships a text encoder-decoder that we know of (Whisper, which one does, is
# speech): offline, the folder has to be copied from a machine that reaches the Hub.
LOCAL_MODEL = (
    "pass a local folder: --model /path/to/model that save_pretrained wrote for an encoder-decoder text model "
    "(T5, BART, Marian, ...; none ships on PyPI that we know of): where the Hub is reachable run "
    "`hf download MODEL_ID --local-dir DIR`, then copy DIR here"
)
GGUF = False
ONNX = False  # generate() loops over a decoder: not exported yet
LONG_INPUTS = "truncated"  # past train.max_length a source is cut (targets at max_target_length)
ARCHITECTURES = ("ForConditionalGeneration", "MTModel")  # MTModel: MarianMTModel
serves = serves_any  # ARCHITECTURES alone tell its models
finalize = nothing_to_finalize  # the trained weights are the whole model
PEFT_TASK = "SEQ_2_SEQ_LM"
NEW_HEAD = False  # the pretrained LM head is kept
CLASS_WEIGHTS = False
PLOTS = ("lengths.png",)  # what figures() draws into plots/
lengths = token_lengths
LOCAL_FOLDERS = False  # local data are files of records
read_local = records_read_by_ftkit
batch_size = token_batch_size


def load_processor(source: str) -> Any:
    return load_tokenizer(source, PREFIX_SPACE)
OUTPUT_KEYS = {"summarization": "summary_text", "translation": "translation_text", "text2text-generation": "generated_text"}


@dataclass
class References:
    """Prepared.extra: what scoring generated text needs."""

    tokenizer: Any  # decodes the generated ids
    texts: dict[str, list[str]]  # split -> the raw target text of each example
    suite: str  # "rouge" or "bleu"
    sources: dict[str, list[str]] = field(default_factory=dict)  # split -> each example's source text (errors() shows it)


def is_translation(config: RunConfig) -> bool:
    return bool(config.data.source_lang and config.data.target_lang)


def pipeline_tag(config: RunConfig) -> str:
    return "translation" if is_translation(config) else "summarization"


def suite(config: RunConfig) -> str:
    return "bleu" if is_translation(config) else "rouge"


def columns(config: RunConfig) -> Roles:
    d = config.data
    if is_translation(config):
        return Roles({"text": d.source_lang, "target": d.target_lang}, COLUMN_KINDS)
    return Roles({"text": d.text_column, "target": d.target_column}, COLUMN_KINDS)


def normalizer(config: RunConfig):
    """{"translation": {"en": ..., "es": ...}} rows are flattened to their language keys, and
    aligned text-file pairs ({"source", "target"}) take the configured column names."""
    wanted = columns(config)
    translation = is_translation(config)

    def normalize(record: dict[str, Any], source: str, row: int) -> tuple[dict[str, Any], str | None]:
        languages = list(record)
        if isinstance(record.get("translation"), dict):
            languages = list(record["translation"])
            record = {**record, **record["translation"]}
        if "source" in record and "target" in record and wanted["text"] not in record:
            record = {**record, wanted["text"]: record["source"], wanted["target"]: record["target"]}
        missing = [lang for lang in (wanted["text"], wanted["target"]) if lang not in record]
        if translation and missing:  # the languages come from --source-lang/--target-lang, not column flags
            raise FtkitError(
                f"{source}: line/row {row} has no '{missing[0]}' text. Languages present: {', '.join(map(str, languages))}. "
                "Choose them with --source-lang and --target-lang."
            )
        return record, None

    return normalize


def check_config(config: RunConfig) -> None:
    """A target to learn: a target column, or a translation pair of two languages."""
    refuse_calibration(config)
    d = config.data
    if not d.target_column and not (d.source_lang and d.target_lang):
        raise FtkitError("seq2seq needs 'data.target_column' (or data.source_lang and data.target_lang)")
    if d.source_lang and d.source_lang == d.target_lang:
        raise FtkitError(f"--source-lang and --target-lang are both {shown(d.source_lang)}: translation needs two languages; pass the other")


def check_model(model_config: Any, config: RunConfig) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

    check_family(model_config, MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES, "sequence to sequence generation", config.model)
    check_max_length(model_config, config)


def prepare(splits: dict[str, Split], config: RunConfig, tokenizer: Any, names: list[str] | None = None) -> Prepared:
    """Drop rows with an empty source or target (counted), tokenize sources and targets once."""
    import datasets

    t, notes, features, references, inputs = config.train, [], {}, {}, {}
    for split_name, split in splits.items():
        # Cut where the model stops reading: max_length source tokens, max_target_length target
        # tokens. References are scored as cut: a million characters is far past any generation.
        sources, cut = column_texts(split.columns["text"], split.rows, split.source, "source text", text_limit(t.max_length))
        targets, cut_targets = column_texts(split.columns["target"], split.rows, split.source, "target text", text_limit(t.max_target_length))
        if cut:
            notes.append(cut_note(split.source, cut, "source text", text_limit(t.max_length), reads_at_most(t.max_length)))
        if cut_targets:
            notes.append(cut_note(split.source, cut_targets, "target text", text_limit(t.max_target_length), reads_at_most(t.max_target_length) + "; scores compare with the cut text"))
        keep = [i for i in range(len(sources)) if sources[i].strip() and targets[i].strip()]
        if len(keep) < len(sources):
            notes.append(f"{split.source}: skipped {len(sources) - len(keep)} row(s) with an empty source or target")
        if not keep:
            raise FtkitError(f"{split.source}: every row has an empty source or target (check the column names)")
        table = datasets.Dataset.from_dict({
            "source": [config.data.prefix + sources[i] for i in keep],
            "target": [targets[i] for i in keep],
            "example_id": list(range(len(keep))),
        })
        features[split_name] = table.map(
            lambda b: _tokenize(tokenizer, b, t.max_length, t.max_target_length), batched=True, remove_columns=["source", "target"]
        )
        references[split_name] = [targets[i] for i in keep]
        if split_name != "train":
            inputs[split_name] = [sources[i] for i in keep]
    return Prepared(features, notes=notes, extra=References(tokenizer, references, suite(config), inputs))


def _tokenize(tokenizer: Any, batch: dict, max_length: int, max_target_length: int) -> dict:
    encoded = tokenizer(batch["source"], max_length=max_length, truncation=True)
    labels = tokenizer(text_target=batch["target"], max_length=max_target_length, truncation=True)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None:
        # T5, BART and Marian end targets with EOS; GPT-2-style tokenizers do not, and a model
        # never shown EOS never learns to stop. End every target with it (within the length).
        labels = [ids if ids and ids[-1] == eos else ids[: max_target_length - 1] + [eos] for ids in labels]
    encoded["labels"] = labels
    return encoded


def check_metric_keys(config: RunConfig, names: list[str]) -> None:
    metrics.check_reported([config.metrics.primary, *config.expect], SUITE_KEYS[suite(config)] + ("gen_len", "loss"), "this recipe")


SUITE_KEYS = {"rouge": ("rouge1", "rouge2", "rougeL", "rougeLsum"), "bleu": ("bleu", "chrf")}


def load_model(source: str, prepared: Prepared, tokenizer: Any, config: RunConfig) -> Any:
    from transformers import AutoModelForSeq2SeqLM

    from ftkit.models import load_pretrained

    model = load_pretrained(AutoModelForSeq2SeqLM, source)
    apply_generation(model, config)
    return model


def apply_generation(model: Any, config: RunConfig) -> None:
    """The recipe's decoding settings go into generation_config: evaluation, `predict` and
    pipeline() on the saved model all decode the same way."""
    g, gen = config.generation, model.generation_config
    gen.num_beams, gen.max_new_tokens, gen.do_sample = g.num_beams, g.max_new_tokens, g.do_sample
    gen.max_length = None  # max_new_tokens decides
    if g.do_sample:  # only meaningful (and only valid to save) when sampling
        gen.temperature, gen.top_p = g.temperature, g.top_p


def collator(tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
    import torch
    from transformers import DataCollatorForSeq2Seq

    base = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, pad_to_multiple_of=pad_to_multiple_of)

    def collate(rows: list[dict]) -> dict:
        batch = base([{k: v for k, v in r.items() if k not in META_KEYS} for r in rows])
        batch["example_id"] = torch.tensor([r["example_id"] for r in rows])
        return batch

    return collate


def training_loss(prepared: Prepared, config: RunConfig) -> Loss:
    """The model's own loss (example_id stays out of its inputs)."""
    return model_loss(META_KEYS)


def eval_outputs(model: Any, batch: dict) -> dict[str, Any]:
    """Generated ids (padded with -100 across processes by the loop), and the per-example sum
    and count of target-token losses, so the mean is over all tokens, not over batches."""
    import torch.nn.functional as F

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    logits = model(**inputs, labels=batch["labels"]).logits.float()
    labels = batch["labels"]
    token_loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    generate = getattr(model, "module", model).generate  # DDP wraps the model
    generated = generate(**inputs)
    return {"generated": generated, "example_id": batch["example_id"], "loss_sum": token_loss.sum(-1), "tokens": (labels != -100).sum(-1)}


def compute_metrics(gathered: dict[str, Any], prepared: Prepared, split: str) -> dict[str, Any]:
    generated = gathered["generated"].clone()
    generated[generated < 0] = prepared.extra.tokenizer.pad_token_id
    texts = [t.strip() for t in prepared.extra.tokenizer.batch_decode(generated, skip_special_tokens=True)]
    references = [prepared.extra.texts[split][i] for i in gathered["example_id"].tolist()]
    special = set(prepared.extra.tokenizer.all_special_ids)
    lengths = [sum(1 for t in row if t not in special) for row in generated.tolist()]
    result = metrics.rouge(texts, references) if prepared.extra.suite == "rouge" else metrics.bleu(texts, references)
    result["gen_len"] = sum(lengths) / len(lengths)
    # Lengths in the same unit (tokens, specials left out); references are counted whole, not
    # cut at max_target_length, so the plot shows when generation stops short.
    reference_lengths = [len(ids) for ids in prepared.extra.tokenizer(text_target=references, add_special_tokens=False)["input_ids"]]
    result["lengths"] = {"unit": "tokens", "generated": metrics.length_counts(lengths), "reference": metrics.length_counts(reference_lengths)}
    result["loss"] = float(gathered["loss_sum"].sum() / gathered["tokens"].sum().clamp(min=1))
    result["samples"] = len(texts)
    return result


def errors(gathered: dict[str, Any], prepared: Prepared, split: str) -> list[dict[str, Any]]:
    """The ERRORS_CAP worst-scored rows whose output differs from the reference, worst first:
    {"source", "reference", "prediction", "score"}; the score is sentence-level ROUGE-L F1 (0-1,
    summaries) or chrF (0-100, translation), as the run's metrics are."""
    refs = prepared.extra
    generated = gathered["generated"].clone()
    generated[generated < 0] = refs.tokenizer.pad_token_id
    texts = [t.strip() for t in refs.tokenizer.batch_decode(generated, skip_special_tokens=True)]
    score = _sentence_scorer(refs.suite)
    rows = [
        {"source": refs.sources[split][i], "reference": refs.texts[split][i], "prediction": text, "score": score(text, refs.texts[split][i])}
        for i, text in zip(gathered["example_id"].tolist(), texts) if text != refs.texts[split][i].strip()
    ]
    return sorted(rows, key=lambda row: row["score"])[:ERRORS_CAP]


def _sentence_scorer(suite_name: str) -> Any:
    """(prediction, reference) -> one row's score: ROUGE-L F1 (rouge-score, stemmed) or sacreBLEU's chrF."""
    if suite_name == "rouge":
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        return lambda prediction, reference: scorer.score(reference, prediction)["rougeL"].fmeasure
    import sacrebleu

    return lambda prediction, reference: float(sacrebleu.sentence_chrf(prediction, [reference]).score)


def figures(split: str, scores: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """Generated against reference lengths: whether generation stops short or runs on."""
    from ftkit import plots

    yield from plots.named(PLOTS[0], plots.length_histograms(split, scores.get("lengths")))


# ---------------------------------------------------------------------------------- model card


def describe(config: RunConfig, names: list[str]) -> str:
    return "Translates a text." if config.data.source_lang else "Writes a short text (e.g. a summary or headline) from a longer one."


def data_columns(config: RunConfig) -> str:
    d = config.data
    prefix = f", prefix `{d.prefix}`" if d.prefix else ""
    if is_translation(config):
        return f"translation {d.source_lang} -> {d.target_lang}" + prefix
    return f"source column `{d.text_column}`, target column `{d.target_column}`" + prefix


def hub_metrics(config: RunConfig) -> list[str]:
    """huggingface.co/metrics ids: BLEU and chrF for a translation (or a recipe scored by them), else ROUGE."""
    return ["bleu", "chrf"] if config.data.source_lang or config.metrics.primary in SUITE_KEYS["bleu"] else ["rouge"]


def usage(config: RunConfig) -> Usage:
    # transformers 5 removed the summarization and translation pipelines: the card calls generate()
    return Usage(config.data.prefix + "Some text.", generate=True, limits=("max_length", "max_target_length"))


def predict_inputs(source: str | list[str], column: str | None, config: RunConfig | None, encoding: str) -> Iterator[dict[str, Any]]:
    """{"text"} records: lines, --text, or a table's source column (the run's text column, or
    for translation the source language's, in {"translation": {...}} rows as training reads them)."""
    default = "text" if config is None else config.data.source_lang if is_translation(config) else config.data.text_column
    return read_texts(source, column, [default, "text", "tokens"], encoding, nested="translation")


def input_size(record: dict[str, Any]) -> int:
    return len(record["text"])


def predict_defaults(options: Any, config: RunConfig) -> None:
    """The run's input prefix (T5 task prefixes), and its pipeline tag (names the output key)."""
    options.prefix = config.data.prefix
    options.pipeline_tag = pipeline_tag(config)


def predictor(model: Any, tokenizer: Any, options: Any):
    """{"text"} -> {"text", "summary_text" | "translation_text"}: batched generation."""
    import torch

    key = OUTPUT_KEYS.get(options.pipeline_tag, "generated_text")
    overrides = options.generation_overrides()

    def run(records: list[dict]) -> list[dict]:
        texts = [r["text"] for r in records]
        inputs, _ = cut_texts(texts, text_limit(options.max_length))  # nothing the model reads; the output keeps the whole text
        encoded = tokenizer([options.prefix + t for t in inputs], max_length=options.max_length, truncation=True, padding=True, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            generated = model.generate(**encoded, **overrides)
        outputs = tokenizer.batch_decode(generated, skip_special_tokens=True)
        return [{"text": t, key: o.strip()} for t, o in zip(texts, outputs)]

    return run
