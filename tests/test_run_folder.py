"""A run folder's life (`ftkit finetune` / `reproduce` / `--resume`): what the user owns is never lost.

- A run folder carries a marker (`.ftkit-run.json`), its first file; `--overwrite` clears only a
  marked folder (or a run from before the marker) that holds nothing but run files.
- Nothing is made before every input is accepted; a refused input leaves the earlier run as it was.
- A run that fails (or is interrupted) before its first checkpoint leaves no trace; one with a
  checkpoint keeps it and says how to --resume.
- One process per run folder: a second is refused at once and deletes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_jsonl
from ftkit import __version__
from ftkit.runfiles import MARKER

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS = [{"text": "a great film", "label": "positive"}, {"text": "a dull film", "label": "negative"}] * 8


def args(models: dict, train: Path, out: Path, *extra: object, model: str = "bert") -> list[object]:
    return ["finetune", "sentiment", "--model", models[model], "--text-column", "text", "--label-column", "label",
            "--train", train, "--max-steps", "2", "--batch-size", "4", "--quiet", "-o", out, *extra]


def tree(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder` with a digest of its content: 'unchanged' means equal."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[rel] = "/"
    return found


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_models) -> Path:
    """A finished run (module-wide: copy it before changing it)."""
    from ftkit.cli import main

    root = tmp_path_factory.mktemp("finished")
    train = write_jsonl(root / "train.jsonl", ROWS)
    main([str(a) for a in args(tiny_models, train, root / "run")])  # a failure exits: the tests using it fail
    return root / "run"


@pytest.fixture
def train(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", ROWS)


def copy_run(finished: Path, dest: Path) -> Path:
    shutil.copytree(finished, dest, symlinks=True)
    return dest


# ---------------------------------------------------------------------------- the marker


def test_a_run_folder_is_marked_and_holds_only_run_files(finished, tmp_path):
    marker = json.loads((finished / MARKER).read_text())
    assert marker["ftkit"] == __version__ and marker["created"].endswith("+00:00")
    assert sorted(p.name for p in finished.iterdir()) == [MARKER, "config.yaml", "errors.jsonl", "log.jsonl", "metrics.json", "model", "plots"]
    assert not list(finished.parent.rglob("*.ftkit-write-test"))  # the write probe never stays


# ---------------------------------------------------------------------------- nothing before the inputs are accepted


def bad_column(c: list[object]) -> list[object]:
    c[c.index("--text-column") + 1] = "txet"
    return c


def missing_file(c: list[object]) -> list[object]:
    c[c.index("--train") + 1] = Path(c[c.index("--train") + 1]).with_name("nope.jsonl")
    return c


def wrong_family(c: list[object]) -> list[object]:
    """A summarization recipe on BERT (an encoder: no generation)."""
    train = Path(c[c.index("--train") + 1])
    rows = write_jsonl(train.with_name("docs.jsonl"), [{"document": "a long text", "summary": "short"}] * 8)
    return ["finetune", "summarization", "--model", c[3], "--train", rows, *c[c.index("--max-steps"):]]


REFUSED = {"misspelled column": bad_column, "missing file": missing_file, "wrong model family": wrong_family}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_refused_input_creates_no_folder(cli, tiny_models, train, tmp_path, name):
    """Before: OUT (and runs/) were made before the data was read, and blocked the rerun."""
    out = tmp_path / "runs" / "new"
    code, stdout, err = cli(*REFUSED[name](args(tiny_models, train, out)))
    assert code == 2 and one_line(err).startswith("error: ")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", list(REFUSED))
def test_overwrite_with_a_refused_input_keeps_the_earlier_run(cli, tiny_models, train, finished, tmp_path, name):
    """Before: --overwrite deleted the finished run, then the misspelled column was found."""
    out = copy_run(finished, tmp_path / "run")
    before = tree(out)
    code, _, err = cli(*REFUSED[name](args(tiny_models, train, out, "--overwrite")))
    assert code == 2 and one_line(err).startswith("error: ")
    assert tree(out) == before


# ---------------------------------------------------------------------------- what --overwrite may remove


def user_files_with_run_names(out: Path) -> None:
    """The user's own config.yaml, metrics.json, model/, plots/, checkpoints/: no marker."""
    (out / "model").mkdir(parents=True)
    (out / "model" / "config.json").write_text('{"mine": true}')
    (out / "plots").mkdir()
    (out / "plots" / "figure.png").write_bytes(b"png")
    (out / "checkpoints" / "step-1").mkdir(parents=True)
    (out / "config.yaml").write_text("experiment: mine\n")
    (out / "metrics.json").write_text('{"train": {}}')


