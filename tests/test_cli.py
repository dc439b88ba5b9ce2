"""End to end through the real entry point: finetune -> predict -> evaluate -> reproduce,
the output folder contract, pipeline() loading, and the errors a user meets first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import write_jsonl

# The fixture data is learnable in a few seconds with these settings (tiny models, high LR).
FAST = ["--epochs", "8", "--batch-size", "16", "--learning-rate", "3e-3", "--quiet"]


def data_args(files: dict[str, Path]) -> list[str]:
    return ["--train", files["train"], "--validation", files["validation"], "--test", files["test"]]


def gold(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def runs(tiny_models, sentiment_files, tmp_path_factory) -> dict[str, Path]:
    """One fine-tuned run folder per architecture (BERT, GPT-2, T5), shared by the tests."""
    from ftkit.cli import main

    out = {}
    for arch, model in tiny_models.items():
        run_dir = tmp_path_factory.mktemp("runs") / arch
        try:
            main(["finetune", "sentiment", "--model", str(model), *map(str, data_args(sentiment_files)), "--output-dir", str(run_dir), *FAST])
        except SystemExit as exit_:
            assert exit_.code in (0, None), f"finetune {arch} exited {exit_.code}"
        out[arch] = run_dir
    return out


@pytest.mark.parametrize("arch", ["bert", "gpt2", "t5"])
def test_output_folder_contract(runs, arch):
    run = runs[arch]
    model = run / "model"
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "README.md"):
        assert (model / name).is_file(), name
    assert not [*run.glob("*.tmp"), *run.glob("*.ftkit-tmp")] and not (run / "model.tmp").exists()
    config = json.loads((model / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}  # names, never LABEL_0
    assert config["label2id"] == {"negative": 0, "positive": 1}

    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"train", "validation", "test"}
    assert {"loss", "runtime_s", "samples_per_second"} <= set(metrics["train"])
    for split in ("validation", "test"):
        assert {"accuracy", "precision", "recall", "f1", "per_class"} <= set(metrics[split])
        assert set(metrics[split]["per_class"]) == {"negative", "positive"}
    assert metrics["test"]["samples"] == 48 and metrics["validation"]["samples"] == 40
    assert metrics["test"]["accuracy"] >= 0.85, "the tiny model should learn the fixture task"

    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["model"] == str(Path(resolved["model"]))
    assert resolved["data"]["text_column"] == "text"  # adapted from the recipe's 'sentence'
    assert resolved["train"]["learning_rate"] == 3e-3

    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {r["type"] for r in records} == {"train", "eval"}
    assert [r["step"] for r in records if r["type"] == "train"] == sorted(r["step"] for r in records if r["type"] == "train")

    card = (model / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["pipeline_tag"] == "text-classification"
    assert "base_model" not in front  # a local base model: Hub metadata takes Hub ids only
    assert "ftkit finetune" in card and "learning_rate" in card


@pytest.mark.parametrize("arch", ["bert", "gpt2", "t5"])
def test_predict_matches_metrics_and_pipeline(runs, sentiment_files, cli, tmp_path, arch):
    """Labels from `predict` reproduce metrics.json's test accuracy and equal pipeline()'s."""
    from transformers import pipeline

    out_file = tmp_path / "pred.jsonl"
    code, _, err = cli("predict", runs[arch], sentiment_files["test"], "--output", out_file, "--batch-size", "5")
    assert code == 0, err
    preds = gold(out_file)
    rows = gold(sentiment_files["test"])
    assert [p["text"] for p in preds] == [r["text"] for r in rows]  # one per input, in order
    accuracy = sum(p["label"] == r["label"] for p, r in zip(preds, rows)) / len(rows)
    metrics = json.loads((runs[arch] / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test"]["accuracy"])
    assert all(0.5 <= p["score"] <= 1.0 for p in preds)

    classifier = pipeline("text-classification", model=str(runs[arch] / "model"))
    piped = classifier([r["text"] for r in rows[:12]])
    assert [p["label"] for p in piped] == [p["label"] for p in preds[:12]]
    assert [round(p["score"], 4) for p in piped] == [round(p["score"], 4) for p in preds[:12]]


def test_predict_inputs(runs, cli, tmp_path, monkeypatch):
    import io

    texts = ["a great and moving film", "dull boring plot", "superb acting"]
    txt = tmp_path / "in.txt"
    txt.write_text(texts[0] + "\n\n" + "\n".join(texts[1:]) + "\n")
    code, out, _ = cli("predict", runs["bert"], txt)
    assert code == 0 and [json.loads(l)["text"] for l in out.splitlines()] == texts  # blank line skipped

    csv_file = tmp_path / "in.csv"
    csv_file.write_text("id,review\n1,a great and moving film\n2,\"dull, boring plot\"\n")
    code, out, err = cli("predict", runs["bert"], csv_file, "--text-column", "review", "--top-k", "2")
    assert code == 0, err
    records = [json.loads(l) for l in out.splitlines()]
    assert [r["text"] for r in records] == ["a great and moving film", "dull, boring plot"]
    assert all(len(r["top_k"]) == 2 and r["top_k"][0]["label"] == r["label"] for r in records)
    assert records[0]["label"] == "positive" and records[1]["label"] == "negative"

    code, _, err = cli("predict", runs["bert"], csv_file)
    assert code == 2 and "review" in err and "--text-column" in err

    words = write_jsonl(tmp_path / "words.jsonl", [{"text": ["a", "list", "of", "words"]}])  # words, for a classifier
    code, out, err = cli("predict", runs["bert"], words)
    assert code == 2 and not out and len(err.strip().splitlines()) == 1, err
    assert "line/row 1: the text is a list, not text" in err and "token-classification" in err

    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(texts) + "\n"))
    code, out, _ = cli("predict", runs["bert"] / "model", "-")
    assert code == 0 and [json.loads(l)["text"] for l in out.splitlines()] == texts


def test_evaluate_equals_training_metrics(runs, sentiment_files, cli, tmp_path):
    out_file = tmp_path / "eval.json"
    code, out, err = cli("evaluate", runs["bert"], "--data", sentiment_files["test"], "--output", out_file)
    assert code == 0, err
    assert "accuracy" in out
    result = json.loads(out_file.read_text())
    trained = json.loads((runs["bert"] / "metrics.json").read_text())["test"]
    for key in ("accuracy", "precision", "recall", "f1", "samples"):
        assert result[key] == pytest.approx(trained[key]), key


def test_evaluate_rejects_unknown_label(runs, tmp_path, cli):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine film", "label": "neutral"}, {"text": "great", "label": "positive"}])
    code, _, err = cli("evaluate", runs["bert"], "--data", bad)
    assert code == 2 and "'neutral'" in err and "negative, positive" in err


def test_rerun_from_config_yaml(runs, cli, tmp_path):
    code, _, err = cli("finetune", runs["bert"] / "config.yaml", "--max-steps", "2", "-o", tmp_path / "again", "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["train"]["steps"] == 2


@pytest.mark.parametrize("bar, expected", [(">= 0.8", 0), ("< 0.5", 1)])
def test_reproduce_exit_codes(tiny_models, sentiment_files, cli, tmp_path, bar, expected):
    code, out, err = cli(
        "reproduce", "sentiment", "--model", tiny_models["bert"], *data_args(sentiment_files),
        "-o", tmp_path / "run", *FAST, "--set", f"expect.accuracy={bar}",
    )
    assert code == expected, err
    assert ("pass" if expected == 0 else "FAIL") in out


def test_integer_labels_and_carved_validation(tiny_models, sentiment_files, cli, tmp_path):
    """0/1 labels take the recipe's names; without a validation file one is carved and said."""
    rows = gold(sentiment_files["train"])
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": r["text"], "label": int(r["label"] == "positive")} for r in rows])
    code, _, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", train, "-o", tmp_path / "run", "--max-steps", "3")
    assert code == 0, err
    assert "carved 16 rows" in err
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["validation"]["samples"] == 16


