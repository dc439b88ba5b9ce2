"""LoRA (--lora, --merge) for every task family: only the adapter and the new head train, the
base weights stay as they were, the adapter file holds exactly what trained, and the merged
model/ loads in pipeline() and predicts what the adapter run predicts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conftest import write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LORA = ["--lora", "--merge", "--lora-r", "4", "--lora-alpha", "8", "--lora-dropout", "0.0"]
QUICK = ["--max-steps", "12", "--batch-size", "8", "--learning-rate", "1e-2", "--max-length", "96", "--quiet", "--set", "train.logging_steps=4"]
TEXTS = ["great film with a superb cast", "awful boring plot", "Alice met Bob in Paris", "the story was dull"]


@pytest.fixture(scope="module")
def generative_files(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Summaries (the first sentence of a document) and plain documents for the causal LM."""
    root = tmp_path_factory.mktemp("lora-data")
    rng = random.Random(5)
    words = "the film plot cast was great dull moving poor story".split()
    out: dict[str, dict[str, Path]] = {"summary": {}, "text": {}}
    for split, n in (("train", 48), ("validation", 6), ("test", 6)):
        rows = []
        for _ in range(n):
            sentences = [" ".join(rng.choice(words) for _ in range(5)) for _ in range(2)]
            rows.append({"document": ". ".join(sentences) + ".", "summary": sentences[0] + "."})
        out["summary"][split] = write_jsonl(root / f"summary-{split}.jsonl", rows)
        out["text"][split] = write_jsonl(root / f"text-{split}.jsonl", [{"text": r["document"]} for r in rows])
    return out


# family -> (recipe, tiny model, data fixture key, pipeline task or None, auto class)
FAMILIES = {
    "classification": ("sentiment", "bert", "sentiment", "text-classification", "AutoModelForSequenceClassification"),
    "ner": ("ner", "bert", "ner", "token-classification", "AutoModelForTokenClassification"),
    "seq2seq": ("summarization", "t5", "summary", None, "AutoModelForSeq2SeqLM"),
    "causal-lm": ("generation", "gpt2", "text", "text-generation", "AutoModelForCausalLM"),
}


@pytest.fixture(scope="module")
def lora_runs(tiny_models, sentiment_files, ner_files, generative_files, tmp_path_factory) -> dict[str, Path]:
    from ftkit.cli import main

    data = {"sentiment": sentiment_files, "ner": ner_files, **generative_files}
    out = {}
    for family, (recipe, model, key, _, _) in FAMILIES.items():
        files = data[key]
        out[family] = tmp_path_factory.mktemp("lora-runs") / family
        args = ["finetune", recipe, "--model", tiny_models[model], "--train", files["train"], "--validation", files["validation"],
                "--test", files["test"], "-o", out[family], *LORA, *QUICK]
        if family == "seq2seq":
            args += ["--set", "generation.max_new_tokens=6"]
        try:
            main([str(a) for a in args])
        except SystemExit as exit_:
            assert exit_.code in (0, None), f"{family} exited {exit_.code}"
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_only_the_adapter_and_head_train(lora_runs, tiny_models, family):
    from safetensors.torch import load_file

    run = lora_runs[family]
    train = json.loads((run / "metrics.json").read_text())["train"]
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    # what trained is exactly what the adapter file holds: LoRA matrices (+ the new head)
    assert train["trainable_parameters"] == sum(t.numel() for t in adapter.values())
    assert train["trainable_parameters"] < train["parameters"] / 3
    assert any("lora_A" in k for k in adapter) and any("lora_B" in k for k in adapter)
    if family in ("classification", "ner"):
        assert any("classifier" in k for k in adapter), "the new head trains in full and is saved with the adapter"
    # LoRA B starts at zero: a non-zero B means the adapter was trained
    assert max(float(t.abs().max()) for k, t in adapter.items() if "lora_B" in k) > 0
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8
    assert Path(config["base_model_name_or_path"]) == Path(tiny_models[FAMILIES[family][1]]).resolve()


@pytest.mark.parametrize("family", ["classification", "causal-lm"])
def test_merged_model_changes_only_the_adapted_layers(lora_runs, tiny_models, family):
    """Embeddings and layers without an adapter are the base's, bit for bit; adapted ones moved."""
    from safetensors.torch import load_file

    recipe, arch, *_ = FAMILIES[family]
    base = load_file(str(Path(tiny_models[arch]) / "model.safetensors"))
    merged = load_file(str(lora_runs[family] / "model" / "model.safetensors"))
    adapted = json.loads((lora_runs[family] / "adapter" / "adapter_config.json").read_text())["target_modules"]
    same = changed = 0
    for name, tensor in merged.items():
        key = next((k for k in base if name.endswith(k) or k.endswith(name.split(".", 1)[-1])), None)
        if key is None or base[key].shape != tensor.shape:
            continue  # the new head, or names the architecture prefixes differently
        if any(f".{m}." in f".{name}" for m in adapted) and name.endswith("weight"):
            changed += int(not (base[key] == tensor).all())
        else:
            assert (base[key] == tensor).all(), f"{name} is not adapted, yet it changed"
            same += 1
    assert changed > 0 and same > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_and_merged_model_predict_alike(lora_runs, cli, tmp_path, family):
    """`ftkit predict` on adapter/ (base + adapter, merged at load) equals predict on model/."""
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    extra = ["--max-new-tokens", "4", "--seed", "0"] if family in ("seq2seq", "causal-lm") else []  # the generation recipe samples
    code, from_adapter, err = cli("predict", lora_runs[family] / "adapter", inputs, *extra)
    assert code == 0, err
    code, from_model, err = cli("predict", lora_runs[family], inputs, *extra)
    assert code == 0, err
    a, m = ([json.loads(line) for line in out.splitlines()] for out in (from_adapter, from_model))
    assert len(a) == len(TEXTS) == len(m)
    for x, y in zip(a, m):
        assert {k: v for k, v in x.items() if k != "score"} == {k: v for k, v in y.items() if k != "score"}
        if "score" in x:
            assert x["score"] == pytest.approx(y["score"], abs=1e-5)


