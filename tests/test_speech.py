"""Speech recognition (Whisper) end to end on a tiny random Whisper built here, through the CLI.

The checkpoint is a WhisperConfig with d_model 32 and 2 + 2 layers, a byte-level BPE tokenizer
trained here on a few words with Whisper's special tokens, and a WhisperFeatureExtractor whose
window is 2 s (not 30: the encoder's input is 200 frames, so a step takes milliseconds). Clips are
sine tones written here as WAVs at 8 kHz (resampled to the extractor's 16 kHz on reading).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import build_whisper, call

pytest.importorskip("soundfile")
pytest.importorskip("jiwer")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 8000  # the WAVs' rate: the feature extractor's is 16000, so every clip is resampled


def write_tone(path: Path, hz: float, seconds: float, channels: int = 1) -> Path:
    import numpy as np
    import soundfile as sf

    t = np.arange(int(RATE * seconds)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * hz * t).astype("float32")
    sf.write(path, np.stack([tone] * channels, axis=1) if channels > 1 else tone, RATE)
    return path


def write_folder(folder: Path, rows: list[tuple[str, float, str]], seconds: float = 1.0) -> Path:
    """An audio folder: one WAV per row (tone frequency) and metadata.csv (file_name, transcription)."""
    folder.mkdir(parents=True)
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "transcription"])
        for i, (name, hz, text) in enumerate(rows):
            write_tone(folder / name, hz, seconds, channels=1 + i % 2)  # every other clip in stereo
            writer.writerow([name, text])
    return folder


SENTENCES = {220: "The cat sat on a mat.", 440: "Hello, world!", 660: "A dog ran far away."}


def rows(n: int, prefix: str) -> list[tuple[str, float, str]]:
    tones = list(SENTENCES)
    return [(f"{prefix}{i:02d}.wav", tones[i % 3], SENTENCES[tones[i % 3]]) for i in range(n)]


@pytest.fixture(scope="module")
def whisper(tmp_path_factory) -> Path:
    return build_whisper(tmp_path_factory.mktemp("whisper") / "model")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    return {"train": write_folder(root / "train", rows(12, "tr")), "validation": write_folder(root / "val", rows(3, "va")),
            "test": write_folder(root / "test", rows(3, "te"))}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, whisper) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny-speech.yaml"
    path.write_text(f"""\
# ftkit finetune tiny-speech.yaml --train clips/train --validation clips/val --test clips/test
name: tiny-speech
task: speech-recognition
model: {whisper}
data:
  target_column: transcription
  language: english               # the tiny checkpoint is English-only: not used, and said so
train:
  epochs: 2
  batch_size: 4
  learning_rate: 1.0e-3
  warmup_ratio: 0.0
  max_target_length: 32
  seed: 0
  logging_steps: 1
generation:
  max_new_tokens: 12
metrics:
  primary: wer
  greater_is_better: false
""", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(recipe, folders, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("speech-run") / "run"
    args = ["finetune", recipe, "--train", folders["train"], "--validation", folders["validation"], "--test", folders["test"], "-o", out, "--quiet"]
    assert call(args) == 0
    return out


def test_finetunes_on_an_audio_folder_and_scores_wer_and_cer(run):
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    for split in ("validation", "test"):
        scores = metrics[split]
        assert 0 <= scores["cer"] and 0 <= scores["wer"], scores
        assert scores["samples"] == 3 and scores["lengths"]["unit"] == "words"
    assert metrics["train"]["steps"] == 6  # 12 clips, batch 4, 2 epochs
    assert (run / "plots" / "lengths.png").is_file()
    card = (run / "model" / "README.md").read_text(encoding="utf-8")
    assert "automatic-speech-recognition" in card and "lower-cased, punctuation stripped" in card and "- wer" in card
    # in a speech model's terms: the folders' columns as read, no text-input length, clips to evaluate on
    assert "audio folders: metadata's `file_name` and `transcription` columns" in card
    assert "- max_target_length: 32" in card and "max_length:" not in card.replace("max_target_length", "")
    assert "numbers on speech like that data" in card and "--data your-clips/" in card


def test_predict_over_a_folder_keeps_input_order(run, folders, cli, tmp_path):
    out = tmp_path / "out.jsonl"
    code, _, err = cli("predict", run, folders["test"], "--output", out)
    assert code == 0, err
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [Path(r["file"]).name for r in lines] == [name for name, _, _ in rows(3, "te")]
    assert all(isinstance(r["text"], str) and set(r) == {"file", "text"} for r in lines)


def test_pipeline_loads_the_model_folder_and_agrees_with_predict(run, folders, cli, tmp_path):
    from transformers import pipeline

    from ftkit.tasks import audio

    asr = pipeline("automatic-speech-recognition", model=str(run / "model"))
    clip = folders["test"] / "te00.wav"
    heard = asr({"raw": audio.load(str(clip), 16000), "sampling_rate": 16000})["text"].strip()
    code, out, err = cli("predict", run, clip)
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["text"] == heard


def test_an_unreadable_clip_is_one_line_before_training(recipe, folders, cli, tmp_path):
    bad = write_folder(tmp_path / "bad", rows(4, "b"))
    (bad / "b02.wav").write_bytes(b"RIFF not really a wave file")
    out = tmp_path / "never"
    code, _, err = cli("finetune", recipe, "--train", bad, "--validation", folders["validation"], "-o", out, "--quiet")
    assert code == 2
    assert "b02.wav" in err and "not a readable audio file" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_table_with_an_audio_path_column_trains_and_long_clips_are_counted(recipe, folders, cli, tmp_path):
    """A jsonl whose audio column holds paths relative to it; a clip past the 2 s window is skipped with a count."""
    clips = tmp_path / "clips"
    clips.mkdir()
    lines = []
    for name, hz, text in rows(6, "j"):
        write_tone(clips / name, hz, 1.0)
        lines.append({"audio": f"clips/{name}", "transcription": text})
    write_tone(clips / "long.wav", 220, 3.0)
    lines.append({"audio": "clips/long.wav", "transcription": "the cat"})
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = cli("finetune", recipe, "--train", train, "--validation", folders["validation"], "--max-steps", "1", "-o", out)
    assert code == 0, err
    assert "skipped 1 clip(s) longer than 2 s" in err
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["train"]["steps"] == 1


def test_normalisation_is_lower_case_without_punctuation():
    from ftkit.tasks.speech import normalise

    assert normalise("  Hello,   World! It's “fine”. ") == "hello world its fine"


def test_evaluate_on_the_test_folder_gives_the_test_metrics(run, folders, cli):
    code, out, err = cli("evaluate", run, "--data", folders["test"], "--output", run.parent / "eval.json")
    assert code == 0, err
    scores = json.loads((run.parent / "eval.json").read_text(encoding="utf-8"))
    test = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["test"]
    assert scores["wer"] == pytest.approx(test["wer"]) and scores["cer"] == pytest.approx(test["cer"])
    assert scores["loss"] == pytest.approx(test["loss"], rel=1e-4)


def test_lora_trains_and_the_adapter_predicts(recipe, folders, cli, tmp_path):
    out = tmp_path / "lora"
    code, _, err = cli("finetune", recipe, "--train", folders["train"], "--validation", folders["validation"], "--lora", "--max-steps", "2", "-o", out, "--quiet")
    assert code == 0, err
    assert (out / "adapter" / "adapter_config.json").is_file()
    code, printed, err = cli("predict", out / "adapter", folders["test"])
    assert code == 0, err
    assert len(printed.splitlines()) == 3


def test_stopped_run_resumes_to_the_uninterrupted_metrics(run, recipe, folders, cli, tmp_path, monkeypatch):
    """SIGINT at step 3 of 6 (raised by the loss itself) checkpoints and exits 130; --resume ends
    with the uninterrupted run's metrics and weights (clips are read in the collator, in order)."""
    import signal

    from safetensors.torch import load_file

    from ftkit.tasks import speech
    from ftkit.tasks.family import Loss

    def stopping(prepared, config):
        loss, calls = speech.model_loss(speech.META_KEYS), []

        def compute(forward, batch):
            calls.append(1)
            if len(calls) == 3:
                signal.raise_signal(signal.SIGINT)  # as Ctrl-C during this step
            return loss.compute(forward, batch)

        return Loss(compute)

    out = tmp_path / "run"
    args = ["finetune", recipe, "--train", folders["train"], "--validation", folders["validation"], "--test", folders["test"], "-o", out, "--quiet",
            "--set", "checkpoint_every=1"]
    with monkeypatch.context() as patch:
        patch.setattr(speech, "training_loss", stopping)
        code, _, err = cli(*args)
    assert code == 130, err
    code, _, err = cli(*args, "--resume")
    assert code == 0, err
    timing = {"runtime_s", "samples_per_second", "eval_runtime_s"}
    metrics = [json.loads((r / "metrics.json").read_text(encoding="utf-8")) for r in (out, run)]
    for m in metrics:
        m["train"] = {k: v for k, v in m["train"].items() if k not in timing}
    assert metrics[0] == metrics[1]
    resumed, whole = (load_file(str(r / "model" / "model.safetensors")) for r in (out, run))
    assert resumed.keys() == whole.keys() and all(bool((resumed[k] == whole[k]).all()) for k in whole)


def test_a_hub_style_dataset_with_an_audio_column_trains(recipe, folders, cli, tmp_path, monkeypatch):
    """A dataset folder of parquet files whose audio column is datasets' Audio (as Hub datasets
    are): ftkit reads the encoded bytes itself (datasets would decode with torchcodec)."""
    import datasets

    root = tmp_path / "hub-like"
    root.mkdir()
    for split, folder in folders.items():
        names = [name for name, _, _ in rows({"train": 12}.get(split, 3), {"train": "tr", "validation": "va", "test": "te"}[split])]
        table = datasets.Dataset.from_dict({
            "audio": [{"bytes": (folder / name).read_bytes(), "path": name} for name in names],
            "transcription": [SENTENCES[list(SENTENCES)[i % 3]] for i in range(len(names))],
        }).cast_column("audio", datasets.Audio(decode=False)).cast_column("audio", datasets.Audio())
        table.to_parquet(str(root / f"{split}-00000-of-00001.parquet"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    code, _, err = cli("finetune", recipe, "--dataset", root, "--max-steps", "1", "-o", out, "--quiet")
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["test"]["samples"] == 3


def test_reproduce_checks_the_recipes_bars(recipe, folders, cli, tmp_path):
    """`ftkit reproduce` on a speech recipe: exit 0 when every expect: bar holds, 1 naming the
    bar when one fails (no WER is below 0)."""
    data = ["--train", folders["train"], "--validation", folders["validation"], "--test", folders["test"], "--max-steps", "2", "--quiet"]
    code, _, err = cli("reproduce", recipe, *data, "-o", tmp_path / "ok", "--set", "expect.cer=>= 0.0")
    assert code == 0, err
    code, out, err = cli("reproduce", recipe, *data, "-o", tmp_path / "bar", "--set", "expect.wer=< 0.0")
    assert code == 1 and "wer" in out + err, (out, err)
