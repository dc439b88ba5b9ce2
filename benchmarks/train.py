"""Training speed: ftkit's loop against transformers' Trainer, same model, data and settings.

    python benchmarks/train.py --arch bert-base-uncased --steps 300 --precision bf16      # GPU
    python benchmarks/train.py --arch minilm --epochs 1 --precision no                   # CPU
    python benchmarks/train.py --arch bert-base-uncased --tiny --steps 3 --max-train-samples 64

Runners, each in a fresh process (its own CUDA context) on the same checkpoint:
  ftkit            `python -m ftkit finetune RECIPE ...`; speed from OUT/metrics.json and log.jsonl
  trainer-padded   Trainer as run_glue.py sets it up by default: every example padded to max_length
  trainer-dynamic  Trainer with DataCollatorWithPadding (each batch padded to its longest)
  trainer          seq2seq: Seq2SeqTrainer + DataCollatorForSeq2Seq (run_summarization.py);
                   causal LM: Trainer on run_clm.py's group_texts blocks
Hyper-parameters (learning rate, linear schedule, warm-up ratio, weight decay, clipping, seed,
lengths) are the recipe's for every runner. README.md says what each number includes.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ARCHS, build_checkpoint, data_dir, label_names, read_jsonl, report, run_logged, synchronize, text_key
from transformers import TrainerCallback  # after common, which sets the offline variables first

BASELINES = {"classification": ("trainer-padded", "trainer-dynamic"), "seq2seq": ("trainer",), "causal-lm": ("trainer",)}
# ftkit runners: its defaults, and with the training step under torch.compile
VARIANTS = {
    "ftkit": [],
    "ftkit-compile": ["--set", "train.compile=default"],
    "ftkit-graphs": ["--set", "train.compile=reduce-overhead"],  # CUDA graphs over padded lengths
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=ARCHS, required=True)
    p.add_argument("--data", type=Path, help="folder with train/validation/test.jsonl [default: the arch's]")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, help="optimizer steps, the same for every runner")
    length.add_argument("--epochs", type=int, help="epochs, the same for every runner")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", choices=("bf16", "no"), help="[default: bf16 on a GPU, else no]")
    p.add_argument("--which", help="comma-separated runners [default: ftkit and the arch's baselines]")
    p.add_argument("--warmup-steps", type=int, help="first steps left out of 'steady' (a multiple of 10) [default: 20 from 100 steps on, else 0]")
    p.add_argument("--max-train-samples", type=int, help="train on the first N rows")
    p.add_argument("--max-eval-samples", type=int, help="validate and test on the first N rows")
    p.add_argument("--gen-tokens", type=int, default=64, help="seq2seq: greedy tokens generated when scoring the test split")
    p.add_argument("--tiny", action="store_true", help="a tiny config of the architecture (smoke runs on CPU)")
    p.add_argument("--model", type=Path, help="use this checkpoint folder instead of building one")
    p.add_argument("--work", type=Path, help="keep the checkpoint, runs and logs here [default: a temporary folder, removed]")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one Trainer baseline in this process
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.precision is None:
        import torch

        args.precision = "bf16" if torch.cuda.is_available() else "no"
    args.data = args.data or data_dir(ARCHS[args.arch].data)
    return args


def recipe_config(arch: str) -> Any:
    from ftkit.recipes import get_recipe

    return get_recipe(ARCHS[arch].recipe).config


def main() -> None:
    args = parse_args()
    if args.worker:
        return trainer_worker(args)
    spec, config = ARCHS[args.arch], recipe_config(args.arch)
    valid = tuple(VARIANTS) + BASELINES[spec.family]
    runners = (args.which or ",".join(("ftkit",) + BASELINES[spec.family])).split(",")
    if unknown := [r for r in runners if r not in valid]:
        sys.exit(f"unknown runner(s) {unknown} for {args.arch}; choose from {', '.join(valid)}")
    train_rows = read_jsonl(args.data / "train.jsonl", args.max_train_samples)
    total = args.steps or math.ceil(len(train_rows) / args.batch_size) * args.epochs  # causal LM: rows overestimate
    if args.warmup_steps is None:
        args.warmup_steps = 20 if total >= 100 else 0
    if args.warmup_steps % config.train.logging_steps:
        sys.exit(f"--warmup-steps must be a multiple of ftkit's logging_steps ({config.train.logging_steps})")
    work = args.work or Path(tempfile.mkdtemp(prefix="ftkit-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    labels = label_names(train_rows, config.data.labels) if spec.family == "classification" else None
    checkpoint = args.model or build_checkpoint(args.arch, work / "checkpoint", args.tiny, labels)
    print(f"checkpoint {checkpoint} ready in {time.perf_counter() - started:.1f}s", flush=True)
    rows = []
    for runner in runners:
        out = work / runner
        shutil.rmtree(out, ignore_errors=True)
        if runner in VARIANTS:
            wall = run_logged(ftkit_command(args, checkpoint, out) + VARIANTS[runner], work / f"{runner}.log")
            rows.append({**ftkit_row(out, config, args), "runner": runner, "wall": wall})
        else:
            wall = run_logged(worker_command(args, runner, checkpoint, out), work / f"{runner}.log")
            rows.append({**json.loads((out / "bench.json").read_text()), "runner": runner, "wall": wall})
        print(f"{runner}: {rows[-1]['speed']:.1f} samples/s, {wall:.0f}s in all (log: {work / (runner + '.log')})", flush=True)
    length = f"{args.steps} steps" if args.steps else f"{args.epochs} epoch(s)"
    t = config.train
    settings = (f"{length}, batch {args.batch_size}, {'fp32' if args.precision == 'no' else args.precision}, lr {t.learning_rate:g}, "
                f"warm-up ratio {t.warmup_ratio:g}, max_length {t.max_length}, {len(train_rows)} train rows of {args.data.name}, "
                f"steady = after step {args.warmup_steps}")
    report(f"train {args.arch}{' (tiny)' if args.tiny else ''}", rows, "samples", settings)
    if not args.work:
        shutil.rmtree(work)


# ------------------------------------------------------------------------------------ ftkit


def ftkit_command(args: argparse.Namespace, checkpoint: Path, out: Path) -> list[str]:
    """`ftkit finetune` on the benchmark's data and settings, validating once (at the end)."""
    spec, data = ARCHS[args.arch], args.data
    cmd = [sys.executable, "-m", "ftkit", "finetune", spec.recipe, "--model", str(checkpoint),
           "--train", str(data / "train.jsonl"), "--validation", str(data / "validation.jsonl"), "--test", str(data / "test.jsonl"),
           "--output-dir", str(out), "--batch-size", str(args.batch_size), "--mixed-precision", args.precision, "--quiet"]
    cmd += ["--max-steps", str(args.steps), "--set", f"train.eval_steps={args.steps}"] if args.steps else ["--epochs", str(args.epochs)]
    if spec.family == "causal-lm":
        cmd += ["--text-column", text_key(read_jsonl(data / "train.jsonl", 1)[0])]
    if spec.family == "seq2seq":  # scored the way the baseline scores: greedy, gen-tokens long
        cmd += ["--set", "generation.num_beams=1", "--set", f"generation.max_new_tokens={args.gen_tokens}"]
    for key, value in (("data.max_train_samples", args.max_train_samples), ("data.max_eval_samples", args.max_eval_samples)):
        if value:
            cmd += ["--set", f"{key}={value}"]
    from ftkit.config_load import all_keys

    if "train.checkpoint_every" in all_keys():  # the baselines save nothing either (save_strategy="no")
        cmd += ["--set", "train.checkpoint_every=null"]
    return cmd


