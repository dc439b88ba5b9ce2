"""Causal language modelling: packing documents into blocks, perplexity over every token (not
over batches), and the `generation` recipe end to end through the real entry point with the
tiny GPT-2 of conftest (finetune -> pipeline("text-generation") -> predict -> evaluate)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from conftest import FILLER, NEGATIVE, POSITIVE, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one torch thread (conftest)

BLOCK = 16  # --max-length: the block size
# A few epochs at a high learning rate: the tiny model moves off its random start in seconds.
FAST = ["--epochs", "5", "--batch-size", "4", "--learning-rate", "3e-3", "--max-length", str(BLOCK), "--quiet"]
# Stories walk a fixed cycle of words (one token each, with a leading space, in conftest's BPE):
# the next word follows from the last, so even a tiny model continues a prompt in a way that
# depends on the prompt's end, and a wrong cut of the prompt shows.
CYCLE = sorted(set(FILLER + POSITIVE + NEGATIVE))
random.Random(0).shuffle(CYCLE)
PROMPTS = [
    "the film was",
    "a story",  # short and long prompts in one batch: left padding must not change the output
    " ".join(CYCLE[i % len(CYCLE)] for i in range(5, 5 + 12)),
    " ".join(CYCLE[i % len(CYCLE)] for i in range(20, 20 + 24)),  # longer than a block: its end is kept
    "it",
]


def make_story(rng: random.Random) -> list[str]:
    """A document: 1-3 lines, each 4-10 consecutive words of CYCLE from a random start."""
    lines = []
    for _ in range(rng.randint(1, 3)):
        start = rng.randrange(len(CYCLE))
        lines.append(" ".join(CYCLE[(start + i) % len(CYCLE)] for i in range(rng.randint(4, 10))))
    return lines


@pytest.fixture(scope="module")
def story_files(tmp_path_factory) -> dict[str, Path]:
    """Each split as JSONL {"text"} (lines joined by newlines) and as a .txt of blank-line-separated documents."""
    root = tmp_path_factory.mktemp("stories")
    rng = random.Random(3)
    files = {}
    for split, n in (("train", 120), ("validation", 8), ("test", 9)):
        docs = ["\n".join(make_story(rng)) for _ in range(n)]
        files[split] = write_jsonl(root / f"{split}.jsonl", [{"text": d} for d in docs])
        # blank-line runs and stray blank lines at either end must not make empty documents
        (root / f"{split}.txt").write_text("\n" + "\n\n\n".join(docs) + "\n\n", encoding="utf-8")
        files[f"{split}_txt"] = root / f"{split}.txt"
    return files


def documents(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def pack(tokenizer, docs: list[str], block: int) -> list[list[int]]:
    """The packing written out independently of ftkit: doc ids + EOS, concatenated, cut every `block`."""
    ids = []
    for doc in docs:
        ids += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return [ids[i : i + block] for i in range(0, len(ids), block)]


def token_loss_sum(model, block: list[int]) -> tuple[float, int]:
    """(sum of next-token losses, tokens predicted) of one block, from transformers' own loss."""
    import torch

    with torch.inference_mode():
        mean = model(input_ids=torch.tensor([block]), labels=torch.tensor([block])).loss
    return float(mean) * (len(block) - 1), len(block) - 1


def finetune(*args) -> None:
    """Fine-tune through the real entry point for a module fixture (no capsys there)."""
    from ftkit.cli import main

    try:
        main(["finetune", "generation", *map(str, args)])
    except SystemExit as exit_:
        assert exit_.code in (0, None), f"finetune {args} exited {exit_.code}"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def gpt2_tokenizer(tiny_models):
    from ftkit.models import load_tokenizer

    return load_tokenizer(str(tiny_models["gpt2"]))


def lm_config(block: int):
    from ftkit.config import RunConfig, TrainConfig

    return RunConfig(name="lm", task="causal-lm", model="tiny", train=TrainConfig(max_length=block))


