"""Two processes through `accelerate launch` (gloo, on the CPU): the run finishes, one process
writes and prints, every evaluation row counts exactly once, and metrics of the same model
gathered from two processes equal a single process's.

accelerate 1.15 starts several CPU processes only through its multi-process launcher:
`accelerate launch --cpu --num_processes 2` runs ONE process (its simple launcher). So:
ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 ... (torchrun underneath).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import FILLER, make_sentence, write_jsonl
from ftkit import checkpoints

TOLERANCE = 0.1  # accuracy: 2 processes see other batches and dropout draws, so not bit-equal


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_USE_CPU": "true"}


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def ftkit(*args, processes: int = 1) -> subprocess.CompletedProcess:
    if processes == 1:
        cmd = [sys.executable, "-m", "ftkit"]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", free_port(), "-m", "ftkit"]
    # Its own process group: on a timeout every rank goes with the launcher, none is left running
    # (and holding the CPU) for the rest of the suite.
    proc = subprocess.Popen([*cmd, *map(str, args)], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"timed out after 600 s: {' '.join(map(str, args))}\n{err[-3000:]}") from None
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    # torchrun's own traceback (ChildFailedError) is ~3000 characters: keep enough before it to
    # show the failing rank's error line
    assert done.returncode == 0, done.stderr[-8000:]
    return done


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def summary_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("summaries")
    rng = random.Random(3)
    files = {}
    for split, n in (("train", 48), ("validation", 13), ("test", 15)):  # odd sizes: a padded last batch
        rows = []
        for _ in range(n):
            first = " ".join(rng.sample(FILLER, 4))
            rows.append({"document": f"{first}. {' '.join(rng.sample(FILLER, 5))}.", "summary": f"{first}."})
        files[split] = write_jsonl(root / f"{split}.jsonl", rows)
    return files


def test_classification_two_processes(tiny_models, sentiment_files, tmp_path):
    data = ["--train", sentiment_files["train"], "--validation", sentiment_files["validation"], "--test", sentiment_files["test"]]
    common = ["finetune", "sentiment", "--model", tiny_models["bert"], *data, "--epochs", "4", "--learning-rate", "3e-3"]
    # the same batch per optimizer step: 16 on one process, 8 on each of two
    ftkit(*common, "--batch-size", "16", "-o", tmp_path / "one")
    two = ftkit(*common, "--batch-size", "8", "-o", tmp_path / "two", processes=2)

    assert two.stdout.count("┃ metric") == 1 and two.stderr.count("run folder:") == 1  # only the main process reports
    assert "batch 16 = 8 x 2 processes x 1 accumulation" in " ".join(two.stderr.split())
    m1, m2 = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert m1["train"]["steps"] == m2["train"]["steps"] == 40  # 160 rows / 16 per step * 4 epochs
    for split, rows in (("validation", 40), ("test", 48)):
        assert m1[split]["samples"] == m2[split]["samples"] == rows  # the padded last batch is not counted twice
        assert sum(c["support"] for c in m2[split]["per_class"].values()) == rows
    assert m1["test"]["accuracy"] > 0.8 and m2["test"]["accuracy"] > 0.8
    assert abs(m1["test"]["accuracy"] - m2["test"]["accuracy"]) <= TOLERANCE
    steps = [json.loads(l)["step"] for l in (tmp_path / "two" / "log.jsonl").read_text().splitlines() if '"train"' in l]
    assert steps == sorted(set(steps))  # one writer: each logging step once

    # Metrics of one model, gathered from two processes, equal a single process's exactly.
    single = ftkit("evaluate", tmp_path / "one", "--data", sentiment_files["test"], "--output", tmp_path / "e1.json", "--batch-size", "5")
    ftkit("evaluate", tmp_path / "one", "--data", sentiment_files["test"], "--output", tmp_path / "e2.json", "--batch-size", "5", processes=2)
    e1, e2 = (json.loads((tmp_path / f"e{i}.json").read_text()) for i in (1, 2))
    assert e2["samples"] == 48
    assert e2.pop("loss") == pytest.approx(e1.pop("loss"), abs=1e-6)
    assert same(e1, e2) and single.returncode == 0

    # predict sharded over two processes: complete, in input order, the same lines as one process
    rng = random.Random(5)
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"{make_sentence(rng, rng.choice(['positive', 'negative']))} #{i}\n" for i in range(700)))  # two chunks
    ftkit("predict", tmp_path / "one", texts, "--output", tmp_path / "p1.jsonl")
    two_pred = ftkit("predict", tmp_path / "one", texts, "--output", tmp_path / "p2.jsonl", processes=2)
    p1, p2 = ((tmp_path / f"p{i}.jsonl").read_text().splitlines() for i in (1, 2))
    assert len(p2) == 700 and [json.loads(line)["text"].rsplit("#", 1)[1] for line in p2] == [str(i) for i in range(700)]
    assert [json.loads(a)["label"] for a in p1] == [json.loads(b)["label"] for b in p2]
    assert max(abs(json.loads(a)["score"] - json.loads(b)["score"]) for a, b in zip(p1, p2)) < 1e-5
    assert two_pred.stderr.count("wrote 700 predictions") == 1


def test_seq2seq_two_processes(tiny_models, summary_files, tmp_path):
    data = ["--train", summary_files["train"], "--validation", summary_files["validation"], "--test", summary_files["test"]]
    common = ["finetune", "summarization", "--model", tiny_models["t5"], *data, "--max-steps", "6", "--set", "generation.max_new_tokens=8", "--quiet"]
    ftkit(*common, "--batch-size", "4", "-o", tmp_path / "two", processes=2)
    m = metrics(tmp_path / "two")
    assert m["test"]["samples"] == 15 and m["validation"]["samples"] == 13

    # Generated sequences differ in length across processes: padded before gathering, the
    # scores of one model equal a single process's.
    ftkit("evaluate", tmp_path / "two", "--data", summary_files["test"], "--output", tmp_path / "e1.json", "--batch-size", "4")
    ftkit("evaluate", tmp_path / "two", "--data", summary_files["test"], "--output", tmp_path / "e2.json", "--batch-size", "4", processes=2)
    e1, e2 = (json.loads((tmp_path / f"e{i}.json").read_text()) for i in (1, 2))
    assert e2["samples"] == 15
    assert e2.pop("loss") == pytest.approx(e1.pop("loss"), abs=1e-5)
    assert e1 == e2

    # generation sharded over two processes: the same summaries, in input order
    ftkit("predict", tmp_path / "two", summary_files["test"], "--output", tmp_path / "p1.jsonl", "--batch-size", "4")
    ftkit("predict", tmp_path / "two", summary_files["test"], "--output", tmp_path / "p2.jsonl", "--batch-size", "4", processes=2)
    assert (tmp_path / "p1.jsonl").read_text() == (tmp_path / "p2.jsonl").read_text()
    assert len((tmp_path / "p2.jsonl").read_text().splitlines()) == 15


def test_two_processes_stop_and_resume_exactly(tiny_models, sentiment_files, tmp_path):
    """Ctrl-C reaches the launcher and both workers: each rank saves its RNG state into the same
    checkpoint; resumed on two processes, the result equals an uninterrupted two-process run."""
    data = ["--train", sentiment_files["train"], "--validation", sentiment_files["validation"], "--test", sentiment_files["test"]]
    common = ["finetune", "sentiment", "--model", tiny_models["bert"], *data, "--epochs", "4", "--batch-size", "4",
              "--learning-rate", "3e-3", "--set", "train.checkpoint_every=5", "--set", "train.logging_steps=1", "--quiet"]
    ftkit(*common, "-o", tmp_path / "reference", processes=2)

    out = tmp_path / "run"
    launch = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", free_port(), "-m", "ftkit"]
    proc = subprocess.Popen([*launch, *map(str, common), "-o", str(out)], env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        log = out / "log.jsonl"
        if log.exists() and any(json.loads(l).get("step", 0) >= 27 for l in log.read_text().splitlines() if l.endswith("}")):
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: the whole process group
    proc.wait(timeout=120)
    assert not (out / "metrics.json").exists()
    latest = checkpoints.latest(out)
    assert latest is not None and {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in latest.iterdir()}

    ftkit(*common, "-o", out, "--resume", processes=2)

    a, b = metrics(tmp_path / "reference"), metrics(out)
    for m in (a, b):
        m["train"] = {k: v for k, v in m["train"].items() if k not in ("runtime_s", "samples_per_second", "eval_runtime_s")}
    assert a == b
    wa, wb = (load_file(str(d / "model" / "model.safetensors")) for d in (tmp_path / "reference", out))
    assert all(bool((wa[k] == wb[k]).all()) for k in wa)


@pytest.mark.parametrize("recipe, arch", [("ner", "bert"), ("generation", "gpt2")])
def test_token_classification_and_causal_lm_two_processes(recipe, arch, tiny_models, ner_files, sentiment_files, tmp_path):
    """Per-word predictions (NER) and token losses (perplexity) gathered from two processes:
    the metrics of one model equal a single process's."""
    files = ner_files if recipe == "ner" else sentiment_files
    data = ["--train", files["train"], "--validation", files["validation"], "--test", files["test"]]
    ftkit("finetune", recipe, "--model", tiny_models[arch], *data, "--max-steps", "3", "--batch-size", "8", "--max-length", "80", "-o", tmp_path / "run", "--quiet", processes=2)
    ftkit("evaluate", tmp_path / "run", "--data", files["test"], "--output", tmp_path / "e1.json", "--batch-size", "3")
    ftkit("evaluate", tmp_path / "run", "--data", files["test"], "--output", tmp_path / "e2.json", "--batch-size", "3", processes=2)
    e1, e2 = (json.loads((tmp_path / f"e{i}.json").read_text()) for i in (1, 2))
    assert e2.pop("loss") == pytest.approx(e1.pop("loss"), abs=1e-5)  # float sums in another order
    if recipe == "generation":
        assert e2.pop("perplexity") == pytest.approx(e1.pop("perplexity"), rel=1e-5)  # exp(loss)
    else:
        assert e2["samples"] == 40
    assert e1 == e2  # counts, and for NER every precision/recall/F1 per type


