"""The output files of `ftkit predict` and `ftkit evaluate`, through the real entry point.

An output is never a file the command reads (any spelling, symlink or hard link); an existing
file is replaced only with --overwrite; --resume continues only the partial output of the same
input with the same model and options; one predict writes a file at a time; a refused or failed
predict leaves no file it created; Ctrl-C says in one line what was written and how to go on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import finish_run, make_sentence, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 100
BATCH = ["--batch-size", "2"]  # chunks of 32 records: 100 inputs make 4 chunks


@pytest.fixture(scope="module")
def run(tiny_models, sentiment_files, tmp_path_factory) -> Path:
    """A finished run folder (model/, config.yaml) of the tiny BERT."""
    return finish_run(tmp_path_factory.mktemp("output-safety") / "run", tiny_models["bert"], sentiment_files["train"], 1)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    import random

    rng = random.Random(3)
    return [make_sentence(rng, "positive" if i % 2 else "negative") + f" {i}" for i in range(N)]


@pytest.fixture(scope="module")
def expected(run, texts, tmp_path_factory) -> list[str]:
    """The lines of an uninterrupted predict on `texts`."""
    from ftkit.cli import main

    folder = tmp_path_factory.mktemp("expected")
    source = folder / "in.txt"
    source.write_text("\n".join(texts) + "\n")
    try:
        main(["predict", str(run), str(source), "--output", str(folder / "out.jsonl"), *BATCH])
    except SystemExit as exit_:
        assert exit_.code in (0, None), f"predict exited {exit_.code}"
    return (folder / "out.jsonl").read_text().splitlines()


@pytest.fixture
def source(tmp_path, texts) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("\n".join(texts) + "\n")
    return path


@pytest.fixture
def no_model(monkeypatch):
    """Every refusal here comes before the model loads: loading it fails the test."""
    import ftkit.inference

    def load(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the model loaded before this was refused")

    monkeypatch.setattr(ftkit.inference, "load_for_inference", load)


def one_line(code: int, out: str, err: str, expect: int = 2) -> str:
    """The single stderr line of a refusal (exit 2) or an interrupt (exit 130)."""
    assert code == expect, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) with its bytes: what 'nothing changed' means."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def state_of(output: Path) -> Path:
    return output.with_name(f".{output.name}.ftkit-predict.json")


def interrupt_after(monkeypatch, calls: int, error: BaseException | None = None) -> None:
    """The predictor raises (Ctrl-C by default) on its call number `calls + 1`, mid-predict."""
    import ftkit.inference

    load = ftkit.inference.load_for_inference
    seen = [0]

    class Task:
        def __init__(self, task):  # noqa: ANN001
            self.task = task

        def __getattr__(self, name):  # noqa: ANN001, ANN204
            return getattr(self.task, name)

        def predictor(self, *args):  # noqa: ANN002, ANN202
            run = self.task.predictor(*args)

            def counted(batch):  # noqa: ANN001, ANN202
                seen[0] += 1
                if seen[0] > calls:
                    raise error or KeyboardInterrupt
                return run(batch)

            return counted

    def patched(*args):  # noqa: ANN002, ANN202
        task, model, tokenizer = load(*args)
        return Task(task), model, tokenizer

    monkeypatch.setattr(ftkit.inference, "load_for_inference", patched)


# ---------------------------------------------------------------------------- an output that is an input


@pytest.mark.parametrize("spelling", ["same", "dotted", "parent", "symlink", "hardlink"])
def test_predict_output_onto_its_input_is_refused(cli, run, source, tmp_path, monkeypatch, no_model, spelling):
    monkeypatch.chdir(tmp_path)
    output = {
        "same": Path("in.txt"),
        "dotted": Path("./in.txt"),
        "parent": Path("..") / tmp_path.name / "in.txt",
        "symlink": Path("alias.jsonl"),
        "hardlink": Path("copy.jsonl"),
    }[spelling]
    if spelling == "symlink":
        output.symlink_to(source)
    if spelling == "hardlink":
        os.link(source, output)
    before = snapshot(tmp_path)
    line = one_line(*cli("predict", run, source, "--output", output, "--overwrite"))
    assert "is the input file" in line and "--output" in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("spelling", ["same", "symlink"])
def test_evaluate_output_onto_its_data_is_refused(cli, run, tmp_path, no_model, spelling):
    data = write_jsonl(tmp_path / "holdout.jsonl", [{"text": "a great film", "label": "positive"}] * 3)
    output = data
    if spelling == "symlink":
        output = tmp_path / "metrics.json"
        output.symlink_to(data)
    before = snapshot(tmp_path)
    line = one_line(*cli("evaluate", run, "--data", data, "--output", output, "--overwrite"))
    assert "is the input file" in line
    assert snapshot(tmp_path) == before


def test_evaluate_output_onto_either_side_of_an_aligned_pair_is_refused(cli, run, tmp_path, monkeypatch, no_model):
    monkeypatch.chdir(tmp_path)
    Path("en.txt").write_text("a cat\n")
    Path("es.txt").write_text("un gato\n")
    for output in ("./en.txt", "es.txt"):
        line = one_line(*cli("evaluate", run, "--data", "en.txt:es.txt", "--output", output, "--overwrite"))
        assert "is the input file" in line
    assert Path("en.txt").read_text() == "a cat\n" and Path("es.txt").read_text() == "un gato\n"


@pytest.mark.parametrize("target", ["config.yaml", "model/config.json", "model/model.safetensors"])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_output_onto_a_file_of_the_model_it_loads_is_refused(cli, run, source, tmp_path, no_model, target, command):
    """Named directly, or through a hard link outside the run folder: the run stays whole."""
    data = write_jsonl(tmp_path / "holdout.jsonl", [{"text": "a great film", "label": "positive"}] * 3)
    link = tmp_path / "elsewhere.json"
    os.link(run / target, link)
    before = snapshot(run)
    for output in (run / target, link):
        args = ["predict", run, source] if command == "predict" else ["evaluate", run, "--data", data]
        line = one_line(*cli(*args, "--output", output, "--overwrite"))
        assert "is the input file" in line and target.split("/")[-1] in line
    assert snapshot(run) == before


# ---------------------------------------------------------------------------- an existing output


def test_predict_onto_an_existing_file_needs_overwrite(cli, run, source, tmp_path, expected, no_model, monkeypatch):
    output = tmp_path / "notes.jsonl"
    output.write_text("my only copy\n")
    line = one_line(*cli("predict", run, source, "--output", output))
    assert str(output) in line and "already exists" in line and "--overwrite" in line
    assert output.read_text() == "my only copy\n"
    assert not state_of(output).exists()

    monkeypatch.undo()  # the model may load now
    code, _, err = cli("predict", run, source, "--output", output, "--overwrite", *BATCH)
    assert code == 0, err
    assert output.read_text().splitlines() == expected
    assert not state_of(output).exists()  # complete: no record left beside it


def test_predict_onto_an_empty_file_needs_no_flag(cli, run, source, tmp_path, expected):
    output = tmp_path / "preds.jsonl"
    output.touch()  # nothing in it to lose
    code, _, err = cli("predict", run, source, "--output", output, *BATCH)
    assert code == 0, err
    assert output.read_text().splitlines() == expected


def test_a_link_planted_at_the_old_probe_name_is_never_written_through(cli, run, source, tmp_path, expected):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / ".preds.jsonl.ftkit-write-test").symlink_to(victim)  # where older ftkit wrote its probe
    output = tmp_path / "preds.jsonl"
    code, _, err = cli("predict", run, source, "--output", output, *BATCH)
    assert code == 0, err
    assert victim.read_text() == "precious\n"
    assert output.read_text().splitlines() == expected


def test_overwrite_and_resume_together_are_refused(cli, run, source, tmp_path, no_model):
    output = tmp_path / "preds.jsonl"
    output.write_text("kept\n")
    line = one_line(*cli("predict", run, source, "--output", output, "--overwrite", "--resume"))
    assert "--resume" in line and "--overwrite" in line
    assert output.read_text() == "kept\n"


def test_predict_into_a_fifo_is_written_in_place(cli, run, source, tmp_path, expected):
    """A pipe given as --output exists but is no file to protect: no --overwrite, no rename."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.extend(fifo.read_text().splitlines()), daemon=True)
    reader.start()
    code, _, err = cli("predict", run, source, "--output", fifo, *BATCH)
    reader.join(timeout=60)
    assert code == 0, err
    assert received == expected
    assert fifo.is_fifo() and sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "pipe"]
    line = one_line(*cli("predict", run, source, "--output", fifo, "--resume"))
    assert "device or pipe" in line


