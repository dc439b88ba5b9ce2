"""What ftkit accepts as a model, through the real entry point: a folder without tokenizer files
or with a degenerate tokenizer, a config.json that does not fit the weights, damaged files, and
a Hub id on a machine that cannot reach the Hub. Each is refused in one line (exit 2) before
training, for `finetune --model` and for `predict` / `evaluate` on a run folder's model/."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import finish_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def one_line(code: int, out: str, err: str) -> str:
    """The single `error: ...` line of a refusal (exit 2, nothing on stdout)."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert out == "" and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def no_training(monkeypatch):
    """Reaching the training loop fails the test: every model check comes before it."""
    from ftkit.progress import Reporter

    def start(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise AssertionError("training started: this model was not refused before the loop")

    monkeypatch.setattr(Reporter, "start", start)


@pytest.fixture
def stop_at_start(monkeypatch):
    """The model was accepted: stop as training starts (exit 2 with a known line)."""
    from ftkit.errors import FtkitError
    from ftkit.progress import Reporter

    def start(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise FtkitError("stopped by the test as training starts")

    monkeypatch.setattr(Reporter, "start", start)


def finetune(cli, model: Path | str, files: dict[str, Path], out: Path, recipe: str = "sentiment") -> tuple[int, str, str]:
    columns = ["--text-column", "text", "--label-column", "label"] if recipe == "sentiment" else []
    return cli("finetune", recipe, "--model", model, *columns, "--train", files["train"], "--validation", files["validation"], "--output-dir", out, "--quiet")


def copy_model(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


def edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ---------------------------------------------------------------------------------- damage kinds
# Each takes a model folder, damages it, and returns the fragments the error line must hold.


def no_tokenizer_files(folder: Path) -> list[str]:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (folder / name).unlink(missing_ok=True)
    return [str(folder), "no tokenizer files", "tokenizer.json", "vocab.txt"]


def degenerate_vocabulary(folder: Path) -> list[str]:
    """Tokenizer files are there, but the vocabulary holds only the special tokens."""
    (folder / "tokenizer.json").unlink()
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    return [str(folder), "tokenizer is unusable", "0 regular tokens", "[UNK]", "tokenizer.json"]


def truncated_weights(folder: Path) -> list[str]:
    truncate(folder / "model.safetensors")
    return [str(folder / "model.safetensors"), "damaged", "safetensors", "again"]


def garbage_weights_header(folder: Path) -> list[str]:
    (folder / "model.safetensors").write_bytes(b"\xff" * 8 + b"not a safetensors file" * 10)
    return [str(folder / "model.safetensors"), "damaged", "safetensors"]


def missing_shard(folder: Path) -> list[str]:
    """A sharded checkpoint's index names a file the folder lacks (an interrupted download)."""
    index = {"metadata": {}, "weight_map": {"bert.pooler.dense.weight": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return [str(folder), "model-00002-of-00002.safetensors", "missing", "incomplete"]


def no_weights(folder: Path) -> list[str]:
    (folder / "model.safetensors").unlink()
    return [str(folder), "no weights file", "model.safetensors"]


def invalid_config_json(folder: Path) -> list[str]:
    truncate(folder / "config.json")
    return [str(folder / "config.json"), "damaged", "not valid JSON", "again"]


def invalid_tokenizer_json(folder: Path) -> list[str]:
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    return [str(folder / "tokenizer.json"), "damaged", "not valid JSON"]


def config_size_mismatch(folder: Path) -> list[str]:
    edit_config(folder, vocab_size=500)
    return [str(folder), "config.json does not match model.safetensors", "word_embeddings.weight", "[500, 32]"]


def config_of_another_architecture(folder: Path) -> list[str]:
    """BERT weights under a GPT-2 config.json: the body is new, only the tokenizer fits."""
    from transformers import GPT2Config

    config = GPT2Config(vocab_size=json.loads((folder / "config.json").read_text())["vocab_size"], n_embd=32, n_layer=2, n_head=2, n_positions=128)
    if "id2label" in json.loads((folder / "config.json").read_text()):  # a fine-tuned model keeps its labels
        config.id2label, config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
        config.architectures = ["GPT2ForSequenceClassification"]
    (folder / "config.json").write_text(config.to_json_string())
    return [str(folder), "weights are not in the checkpoint", "config.json does not match the weights"]


DAMAGES: dict[str, Callable[[Path], list[str]]] = {f.__name__: f for f in (
    no_tokenizer_files, degenerate_vocabulary, truncated_weights, garbage_weights_header, missing_shard, no_weights,
    invalid_config_json, invalid_tokenizer_json, config_size_mismatch, config_of_another_architecture,
)}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_finetune_refuses_a_broken_model(damage, cli, tiny_models, sentiment_files, tmp_path, no_training):
    model = copy_model(tiny_models["bert"], tmp_path / "model")
    fragments = DAMAGES[damage](model)
    line = one_line(*finetune(cli, model, sentiment_files, tmp_path / "out"))
    assert not [f for f in fragments if f not in line], line
    assert not (tmp_path / "out" / "model").exists()


@pytest.fixture(scope="module")
def trained_run(tiny_models, sentiment_files, tmp_path_factory) -> Path:
    """A finished run folder (2 steps) whose copies the predict tests damage."""
    return finish_run(tmp_path_factory.mktemp("model-checks") / "run", tiny_models["bert"], sentiment_files["train"], 2)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_predict_and_evaluate_refuse_a_broken_run_model(damage, command, cli, trained_run, sentiment_files, tmp_path):
    run = copy_model(trained_run, tmp_path / "run")
    fragments = DAMAGES[damage](run / "model")
    (tmp_path / "in.txt").write_text("a great film\na dull film\n")
    output = tmp_path / "predictions.jsonl"
    args = [run, tmp_path / "in.txt", "--output", output] if command == "predict" else [run, "--data", sentiment_files["test"]]
    line = one_line(*cli(command, *args))
    assert not [f for f in fragments if f not in line], line
    assert not output.exists()


def test_the_intact_run_model_still_predicts(cli, trained_run, tmp_path):
    """The control for the cases above: the undamaged copy predicts, and says nothing extra."""
    run = copy_model(trained_run, tmp_path / "run")
    (tmp_path / "in.txt").write_text("a great film\n")
    code, out, err = cli("predict", run, tmp_path / "in.txt")
    assert code == 0 and err == "", err
    assert json.loads(out)["label"] in ("positive", "negative")


# ---------------------------------------------------------------------------------- load report


def test_a_new_head_is_silent(cli, tiny_models, sentiment_files, ner_files, tmp_path, stop_at_start):
    """A base checkpoint has no classifier or tagger head: it is new, and nothing is said."""
    for recipe, files in (("sentiment", sentiment_files), ("ner", ner_files)):
        code, _, err = finetune(cli, tiny_models["bert"], files, tmp_path / recipe, recipe=recipe)
        assert (code, err) == (2, "error: stopped by the test as training starts\n")


def test_a_few_new_body_weights_are_noted(cli, tiny_models, sentiment_files, tmp_path, stop_at_start):
    """config.json asks for a third layer the checkpoint lacks: one note names how many and some."""
    model = copy_model(tiny_models["bert"], tmp_path / "model")
    edit_config(model, num_hidden_layers=3)
    code, _, err = finetune(cli, model, sentiment_files, tmp_path / "out")
    lines = err.splitlines()
    assert code == 2 and lines[-1] == "error: stopped by the test as training starts", err
    notes = [line for line in lines if "not in the checkpoint" in line]
    assert len(notes) == 1 and notes[0].startswith(f"note: {model}: 16 of 55 body weights"), err
    assert "bert.encoder.layer.2." in notes[0] and "classifier" not in notes[0]


def test_generation_model_with_another_config_is_refused(cli, tiny_models, tmp_path, no_training):
    """No task head is new for a language model: GPT-2 weights under an OPT config.json are refused."""
    from transformers import OPTConfig

    model = copy_model(tiny_models["gpt2"], tmp_path / "model")
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    OPTConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64, word_embed_proj_dim=32, max_position_embeddings=128).save_pretrained(model)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": "once upon a time the film was great"}) + "\n" for _ in range(8)))
    line = one_line(*cli("finetune", "generation", "--model", model, "--train", train, "--validation", train, "--max-length", "64", "-o", tmp_path / "out", "--quiet"))
    assert str(model) in line and "weights are not in the checkpoint" in line and "config.json does not match" in line, line


# ---------------------------------------------------------------------------------- the Hub, offline


def closed_port() -> int:
    """A local port nothing listens on: connections are refused at once, the network is never used."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hub_env(tmp_path: Path, hf_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def ftkit_subprocess(args: list[object], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "ftkit", *map(str, args)], env=env, capture_output=True, text=True, timeout=300)
    return done, time.monotonic() - start


def test_unreachable_hub_is_one_fast_line(tmp_path, sentiment_files):
    """Without HF_HUB_OFFLINE, a Hub id that is not cached, on a machine that cannot reach the
    Hub: one line naming HF_HUB_OFFLINE=1 (not 11 lines of retries over 30 s)."""
    env = hub_env(tmp_path, tmp_path / "empty-hf-home")
    done, seconds = ftkit_subprocess(["finetune", "sentiment", "--model", "some-org/some-model", "--train", sentiment_files["train"], "-o", tmp_path / "out", "--quiet"], env)
    line = one_line(done.returncode, done.stdout, done.stderr)
    assert "cannot load model 'some-org/some-model'" in line and "cannot be reached" in line, line
    assert "HF_HUB_OFFLINE=1" in line and "--model /path/to/model" in line
    assert not (tmp_path / "out").exists()
    print(f"unreachable Hub id refused in {seconds:.1f} s")  # shown with -s; no assertion on time


def test_unreachable_hub_dataset_is_one_fast_line(tmp_path, tiny_models):
    """The recipe's Hub dataset on the same machine: one line naming HF_HUB_OFFLINE=1 and local
    files, not five retries per file."""
    env = hub_env(tmp_path, tmp_path / "empty-hf-home")
    del env["HF_DATASETS_OFFLINE"]
    done, seconds = ftkit_subprocess(["finetune", "sentiment", "--model", tiny_models["bert"], "-o", tmp_path / "out", "--quiet"], env)
    line = one_line(done.returncode, done.stdout, done.stderr)
    assert "cannot load Hub dataset 'stanfordnlp/sst2'" in line and "cannot be reached" in line, line
    assert "HF_HUB_OFFLINE=1" in line and "--train FILE" in line and "Retrying" not in done.stderr
    assert not (tmp_path / "out").exists()
    print(f"unreachable Hub dataset refused in {seconds:.1f} s")  # shown with -s; no assertion on time


def test_a_cached_hub_model_loads_offline_without_retries(tmp_path, tiny_models, sentiment_files):
    """The same machine, the model in the Hub cache: it trains from the cache, with no retry noise."""
    hf_home = tmp_path / "hf-home"
    repo = hf_home / "hub" / "models--some-org--tiny-bert"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_models["bert"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    args = ["finetune", "sentiment", "--model", "some-org/tiny-bert", "--text-column", "text", "--label-column", "label",
            "--train", sentiment_files["train"], "--validation", sentiment_files["validation"], "--max-steps", "1", "-o", tmp_path / "out", "--quiet"]
    done, seconds = ftkit_subprocess(args, hub_env(tmp_path, hf_home))
    assert done.returncode == 0, done.stderr
    assert "Retrying" not in done.stderr and "thrown while requesting" not in done.stderr, done.stderr
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
    print(f"cached Hub model trained offline in {seconds:.1f} s")