def same(a: object, b: object, tol: float = 1e-6) -> bool:
    """Equal metrics, floats within `tol`: sums over the same rows in another order (ECE, a bin's
    mean confidence) may differ in the last bits."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(a - b) <= tol
    return a == b


def two_process_evaluations(run: Path, data: Path, tmp_path: Path, batch_size: int) -> tuple[dict, dict]:
    """`evaluate` of one model on one process and on two: (one's metrics, two's)."""
    for i, processes in ((1, 1), (2, 2)):
        ftkit("evaluate", run, "--data", data, "--output", tmp_path / f"e{i}.json", "--batch-size", batch_size, processes=processes)
    e1, e2 = (json.loads((tmp_path / f"e{i}.json").read_text()) for i in (1, 2))
    return e1, e2


def two_process_predictions(run: Path, source: Path, tmp_path: Path, batch_size: int) -> tuple[list[dict], list[dict], str]:
    """`predict` of one model on one process and on two: (one's lines, two's lines, two's stderr)."""
    ftkit("predict", run, source, "--output", tmp_path / "p1.jsonl", "--batch-size", batch_size)
    two = ftkit("predict", run, source, "--output", tmp_path / "p2.jsonl", "--batch-size", batch_size, processes=2)
    p1, p2 = ([json.loads(line) for line in (tmp_path / f"p{i}.jsonl").read_text().splitlines()] for i in (1, 2))
    return p1, p2, two.stderr


def write_images(folder: Path, counts: dict[str, int], rng: random.Random) -> Path:
    """An image folder (LABEL/NNN.png) with counts[label] small noisy squares of its colour."""
    from test_images import COLOURS, write_image

    for label, n in counts.items():
        for i in range(n):
            write_image(folder / label / f"{i:03d}.png", COLOURS[label], rng, side=40 if i % 3 == 0 else 24)
    return folder


def test_image_classification_two_processes(tmp_path):
    """Images on two processes: a finetune whose metrics count every row once, an evaluate that
    equals one process's, and a predict (two chunks) giving one process's lines in input order."""
    from conftest import build_vit

    rng = random.Random(7)
    folders = {split: write_images(tmp_path / split, counts, rng) for split, counts in (
        ("train", {"red": 4, "green": 4, "blue": 4}), ("validation", {"red": 2, "green": 2, "blue": 1}), ("test", {"red": 3, "green": 2, "blue": 2}))}
    recipe = tmp_path / "colours.yaml"
    recipe.write_text(f"name: colours\ntask: image-classification\nmodel: {build_vit(tmp_path / 'vit')}\n"
                      "train:\n  epochs: 1\n  batch_size: 2\n  learning_rate: 3.0e-3\n  warmup_ratio: 0.0\n  seed: 0\n")
    run = tmp_path / "run"
    two = ftkit("finetune", recipe, *(f for split in folders for f in (f"--{split}", folders[split])), "-o", run, processes=2)
    assert two.stdout.count("┃ metric") == 1 and two.stderr.count("run folder:") == 1  # only the main process reports
    m = metrics(run)
    assert m["train"]["steps"] == 3  # 12 images / (2 x 2 processes)
    for split, rows in (("validation", 5), ("test", 7)):  # odd: the last batch of 4 is padded
        assert m[split]["samples"] == rows and sum(c["support"] for c in m[split]["per_class"].values()) == rows

    e1, e2 = two_process_evaluations(run, folders["test"], tmp_path, 2)
    assert e2["samples"] == 7
    assert e2.pop("loss") == pytest.approx(e1.pop("loss"), abs=1e-6)
    assert same(e1, e2)  # ECE and the reliability bins too

    # 37 images at batch 2: a chunk of 32 and one of 5, each split over the processes
    write_images(tmp_path / "many", {"red": 13, "green": 12, "blue": 12}, rng)
    p1, p2, err = two_process_predictions(run, tmp_path / "many", tmp_path, 2)
    assert [r["file"] for r in p2] == sorted(str(p) for p in (tmp_path / "many").rglob("*.png"))
    assert [r["file"] for r in p1] == [r["file"] for r in p2] and [r["label"] for r in p1] == [r["label"] for r in p2]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(p1, p2)) < 1e-5
    assert err.count("wrote 37 predictions") == 1


