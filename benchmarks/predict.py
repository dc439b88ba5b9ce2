"""Inference speed: `ftkit predict` against transformers' text-classification pipeline.

    python benchmarks/predict.py --arch bert-base-uncased --n 4000 --batch-size 32            # GPU
    python benchmarks/predict.py --arch bert-base-uncased --model RUN_DIR --n 4000            # a trained run
    python benchmarks/predict.py --arch bert-base-uncased --tiny --n 64                       # smoke

Both read the same texts (sentiment-movies, repeated up to --n) with the same model folder,
each in a fresh process, in fp32. Two speeds per runner:
  texts/s         --n over the whole command's wall time: process start, imports, model load,
                  reading, predicting, writing (`ftkit predict IN --output OUT`; for the
                  pipeline a script that loads it, runs it and writes JSONL)
  steady texts/s  --n over the predicting alone, model loaded and one batch run first (ftkit:
                  ftkit.predict.predict() with its model loading replaced by the loaded model)
The labels of `ftkit predict` must equal the pipeline's; the table says whether they do.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ARCHS, build_checkpoint, data_dir, label_names, minilm_path, read_jsonl, report, run_logged, synchronize


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=[a for a, s in ARCHS.items() if s.family == "classification"], required=True)
    p.add_argument("--data", type=Path, help="folder with train.jsonl, whose texts are read [default: the arch's]")
    p.add_argument("--n", type=int, default=4000, help="texts to predict")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--model", type=Path, help="an ftkit run folder or a classifier folder [default: a random-weight classifier]")
    p.add_argument("--tiny", action="store_true", help="a tiny config of the architecture (smoke runs on CPU)")
    p.add_argument("--work", type=Path, help="keep inputs, outputs and logs here [default: a temporary folder, removed]")
    p.add_argument("--worker", choices=("pipeline", "ftkit"), help=argparse.SUPPRESS)  # internal: time one runner
    p.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.data = args.data or data_dir(ARCHS[args.arch].data)
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        return (pipeline_worker if args.worker == "pipeline" else ftkit_worker)(args)
    work = args.work or Path(tempfile.mkdtemp(prefix="ftkit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = read_jsonl(args.data / "train.jsonl")
    texts = [rows[i % len(rows)]["text"] for i in range(args.n)]
    source = work / "input.jsonl"
    source.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    model = args.model
    if model is None:
        from ftkit.recipes import get_recipe

        labels = label_names(rows, get_recipe(ARCHS[args.arch].recipe).config.data.labels)
        model = classifier(args.arch, work / "classifier", args.tiny, labels)
    # pipeline() needs the model folder; ftkit predict takes the run folder (and reads its settings).
    model_folder = model / "model" if (model / "model" / "config.json").is_file() else model

    results = {}
    for runner in ("pipeline", "ftkit"):
        out = work / runner
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        worker = [sys.executable, __file__, "--worker", runner, "--arch", args.arch, "--model", str(model_folder if runner == "pipeline" else model),
                  "--input", str(source), "--out", str(out), "--batch-size", str(args.batch_size)]
        wall = run_logged(worker, work / f"{runner}-steady.log")
        results[runner] = {**json.loads((out / "bench.json").read_text()), "worker_wall": wall}
        print(f"{runner}: {args.n / results[runner]['seconds']:.1f} texts/s steady", flush=True)
    cli_output = work / "ftkit" / "cli.jsonl"
    ftkit_cli = [sys.executable, "-m", "ftkit", "predict", str(model), str(source), "--output", str(cli_output), "--batch-size", str(args.batch_size)]
    ftkit_wall = run_logged(ftkit_cli, work / "ftkit-cli.log")
    # The pipeline's whole command is its worker (it also runs one warm-up batch: a few ms).
    walls = {"pipeline": results["pipeline"]["worker_wall"], "ftkit": ftkit_wall}

    expected = read_jsonl(work / "pipeline" / "predictions.jsonl")
    same = compare(expected, read_jsonl(cli_output))
    same_steady = compare(expected, read_jsonl(work / "ftkit" / "predictions.jsonl"))
    table = []
    for runner in ("ftkit", "pipeline"):
        r = results[runner]
        note = f"setup {r['load_s']:.1f}s" + (f"; labels vs pipeline: {same} (steady run: {same_steady})" if runner == "ftkit" else "")
        table.append({"runner": runner, "speed": args.n / walls[runner], "steady": args.n / r["seconds"], "timed": r["seconds"],
                      "wall": walls[runner], "note": note})
    kind = "an ftkit run" if model_folder != model else "a random-weight classifier" if not args.model else "a classifier folder"
    settings = f"{args.n} texts of {args.data.name}, batch {args.batch_size}, fp32, {'tiny ' if args.tiny else ''}{args.arch} from {kind}"
    report(f"predict {args.arch}{' (tiny)' if args.tiny else ''}", table, "texts", settings)
    if not args.work:
        shutil.rmtree(work)


def classifier(arch: str, out: Path, tiny: bool, labels: list[str]) -> Path:
    """A classifier folder with id2label: random weights, or MiniLM with a seeded new head
    (every process must see the same head, so it is saved, not drawn on load)."""
    if arch != "minilm":
        return build_checkpoint(arch, out, tiny, labels)
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(out)
    return out


def compare(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> str:
    """'identical (4000/4000)' or how many labels differ, with the largest score difference."""
    if len(expected) != len(got):
        return f"DIFFERENT COUNTS ({len(got)} vs {len(expected)})"
    differ = [i for i, (e, g) in enumerate(zip(expected, got)) if e["label"] != g["label"]]
    drift = max(abs(e["score"] - g["score"]) for e, g in zip(expected, got))
    if differ:
        return f"{len(differ)} of {len(expected)} DIFFER (first at #{differ[0]}), max score diff {drift:.1e}"
    return f"identical ({len(expected)}/{len(expected)}), max score diff {drift:.1e}"


def pipeline_worker(args: argparse.Namespace) -> None:
    """Load the pipeline, run one batch, then time all texts; write predictions and timings."""
    import torch
    from transformers import pipeline

    texts = [r["text"] for r in read_jsonl(args.input)]
    started = time.perf_counter()
    classify = pipeline("text-classification", model=str(args.model), batch_size=args.batch_size, device=0 if torch.cuda.is_available() else -1)
    classify(texts[: args.batch_size], truncation=True)
    synchronize()
    loaded = time.perf_counter()
    predictions = classify(texts, truncation=True)
    seconds = time.perf_counter() - loaded
    with open(args.out / "predictions.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"text": t, **p}, ensure_ascii=False) + "\n" for t, p in zip(texts, predictions))
    (args.out / "bench.json").write_text(json.dumps({"load_s": loaded - started, "seconds": seconds, "dtype": str(classify.model.dtype)}))


def ftkit_worker(args: argparse.Namespace) -> None:
    """ftkit.predict.predict() on all texts, with the model loaded and one batch run beforehand."""
    import torch  # noqa: F401  (imported before the clock starts, as in the pipeline worker)
    import transformers  # noqa: F401

    import ftkit.inference
    import ftkit.predict as fp
    from ftkit.runfiles import resolve_model_dir

    started = time.perf_counter()
    model_dir, run_config = resolve_model_dir(args.model)
    loaded = ftkit.inference.load_for_inference(model_dir, run_config)
    ftkit.inference.load_for_inference = lambda *_: loaded  # predict() below reuses this model instead of loading it again
    warm = args.out / "warm-up.jsonl"
    warm.write_text("".join(line + "\n" for line in args.input.read_text(encoding="utf-8").splitlines()[: args.batch_size]), encoding="utf-8")
    options = lambda: fp.PredictOptions(batch_size=args.batch_size)  # noqa: E731  (predict() fills in some fields)
    fp.predict(model_dir, run_config, str(warm), args.out / "warm-up-out.jsonl", None, "utf-8", options())
    synchronize()
    ready = time.perf_counter()
    fp.predict(model_dir, run_config, str(args.input), args.out / "predictions.jsonl", None, "utf-8", options())
    seconds = time.perf_counter() - ready
    (args.out / "bench.json").write_text(json.dumps({"load_s": ready - started, "seconds": seconds, "dtype": str(loaded[1].dtype)}))


if __name__ == "__main__":
    main()