def test_evaluate_onto_an_existing_file_needs_overwrite(cli, run, tmp_path, monkeypatch, no_model):
    data = write_jsonl(tmp_path / "holdout.jsonl", [{"text": "a great film", "label": "positive"}, {"text": "dull", "label": "negative"}])
    output = tmp_path / "report.json"
    output.write_text("last week's numbers\n")
    line = one_line(*cli("evaluate", run, "--data", data, "--output", output))
    assert str(output) in line and "already exists" in line and "--overwrite" in line
    assert output.read_text() == "last week's numbers\n"

    monkeypatch.undo()
    code, _, err = cli("evaluate", run, "--data", data, "--output", output, "--overwrite")
    assert code == 0, err
    assert json.loads(output.read_text())["samples"] == 2



def test_evaluate_output_leaves_the_users_files_beside_it_alone(cli, run, tmp_path):
    """The report is written whole under a fresh name: a file or folder of the user's that is
    called like a temporary (report.json.tmp) is neither read, cleared nor replaced."""
    data = write_jsonl(tmp_path / "holdout.jsonl", [{"text": "a great film", "label": "positive"}, {"text": "dull", "label": "negative"}])
    output = tmp_path / "report.json"
    (tmp_path / "report.json.tmp").write_text("my notes\n")
    (tmp_path / "report.json.tmp.d").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = cli("evaluate", run, "--data", data, "--output", output)
    assert code == 0, err
    assert json.loads(output.read_text())["samples"] == 2
    assert (tmp_path / "report.json.tmp").read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "report.json"])  # no temporary left
    mode = output.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # as any new file: not mkstemp's private 0600