def test_speech_recognition_two_processes(tmp_path):
    """Speech on two processes: a finetune whose metrics count every clip once, an evaluate that
    equals one process's, and a predict (two chunks) giving one process's texts in input order."""
    pytest.importorskip("soundfile")
    pytest.importorskip("jiwer")
    from conftest import build_whisper
    from test_speech import rows, write_folder

    folders = {split: write_folder(tmp_path / split, rows(n, split[:2])) for split, n in (("train", 8), ("validation", 3), ("test", 5))}
    recipe = tmp_path / "speech.yaml"
    recipe.write_text(f"name: speech\ntask: speech-recognition\nmodel: {build_whisper(tmp_path / 'whisper' / 'model')}\n"
                      "data:\n  target_column: transcription\n"
                      "train:\n  epochs: 30\n  batch_size: 2\n  learning_rate: 3.0e-3\n  warmup_ratio: 0.0\n  max_target_length: 32\n  seed: 0\n"
                      "generation:\n  max_new_tokens: 6\nmetrics:\n  primary: wer\n  greater_is_better: false\n")
    run = tmp_path / "run"
    two = ftkit("finetune", recipe, *(f for split in folders for f in (f"--{split}", folders[split])), "-o", run, processes=2)
    assert two.stdout.count("┃ metric") == 1 and two.stderr.count("run folder:") == 1  # only the main process reports
    m = metrics(run)
    assert m["train"]["steps"] == 60  # 8 clips / (2 x 2 processes) x 30 epochs: enough to tell the tones apart
    assert m["validation"]["samples"] == 3 and m["test"]["samples"] == 5  # odd: the last batch of 4 is padded

    e1, e2 = two_process_evaluations(run, folders["test"], tmp_path, 2)
    assert e2["samples"] == 5
    assert e2.pop("loss") == pytest.approx(e1.pop("loss"), abs=1e-5)
    assert e1 == e2  # WER, CER, lengths: the same transcripts, each once

    # 35 clips at batch 2: a chunk of 32 and one of 3; a folder without metadata.csv: sorted names
    many = write_folder(tmp_path / "many", rows(35, "cl"))
    (many / "metadata.csv").unlink()
    p1, p2, err = two_process_predictions(run, many, tmp_path, 2)
    assert [Path(r["file"]).name for r in p2] == [f"cl{i:02d}.wav" for i in range(35)]
    assert p1 == p2  # files and texts
    assert len({r["text"] for r in p2}) == 3  # one transcript per tone: a clip given another's text would show
    assert err.count("wrote 35 predictions") == 1