def lone_old_config(out: Path) -> None:
    """What an older ftkit left after a refused input: its config.yaml alone."""
    out.mkdir()
    (out / "config.yaml").write_text("# Resolved config of an ftkit run. Rerun it with: ftkit finetune x\nname: x\n")


def many_user_files(out: Path) -> None:
    out.mkdir()
    for i in range(12):
        (out / f"{'long-name-' * 6}{i}.txt").write_text("mine")


@pytest.mark.parametrize("build, fragments", [
    (user_files_with_run_names, ["not marked as an ftkit run", MARKER, "config.yaml", "metrics.json", "choose another --output-dir"]),
    (lone_old_config, ["not marked as an ftkit run", "config.yaml"]),
    (many_user_files, ["not empty", "files that are not an ftkit run's", "...", "(12 in all)"]),
])
def test_overwrite_refuses_a_folder_that_is_not_a_run(cli, tiny_models, train, tmp_path, build, fragments):
    out = tmp_path / "out"
    build(out)
    before = tree(out)
    code, _, err = cli(*args(tiny_models, train, out, "--overwrite"))
    line = one_line(err)
    assert code == 2 and all(f in line for f in fragments), line
    assert len(line) - len(str(out)) < 400  # the names are cut (12 of 70 characters each, uncut: 840)
    assert tree(out) == before


def test_overwrite_refuses_a_run_folder_that_also_holds_other_files(cli, tiny_models, train, finished, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    code, _, err = cli(*args(tiny_models, train, out, "--overwrite"))
    line = one_line(err)
    assert code == 2 and "an ftkit run and other files (notes.txt)" in line
    assert tree(out) == before


def test_overwrite_refuses_to_delete_an_input(cli, tiny_models, train, finished, tmp_path):
    """Fine-tuning a run's own model again into the same folder: --overwrite would delete it."""
    out = copy_run(finished, tmp_path / "run")
    before = tree(out)
    argv = args(tiny_models, train, out, "--overwrite")
    argv[argv.index("--model") + 1] = out / "model"
    code, _, err = cli(*argv)
    assert code == 2 and "--overwrite would delete --model" in one_line(err)
    assert tree(out) == before


def test_overwrite_replaces_a_marked_run_and_its_leftovers(cli, tiny_models, train, finished, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    mine = tmp_path / "mine.txt"
    mine.write_text("precious")
    (out / "checkpoints" / "step-9.tmp").mkdir(parents=True)  # a kill mid-checkpoint
    (out / "model.tmp").mkdir()  # a kill mid-save
    (out / ".ftkit-write-test").symlink_to(mine)  # a tampered probe of older versions
    (out / MARKER).write_text('{"ftkit": "0.0.1", "created": "then"}')
    code, _, err = cli(*args(tiny_models, train, out, "--overwrite"))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "config.yaml", "errors.jsonl", "log.jsonl", "metrics.json", "model", "plots"]
    assert json.loads((out / MARKER).read_text())["ftkit"] == __version__  # the new run's
    assert mine.read_text() == "precious"


def test_a_run_from_before_the_marker_counts_as_a_run(cli, tiny_models, train, finished, tmp_path):
    """config.yaml with ftkit's header + metrics.json + model/: written by an older ftkit."""
    out = copy_run(finished, tmp_path / "run")
    (out / MARKER).unlink()
    code, _, err = cli(*args(tiny_models, train, out))
    assert code == 2 and "not empty (it holds an earlier run)" in one_line(err)
    code, _, err = cli(*args(tiny_models, train, out, "--overwrite"))
    assert code == 0, err
    assert (out / MARKER).is_file()


def test_a_tampered_probe_name_is_never_written_through(cli, tiny_models, train, tmp_path):
    """Older versions wrote OUT/.ftkit-write-test: a link there pointed the write at another file."""
    out = tmp_path / "out"
    out.mkdir()
    mine = tmp_path / "mine.txt"
    mine.write_text("precious")
    (out / ".ftkit-write-test").symlink_to(mine)
    code, _, err = cli(*args(tiny_models, train, out))
    assert code == 0, err
    assert mine.read_text() == "precious"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".ftkit-write-test")]


