"""Real learning for speech recognition: Whisper tiny.en, fine-tuned a few steps on the synthetic
voices of ../shared/datasets/speech-synth, transcribes its held-out validation clips better than
zero-shot (WER down).

The checkpoint is the folder `shared/tools/real-models/build.sh DIR whisper-tiny.en` writes,
found in conftest.REAL_MODELS (.real-models in the clone, or $FTKIT_REAL_MODELS); the test skips cleanly when either is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, real_model

pytestmark = pytest.mark.real
pytest.importorskip("soundfile")
pytest.importorskip("jiwer")

DATA = ROOT.parent / "shared" / "datasets" / "speech-synth"
STEPS = 12  # batch 8: 96 of the 120 training clips, under one epoch


def whisper() -> Path:
    return real_model("whisper-tiny.en")


def test_whisper_learns_the_synthetic_voices(cli, tmp_path):
    model = whisper()
    if not (DATA / "train" / "metadata.csv").is_file():
        pytest.skip(f"{DATA} not present")
    zero = tmp_path / "zero-shot.json"
    code, _, err = cli("evaluate", model, "--data", DATA / "validation", "--output", zero)
    assert code == 0, err
    before = json.loads(zero.read_text(encoding="utf-8"))["wer"]
    out = tmp_path / "run"
    code, _, err = cli("finetune", "speech", "--model", model, "--train", DATA / "train", "--validation", DATA / "validation",
                       "--max-steps", str(STEPS), "--batch-size", "8", "--learning-rate", "1e-4", "--set", "warmup_ratio=0.0",
                       "--set", "checkpoint_every=null", "-o", out, "--quiet")
    assert code == 0, err
    after = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["validation"]["wer"]
    print(f"speech-synth validation WER: zero-shot {before:.3f}, after {STEPS} steps {after:.3f}")
    assert after < before - 0.05, (before, after)