def test_spam_recipe_metric_is_spam_f1(tiny_models, tmp_path, cli):
    rows = [{"text": f"win free money now {i}" if i % 4 == 0 else f"meeting notes for tomorrow {i}", "label": "spam" if i % 4 == 0 else "ham"} for i in range(80)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    code, out, err = cli("reproduce", "spam", "--model", tiny_models["bert"], "--train", train, "-o", tmp_path / "run", "--max-steps", "2", "--set", "expect.per_class.spam.f1=>= 0.0")
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "spam" in metrics["test"]["per_class"] and metrics["test"]["samples"] == 8  # carved 10% test
    assert "per_class.spam.f1" in out


# ------------------------------------------------------------------------ errors a user meets


def one_line_error(code: int, err: str, expected_code: int = 2) -> str:
    assert code == expected_code, err
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unknown_recipe_suggests_closest(cli):
    line = one_line_error(*cli("finetune", "sentimen", "--model", "x")[::2])
    assert "Did you mean 'sentiment'" in line and "recipes list" in line


def test_model_folder_without_config(cli, tmp_path, sentiment_files):
    line = one_line_error(*cli("finetune", "sentiment", "--model", tmp_path, "--train", sentiment_files["train"])[::2])
    assert "config.json" in line


def test_model_of_wrong_family(cli, tmp_path, sentiment_files):
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37).save_pretrained(tmp_path / "vit")
    line = one_line_error(*cli("finetune", "sentiment", "--model", tmp_path / "vit", "--train", sentiment_files["train"], "-o", tmp_path / "o")[::2])
    assert "'vit'" in line and "sequence classification" in line and "bert" in line