# ------------------------------------------------------------------------------ multi-label, regression, masked LM


def two_process_finetune(recipe: str, model: Path, files: dict[str, Path], tmp_path: Path, *extra) -> tuple[Path, dict]:
    """`finetune RECIPE` on two processes into tmp_path/runs/run: (the run folder, its metrics).
    Only the main process reports, and both processes write into the one folder."""
    run = tmp_path / "runs" / "run"
    data = (f for split in ("train", "validation", "test") for f in (f"--{split}", files[split]))
    two = ftkit("finetune", recipe, "--model", model, *data, "-o", run, *extra, processes=2)
    assert two.stdout.count("┃ metric") == 1 and two.stderr.count("run folder:") == 1
    assert sorted(p.name for p in run.parent.iterdir()) == ["run"]
    assert (run / "model" / "config.json").is_file()
    return run, metrics(run)


def evaluated(run: Path, data: Path, tmp_path: Path, *extra) -> dict:
    """`ftkit evaluate RUN --data DATA` on one process: its metrics."""
    out_file = tmp_path / f"eval-{data.stem}.json"
    ftkit("evaluate", run, "--data", data, "--output", out_file, "--batch-size", "5", *extra)
    return json.loads(out_file.read_text())


def assert_same_metrics(reported: dict, scored: dict) -> None:
    """Every metric both hold is equal (floats within summation-order noise); samples and loss
    are among them."""
    shared = set(reported) & set(scored)
    assert {"samples", "loss"} <= shared, (sorted(reported), sorted(scored))

    def same(a, b, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            assert set(a) == set(b), where
            for key in a:
                same(a[key], b[key], f"{where}.{key}")
        elif isinstance(a, float) or isinstance(b, float):
            assert b == pytest.approx(a, rel=1e-5, abs=1e-6), where
        else:
            assert a == b, where

    for key in sorted(shared):
        same(reported[key], scored[key], key)


def test_multilabel_two_processes(tiny_models, tmp_path):
    """Thresholds tuned on validation from metrics gathered over two processes: the same on every
    rank, saved in config.json, used by the test split; evaluate on one process gives its metrics."""
    from test_multilabel import NAMES, make_rows

    rng = random.Random(5)
    files = {split: write_jsonl(tmp_path / f"{split}.jsonl", make_rows(rng, n)) for split, n in (("train", 64), ("validation", 19), ("test", 21))}
    run, m = two_process_finetune("multilabel", tiny_models["bert"], files, tmp_path, "--epochs", "6", "--batch-size", "4",
                                  "--learning-rate", "3e-3", "--max-length", "32", "--set", "warmup_ratio=0", "--quiet")
    assert m["train"]["steps"] == 48  # 64 rows / (4 x 2 processes) x 6 epochs
    assert m["validation"]["samples"] == 19 and m["test"]["samples"] == 21  # odd: the last batch is padded, counted once
    config = json.loads((run / "model" / "config.json").read_text())
    thresholds = m["train"]["thresholds"]
    assert set(thresholds) == set(NAMES)
    assert config["label_thresholds"] == thresholds == m["validation"]["thresholds"] == m["test"]["thresholds"]

    scored = evaluated(run, files["test"], tmp_path)
    assert scored["thresholds"] == thresholds  # the model's, never tuned on the file
    assert_same_metrics(m["test"], scored)


def test_regression_two_processes(tiny_models, tmp_path):
    """The target scale folded into the head once on each rank: the test split, evaluate and
    predict (one process) all see the data's units, and the metrics are predict's."""
    import numpy as np
    from test_regression import rows_of

    files = {split: write_jsonl(tmp_path / f"{split}.jsonl", rows_of(seed, n)) for split, seed, n in (("train", 1, 48), ("validation", 2, 13), ("test", 3, 15))}
    run, m = two_process_finetune("regression", tiny_models["bert"], files, tmp_path, "--text-column", "text", "--set", "data.text_pair_column=null",
                                  "--epochs", "4", "--batch-size", "4", "--learning-rate", "3e-3", "--max-length", "32",
                                  "--set", "train.warmup_ratio=0", "--quiet")
    true = [json.loads(line)["label"] for line in files["test"].read_text().splitlines()]
    train = np.array([json.loads(line)["label"] for line in files["train"].read_text().splitlines()])
    assert m["train"]["steps"] == 24  # 48 rows / (4 x 2 processes) x 4 epochs
    assert m["train"]["target_scale"] == pytest.approx({"mean": float(train.mean()), "std": float(train.std())})
    assert m["validation"]["samples"] == 13 and m["test"]["samples"] == 15

    assert_same_metrics(m["test"], evaluated(run, files["test"], tmp_path))

    ftkit("predict", run, files["test"], "--output", tmp_path / "pred.jsonl", "--batch-size", "4")
    scores = np.array([json.loads(line)["score"] for line in (tmp_path / "pred.jsonl").read_text().splitlines()])
    assert len(scores) == 15
    assert min(true) <= float(scores.mean()) <= max(true)  # data units: an unfolded (or twice folded) head is far off
    assert m["test"]["mse"] == pytest.approx(float(np.mean((scores - np.array(true)) ** 2)), rel=1e-4)


def test_mlm_two_processes(tiny_models, tmp_path):
    """Masks drawn from (seed, epoch, row), the same on either process layout: the perplexities
    the two-process run reports equal evaluate's on one process."""
    from test_mlm import make_document

    rng = random.Random(7)
    files = {split: write_jsonl(tmp_path / f"{split}.jsonl", [{"text": make_document(rng)} for _ in range(n)])
             for split, n in (("train", 60), ("validation", 15), ("test", 15))}
    run, m = two_process_finetune("mlm", tiny_models["bert"], files, tmp_path, "--epochs", "2", "--batch-size", "4",
                                  "--learning-rate", "3e-3", "--max-length", "16", "--quiet")
    for split in ("validation", "test"):
        assert m[split]["masked_tokens"] > 0 and math.isfinite(m[split]["perplexity"]), m[split]
        assert m[split]["perplexity"] == pytest.approx(math.exp(m[split]["loss"]), rel=1e-6)
        assert_same_metrics(m[split], evaluated(run, files[split], tmp_path))