# ---------------------------------------------------------------------------- --resume checks what it keeps


def test_interrupted_predict_says_what_it_wrote_and_resumes(cli, run, source, tmp_path, expected, monkeypatch):
    output = tmp_path / "preds.jsonl"
    interrupt_after(monkeypatch, calls=40)  # 16 batches a chunk: two chunks are written
    line = one_line(*cli("predict", run, source, "--output", output, *BATCH), expect=130)
    assert line == f"interrupted: 64 predictions are in {output}; run the same command with --resume to predict the rest"
    assert output.read_text().splitlines() == expected[:64]
    assert state_of(output).exists()

    line = one_line(*cli("predict", run, source, "--output", output, *BATCH))
    assert "interrupted ftkit predict" in line and "--resume" in line  # not replaced without a word

    monkeypatch.undo()
    with output.open("a") as handle:  # a kill mid-write leaves a cut line
        handle.write('{"text": "cut')
    code, _, err = cli("predict", run, source, "--output", output, "--resume", "--batch-size", "3")  # another batch size is fine
    assert code == 0, err
    assert "resuming after the 64 predictions" in err and f"wrote {N} predictions" in err
    assert [json.loads(x)["text"] for x in output.read_text().splitlines()] == [json.loads(x)["text"] for x in expected]
    assert output.read_text().splitlines()[:64] == expected[:64]
    assert not state_of(output).exists()


@pytest.fixture
def partial(cli, run, source, tmp_path, monkeypatch) -> Path:
    """An output interrupted after 64 of the 100 predictions of `source`."""
    output = tmp_path / "preds.jsonl"
    interrupt_after(monkeypatch, calls=40)
    code, _, err = cli("predict", run, source, "--output", output, *BATCH)
    assert code == 130, err
    monkeypatch.undo()
    return output