def test_unreachable_hub_model_names_local_folder(cli, sentiment_files, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = one_line_error(*cli("finetune", "sentiment", "--model", "no-such-org/no-such-model", "--train", sentiment_files["train"], "-o", tmp_path / "o")[::2])
    assert "no-such-org/no-such-model" in line and "--model /path/to/model" in line


def test_unreachable_hub_dataset_names_local_files(cli, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    line = one_line_error(*cli("finetune", "sentiment", "--model", tiny_models["bert"], "--dataset", "no-such/dataset-xyz", "-o", tmp_path / "o")[::2])
    assert "no-such/dataset-xyz" in line and "--train FILE" in line


def test_label_unseen_in_training(cli, tiny_models, sentiment_files, tmp_path):
    val = write_jsonl(tmp_path / "val.jsonl", [{"text": "great", "label": "positive"}, {"text": "meh", "label": "mixed"}])
    line = one_line_error(*cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"], "--validation", val, "-o", tmp_path / "o")[::2])
    assert "'mixed'" in line and "line/row 2" in line and str(val) in line


def test_single_class_training_data(cli, tiny_models, tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": f"great film {i}", "label": "positive"} for i in range(20)])
    line = one_line_error(*cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", train, "-o", tmp_path / "o")[::2])
    assert "two classes" in line


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--set", "train.learning_rat=1e-4"], "learning_rate"),
        (["--set", "train.batch_size=lots"], "must be an integer"),
        (["--batch-size", "0"], "train.batch_size"),
        (["--epochs", "-1"], "train.epochs"),
        (["--mixed-precision", "fp8"], "no, fp16, bf16"),
        (["--max-length", "4096"], "128 tokens"),
        (["--text-column", "body"], "Columns present: text, label"),
    ],
)
def test_bad_options(cli, tiny_models, sentiment_files, tmp_path, args, needle):
    line = one_line_error(*cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"], "-o", tmp_path / "o", *args)[::2])
    assert needle in line


def test_output_dir_is_a_file_or_a_finished_run(cli, tiny_models, sentiment_files, tmp_path, runs):
    afile = tmp_path / "file"
    afile.write_text("x")
    line = one_line_error(*cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"], "-o", afile)[::2])
    assert "is a file" in line
    line = one_line_error(*cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"], "-o", runs["bert"])[::2])
    assert "--overwrite" in line


def test_predict_on_a_folder_that_is_not_a_run(cli, tmp_path):
    (tmp_path / "in.txt").write_text("hello\n")
    line = one_line_error(*cli("predict", tmp_path, tmp_path / "in.txt")[::2])
    assert "not an ftkit run folder" in line


def test_best_model_is_kept_and_accumulation_counts_optimizer_steps(tiny_models, sentiment_files, cli, tmp_path):
    """160 rows / batch 16 = 10 batches per epoch; accumulating 3 -> 4 optimizer steps per epoch
    (the short last window steps too). The saved model is the best validation epoch's."""
    run = tmp_path / "run"
    code, _, err = cli(
        "finetune", "sentiment", "--model", tiny_models["bert"], *data_args(sentiment_files), "-o", run,
        "--epochs", "3", "--batch-size", "16", "--learning-rate", "3e-3", "--set", "train.gradient_accumulation_steps=3", "--quiet",
    )
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 12 and metrics["train"]["samples"] == 480
    evals = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines() if '"eval"' in l]
    validation = [e for e in evals if e["split"] == "validation"]
    assert [e["step"] for e in validation] == [4, 8, 12]
    best = max(validation, key=lambda e: e["accuracy"])  # first of equals wins: strictly better replaces
    assert metrics["validation"]["accuracy"] == best["accuracy"] and metrics["validation"]["step"] == best["step"]
    code, _, err = cli("evaluate", run, "--data", sentiment_files["validation"], "--output", tmp_path / "v.json")
    assert code == 0, err
    assert json.loads((tmp_path / "v.json").read_text())["accuracy"] == pytest.approx(best["accuracy"])


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
def test_training_from_other_formats(tiny_models, sentiment_files, cli, tmp_path, fmt):
    import pandas as pd

    frame = pd.DataFrame(gold(sentiment_files["train"])).rename(columns={"text": "review", "label": "sentiment"})
    path = tmp_path / f"train.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="," if fmt == "csv" else "\t", index=False)
    code, _, err = cli(
        "finetune", "sentiment", "--model", tiny_models["bert"], "--train", path, "--text-column", "review",
        "--label-column", "sentiment", "-o", tmp_path / "run", "--max-steps", "2", "--quiet",
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["validation"]["samples"] == 16 and metrics["train"]["steps"] == 2


def test_predict_streams(runs, monkeypatch):
    """Results for the first chunk are written before the rest of the input is read."""
    import io

    from ftkit import predict as predict_module
    from ftkit.runfiles import resolve_model_dir
    from ftkit.inference import load_for_inference

    task, model, tokenizer = load_for_inference(*resolve_model_dir(runs["bert"]))
    pulled = 0

    def endless():
        nonlocal pulled
        while True:
            pulled += 1
            yield {"text": f"great film number {pulled}"}

    class Sink(io.StringIO):
        def write(self, text):
            raise StopIteration(pulled)  # stop at the first write and report how much was read

    batch = 4
    with pytest.raises(StopIteration) as stop:
        run = task.predictor(model, tokenizer, predict_module.PredictOptions(batch_size=batch, max_length=32))
        predict_module._write_all(run, endless(), Sink(), batch)
    assert stop.value.value == batch * predict_module.CHUNK_BATCHES


@pytest.mark.parametrize("arch", ["bert", "t5"])
def test_model_card_metadata_metrics_and_plots(runs, arch):
    """The card's metadata parses as the Hub parses it, its results are metrics.json's, and every
    plot it shows is in OUT/plots and in model/plots (which travels with the model to the Hub)."""
    import re

    from huggingface_hub import ModelCard

    run = runs[arch]
    card = ModelCard.load(run / "model" / "README.md")
    data = card.data
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert data.pipeline_tag == "text-classification" and data.license == "other" and data.library_name == "transformers"
    assert data.metrics == ["accuracy", "f1", "precision", "recall"] and {"ftkit", "sentiment"} <= set(data.tags)
    results = {r.metric_name: r for r in data.eval_results}
    assert set(results) == {"accuracy", "precision", "recall", "f1"}  # the recipe's metric (accuracy) first
    assert data.eval_results[0].metric_name == "accuracy"
    for name, result in results.items():
        assert result.metric_value == round(test[name], 6) and result.dataset_split == "test"
    shown = re.findall(r"!\[[^\]]+\]\(plots/([^)]+)\)", card.text)
    assert shown[:2] == ["loss.png", "metric.png"] and "confusion_matrix.png" in shown
    assert sorted(shown) == sorted(p.name for p in (run / "plots").iterdir())
    for name in shown:
        png = (run / "plots" / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and png == (run / "model" / "plots" / name).read_bytes()
    assert "## Intended use" in card.text and "Classifies a text into one of: negative, positive." in card.text
    reproduce = card.text.split("## Reproduce", 1)[1].split("## Use", 1)[0]
    assert "ftkit finetune sentiment" in reproduce and str(run) not in reproduce  # a rerun makes its own folder


def test_confusion_matrix_agrees_with_the_scores(runs):
    test = json.loads((runs["bert"] / "metrics.json").read_text())["test"]
    matrix = test["confusion_matrix"]
    assert matrix["labels"] == ["negative", "positive"]
    counts = matrix["matrix"]
    assert sum(map(sum, counts)) == test["samples"] == 48
    assert (counts[0][0] + counts[1][1]) / 48 == test["accuracy"]
    for i, name in enumerate(matrix["labels"]):
        assert sum(counts[i]) == test["per_class"][name]["support"]  # rows are gold
        column = counts[0][i] + counts[1][i]
        assert (counts[i][i] / column if column else 0.0) == pytest.approx(test["per_class"][name]["precision"])


def test_card_of_a_hub_recipe_names_base_model_and_dataset():
    """With a Hub model and dataset (what users run), the metadata links both."""
    from huggingface_hub import ModelCard

    from ftkit.card import render
    from ftkit.recipes import load_config

    config, _ = load_config("spam")
    results = {"test": {"accuracy": 0.98, "f1": 0.95, "loss": 0.1, "samples": 558,
                        "per_class": {"ham": {"precision": 0.99, "recall": 0.99, "f1": 0.99, "support": 483},
                                      "spam": {"precision": 0.93, "recall": 0.94, "f1": 0.9345678, "support": 75}}}}
    card = ModelCard(render(config, results, "ftkit finetune spam", "text-classification", plots=[]))
    assert card.data.base_model == "bert-base-uncased" and card.data.datasets == ["ucirvine/sms_spam"]
    first = card.data.eval_results[0]
    assert (first.metric_name, first.metric_value, first.dataset_type) == ("per_class.spam.f1", 0.934568, "ucirvine/sms_spam")
    assert "## Plots" not in card.text


def test_predict_reads_each_text_with_the_runs_prefix(tiny_models, sentiment_files, cli, tmp_path):
    """A run trained with data.prefix read every text with it: predict gives the model the
    same (the output keeps the text as given), and the card's example carries it."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "run"
    code, _, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"], "--max-steps", "2",
                       "--set", "data.prefix='review: '", "-o", out, "--quiet")
    assert code == 0, err
    code, printed, err = cli("predict", out, "--text", "a great film")
    assert code == 0, err
    record = json.loads(printed.strip())
    assert record["text"] == "a great film"
    model = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "model")

    def best(text: str) -> float:
        with torch.inference_mode():
            return model(**tokenizer(text, return_tensors="pt")).logits.softmax(-1).max().item()

    assert record["score"] == pytest.approx(best("review: a great film"), abs=1e-7)
    assert record["score"] != pytest.approx(best("a great film"), abs=1e-7)  # the prefix changes what the model reads
    assert "review: A gripping, beautifully shot film." in (out / "model" / "README.md").read_text()
