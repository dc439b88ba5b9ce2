"""CPU inference speed of an ONNX export: `ftkit predict --runtime onnx` (and onnx-int8) against
transformers' text-classification pipeline and ftkit's own PyTorch predict, in one invocation.

    python benchmarks/export.py --n 3000                       # MiniLM, briefly fine-tuned here
    python benchmarks/export.py --model RUN_DIR --n 3000       # an ftkit run (exported here if it has no onnx/)
    python benchmarks/export.py --tiny --n 64                  # smoke: a tiny BERT

The run is fine-tuned for --steps steps at learning rate 1e-4 (a head with margins, so label identity means something),
exported with `ftkit export RUN --format onnx --quantize int8 --overwrite`, then each runner
predicts the same --n short texts (sentiment-movies' train texts, repeated), each in a fresh
process, batch --batch-size, fp32 (onnx-int8: int8 weights):
  texts/s         --n over the whole command (`ftkit predict RUN IN --output OUT [--runtime R]`;
                  the pipeline: a script that loads it, runs it and writes JSONL)
  steady texts/s  --n over predicting alone, model loaded and one batch run first
Every ftkit runner's labels are compared with the pipeline's (fp32 must be identical).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import build_checkpoint, data_dir, minilm_path, read_jsonl, report, run_logged
from predict import compare, pipeline_worker

RUNTIMES = ("torch", "onnx", "onnx-int8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=3000, help="texts to predict")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--model", type=Path, help="an ftkit run folder [default: MiniLM fine-tuned for --steps steps here]")
    p.add_argument("--steps", type=int, default=40, help="fine-tuning steps (learning rate 1e-4) of the run built here")
    p.add_argument("--data", type=Path, help="folder with train/validation/test.jsonl [default: sentiment-movies]")
    p.add_argument("--tiny", action="store_true", help="a tiny random BERT instead of MiniLM (smoke runs)")
    p.add_argument("--work", type=Path, help="keep the run, inputs, outputs and logs here [default: a temporary folder, removed]")
    p.add_argument("--worker", choices=("pipeline", *RUNTIMES), help=argparse.SUPPRESS)  # internal: time one runner
    p.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.data = args.data or data_dir("sentiment-movies")
    return args


def main() -> None:
    args = parse_args()
    if args.worker == "pipeline":
        return pipeline_worker(args)
    if args.worker:
        return ftkit_worker(args)
    work = args.work or Path(tempfile.mkdtemp(prefix="ftkit-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = read_jsonl(args.data / "train.jsonl")
    source = work / "input.jsonl"
    source.write_text("".join(json.dumps({"text": rows[i % len(rows)]["text"]}, ensure_ascii=False) + "\n" for i in range(args.n)), encoding="utf-8")
    run = args.model or finetune(args, work)
    export_wall = run_logged([sys.executable, "-m", "ftkit", "export", str(run), "--format", "onnx", "--quantize", "int8", "--overwrite"], work / "export.log")
    parity = json.loads((run / "onnx" / "parity.json").read_text())

    steady, walls = {}, {}
    for runner in ("pipeline", *RUNTIMES):
        out = work / runner
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        model = run / "model" if runner == "pipeline" else run  # pipeline() takes the model folder
        worker = [sys.executable, __file__, "--worker", runner, "--model", str(model), "--input", str(source), "--out", str(out),
                  "--batch-size", str(args.batch_size)]
        walls[runner] = run_logged(worker, work / f"{runner}-steady.log")
        steady[runner] = json.loads((out / "bench.json").read_text())
        print(f"{runner}: {args.n / steady[runner]['seconds']:.1f} texts/s steady", flush=True)
        if runner != "pipeline":  # the whole command; the pipeline's is its worker
            cli = [sys.executable, "-m", "ftkit", "predict", str(run), str(source), "--output", str(out / "cli.jsonl"),
                   "--batch-size", str(args.batch_size), "--runtime", runner]
            walls[runner] = run_logged(cli, work / f"{runner}-cli.log")

    expected = read_jsonl(work / "pipeline" / "predictions.jsonl")
    table = []
    for runner in (*reversed(RUNTIMES), "pipeline"):
        note = f"setup {steady[runner]['load_s']:.1f}s"
        if runner != "pipeline":
            note += f"; labels vs pipeline: {compare(expected, read_jsonl(work / runner / 'cli.jsonl'))}"
        if runner in parity["runtimes"]:
            p = parity["runtimes"][runner]
            note += f"; parity on {parity['rows']} {parity['split']} rows: max |logit diff| {p['max_abs_diff']:.1e}, agreement {p['label_agreement']:.2%}"
        table.append({"runner": "pipeline" if runner == "pipeline" else f"ftkit {runner}", "speed": args.n / walls[runner],
                      "steady": args.n / steady[runner]["seconds"], "timed": steady[runner]["seconds"], "wall": walls[runner], "note": note})
    kind = "tiny BERT" if args.tiny else "MiniLM-L6"
    settings = f"{args.n} texts of {args.data.name}, batch {args.batch_size}, CPU, {kind} run, export {export_wall:.0f}s"
    report("predict onnx", table, "texts", settings)
    if not args.work:
        shutil.rmtree(work)


def finetune(args: argparse.Namespace, work: Path) -> Path:
    """A short sentiment run on MiniLM (or a tiny BERT): the model with a trained head that export needs."""
    base = build_checkpoint("bert-base-uncased", work / "tiny-bert", True, ["negative", "positive"]) if args.tiny else minilm_path()
    run = work / "run"
    cmd = [sys.executable, "-m", "ftkit", "finetune", "sentiment", "--model", str(base), "--train", str(args.data / "train.jsonl"),
           "--validation", str(args.data / "validation.jsonl"), "--test", str(args.data / "test.jsonl"), "--max-steps", str(args.steps), "--learning-rate", "1e-4",
           "--max-eval-samples", "500", "--output-dir", str(run), "--overwrite", "--quiet"]
    run_logged(cmd, work / "finetune.log")
    return run


def ftkit_worker(args: argparse.Namespace) -> None:
    """ftkit.predict.predict() on all texts with --runtime, the model loaded and one batch run beforehand."""
    import torch  # noqa: F401  (imported before the clock starts, as in the pipeline worker)
    import transformers  # noqa: F401

    import ftkit.inference
    import ftkit.predict as fp
    from ftkit.runfiles import resolve_model_dir

    started = time.perf_counter()
    model_dir, run_config = resolve_model_dir(args.model)
    loaded = ftkit.inference.load_for_inference(model_dir, run_config, args.worker)
    ftkit.inference.load_for_inference = lambda *_: loaded  # predict() below reuses this model instead of loading it again
    warm = args.out / "warm-up.jsonl"
    warm.write_text("".join(line + "\n" for line in args.input.read_text(encoding="utf-8").splitlines()[: args.batch_size]), encoding="utf-8")
    options = lambda: fp.PredictOptions(batch_size=args.batch_size, runtime=args.worker)  # noqa: E731  (predict() fills in some fields)
    fp.predict(model_dir, run_config, str(warm), args.out / "warm-up-out.jsonl", None, "utf-8", options())
    ready = time.perf_counter()
    fp.predict(model_dir, run_config, str(args.input), args.out / "predictions.jsonl", None, "utf-8", options())
    seconds = time.perf_counter() - ready
    (args.out / "bench.json").write_text(json.dumps({"load_s": ready - started, "seconds": seconds}))


if __name__ == "__main__":
    main()
