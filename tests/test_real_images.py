"""Real learning for image classification: an ImageNet EfficientNet-Lite0 fine-tuned on
Fashion-MNIST image folders moves validation accuracy well above its untrained head's.

The checkpoint is the folder `shared/tools/real-models/build.sh DIR efficientnet-lite0` writes,
found in conftest.REAL_MODELS (.real-models in the clone, or $FTKIT_REAL_MODELS); the data is ../shared/datasets/fashion-mnist (1000
train / 300 validation 28x28 grayscale PNGs, 10 classes). Skips cleanly when either is absent.

CPU cost: at Lite0's 224 x 224 one step of 32 images takes ~30 s here, so the test copies the
folder with its image processor set to 64 x 64 (a convolutional network reads any size; the
28-pixel images are upscaled either way) and trains a few dozen steps.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SHARED, real_model

pytestmark = pytest.mark.real

SIDE = 64  # pixels the copied processor resizes to (Lite0 pretrained at 224)
STEPS = 40


@pytest.fixture(scope="module")
def lite0(tmp_path_factory) -> Path:
    """The built Lite0 folder, copied with its processor at SIDE x SIDE."""
    built = real_model("efficientnet-lite0")
    folder = tmp_path_factory.mktemp("lite0") / "efficientnet-lite0"
    shutil.copytree(built, folder)
    processor = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
    processor["size"] = {"height": SIDE, "width": SIDE}
    processor["crop_size"] = {"height": SIDE, "width": SIDE}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def fashion() -> dict[str, Path]:
    root = SHARED / "fashion-mnist"
    if not (root / "train").is_dir():
        pytest.skip("../shared/datasets/fashion-mnist not present")
    return {"train": root / "train", "validation": root / "validation"}


def untrained(lite0: Path, fashion: dict[str, Path], folder: Path) -> Path:
    """Lite0 with a new, untrained 10-class head: the accuracy fine-tuning starts from."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    names = sorted(p.name for p in fashion["train"].iterdir() if p.is_dir())
    torch.manual_seed(0)
    model = AutoModelForImageClassification.from_pretrained(
        lite0, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}, ignore_mismatched_sizes=True
    )
    model.save_pretrained(folder)
    AutoImageProcessor.from_pretrained(lite0).save_pretrained(folder)
    return folder


def test_fine_tuning_lite0_lifts_fashion_mnist_accuracy(lite0, fashion, cli, tmp_path):
    import time

    before_file = tmp_path / "before.json"
    code, _, err = cli("evaluate", untrained(lite0, fashion, tmp_path / "untrained"), "--data", fashion["validation"], "--output", before_file)
    assert code == 0, err
    before = json.loads(before_file.read_text(encoding="utf-8"))["accuracy"]
    recipe = tmp_path / "fashion.yaml"
    recipe.write_text(f"name: fashion\ntask: image-classification\nmodel: {lite0}\ntrain:\n  batch_size: 32\n  learning_rate: 1.0e-3\n  seed: 0\n  logging_steps: 10\n", encoding="utf-8")
    start = time.monotonic()
    code, _, err = cli("finetune", recipe, "--train", fashion["train"], "--validation", fashion["validation"], "--max-steps", STEPS, "-o", tmp_path / "run", "--quiet")
    assert code == 0, err
    after = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))["validation"]["accuracy"]
    print(f"\nLite0 on fashion-mnist at {SIDE}px: validation accuracy {before:.3f} (untrained head) -> {after:.3f} after {STEPS} steps of 32 ({time.monotonic() - start:.0f} s)")
    assert before < 0.25 and after > before + 0.3