# ================================================================ packing and perplexity


def test_documents_are_joined_by_eos_and_cut_into_blocks(gpt2_tokenizer):
    from ftkit.data import Split
    from ftkit.tasks import causal_lm

    docs = ["the film was great.", "a dull plot.\nthe cast was superb.", "it is moving and truly charming"]
    split = Split({"text": docs + ["   "]}, [1, 2, 3, 4], "docs.jsonl")  # the blank document is skipped
    prepared = causal_lm.prepare({"train": split}, lm_config(5), gpt2_tokenizer)
    blocks = list(prepared.features["train"]["input_ids"])

    eos = gpt2_tokenizer.eos_token_id
    expected = []
    for doc in docs:
        expected += gpt2_tokenizer(doc, add_special_tokens=False)["input_ids"] + [eos]
    assert [t for b in blocks for t in b] == expected  # nothing dropped, nothing added
    assert [t for t in expected if t == eos] == [eos] * 3  # one separator after each document
    assert all(len(b) == 5 for b in blocks[:-1])
    assert 0 < len(blocks[-1]) < 5, "the fixture leaves a partial last block, and it is kept"
    assert list(prepared.features["train"]["labels"]) == blocks
    assert prepared.notes == ["docs.jsonl: skipped 1 empty document(s)"]

    batch = causal_lm.collator(gpt2_tokenizer, None)([prepared.features["train"][i] for i in (0, len(blocks) - 1)])
    short = len(blocks[-1])
    assert batch["input_ids"].tolist() == [blocks[0], blocks[-1] + [gpt2_tokenizer.pad_token_id] * (5 - short)]
    assert batch["attention_mask"].tolist() == [[1] * 5, [1] * short + [0] * (5 - short)]
    assert batch["labels"].tolist() == [blocks[0], blocks[-1] + [-100] * (5 - short)]

    padded = causal_lm.collator(gpt2_tokenizer, 8)([prepared.features["train"][0]])  # mixed precision: multiples of 8
    assert padded["input_ids"].shape == (1, 8) and padded["labels"].tolist() == [blocks[0] + [-100] * 3]


def test_tokenizer_without_eos_is_refused():
    from transformers import BertTokenizer

    from ftkit.data import Split
    from ftkit.errors import FtkitError
    from ftkit.tasks import causal_lm

    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "the", "film"])})
    with pytest.raises(FtkitError, match="end-of-text"):
        causal_lm.prepare({"train": Split({"text": ["the film"]}, [1], "x")}, lm_config(8), tokenizer)


def test_perplexity_is_over_all_tokens_not_a_mean_of_batch_means(tiny_models, gpt2_tokenizer):
    """exp(total loss / total predicted tokens) over the blocks, by hand with transformers' loss;
    the mean of per-batch means (what a naive loop reports) differs on an uneven last batch."""
    import torch
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from transformers import AutoModelForCausalLM

    from ftkit.data import Split
    from ftkit.tasks import causal_lm
    from ftkit.train import run_evaluation

    rng = random.Random(5)
    docs = ["\n".join(make_story(rng)) for _ in range(6)]
    block, batch_size = 12, 4
    prepared = causal_lm.prepare({"test": Split({"text": docs}, list(range(6)), "docs")}, lm_config(block), gpt2_tokenizer)
    blocks = list(prepared.features["test"]["input_ids"])
    assert blocks == pack(gpt2_tokenizer, docs, block)
    assert len(blocks) % batch_size and len(blocks[-1]) < block, "the last batch must be uneven, its last block short"

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"]).eval()
    loss_sum = predicted = 0
    for b in blocks:
        s, n = token_loss_sum(model, b)
        loss_sum, predicted = loss_sum + s, predicted + n
    by_hand = math.exp(loss_sum / predicted)

    accelerator = Accelerator(cpu=True)
    loader = DataLoader(prepared.features["test"], batch_size=batch_size, collate_fn=causal_lm.collator(gpt2_tokenizer, None))
    model, loader = accelerator.prepare(model, loader)
    result = run_evaluation(model, loader, accelerator, causal_lm, prepared, "test")
    assert result["tokens"] == predicted == sum(len(b) - 1 for b in blocks)
    assert result["samples"] == len(blocks)
    assert result["loss"] == pytest.approx(loss_sum / predicted, rel=1e-5)
    assert result["perplexity"] == pytest.approx(by_hand, rel=1e-5)

    with torch.inference_mode():
        batch_means = [float(model(**batch).loss) for batch in loader]
    naive = math.exp(sum(batch_means) / len(batch_means))
    assert len(batch_means) == math.ceil(len(blocks) / batch_size)
    assert abs(naive - by_hand) > 1e-3 * by_hand, (naive, by_hand)


