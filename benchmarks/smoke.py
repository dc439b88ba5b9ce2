"""Smoke run of every recipe on one device, through the real CLI: each fine-tunes a few steps of
its real architecture (random weights: no checkpoints offline), then predicts, in the given
precision; then LoRA, and a one-process FSDP run through `accelerate launch` with the shipped
config. A check that the paths run (exit codes, files, finite metrics), not a benchmark.

    python benchmarks/smoke.py                          # GPU: bf16, full-size architectures
    python benchmarks/smoke.py --tiny --precision no    # CPU: a quick dry run of the same steps
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, build_checkpoint, data_dir

# recipe -> (architecture, data folder, extra finetune flags); NER reads the repository's CoNLL fixture
RECIPES = {
    "sentiment": ("bert-base-uncased", "sentiment-movies", []),
    "spam": ("bert-base-uncased", "spam-email", []),
    "ner": ("bert-base-uncased", "ner-en", []),
    "summarization": ("t5-small", "bbc-headlines", ["--set", "generation.max_new_tokens=16"]),
    "translation": ("t5-small", "translation-en-de", ["--set", "generation.max_new_tokens=16", "--source-lang", "en", "--target-lang", "de"]),
    "generation": ("gpt2", "bbc-headlines", ["--text-column", "document", "--set", "generation.max_new_tokens=16"]),
}
LABELS = {"sentiment": ["negative", "positive"], "spam": ["ham", "spam"]}
STEPS = ["--max-steps", "20", "--batch-size", "16", "--set", "data.max_train_samples=400", "--set", "data.max_eval_samples=48", "--quiet"]


def files(name: str) -> list[str]:
    folder = REPO / "tests" / "data" / name if name == "ner-en" else data_dir(name)
    suffix = ".conll" if name == "ner-en" else ".jsonl"
    return [a for split in ("train", "validation", "test") for a in (f"--{split}", str(folder / f"{split}{suffix}"))]


def run(name: str, cmd: list[str], out: Path) -> dict:
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    row = {"run": name, "exit": done.returncode, "seconds": round(time.perf_counter() - began, 1)}
    metrics = out / "metrics.json"
    if metrics.is_file():
        result = json.loads(metrics.read_text())
        section = result.get("test") or result.get("validation") or {}
        scores = {k: v for k, v in section.items() if isinstance(v, float)}
        row["finite"] = all(math.isfinite(v) for v in scores.values())
        row["scores"] = {k: round(v, 4) for k, v in list(scores.items())[:3]}
        row["samples/s"] = round(result["train"]["samples_per_second"], 1)
    if done.returncode:
        row["error"] = (done.stderr.strip().splitlines() or ["?"])[-1][:300]
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--tiny", action="store_true", help="shrunken architectures (CPU dry run)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ftkit-smoke"))
    args = parser.parse_args()
    ftkit = [sys.executable, "-m", "ftkit"]
    common = ["--mixed-precision", args.precision, *STEPS]
    rows = []
    for recipe, (arch, data, extra) in RECIPES.items():
        base = args.work / "models" / f"{arch}-{recipe}"
        if not base.exists():  # classifiers get their head here; ftkit replaces it for NER (other labels)
            build_checkpoint(arch, base, tiny=args.tiny, labels=LABELS.get(recipe, ["negative", "positive"]))
        out = args.work / recipe
        rows.append(run(recipe, [*ftkit, "finetune", recipe, "--model", str(base), *files(data), *extra, *common, "-o", str(out), "--overwrite"], out))
        if rows[-1]["exit"] == 0:  # predict on the test file's first rows
            rows.append(run(f"{recipe} predict", [*ftkit, "predict", str(out), files(data)[-1], "--output", str(out / "predictions.jsonl")], out / "none"))
    bert = args.work / "models" / "bert-base-uncased-sentiment"
    sentiment = files("sentiment-movies")
    out = args.work / "lora"
    rows.append(run("sentiment --lora --merge", [*ftkit, "finetune", "sentiment", "--model", str(bert), *sentiment, "--lora", "--merge", *common, "-o", str(out), "--overwrite"], out))
    out = args.work / "fsdp"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "recipes" / "accelerate" / "fsdp.yaml"),
              "--num_processes", "1", "--mixed_precision", args.precision]
    rows.append(run("sentiment FSDP (1 process)", [*launch, "-m", "ftkit", "finetune", "sentiment", "--model", str(bert), *sentiment, *common, "-o", str(out), "--overwrite"], out))
    failed = [r["run"] for r in rows if r["exit"] or not r.get("finite", True)]
    print(f"{len(rows) - len(failed)} of {len(rows)} passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