def ftkit_row(out: Path, config: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Speed over ftkit's train loop (metrics.json) and, from log.jsonl, after the warm-up steps."""
    results = json.loads((out / "metrics.json").read_text())
    train, primary = results["train"], config.metrics.primary
    return {"speed": train["samples_per_second"], "timed": train["runtime_s"], "steady": ftkit_steady(out / "log.jsonl", args),
            "metric": primary, "value": results.get("test", {}).get(primary), "note": f"{train['steps']} steps, {train['samples']} samples"}


def ftkit_steady(log: Path, args: argparse.Namespace) -> float | None:
    """Samples/s over the logging windows after the warm-up steps; a window's time is its
    steps x batch size over the speed ftkit logged for it (the short last batch of an epoch
    is counted full, as in the Trainer's figure)."""
    samples, seconds, previous = 0, 0.0, 0
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("type") != "train":
            continue
        if previous >= args.warmup_steps and entry["samples_per_second"] > 0:
            window = (entry["step"] - previous) * args.batch_size
            samples, seconds = samples + window, seconds + window / entry["samples_per_second"]
        previous = entry["step"]
    return samples / seconds if seconds else None


# ---------------------------------------------------------------------------------- Trainer


def worker_command(args: argparse.Namespace, runner: str, checkpoint: Path, out: Path) -> list[str]:
    cmd = [sys.executable, __file__, "--worker", runner, "--arch", args.arch, "--data", str(args.data), "--model", str(checkpoint),
           "--out", str(out), "--batch-size", str(args.batch_size), "--precision", args.precision,
           "--warmup-steps", str(args.warmup_steps), "--gen-tokens", str(args.gen_tokens)]
    cmd += ["--steps", str(args.steps)] if args.steps else ["--epochs", str(args.epochs)]
    for flag, value in (("--max-train-samples", args.max_train_samples), ("--max-eval-samples", args.max_eval_samples)):
        if value:
            cmd += [flag, str(value)]
    return cmd


def trainer_worker(args: argparse.Namespace) -> None:
    """Train one baseline as the transformers example scripts do; write OUT/bench.json."""
    import torch
    import transformers
    from transformers import AutoTokenizer, Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer, TrainingArguments, set_seed

    spec, config = ARCHS[args.arch], recipe_config(args.arch)
    t = config.train
    transformers.logging.set_verbosity_warning()
    set_seed(t.seed)  # before the model: a new classification head starts as ftkit's does
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_rows = read_jsonl(args.data / "train.jsonl", args.max_train_samples)
    test_rows = read_jsonl(args.data / "test.jsonl", args.max_eval_samples)
    model, collator, train_set, test_set = baseline_parts(spec.family, args, config, tokenizer, train_rows, test_rows)
    seq2seq = spec.family == "seq2seq"
    training_args = (Seq2SeqTrainingArguments if seq2seq else TrainingArguments)(
        output_dir=str(args.out), per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=t.eval_batch_size or 2 * args.batch_size,
        learning_rate=t.learning_rate, weight_decay=t.weight_decay, lr_scheduler_type="linear",
        warmup_steps=t.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the steps, rounded up as ftkit does
        max_grad_norm=t.max_grad_norm, seed=t.seed, bf16=args.precision == "bf16",
        max_steps=args.steps or -1, num_train_epochs=args.epochs or 1, logging_steps=t.logging_steps,
        eval_strategy="no", save_strategy="no", report_to=[], disable_tqdm=True,
        optim="adamw_torch_fused" if torch.cuda.is_available() else "adamw_torch",  # ftkit's AdamW is fused on CUDA only
        **({"predict_with_generate": True} if seq2seq else {}),
    )
    clock = StepClock(args.warmup_steps)
    trainer = (Seq2SeqTrainer if seq2seq else Trainer)(
        model=model, args=training_args, train_dataset=train_set, data_collator=collator, callbacks=[clock]
    )
    train = trainer.train().metrics
    primary, value = config.metrics.primary, score(trainer, spec.family, config, args, tokenizer, test_set, test_rows)
    result = {"speed": train["train_samples_per_second"], "timed": train["train_runtime"], "steady": clock.steady(args.batch_size), "metric": primary,
              "value": value, "note": f"{trainer.state.global_step} steps, {len(train_set)} train features"}
    (args.out / "bench.json").write_text(json.dumps(result))


class StepClock(TrainerCallback):
    """Clock reads, after a GPU sync, at the start, when the warm-up steps end and at the last step."""

    def __init__(self, warmup: int):
        self.warmup, self.marks = warmup, {}

    def on_train_begin(self, args, state, control, **kwargs):
        self._mark(0)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in (self.warmup, state.max_steps):
            self._mark(state.global_step)

    def _mark(self, step: int) -> None:
        synchronize()
        self.marks[step] = time.perf_counter()

    def steady(self, batch_size: int) -> float | None:
        """Samples/s from the end of the warm-up steps to the last step (steps x batch size)."""
        last = max(self.marks)
        if self.warmup not in self.marks or last <= self.warmup:
            return None
        return (last - self.warmup) * batch_size / (self.marks[last] - self.marks[self.warmup])


def baseline_parts(family: str, args: argparse.Namespace, config: Any, tokenizer: Any, train_rows: list, test_rows: list) -> tuple:
    """(model, collator, train features, test features) as the example script for the family builds them."""
    import transformers
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding, default_data_collator

    t, multiple = config.train, 8 if args.precision != "no" else None  # ftkit pads to multiples of 8 under mixed precision
    if family == "classification":
        names = label_names(train_rows, config.data.labels)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            args.model, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
            ignore_mismatched_sizes=True,
        )
        padded = args.worker == "trainer-padded"  # run_glue.py's default: pad_to_max_length=True
        encode = lambda rows: classification_features(tokenizer, rows, names, t.max_length, padded)  # noqa: E731
        collator = default_data_collator if padded else DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)
        return model, collator, encode(train_rows), encode(test_rows)
    if family == "seq2seq":
        model = transformers.AutoModelForSeq2SeqLM.from_pretrained(args.model)
        encode = lambda rows: seq2seq_features(tokenizer, rows, config)  # noqa: E731
        collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100, pad_to_multiple_of=multiple)
        return model, collator, encode(train_rows), encode(test_rows)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, default_data_collator, group_texts(tokenizer, train_rows, t.max_length), group_texts(tokenizer, test_rows, t.max_length)