# ================================================================ the recipe end to end


@pytest.fixture(scope="module")
def lm_runs(tiny_models, story_files, tmp_path_factory) -> dict[str, Path]:
    """'jsonl': greedy decoding saved (comparable with pipeline()); 'txt': --format text and the
    recipe's sampling settings."""
    root = tmp_path_factory.mktemp("lm-runs")
    f = story_files
    finetune(
        "--model", tiny_models["gpt2"], "--train", f["train"], "--validation", f["validation"], "--test", f["test"],
        "--output-dir", root / "jsonl", *FAST, "--set", "generation.do_sample=false", "--set", "generation.max_new_tokens=8",
    )
    finetune(
        "--model", tiny_models["gpt2"], "--train", f["train_txt"], "--validation", f["validation_txt"], "--test", f["test_txt"],
        "--format", "text", "--output-dir", root / "txt", *FAST, "--set", "train.eval_max_samples=2",
    )
    return {"jsonl": root / "jsonl", "txt": root / "txt"}


@pytest.mark.parametrize("form", ["jsonl", "txt"])
def test_output_folder_and_perplexity_by_hand(lm_runs, story_files, form):
    """metrics.json's test perplexity is the saved model's, over the test documents packed by hand."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = lm_runs[form]
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer_config.json", "README.md"):
        assert (run / "model" / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"train", "validation", "test"}
    for split in ("validation", "test"):
        assert {"perplexity", "loss", "tokens", "samples"} <= set(metrics[split])
        assert metrics[split]["perplexity"] == pytest.approx(math.exp(metrics[split]["loss"]))

    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    model = AutoModelForCausalLM.from_pretrained(run / "model").eval()
    # the .txt files hold the same documents as the JSONL: paragraphs, their lines joined by newlines
    blocks = pack(tokenizer, documents(story_files["test"]), BLOCK)
    totals = [token_loss_sum(model, b) for b in blocks]
    loss = sum(s for s, _ in totals) / sum(n for _, n in totals)
    test = metrics["test"]
    assert test["samples"] == len(blocks) and test["tokens"] == sum(n for _, n in totals)
    assert test["loss"] == pytest.approx(loss, rel=1e-5)
    assert test["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
    assert test["perplexity"] < 30 < len(tokenizer), "the tiny model should learn which word follows which"

    validation_blocks = pack(tokenizer, documents(story_files["validation"]), BLOCK)
    cap = 2 if form == "txt" else len(validation_blocks)  # train.eval_max_samples counts blocks
    assert metrics["validation"]["samples"] == cap
    card = (run / "model" / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card


def test_evaluate_equals_the_test_metrics(lm_runs, story_files, cli, tmp_path):
    out = tmp_path / "eval.json"
    code, _, err = cli("evaluate", lm_runs["jsonl"], "--data", story_files["test"], "--output", out)
    assert code == 0, err
    expected = json.loads((lm_runs["jsonl"] / "metrics.json").read_text())["test"]
    result = json.loads(out.read_text())
    assert result["samples"] == expected["samples"] and result["tokens"] == expected["tokens"]
    assert result["perplexity"] == pytest.approx(expected["perplexity"], rel=1e-5)


def test_pipeline_loads_the_run_and_predict_equals_it(lm_runs, cli, tmp_path):
    """Greedy run: `predict` (batched, left-padded) gives exactly pipeline()'s text per prompt; a
    prompt longer than a block is continued from its end (its last BLOCK tokens)."""
    import torch
    from transformers import pipeline

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    code, out, err = cli("predict", lm_runs["jsonl"], prompts, "--max-new-tokens", "5", "--seed", "0", "--batch-size", "2")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == PROMPTS  # input order, though predict sorts by length
    assert all(set(r) == {"text", "generated_text"} and r["generated_text"].startswith(r["text"]) for r in records)

    generator = pipeline("text-generation", model=str(lm_runs["jsonl"] / "model"))
    tokenizer, model = generator.tokenizer, generator.model

    def continuation(ids: list[int]) -> str:
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=5)
        assert out.shape[1] - len(ids) <= 5
        return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)

    long = 0
    for prompt, record in zip(PROMPTS, records):
        ids = tokenizer(prompt)["input_ids"]
        if len(ids) <= BLOCK:
            assert record["generated_text"] == generator(prompt, max_new_tokens=5)[0]["generated_text"], prompt
            assert record["generated_text"] == prompt + continuation(ids)
        else:
            long += 1
            assert record["generated_text"] == prompt + continuation(ids[-BLOCK:]), prompt
            assert continuation(ids[-BLOCK:]) != continuation(ids[:BLOCK]), "the fixture should tell the two cuts apart"
    assert long == 1


def test_model_card_usage_runs(lm_runs, capsys):
    model_dir = lm_runs["jsonl"] / "model"
    card = (model_dir / "README.md").read_text(encoding="utf-8")
    code = card.split("## Use", 1)[1].split("```python\n", 1)[1].split("```", 1)[0].replace("path/to/this/folder", str(model_dir))
    assert 'pipeline("text-generation"' in code
    capsys.readouterr()
    exec(compile(code, "README.md", "exec"), {})
    assert "'generated_text': 'Some text." in capsys.readouterr().out


def test_predict_samples_repeatably_with_a_seed(lm_runs, cli, tmp_path):
    """Sampling (the recipe's do_sample, or --temperature): the same --seed, the same text."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")

    def sample(*flags: str) -> list[str]:
        code, out, err = cli("predict", lm_runs["txt"], prompts, "--max-new-tokens", "5", *flags)
        assert code == 0, err
        records = [json.loads(line) for line in out.splitlines()]
        assert [r["text"] for r in records] == PROMPTS
        assert all(r["generated_text"].startswith(r["text"]) for r in records)
        return [r["generated_text"] for r in records]

    first = sample("--seed", "0", "--temperature", "0.9")
    assert sample("--seed", "0", "--temperature", "0.9") == first
    assert sample("--seed", "1", "--temperature", "0.9") != first, "another seed should sample other tokens"
    assert sample("--seed", "7") == sample("--seed", "7")  # the saved generation_config samples too


def test_text_format_reads_blank_line_separated_documents(lm_runs, story_files):
    """The .txt run and the JSONL run saw the same documents: the same test tokens and blocks."""
    txt = json.loads((lm_runs["txt"] / "metrics.json").read_text())["test"]
    jsonl = json.loads((lm_runs["jsonl"] / "metrics.json").read_text())["test"]
    assert (txt["tokens"], txt["samples"]) == (jsonl["tokens"], jsonl["samples"])


def test_wrong_model_family_is_refused(tiny_models, story_files, cli, tmp_path):
    """T5 has no causal LM head (BERT has one: BertLMHeadModel, so it is accepted)."""
    code, _, err = cli("finetune", "generation", "--model", tiny_models["t5"], "--train", story_files["train"], "--output-dir", tmp_path / "run", *FAST)
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "causal language modelling" in lines[0] and "'t5'" in lines[0], err
    assert not (tmp_path / "run" / "model").exists()
