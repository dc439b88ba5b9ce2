"""Token classification: named entities (NER) and other per-word IOB tagging.

Words are the unit everywhere: data holds one tag per word; the model sees sub-tokens, of
which the first of each word carries the label (the rest -100, unless label_all_tokens);
inputs longer than max_length are cut into overlapping windows (stride) for training,
evaluation and prediction alike, and each word keeps the prediction of the window in which
the model was most confident, so no word is lost at a cut. Metrics compare full word
sequences with seqeval.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ftkit import metrics
from ftkit.columns import Roles
from ftkit.config import RunConfig
from ftkit.data import Split
from ftkit.errors import FtkitError
from ftkit.models import check_family, check_max_length, load_tokenizer
from ftkit.tasks.common import model_loss, records_read_by_ftkit, read_texts, token_batch_size, token_lengths, nothing_to_finalize, serves_any, refuse_calibration
from ftkit.tasks.family import Loss, Prepared, Usage
from ftkit.tasks import classification
from ftkit.tasks.iob import Repairs, label_set, parse_tag, spans_to_tags, to_iob2
from ftkit.values import as_text, cut_note, cut_texts, text_limit

AUTO_MODEL = "AutoModelForTokenClassification"
STRATIFY = None  # carved splits are random (sentences have no single class)
META_KEYS = ("word_index", "example_id")  # gathered for metrics, never given to the model
PREFIX_SPACE = True  # byte-level BPE (GPT-2, RoBERTa) needs add_prefix_space for word input
CONVENTIONAL_COLUMNS = {"text": "tokens", "label": "ner_tags"}  # CoNLL files and the Hub say so
COLUMN_KINDS = {"text": "words", "label": "tags"}  # a list of words and a list of tags per sentence
LOCAL_MODEL = classification.LOCAL_MODEL  # taggers are built on the same encoders
GGUF = False
ONNX = True  # per-token logits from one forward pass
LONG_INPUTS = "windows"  # past train.max_length a sentence is read in overlapping windows (train.stride): nothing is cut
ARCHITECTURES = ("ForTokenClassification",)
serves = serves_any  # ARCHITECTURES alone tell its models
finalize = nothing_to_finalize  # the trained weights are the whole model
PEFT_TASK = "TOKEN_CLS"
NEW_HEAD = True  # the tagger's head is new: under LoRA it trains in full
CLASS_WEIGHTS = False
PLOTS = ("entity_f1.png",)  # what figures() draws into plots/
lengths = token_lengths
LOCAL_FOLDERS = False  # local data are files of records
read_local = records_read_by_ftkit
batch_size = token_batch_size


def load_processor(source: str) -> Any:
    return load_tokenizer(source, PREFIX_SPACE)


@dataclass
class Gold:
    """Prepared.extra: what seqeval compares the predictions with."""

    tags: dict[str, list[list[str]]]  # split -> the full gold tag sequence of each example
    mode: str = "default"
    words: dict[str, list[list[str]]] = field(default_factory=dict)  # split -> each example's words (errors() shows them)


def pipeline_tag(config: RunConfig) -> str:
    return "token-classification"


def columns(config: RunConfig) -> Roles:
    return Roles({"text": config.data.text_column, "label": config.data.label_column}, COLUMN_KINDS)


def check_config(config: RunConfig) -> None:
    """Long sentences are read in windows of max_length tokens that overlap by train.stride."""
    refuse_calibration(config)
    t = config.train
    if not 0 <= t.stride < t.max_length // 2:
        raise FtkitError(
            f"'train.stride' must be in [0, max_length/2) = [0, {t.max_length // 2}), got {t.stride}: "
            f"windows of {t.max_length} tokens overlap by stride (e.g. --set train.stride={t.max_length // 4})"
        )


def check_model(model_config: Any, config: RunConfig) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES

    check_family(model_config, MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES, "token classification", config.model)
    check_max_length(model_config, config)


def normalizer(config: RunConfig):
    """Records with {"text", "entities": [{start, end, label}]} become words + IOB2 tags."""
    words_key, tags_key = config.data.text_column, config.data.label_column

    def normalize(record: dict[str, Any], source: str, row: int) -> tuple[dict[str, Any], str | None]:
        if words_key in record or "entities" not in record or not isinstance(record.get("text"), str):
            return record, None
        entities = record["entities"]
        if not isinstance(entities, list):
            raise FtkitError(f"{source}: line/row {row}: 'entities' must be a list of {{start, end, label}}")
        words, tags, misaligned = spans_to_tags(record["text"], entities, source, row)
        note = "entity span(s) cut a word; the whole word was tagged" if misaligned else None
        return {**record, words_key: words, tags_key: tags}, note

    return normalize


# ---------------------------------------------------------------------------------- features


def _sequences(split: Split, labels: list[str] | None, repairs: Repairs, strict: bool, limit: int) -> tuple[list[list[str]], list[list[str]], int, int]:
    """(words, IOB2 tags) per example, checked; empty sentences dropped and counted; words longer
    than `limit` characters cut, and counted."""
    words_out, tags_out, empty, cut = [], [], 0, 0
    for words, tags, row in zip(split.columns["text"], split.columns["label"], split.rows):
        if not isinstance(words, (list, tuple)) or not isinstance(tags, (list, tuple)):
            raise FtkitError(
                f"{split.source}: line/row {row}: expected a list of words and a list of tags, got "
                f"{type(words).__name__} and {type(tags).__name__} (check --text-column / --label-column)"
            )
        if len(words) != len(tags):
            raise FtkitError(f"{split.source}: line/row {row}: {len(words)} words but {len(tags)} tags")
        if not words:
            empty += 1
            continue
        names = [_tag_name(t, labels, split.source, row) for t in tags]
        tags_out.append(to_iob2(names, split.source, row, repairs, strict))
        sentence, cut_words = cut_texts([_word(w, i, split.source, row) for i, w in enumerate(words, start=1)], limit)
        words_out.append(sentence)
        cut += cut_words
    return words_out, tags_out, empty, cut


def _word(word: Any, i: int, source: str, row: int) -> str:
    """One word as a string: numbers in their spelling; missing words, objects, lists, bytes refused."""
    if word is None or word != word:  # None or NaN: str() would make the word 'None' / 'nan'
        raise FtkitError(f"{source}: line/row {row}: word {i} is empty (None/NaN); fill it in or drop the row")
    return as_text(word, source, row, f"word {i}")


def _tag_name(tag: Any, labels: list[str] | None, source: str, row: int) -> str:
    if isinstance(tag, float) and tag.is_integer():  # 1.0 is id 1 (parquet/pandas write int columns with gaps as floats)
        tag = int(tag)
    if isinstance(tag, bool) or tag is None:
        raise FtkitError(f"{source}: line/row {row}: tag {tag!r} is neither a tag name nor an integer id")
    if isinstance(tag, int):
        if not labels or not 0 <= tag < len(labels):
            raise FtkitError(
                f"{source}: line/row {row}: integer tag {tag} needs the tag names in id order: "
                "set data.labels (e.g. --set 'data.labels=[O, B-PER, I-PER]')"
            )
        return labels[tag]
    return str(tag)


def prepare(splits: dict[str, Split], config: RunConfig, tokenizer: Any, names: list[str] | None = None) -> Prepared:
    """Check and repair tags, fix the tag set from train, tokenize every split into windows."""
    import datasets

    repairs, notes = Repairs(), []
    sequences = {}
    # Every sub-token of a sentence is read (long sentences become overlapping windows), so only
    # a word longer than any text a window could need is cut: its first sub-token, which carries
    # its tag and its prediction, stays.
    limit = text_limit(config.train.max_length)
    for split_name, split in splits.items():
        words, tags, empty, cut = _sequences(split, config.data.labels, repairs, config.data.strict, limit)
        if empty:
            notes.append(f"{split.source}: skipped {empty} empty sentence(s)")
        if cut:
            notes.append(cut_note(split.source, cut, "word", limit, "the first sub-token of a word, which carries its tag, stays"))
        if not words:
            raise FtkitError(f"{split.source}: no sentences with words (check --text-column)")
        sequences[split_name] = (words, tags, split.source)
    if repairs.count:
        notes.append(
            f"repaired {repairs.count} tag(s) in {repairs.sequences} sentence(s) to IOB2 (an I- tag that opened an "
            f"entity became B-; first at line/row {repairs.first_row}); pass --strict to refuse such data instead"
        )
    if names is None:
        names = label_set({t for seq in sequences["train"][1] for t in seq}, config.data.labels)
    tag_id = {t: i for i, t in enumerate(names)}
    for split_name, (_, tags, source) in sequences.items():
        unseen = sorted({t for seq in tags for t in seq} - set(tag_id))
        if unseen:
            raise FtkitError(
                f"{source}: {split_name} has tag(s) the model does not know: {', '.join(unseen)}. "
                f"Known tags: {', '.join(names)}. Fix the tags or add examples of them to train."
            )
    t = config.train
    features = {}
    for split_name, (words, tags, _) in sequences.items():
        ids = [[tag_id[x] for x in seq] for seq in tags]
        table = datasets.Dataset.from_dict({"words": words, "tags": ids, "example_id": list(range(len(words)))})
        features[split_name] = table.map(
            lambda batch: encode(tokenizer, batch["words"], batch["tags"], batch["example_id"], t.max_length, t.stride, t.label_all_tokens, names),
            batched=True,
            remove_columns=table.column_names,
        )
    gold = Gold({s: v[1] for s, v in sequences.items()}, config.metrics.mode, {s: v[0] for s, v in sequences.items() if s != "train"})
    return Prepared(features, names, notes, extra=gold)


def encode(tokenizer: Any, words: list[list[str]], tags: list[list[int]] | None, example_ids: list[int], max_length: int, stride: int, label_all_tokens: bool, names: list[str]) -> dict[str, list]:
    """Windows of at most max_length tokens, overlapping by stride, with per-token labels.

    word_index marks each word's first sub-token (-100 elsewhere): that is where its
    prediction is read. With label_all_tokens, continuation sub-tokens also get the word's
    tag (B-X becomes I-X), which inflates token counts but not entity-level metrics.
    """
    enc = tokenizer(
        words, is_split_into_words=True, truncation=True, max_length=max_length, stride=stride,
        return_overflowing_tokens=True, return_offsets_mapping=True,
    )
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], "word_index": [], "example_id": []}
    if "token_type_ids" in enc:
        out["token_type_ids"] = []
    inside = {i: names.index("I-" + n[2:]) for i, n in enumerate(names) if n.startswith("B-") and "I-" + n[2:] in names}
    for w in range(len(enc["input_ids"])):
        example = enc["overflow_to_sample_mapping"][w]
        labels, word_index, previous = [], [], None
        for word, (start, _) in zip(enc.word_ids(w), enc["offset_mapping"][w]):
            # A word's first sub-token starts at offset 0 of the word (a window may open mid-word).
            first = word is not None and word != previous and start == 0
            if word is None:
                labels.append(-100)
            elif first:
                labels.append(tags[example][word] if tags is not None else -100)
            elif label_all_tokens and tags is not None:
                tag = tags[example][word]
                labels.append(inside.get(tag, tag))
            else:
                labels.append(-100)
            word_index.append(word if first else -100)
            previous = word
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            if key in out:
                out[key].append(enc[key][w])
        out["labels"].append(labels)
        out["word_index"].append(word_index)
        out["example_id"].append(example_ids[example])
    return out


def collator(tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
    """Pad input and labels (-100) like DataCollatorForTokenClassification, and word_index too."""
    import torch
    from transformers import DataCollatorForTokenClassification

    base = DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def collate(rows: list[dict]) -> dict:
        word_index = [r["word_index"] for r in rows]
        example_id = [r["example_id"] for r in rows]
        batch = base([{k: v for k, v in r.items() if k not in META_KEYS} for r in rows])
        width = batch["input_ids"].shape[1]
        left = tokenizer.padding_side == "left"
        batch["word_index"] = torch.tensor([([-100] * (width - len(w)) + w) if left else (w + [-100] * (width - len(w))) for w in word_index])
        batch["example_id"] = torch.tensor(example_id)
        return batch

    return collate


def training_loss(prepared: Prepared, config: RunConfig) -> Loss:
    """The model's own loss (word_index and example_id stay out of its inputs)."""
    return model_loss(META_KEYS)