def test_resume_with_another_input_is_refused(cli, run, source, tmp_path, partial, texts, no_model):
    before = snapshot(tmp_path)
    other = tmp_path / "other.txt"
    other.write_text("\n".join(texts[:10] + ["a different line"] + texts[11:]) + "\n")
    line = one_line(*cli("predict", run, other, "--output", partial, "--resume"))
    assert "written for another input" in line and "--overwrite" in line
    shorter = tmp_path / "shorter.txt"
    shorter.write_text("\n".join(texts[:10]) + "\n")
    line = one_line(*cli("predict", run, shorter, "--output", partial, "--resume"))
    assert "holds 64 predictions" in line and "only 10 inputs" in line
    other.unlink()
    shorter.unlink()
    assert snapshot(tmp_path) == before


def test_resume_with_other_options_or_another_model_is_refused(cli, run, source, tmp_path, partial, no_model):
    before = snapshot(tmp_path)
    line = one_line(*cli("predict", run, source, "--output", partial, "--resume", "--top-k", "2"))
    assert "other options" in line and "--top-k" in line
    copy = tmp_path / "other-run"
    shutil.copytree(run, copy)
    line = one_line(*cli("predict", copy, source, "--output", partial, "--resume"))
    assert "another model" in line and "model" in line
    shutil.rmtree(copy)
    assert snapshot(tmp_path) == before


def test_resume_of_a_file_ftkit_did_not_write_is_refused(cli, run, source, tmp_path, partial, no_model):
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"text": "x"}\n' * 5)
    line = one_line(*cli("predict", run, source, "--output", mine, "--resume"))
    assert "not the partial output of an interrupted ftkit predict" in line
    assert mine.read_text() == '{"text": "x"}\n' * 5

    lines = partial.read_text().splitlines()  # edited after ftkit wrote it
    partial.write_text("\n".join(lines[:3] + ['{"text": "edited"}'] + lines[4:]) + "\n")
    before = snapshot(tmp_path)
    line = one_line(*cli("predict", run, source, "--output", partial, "--resume"))
    assert "changed since ftkit predict wrote it" in line
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------- no litter, failures keep the work done


def test_a_refused_input_leaves_no_output_behind(cli, run, tmp_path, no_model):
    bad = write_jsonl(tmp_path / "in.jsonl", [{"review": "no text column"}])
    before = snapshot(tmp_path)
    line = one_line(*cli("predict", run, bad, "--output", tmp_path / "new.jsonl"))
    assert "no column" in line
    assert snapshot(tmp_path) == before  # neither the output nor its record

    existing = tmp_path / "old.jsonl"
    existing.write_text("earlier results\n")
    one_line(*cli("predict", run, bad, "--output", existing, "--overwrite"))
    assert existing.read_text() == "earlier results\n"  # left as it was: no prediction was ready


def test_a_failed_model_load_leaves_no_output_behind(cli, run, source, tmp_path, monkeypatch):
    import ftkit.inference
    from ftkit.errors import FtkitError

    def load(*args):  # noqa: ANN002, ANN202
        raise FtkitError("the model folder is broken")

    monkeypatch.setattr(ftkit.inference, "load_for_inference", load)
    before = snapshot(tmp_path)
    line = one_line(*cli("predict", run, source, "--output", tmp_path / "new.jsonl"))
    assert line == "error: the model folder is broken"
    assert snapshot(tmp_path) == before


def test_a_failure_midway_keeps_the_predictions_made(cli, run, tmp_path, texts, expected):
    """A bad record in the third chunk: the 64 predictions before it stay, and once the input is
    fixed, --resume completes them (the kept records are the same)."""
    rows = [{"text": t} for t in texts]
    data = write_jsonl(tmp_path / "in.jsonl", rows[:79] + [{"review": "the text column is missing"}] + rows[80:])
    output = tmp_path / "preds.jsonl"
    line = one_line(*cli("predict", run, data, "--output", output, *BATCH))
    assert "has no column 'text'" in line and f"64 predictions are kept in {output}" in line and "--resume" in line
    assert output.read_text().splitlines() == expected[:64]

    write_jsonl(data, rows)
    code, _, err = cli("predict", run, data, "--output", output, "--resume", *BATCH)
    assert code == 0, err
    assert output.read_text().splitlines() == expected