# ---------------------------------------------------------------------------- a failed run leaves no trace


def stop_as_training_starts(monkeypatch, error: BaseException) -> None:
    """The run folder is made (the inputs were accepted); fail where training would begin."""
    from ftkit.progress import Reporter

    def start(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise error

    monkeypatch.setattr(Reporter, "start", start)


def test_a_run_failing_before_its_first_checkpoint_removes_what_it_made(cli, tiny_models, train, tmp_path, monkeypatch):
    """Before: a lone config.yaml stayed, blocking the same command and --resume."""
    from ftkit.errors import FtkitError

    stop_as_training_starts(monkeypatch, FtkitError("stopped by the test", exit_code=1))
    out = tmp_path / "runs" / "new"
    code, _, err = cli(*args(tiny_models, train, out))
    assert (code, err) == (1, "error: stopped by the test\n")
    assert not (tmp_path / "runs").exists()  # the parent it made goes too

    empty = tmp_path / "empty"  # a folder that was there stays, as it was
    empty.mkdir()
    code, _, _ = cli(*args(tiny_models, train, empty))
    assert code == 1 and list(empty.iterdir()) == []


def test_a_failed_overwrite_keeps_the_marker_of_the_folder(cli, tiny_models, train, finished, tmp_path, monkeypatch):
    """The earlier run was replaced (its inputs were accepted); the folder stays a marked, empty run
    folder, so the same command runs again without --overwrite."""
    out = copy_run(finished, tmp_path / "run")
    stop_as_training_starts(monkeypatch, RuntimeError("boom"))
    code, _, err = cli(*args(tiny_models, train, out, "--overwrite"))
    assert code == 1 and "boom" in err
    assert [p.name for p in out.iterdir()] == [MARKER]
    monkeypatch.undo()
    code, _, err = cli(*args(tiny_models, train, out))
    assert code == 0, err


# ---------------------------------------------------------------------------- Ctrl-C


def interrupt(monkeypatch, target: str) -> None:
    def raiser(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(target, raiser)


@pytest.mark.parametrize("target", ["ftkit.data.adapt_columns", "ftkit.train.load_splits", "ftkit.tasks.classification.load_processor"])
def test_ctrl_c_before_training_says_nothing_was_saved(cli, tiny_models, train, tmp_path, monkeypatch, target):
    """Reading the data, tokenizing, loading: exit 130 with one line (Typer's own exit is silent)."""
    interrupt(monkeypatch, target)
    out = tmp_path / "out"
    code, _, err = cli(*args(tiny_models, train, out))
    assert (code, err) == (130, "interrupted before training started; nothing was saved\n")
    assert not out.exists()


def test_ctrl_c_after_the_folder_is_made_removes_it(cli, tiny_models, train, tmp_path, monkeypatch):
    stop_as_training_starts(monkeypatch, KeyboardInterrupt())
    out = tmp_path / "out"
    code, _, err = cli(*args(tiny_models, train, out))
    assert code == 130 and one_line(err) == (
        f"interrupted before the run saved a checkpoint; nothing was kept ({out} removed). Run the same command to start again")
    assert not out.exists()


def test_ctrl_c_during_the_final_save_keeps_the_checkpoint_to_resume(cli, tiny_models, train, tmp_path, monkeypatch):
    out = tmp_path / "out"
    argv = args(tiny_models, train, out, "--set", "train.checkpoint_every=1")
    argv[argv.index("--max-steps") + 1] = "3"
    interrupt(monkeypatch, "ftkit.artifacts.save_run")
    code, _, err = cli(*argv)
    line = one_line(err)
    assert code == 130 and "the latest checkpoint" in line and "is intact" in line and f"--resume {out}" in line
    assert (out / "checkpoints").is_dir() and not (out / "metrics.json").exists()
    monkeypatch.undo()
    code, _, err = cli(*argv, "--resume")
    assert code == 0, err
    assert (out / "metrics.json").is_file() and not (out / "checkpoints").exists()


# ---------------------------------------------------------------------------- one process per folder


def test_a_folder_another_process_holds_is_refused_and_kept(cli, tiny_models, train, finished, tmp_path):
    from ftkit.fsguard import locked

    out = copy_run(finished, tmp_path / "run")
    before = tree(out)
    with locked(out, "a run"):  # as another ftkit process would
        code, _, err = cli(*args(tiny_models, train, out, "--overwrite"))
    assert code == 2 and "another ftkit process is writing this run folder" in one_line(err)
    assert tree(out) == before


def unfinished(finished: Path, dest: Path) -> Path:
    """A stopped run: a complete checkpoint, no metrics.json, no model/ (its state is not read here)."""
    out = copy_run(finished, dest)
    (out / "metrics.json").unlink()
    shutil.rmtree(out / "model")
    (out / "checkpoints" / "step-1").mkdir(parents=True)
    (out / "checkpoints" / "step-1" / "trainer_state.json").write_text("{}")
    return out


def test_an_unfinished_run_asks_for_resume(cli, tiny_models, train, finished, tmp_path):
    out = unfinished(finished, tmp_path / "run")
    before = tree(out)
    code, _, err = cli(*args(tiny_models, train, out))
    assert code == 2 and "holds an unfinished run with checkpoints; add --resume to continue it" in one_line(err)
    assert tree(out) == before


def test_resume_of_a_folder_another_process_holds_is_refused(cli, tiny_models, finished, tmp_path):
    from ftkit.fsguard import locked

    out = unfinished(finished, tmp_path / "run")
    before = tree(out)
    with locked(out, "a run"):
        code, _, err = cli(*args(tiny_models, finished.parent / "train.jsonl", out, "--resume"))
    assert code == 2 and "another ftkit process is writing this run folder" in one_line(err)
    assert tree(out) == before


def test_losing_the_race_for_a_new_folder_deletes_nothing(cli, tiny_models, train, tmp_path, monkeypatch):
    """Both saw no folder up front; the other process made and locked it first."""
    import contextlib

    import ftkit.tasks.classification
    from ftkit.fsguard import locked

    out = tmp_path / "out"
    held = contextlib.ExitStack()
    original = ftkit.tasks.classification.load_processor

    def other_process_wins(*a, **k):  # noqa: ANN002, ANN003, ANN202
        out.mkdir()
        (out / MARKER).write_text('{"ftkit": "other"}')
        held.enter_context(locked(out, "a run"))
        return original(*a, **k)

    monkeypatch.setattr(ftkit.tasks.classification, "load_processor", other_process_wins)
    with held:
        code, _, err = cli(*args(tiny_models, train, out))
    assert code == 2 and "another ftkit process is writing this run folder" in one_line(err)
    assert (out / MARKER).read_text() == '{"ftkit": "other"}'


def test_two_runs_started_together_into_one_folder(tiny_models, train, tmp_path):
    """Exactly one runs; the other is refused with one line, and the winner's run is whole."""
    out = tmp_path / "same"
    argv = [sys.executable, "-m", "ftkit", *map(str, args(tiny_models, train, out))]
    argv[argv.index("--max-steps") + 1] = "60"  # the winner is still training when the other arrives
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "another ftkit process is writing this run folder" in one_line(loser)
    assert json.loads((out / "metrics.json").read_text())["train"]["steps"] == 60
    assert (out / "model" / "model.safetensors").is_file()


# ---------------------------------------------------------------------------- reading run folders


def test_runs_compare_skips_a_folder_that_is_not_a_run(cli, finished, tmp_path):
    """`ftkit runs compare runs/*` with a stray folder among the runs: compared, with a note."""
    a, b = copy_run(finished, tmp_path / "a"), copy_run(finished, tmp_path / "b")
    (tmp_path / "stray").mkdir()
    code, out, err = cli("runs", "compare", a, b, tmp_path / "stray", "--markdown")
    assert code == 0, err
    assert "| run | a | b |" in out
    assert one_line(err).startswith(f"note: skipped {tmp_path / 'stray'}: not an ftkit run folder")
    code, out, err = cli("runs", "compare", a, tmp_path / "stray")
    assert code == 2 and out == "" and "needs two or more run folders" in one_line(err)
