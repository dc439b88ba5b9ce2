"""What a user sees while ftkit works: the first line, the first loss, and progress of every
evaluation and prediction pass. The `cli` fixture's stderr is no terminal: plain lines, as in a
log file or CI; one test per command forces the live bar (TTY_COMPATIBLE=1) to check that it
draws and that stdout stays clean."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import finish_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["a great film", "dull and boring", "superb acting", "tedious plot"] * 5  # 20 rows


@pytest.fixture(scope="module")
def run(tiny_models, sentiment_files, tmp_path_factory) -> Path:
    return finish_run(tmp_path_factory.mktemp("progress") / "run", tiny_models["bert"], sentiment_files["train"], 2)


@pytest.fixture
def every_line(monkeypatch):
    """Plain lines at every tenth of a pass (and every batch with no total), not every 10 s."""
    from ftkit.progress import Pass

    monkeypatch.setattr(Pass, "PLAIN_EVERY_S", 0.0)


def finetune(tiny_models, files, out: Path, *extra: object) -> list[object]:
    """160 train rows at batch 8: 20 steps an epoch; validation 40 and test 48 rows at eval batch 16: 3 batches each."""
    return ["finetune", "sentiment", "--model", tiny_models["bert"], "--train", files["train"], "--validation", files["validation"],
            "--test", files["test"], "--batch-size", "8", "--max-steps", "3", "-o", out, *extra]


def test_finetune_says_the_fraction_of_an_epoch_the_first_loss_and_evaluation_progress(cli, tiny_models, sentiment_files, tmp_path):
    code, out, err = cli(*finetune(tiny_models, sentiment_files, tmp_path / "run"))
    assert code == 0, err
    lines = err.splitlines()
    title = next(line for line in lines if line.startswith("sentiment: 160 examples"))
    assert "0.15 epochs, 3 steps (20 per epoch)" in title and "epoch(s)" not in title
    # The first loss at step 1, long before the first logging step (10); in a log, only that one
    # early line: the next is the logging step (the run's last, 3).
    steps = [line for line in lines if line.startswith("step ")]
    assert [s.split()[1] for s in steps] == ["1/3", "3/3"], steps
    assert re.match(r"step 1/3 loss \d+\.\d{4} lr \S+ \d+\.\d samples/s$", steps[0])
    first = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert first["type"] == "train" and first["step"] == 3  # the log keeps its cadence: the early loss is shown, not logged
    # Validation (before its eval line) and the final test scoring each say how far they got.
    validation = next(i for i, line in enumerate(lines) if re.fullmatch(r"validation 3/3 batches in \d:\d\d:\d\d", line))
    evaluated = next(i for i, line in enumerate(lines) if line.startswith("eval step 3 (epoch 0.15): accuracy"))
    test = next(i for i, line in enumerate(lines) if re.fullmatch(r"test 3/3 batches in \d:\d\d:\d\d", line))
    assert validation < evaluated < test, err
    assert "accuracy" in out  # the metrics table


def test_quiet_prints_no_progress(cli, tiny_models, sentiment_files, tmp_path):
    code, out, err = cli(*finetune(tiny_models, sentiment_files, tmp_path / "run", "--quiet"))
    assert code == 0 and err.splitlines() == [f"run folder: {tmp_path / 'run'}"], err  # no title, steps or evaluation progress
    assert "accuracy" in out


def test_whole_epochs_keep_the_epoch_count(cli, tiny_models, sentiment_files, tmp_path):
    code, _, err = cli(*finetune(tiny_models, sentiment_files, tmp_path / "run", "--max-steps", "20",
                                 "--set", "train.logging_steps=1", "--set", "data.max_eval_samples=16"))
    assert code == 0, err
    assert "160 examples, 1 epoch(s), 20 steps, batch 8" in err
    steps = [line.split()[1] for line in err.splitlines() if line.startswith("step ")]
    assert steps == [f"{n}/20" for n in range(1, 21)]  # logging every step: no early line besides


def test_evaluation_lines_every_tenth_in_a_log(cli, run, sentiment_files, every_line):
    code, out, err = cli("evaluate", run, "--data", sentiment_files["test"], "--batch-size", "8")  # 48 rows: 6 batches
    assert code == 0, err
    # the pass is named by the file it scores, as the table's column is (not "test")
    name = sentiment_files["test"].name
    progress = [line for line in err.splitlines() if line.startswith(f"{name} ")]
    assert [line.split()[1] for line in progress] == ["1/6", "2/6", "3/6", "4/6", "5/6", "6/6"], err
    assert re.fullmatch(rf"{re.escape(name)} 1/6 batches, \d:\d\d:\d\d, ETA \d:\d\d:\d\d", progress[0])
    assert re.fullmatch(rf"{re.escape(name)} 6/6 batches in \d:\d\d:\d\d", progress[-1])
    assert "accuracy" in out and "batches" not in out


def test_predict_into_a_file_counts_rows_and_keeps_the_file_clean(cli, run, tmp_path, every_line):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    output = tmp_path / "out.jsonl"
    code, out, err = cli("predict", run, source, "--output", output, "--batch-size", "8")
    assert code == 0 and out == "", err
    progress = [line for line in err.splitlines() if line.startswith("predict ")]
    assert [line.split()[1] for line in progress] == ["8", "16", "20", "20"], err  # per batch, then the end
    assert re.fullmatch(r"predict 8 rows, \d+\.\d/s, \d:\d\d:\d\d", progress[0])
    assert re.fullmatch(r"predict 20 rows in \d:\d\d:\d\d \(\d+\.\d/s\)", progress[-1])
    assert err.splitlines()[-1] == f"wrote 20 predictions to {output}"
    assert [json.loads(line)["text"] for line in output.read_text().splitlines()] == TEXTS


def test_predict_to_stdout_keeps_stderr_for_problems_in_a_pipeline(cli, run, tmp_path, every_line):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    code, out, err = cli("predict", run, source, "--batch-size", "8")
    assert code == 0 and err == "", err
    assert [json.loads(line)["text"] for line in out.splitlines()] == TEXTS


def test_a_terminal_gets_live_bars_and_stdout_stays_jsonl(cli, run, tiny_models, sentiment_files, tmp_path, monkeypatch):
    """stderr a terminal, stdout redirected (`> out.jsonl`): a bar on stderr, nothing of it on stdout."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    code, out, err = cli("predict", run, source, "--batch-size", "8")
    assert code == 0, err
    assert "predict" in err and "20 rows" in err and "\x1b[" in err  # drawn with escape codes
    assert "\x1b" not in out and [json.loads(line)["text"] for line in out.splitlines()] == TEXTS
    # Training: validation is a second bar under the training bar; the training bar ends whole.
    code, out, err = cli(*finetune(tiny_models, sentiment_files, tmp_path / "run"))
    assert code == 0, err
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err)
    assert re.search(r"train\s.*3/3 loss \d+\.\d{4}", plain) and re.search(r"validation\s.*\d/3 batches", plain), plain
    assert re.search(r"test\s.*3/3 batches", plain) and "eval step 3 (epoch 0.15)" in plain