@pytest.mark.parametrize("family", ["classification", "ner", "causal-lm"])
def test_merged_model_loads_in_pipeline(lora_runs, family):
    from transformers import pipeline

    from ftkit.inference import load_for_inference

    task = FAMILIES[family][3]
    run = lora_runs[family]
    kwargs = {"aggregation_strategy": "first"} if family == "ner" else {}
    pipe = pipeline(task, model=str(run / "model"), **kwargs)
    _, model, _ = load_for_inference(run / "adapter", None)  # the adapter, merged at load
    if family == "classification":
        labels = json.loads((run / "model" / "config.json").read_text())["id2label"]
        assert sorted(labels.values()) == ["negative", "positive"]
        assert {r["label"] for r in pipe(TEXTS)} <= {"negative", "positive"}
        assert model.config.id2label == pipe.model.config.id2label
    merged_state, adapter_state = pipe.model.state_dict(), model.state_dict()
    for name, tensor in merged_state.items():
        assert (tensor - adapter_state[name]).abs().max() <= 1e-6, name


def test_evaluate_on_the_adapter_equals_the_test_metrics(lora_runs, sentiment_files, cli):
    code, out, err = cli("evaluate", lora_runs["classification"] / "adapter", "--data", sentiment_files["test"], "--output", lora_runs["classification"] / "eval.json")
    assert code == 0, err
    scored = json.loads((lora_runs["classification"] / "eval.json").read_text())
    test = json.loads((lora_runs["classification"] / "metrics.json").read_text())["test"]
    assert scored["accuracy"] == test["accuracy"] and scored["loss"] == pytest.approx(test["loss"], abs=1e-5)


def test_adapter_card_snippet_runs(lora_runs, capsys):
    folder = lora_runs["classification"] / "adapter"
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "library_name: peft" in card and "lora" in card
    code = card.split("## Use", 1)[1].split("```python\n", 1)[1].split("```", 1)[0].replace("path/to/this/folder", str(folder))
    capsys.readouterr()
    exec(compile(code, "README.md", "exec"), {})
    assert "'label': '" in capsys.readouterr().out


def test_lora_without_merge_saves_only_the_adapter(tiny_models, sentiment_files, cli, tmp_path):
    code, out, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"],
                         "--test", sentiment_files["test"], "-o", tmp_path / "run", "--lora", "--max-steps", "2", "--quiet")
    assert code == 0, err
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "run" / "model").exists()
    code, out, err = cli("predict", tmp_path / "run", sentiment_files["test"])  # the run folder resolves to its adapter
    assert code == 0, err and len(out.splitlines()) == 48


@pytest.mark.parametrize("args, message", [
    (["--merge"], "--merge merges a LoRA adapter"),
    (["--lora", "--lora-r", "0"], "'lora.r' must be a positive integer"),
    (["--lora", "--lora-dropout", "1.5"], "'lora.dropout' must be in [0, 1)"),
    (["--lora", "--set", "lora.target_modules=[no_such_layer]"], "lora.target_modules"),
])
def test_bad_lora_settings_are_one_line_errors(tiny_models, sentiment_files, cli, tmp_path, args, message):
    code, out, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"],
                         "-o", tmp_path / "run", "--max-steps", "1", *args)
    assert code == 2 and out == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "adapter").exists()


def test_architecture_without_a_peft_default_adapts_every_body_linear(sentiment_files, cli, tmp_path):
    """DistilBERT is not in PEFT's table: every linear layer of the body gets an adapter, and the
    whole new head (pre_classifier + classifier, both newly initialised) trains in full."""
    import torch
    from safetensors.torch import load_file
    from transformers import DistilBertConfig, DistilBertModel

    from conftest import _bert_tokenizer, _save

    tokenizer = _bert_tokenizer()
    torch.manual_seed(0)
    body = DistilBertModel(DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128))
    base = _save(tmp_path / "distilbert", body, tokenizer)
    run = tmp_path / "run"
    code, _, err = cli("finetune", "sentiment", "--model", base, "--train", sentiment_files["train"], "--test", sentiment_files["test"],
                       "-o", run, *LORA, "--max-steps", "4", "--batch-size", "16", "--quiet")
    assert code == 0, err
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    expected = {f"distilbert.transformer.layer.{i}.{m}" for i in range(2) for m in
                ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2")}
    assert set(config["target_modules"]) == expected
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert any("pre_classifier" in k for k in adapter) and any(k.split(".")[-3:-1] == ["classifier", "weight"] or "classifier.weight" in k for k in adapter)
    assert json.loads((run / "metrics.json").read_text())["train"]["trainable_parameters"] == sum(t.numel() for t in adapter.values())
    code, out, err = cli("predict", run / "adapter", sentiment_files["test"])
    assert code == 0, err
    code, merged, err = cli("predict", run, sentiment_files["test"])
    assert code == 0, err
    assert [json.loads(line)["label"] for line in out.splitlines()] == [json.loads(line)["label"] for line in merged.splitlines()]