def classification_features(tokenizer: Any, rows: list, names: list[str], max_length: int, padded: bool) -> list[dict]:
    encoded = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length, padding="max_length" if padded else False)
    return [{**{k: v[i] for k, v in encoded.items()}, "labels": names.index(str(r["label"]))} for i, r in enumerate(rows)]


def seq2seq_features(tokenizer: Any, rows: list, config: Any) -> list[dict]:
    t = config.train
    encoded = tokenizer([config.data.prefix + r["document"] for r in rows], max_length=t.max_length, truncation=True)
    labels = tokenizer(text_target=[r["summary"] for r in rows], max_length=t.max_target_length, truncation=True)["input_ids"]
    eos = tokenizer.eos_token_id  # the GPT-2 tokenizer adds no EOS; ftkit appends one, so do we (equal lengths)
    labels = [ids if ids and ids[-1] == eos else ids[: t.max_target_length - 1] + [eos] for ids in labels]
    return [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i], "labels": labels[i]} for i in range(len(rows))]


def group_texts(tokenizer: Any, rows: list, block: int) -> list[dict]:
    """run_clm.py: tokenize, concatenate, cut into full blocks (the remainder is dropped)."""
    ids = [i for encoded in tokenizer([r[text_key(r)] for r in rows])["input_ids"] for i in encoded]
    return [{"input_ids": ids[i : i + block], "labels": ids[i : i + block]} for i in range(0, len(ids) - block + 1, block)]


def score(trainer: Any, family: str, config: Any, args: argparse.Namespace, tokenizer: Any, test_set: list, test_rows: list) -> float:
    """The recipe's primary metric on the test split, computed as ftkit computes it."""
    import numpy as np

    from ftkit import metrics

    if family == "classification":
        predicted = trainer.predict(test_set)
        return float((predicted.predictions.argmax(-1) == predicted.label_ids).mean())
    if family == "seq2seq":
        predicted = trainer.predict(test_set, max_new_tokens=args.gen_tokens, num_beams=1).predictions
        predicted = np.where(predicted < 0, tokenizer.pad_token_id, predicted)
        texts = [s.strip() for s in tokenizer.batch_decode(predicted, skip_special_tokens=True)]
        return metrics.rouge(texts, [r["summary"] for r in test_rows])[config.metrics.primary]
    return math.exp(min(trainer.evaluate(test_set)["eval_loss"], 700))  # run_clm.py's perplexity


if __name__ == "__main__":
    main()