# ---------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_while_the_model_loads_changes_nothing(cli, run, source, tmp_path, monkeypatch):
    import ftkit.inference

    def load(*args):  # noqa: ANN002, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(ftkit.inference, "load_for_inference", load)
    existing = tmp_path / "old.jsonl"
    existing.write_text("earlier results\n")
    before = snapshot(tmp_path)
    for output in (tmp_path / "new.jsonl", existing):
        line = one_line(*cli("predict", run, source, "--output", output, "--overwrite"), expect=130)
        assert line == "interrupted before any prediction was written; nothing changed"
    assert snapshot(tmp_path) == before


def test_ctrl_c_while_predicting_to_stdout(cli, run, source, monkeypatch):
    interrupt_after(monkeypatch, calls=40)
    code, out, err = cli("predict", run, source, *BATCH)
    assert code == 130 and len(out.splitlines()) == 64
    assert err.strip() == "interrupted: 64 predictions were written to stdout; rerun to predict them all (only an --output FILE can be continued with --resume)"


def test_ctrl_c_in_evaluate_is_one_line_and_writes_nothing(cli, run, tmp_path, monkeypatch):
    import ftkit.train

    def evaluation(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(ftkit.train, "run_evaluation", evaluation)
    data = write_jsonl(tmp_path / "holdout.jsonl", [{"text": "a great film", "label": "positive"}, {"text": "dull", "label": "negative"}])
    before = snapshot(tmp_path)
    line = one_line(*cli("evaluate", run, "--data", data, "--output", tmp_path / "m.json"), expect=130)
    assert line.startswith("interrupted before the evaluation finished") and "nothing changed" in line
    assert snapshot(tmp_path) == before


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_a_running_predict_owns_its_output_and_a_real_sigint_says_what_it_wrote(cli, run, tmp_path, texts):
    """A second predict into the same file is refused at once; SIGINT ends the first with one
    line and exit 130, and --resume then completes the file."""
    source = tmp_path / "big.txt"
    lines = [texts[i % N] + f" #{i}" for i in range(5000)]
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "preds.jsonl"
    command = [sys.executable, "-m", "ftkit", "predict", str(run), str(source), "--output", str(output), "--batch-size", "1"]
    first = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (output.exists() and output.stat().st_size) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.poll() is None, first.stderr.read()
        for flag in ("--resume", "--overwrite"):
            line = one_line(*cli("predict", run, source, "--output", output, flag))
            assert "another ftkit process is writing" in line
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and f"predictions are in {output}" in last and "--resume" in last
    written = int(last.split()[1].replace(",", ""))
    assert 0 < written < len(lines) and len(output.read_text().splitlines()) == written

    code, _, err = cli("predict", run, source, "--output", output, "--resume", "--batch-size", "64")
    assert code == 0, err
    assert [json.loads(x)["text"] for x in output.read_text().splitlines()] == lines


# ---------------------------------------------------------------------------- unreadable inputs, before the model loads


def test_an_unreadable_predict_input_is_refused_before_the_model_loads(cli, run, tmp_path, no_model):
    fifo = tmp_path / "in.txt"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    loop = tmp_path / "loop.txt"
    loop.symlink_to(loop)
    for path in (fifo, loop, tmp_path):
        line = one_line(*cli("predict", run, path, "--output", tmp_path / "out.jsonl"))
        assert str(path) in line
    assert not (tmp_path / "out.jsonl").exists()


def test_an_unreadable_side_of_an_aligned_pair_is_refused_before_the_model_loads(cli, run, tmp_path, monkeypatch, no_model):
    monkeypatch.chdir(tmp_path)
    Path("en.txt").write_text("a cat\n")
    os.mkfifo("es.txt")
    line = one_line(*cli("evaluate", run, "--data", "en.txt:es.txt"))
    assert "es.txt" in line