# ---------------------------------------------------------------------------------- model


def load_model(source: str, prepared: Prepared, tokenizer: Any, config: RunConfig) -> Any:
    from transformers import AutoModelForTokenClassification

    from ftkit.models import load_pretrained

    names = prepared.names
    model = load_pretrained(
        AutoModelForTokenClassification, source, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        new_head=True,  # the tagger's head is new (none in a base checkpoint, or another tag set)
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def eval_outputs(model: Any, batch: dict) -> dict[str, Any]:
    logits = model(**{k: v for k, v in batch.items() if k not in META_KEYS and k != "labels"}).logits
    return {"logits": logits.float(), "labels": batch["labels"], "word_index": batch["word_index"], "example_id": batch["example_id"]}


def word_predictions(logits: Any, word_index: Any, example_id: Any) -> dict[tuple[int, int], tuple[float, int]]:
    """(example, word) -> (confidence, tag id), keeping the most confident window per word."""
    confidence, tag = logits.float().softmax(-1).max(-1)
    rows, cols = (word_index >= 0).nonzero(as_tuple=True)
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for ex, word, conf, t in zip(example_id[rows].tolist(), word_index[rows, cols].tolist(), confidence[rows, cols].tolist(), tag[rows, cols].tolist()):
        if (ex, word) not in best or conf > best[(ex, word)][0]:
            best[(ex, word)] = (conf, t)
    return best


def compute_metrics(gathered: dict[str, Any], prepared: Prepared, split: str) -> dict[str, Any]:
    """seqeval on full word sequences; a word no window scored counts as predicted 'O'."""
    import torch.nn.functional as F

    _, gold, pred, unscored = predicted_tags(gathered, prepared, split)
    result = metrics.entities(gold, pred, prepared.extra.mode)
    labels = gathered["labels"]
    mask = labels != -100
    result["loss"] = float(F.cross_entropy(gathered["logits"][mask], labels[mask])) if mask.any() else float("nan")
    result["words_unscored"] = unscored
    return result


def predicted_tags(gathered: dict[str, Any], prepared: Prepared, split: str) -> tuple[list[int], list[list[str]], list[list[str]], int]:
    """(examples served, their gold tags, their predicted tags, words no window scored: 'O')."""
    best = word_predictions(gathered["logits"], gathered["word_index"], gathered["example_id"])
    # Only examples the loader served (train.eval_max_samples may score the first rows only).
    served = sorted(set(gathered["example_id"].tolist()))
    gold = [prepared.extra.tags[split][ex] for ex in served]
    pred, unscored = [], 0
    outside = prepared.names.index("O") if "O" in prepared.names else 0
    for ex, tags in zip(served, gold):
        row = []
        for w in range(len(tags)):
            hit = best.get((ex, w))
            unscored += hit is None
            row.append(prepared.names[hit[1] if hit else outside])
        pred.append(row)
    return served, gold, pred, unscored


def errors(gathered: dict[str, Any], prepared: Prepared, split: str) -> list[dict[str, Any]]:
    """Every sentence whose entities differ from the gold ones, most wrong entities first:
    {"tokens", "gold", "predicted"}, entities as {"type", "start", "end" (word indices, end
    exclusive), "text"} (seqeval's reading of IOB2 tags)."""
    from seqeval.metrics.sequence_labeling import get_entities

    served, gold, pred, _ = predicted_tags(gathered, prepared, split)
    rows = []
    for ex, gold_tags, pred_tags in zip(served, gold, pred):
        words = prepared.extra.words[split][ex]
        spans = [{(kind, start, end + 1) for kind, start, end in get_entities(tags)} for tags in (gold_tags, pred_tags)]
        if spans[0] != spans[1]:
            shown = [[{"type": k, "start": s, "end": e, "text": " ".join(words[s:e])} for k, s, e in sorted(side, key=lambda x: x[1:])] for side in spans]
            rows.append(({"tokens": words, "gold": shown[0], "predicted": shown[1]}, len(spans[0] ^ spans[1])))
    return [row for row, _ in sorted(rows, key=lambda pair: -pair[1])]


def figures(split: str, scores: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """F1 per entity type: which kinds of entity the model finds."""
    from ftkit import plots

    yield from plots.named(PLOTS[0], plots.entity_f1(split, scores.get("per_type")))


# ---------------------------------------------------------------------------------- model card

HUB_METRICS = ["seqeval", "f1", "precision", "recall"]  # huggingface.co/metrics ids
data_columns = classification.data_columns  # a text (words) column and a label (tags) column


def describe(config: RunConfig, names: list[str]) -> str:
    return f"Tags the entities in a text (types: {', '.join(names)})." if names else "Tags the entities in a text."


def hub_metrics(config: RunConfig) -> list[str]:
    return list(HUB_METRICS)


def usage(config: RunConfig) -> Usage:
    return Usage("Angela Merkel met Emmanuel Macron in Paris.", ', aggregation_strategy="first"')


def check_metric_keys(config: RunConfig, names: list[str]) -> None:
    kinds = sorted({parse_tag(n)[1] for n in names if n != "O"})  # type: ignore[type-var]
    sample = metrics.entities([[f"B-{k}" for k in kinds] or ["O"]], [[f"B-{k}" for k in kinds] or ["O"]])
    sample["loss"] = 0.0
    metrics.check_reported([config.metrics.primary, *config.expect], sample, f"tags {names}", hidden=("samples", "entities"))


# ---------------------------------------------------------------------------------- predict


def predict_inputs(source: str | list[str], column: str | None, config: RunConfig | None, encoding: str) -> Iterator[dict[str, Any]]:
    """{"text"} records (lines, --text, a "text" column), tagged as entities in the text; or
    {"tokens"} records from a table's or CoNLL file's words column (the run's, else "tokens")."""
    words_column = config.data.text_column if config else CONVENTIONAL_COLUMNS["text"]
    return read_texts(source, column, ["text", words_column], encoding, words=True)


def input_size(record: dict[str, Any]) -> int:
    return len(record["tokens"] if "tokens" in record else record["text"])


def predict_defaults(options: Any, config: RunConfig) -> None:
    """Windows over long inputs overlap as in training, unless --stride says otherwise."""
    if options.stride is None:
        options.stride = config.train.stride


def predictor(model: Any, tokenizer: Any, options: Any):
    """A function from input records to output records: {"text"} -> entities with character
    offsets (transformers' token-classification pipeline, aggregated); {"tokens"} -> tags."""
    import warnings

    from transformers import pipeline

    if options.stride is None:  # a bare model folder: a quarter window (a fixed 32 may not fit)
        options.stride = min(32, options.max_length // 4)
    if options.stride >= options.max_length // 2:
        raise FtkitError(f"--stride {options.stride} must be below half of the {options.max_length}-token window; use --stride {options.max_length // 4}")

    # Byte-level BPE and SentencePiece tokenizers make the pipeline guess word boundaries (from
    # spaces); it says so once per call. That is the intended behaviour here, not news.
    warnings.filterwarnings("ignore", message="Tokenizer does not support real words")
    tokenizer.model_max_length = options.max_length  # the pipeline windows long texts at this size
    ner = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=options.aggregation, stride=options.stride, device=model.device)
    names = model.config.id2label

    def run(records: list[dict]) -> list[dict]:
        out: list[Any] = [None] * len(records)
        texts = [(i, r["text"]) for i, r in enumerate(records) if "tokens" not in r]
        if texts:
            found = ner([t for _, t in texts], batch_size=options.batch_size)
            for (i, text), entities in zip(texts, found):
                spans = [_entity(text, e) for e in entities]
                out[i] = {"text": text, "entities": [e for e in spans if e["word"]]}  # not bare spaces
        words = [(i, [str(w) for w in r["tokens"]]) for i, r in enumerate(records) if "tokens" in r]
        if words:
            for (i, seq), tags in zip(words, predict_words(model, tokenizer, [s for _, s in words], options, names)):
                out[i] = {"tokens": seq, "tags": tags}
        return out

    return run


def _entity(text: str, entity: dict) -> dict:
    """Pipeline entity -> plain JSON types, `word` as the exact (stripped) text it covers."""
    start, end = int(entity["start"]), int(entity["end"])
    while start < end and text[start].isspace():  # byte-level BPE offsets include the space
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return {"entity_group": entity["entity_group"], "word": text[start:end], "start": start, "end": end, "score": float(entity["score"])}


def predict_words(model: Any, tokenizer: Any, words: list[list[str]], options: Any, names: dict) -> list[list[str]]:
    """Tags for pre-tokenized input, windowed like evaluation."""
    import torch

    limit = text_limit(options.max_length)
    words = [cut_texts(seq, limit)[0] for seq in words]  # as in training; the output keeps the whole words
    enc = encode(tokenizer, words, None, list(range(len(words))), options.max_length, options.stride, False, list(names.values()))
    collate = collator(tokenizer, None)
    windows = [{k: enc[k][i] for k in enc} for i in range(len(enc["input_ids"]))]  # labels are all -100
    best: dict = {}
    for start in range(0, len(windows), options.batch_size):
        batch = {k: v.to(model.device) for k, v in collate(windows[start : start + options.batch_size]).items()}
        with torch.inference_mode():
            logits = model(**{k: v for k, v in batch.items() if k not in META_KEYS and k != "labels"}).logits
        for key, value in word_predictions(logits.cpu(), batch["word_index"].cpu(), batch["example_id"].cpu()).items():
            if key not in best or value[0] > best[key][0]:
                best[key] = value
    outside = next((i for i, n in names.items() if n == "O"), 0)
    return [[names[best.get((ex, w), (0.0, outside))[1]] for w in range(len(seq))] for ex, seq in enumerate(words)]
