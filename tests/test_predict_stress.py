"""`ftkit predict` killed midway leaves complete JSON lines in input order, and `--resume`
goes on after the last complete one: the result equals an uninterrupted run's output."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import finish_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = "good bad film plot actor scene great awful boring lovely the a of and it was".split()


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def run_dir(tiny_models, sentiment_files, tmp_path_factory) -> Path:
    return finish_run(tmp_path_factory.mktemp("predict-stress") / "run", tiny_models["bert"], sentiment_files["train"], 3)


def predict(run_dir: Path, source: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ftkit", "predict", str(run_dir), str(source), "--output", str(output), "--batch-size", "16", *extra]


def test_killed_predict_leaves_a_valid_prefix_and_resumes(run_dir, tmp_path):
    rng = random.Random(7)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40))) + f" #{i}" for i in range(12000)]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")

    full = tmp_path / "full.jsonl"
    done = subprocess.run(predict(run_dir, source, full), env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    expected = full.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["text"] for line in expected] == lines  # every input, in input order

    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(predict(run_dir, source, out), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (out.exists() and out.stat().st_size > 0) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "predict finished before it could be killed"
    text = out.read_text(encoding="utf-8")
    complete = text.splitlines()[: text.count("\n")]
    assert 0 < len(complete) < len(lines)
    assert complete == expected[: len(complete)]  # a valid prefix: complete records, in order, flushed

    with out.open("a", encoding="utf-8") as handle:  # a cut last line, as a kill mid-write leaves
        handle.write('{"text": "cut sho')
    resumed = subprocess.run(predict(run_dir, source, out, "--resume"), env=env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after the {len(complete)} predictions" in resumed.stderr
    assert f"wrote {len(lines)} predictions" in resumed.stderr
    assert out.read_text(encoding="utf-8").splitlines() == expected


def test_resume_refusals(run_dir, tmp_path, cli):
    source = tmp_path / "in.txt"
    source.write_text("one\ntwo\n")
    code, _, err = cli("predict", run_dir, source, "--resume")
    assert code == 2 and "--output" in err
    longer = tmp_path / "longer.jsonl"
    longer.write_text("".join(json.dumps({"text": str(i)}) + "\n" for i in range(5)))
    before = longer.read_bytes()
    # Lines ftkit did not write (no state file beside them) are never taken for predictions.
    code, _, err = cli("predict", run_dir, source, "--output", longer, "--resume")
    assert code == 2 and "not the partial output of an interrupted ftkit predict" in err
    assert longer.read_bytes() == before
