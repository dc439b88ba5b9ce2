"""Inference speed on images and speech: `ftkit predict` against transformers' pipeline.

    python benchmarks/predict_media.py --family images --model MODEL_OR_RUN --data FOLDER --n 600
    python benchmarks/predict_media.py --family speech --model MODEL_OR_RUN --data FOLDER --n 60

images: `pipeline("image-classification", batch_size=B)` over the same image paths (top label);
speech: `pipeline("automatic-speech-recognition", batch_size=B)` over the same clips, read with
soundfile as ftkit reads them (the pipeline's own file reading needs ffmpeg). The inputs are the
files of --data (an image folder, any depth; an audio folder's clips), repeated up to --n, listed
in a .txt file both read. Each runner is one fresh process, timed whole (start, imports, model
load, reading, predicting, writing): `ftkit predict LIST --output OUT` and a script that loads the
pipeline, runs it and writes JSONL. Both outputs must agree (labels; transcripts), and the table
says whether they do.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from common import read_jsonl, report, run_logged

from ftkit.datafile import AUDIO_SUFFIXES, IMAGE_SUFFIXES  # the files ftkit predict reads from a folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=("images", "speech"), required=True)
    p.add_argument("--model", type=Path, required=True, help="an ftkit run folder or a model folder with its processor")
    p.add_argument("--data", type=Path, required=True, help="an image folder or an audio folder")
    p.add_argument("--n", type=int, default=600, help="inputs to predict (the folder's files, repeated)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--work", type=Path, help="keep inputs, outputs and logs here [default: a temporary folder, removed]")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # internal: the pipeline runner
    p.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.worker:
        return pipeline_worker(args)
    work = args.work or Path(tempfile.mkdtemp(prefix="ftkit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    suffixes = IMAGE_SUFFIXES if args.family == "images" else AUDIO_SUFFIXES
    files = sorted(p.resolve() for p in args.data.rglob("*") if p.suffix.lower() in suffixes)
    if not files:
        sys.exit(f"{args.data}: no {'images' if args.family == 'images' else 'clips'}")
    source = work / "inputs.txt"
    source.write_text("".join(f"{files[i % len(files)]}\n" for i in range(args.n)), encoding="utf-8")
    # pipeline() needs the model folder; ftkit predict takes the run folder (and reads its settings).
    model_folder = args.model / "model" if (args.model / "model" / "config.json").is_file() else args.model

    walls = {}
    out = work / "pipeline.jsonl"
    worker = [sys.executable, __file__, "--worker", "--family", args.family, "--model", str(model_folder), "--data", str(args.data),
              "--input", str(source), "--out", str(out), "--batch-size", str(args.batch_size)]
    walls["pipeline"] = run_logged(worker, work / "pipeline.log")
    mine = work / "ftkit.jsonl"
    if mine.exists():
        mine.unlink()
    walls["ftkit"] = run_logged([sys.executable, "-m", "ftkit", "predict", str(args.model), str(source), "--output", str(mine),
                                 "--batch-size", str(args.batch_size)], work / "ftkit.log")
    same = compare(read_jsonl(out), read_jsonl(mine), "label" if args.family == "images" else "text")
    table = [{"runner": runner, "speed": args.n / walls[runner], "wall": walls[runner], "timed": walls[runner],
              "note": f"vs pipeline: {same}" if runner == "ftkit" else ""} for runner in ("ftkit", "pipeline")]
    settings = f"{args.n} inputs ({len(files)} files of {args.data.name}, repeated), batch {args.batch_size}, fp32, {model_folder.name}"
    report(f"predict {args.family}", table, "inputs", settings)
    if not args.work:
        shutil.rmtree(work)


def compare(expected: list[dict], got: list[dict], key: str) -> str:
    """'identical (600/600)' or how many outputs differ."""
    if len(expected) != len(got):
        return f"DIFFERENT COUNTS ({len(got)} vs {len(expected)})"
    # ftkit strips the space Whisper's tokenizer puts before a transcript; nothing else may differ
    differ = [i for i, (e, g) in enumerate(zip(expected, got)) if str(e[key]).strip() != str(g[key]).strip()]
    if differ:
        return f"{len(differ)} of {len(expected)} {key}s DIFFER (first at #{differ[0]})"
    return f"identical {key}s ({len(expected)}/{len(expected)})"


def pipeline_worker(args: argparse.Namespace) -> None:
    """The pipeline over every input, as a user's script would run it; JSONL like ftkit's."""
    import torch
    from transformers import pipeline

    paths = args.input.read_text(encoding="utf-8").splitlines()
    device = 0 if torch.cuda.is_available() else -1
    with open(args.out, "w", encoding="utf-8") as handle:
        if args.family == "images":
            classify = pipeline("image-classification", model=str(args.model), batch_size=args.batch_size, device=device)
            for path, top in zip(paths, classify(paths, top_k=1)):
                handle.write(json.dumps({"file": path, "label": top[0]["label"], "score": top[0]["score"]}) + "\n")
        else:
            import soundfile

            transcribe = pipeline("automatic-speech-recognition", model=str(args.model), batch_size=args.batch_size, device=device)

            def clips():
                for path in paths:
                    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
                    yield {"raw": samples.mean(axis=1), "sampling_rate": rate}

            for path, result in zip(paths, transcribe(clips())):
                handle.write(json.dumps({"file": path, "text": result["text"]}) + "\n")


if __name__ == "__main__":
    main()
