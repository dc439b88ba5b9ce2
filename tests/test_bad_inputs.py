"""The bad-input matrix: every way a user's input can be wrong, through the real entry point.

Each case must end in exit code 2 and exactly one stderr line `error: ...` that names the file
(and line/row where there is one), says what is wrong and how to fix it; no traceback, nothing
on stdout, and nothing half-written. Every failure comes before training: a guard turns the
start of a training loop into a test failure. README.md's "Bad input" table lists these cases.
Two cases (flags Click cannot parse) are expected failures until the CLI entry point formats
Click's usage errors as one line.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import save_classifier, write_jsonl
from ftkit.runfiles import RUN_FILES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS = [{"text": "a great film", "label": "positive"}, {"text": "a dull film", "label": "negative"}] * 4
NER_ROWS = [{"tokens": ["Alice", "met", "Bob"], "ner_tags": ["B-PER", "O", "B-PER"]}] * 4


@dataclass
class Ctx:
    """What a case builds its command from: a scratch folder, the tiny checkpoints, patches."""

    tmp: Path
    models: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    classifier: Callable[[], Path]

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    def jsonl(self, name: str, rows: list[dict]) -> Path:
        return write_jsonl(self.tmp / name, rows)

    def finetune(self, *args: object, recipe: str = "sentiment", model: str = "bert") -> list[object]:
        """`ftkit finetune` on the tiny BERT with local files; columns named, so no notes print."""
        columns = ["--text-column", "text", "--label-column", "label"] if recipe in ("sentiment", "spam") else []
        return ["finetune", recipe, "--model", self.models.get(model, model), *columns, "--output-dir", self.out, "--quiet", *args]

    def good(self, name: str = "good.jsonl") -> Path:
        return self.jsonl(name, ROWS)


Case = Callable[[Ctx], tuple[list[object], list[str]]]
CASES: dict[str, Case] = {}


def case(fn: Case) -> Case:
    """Register a case: it returns the command and the fragments its error line must hold."""
    CASES[fn.__name__] = fn
    return fn


def deny(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """The write probes fail as on a read-only folder or a full disk (root ignores chmod)."""
    original = Path.write_text

    def write_text(self: Path, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if self.name.endswith(".ftkit-write-test"):
            raise OSError(code, os.strerror(code))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


# ---------------------------------------------------------------------------- files


@case
def missing_file(c: Ctx):
    path = c.tmp / "nope.jsonl"
    return c.finetune("--train", path), [str(path), "no such file", "check the path"]


@case
def missing_validation_file(c: Ctx):
    path = c.tmp / "nope.csv"
    return c.finetune("--train", c.good(), "--validation", path), [str(path), "no such file"]


@case
def empty_file(c: Ctx):
    path = c.file("train.jsonl", "")
    return c.finetune("--train", path), [str(path), "empty", "no records", "pass another file"]


@case
def csv_with_only_a_header(c: Ctx):
    path = c.file("train.csv", "text,label\n")
    return c.finetune("--train", path), [str(path), "empty", "no records"]


@case
def unknown_extension(c: Ctx):
    path = c.file("train.xlsx", "text,label\n")
    return c.finetune("--train", path), [str(path), "unknown extension '.xlsx'", ".csv", ".jsonl", "rename"]


@case
def txt_without_format(c: Ctx):
    path = c.file("train.txt", "a great film\n")
    return c.finetune("--train", path), [str(path), "unknown extension '.txt' without a format", "--format conll", "--format text"]


@case
def text_column_missing(c: Ctx):
    path = c.good()
    argv = c.finetune("--train", path)
    argv[argv.index("--text-column") + 1] = "txet"
    return argv, [str(path), "no column 'txet'", "Did you mean 'text'?", "Columns present: text, label", "--text-column"]


@case
def label_column_missing(c: Ctx):
    path = c.good()
    argv = c.finetune("--train", path)
    argv[argv.index("--label-column") + 1] = "lable"
    return argv, [str(path), "no column 'lable'", "Did you mean 'label'?", "Columns present: text, label", "--label-column"]


@case
def recipe_column_absent(c: Ctx):
    """The recipe says 'sentence'; the file has neither it nor the conventional 'text'."""
    path = c.jsonl("train.jsonl", [{"review": r["text"], "label": r["label"]} for r in ROWS])
    argv = ["finetune", "sentiment", "--model", c.models["bert"], "--train", path, "--output-dir", c.out, "--quiet"]
    return argv, [str(path), "no column 'sentence'", "Columns present: review, label", "--text-column"]


@case
def ragged_csv_row(c: Ctx):
    path = c.file("train.csv", "text,label\na great film,positive\na dull, long film,negative\n")
    return c.finetune("--train", path), [str(path), "line 3", "3 fields", "header has 2", "quote fields"]


@case
def invalid_json_line(c: Ctx):
    path = c.file("train.jsonl", '{"text": "a great film", "label": "positive"}\n{"text": "a dull film", label: negative}\n')
    return c.finetune("--train", path), [str(path), "line 2", "invalid JSON", "one JSON object"]


@case
def json_line_not_an_object(c: Ctx):
    path = c.file("train.jsonl", json.dumps(ROWS[0]) + '\n["a dull film", "negative"]\n')
    return c.finetune("--train", path), [str(path), "line 2", "JSON list", "expected an object"]


@case
def invalid_json_array(c: Ctx):
    path = c.file("train.json", '[\n  {"text": "a great film", "label": "positive"},\n  {"text": "a dull film"\n]\n')
    return c.finetune("--train", path), [str(path), "invalid JSON at line 4", "fix it"]


@case
def not_utf8(c: Ctx):
    path = c.file("train.csv", "text,label\na great film,positive\nun café terne,negative\n".encode("latin-1"))
    return c.finetune("--train", path), [str(path), "line 3", "not valid utf-8", "encoding", "--encoding (e.g. latin-1)"]


@case
def unknown_encoding(c: Ctx):
    return c.finetune("--train", c.good(), "--encoding", "utf-99"), ["unknown encoding 'utf-99'", "--encoding"]


@case
def all_texts_empty(c: Ctx):
    path = c.jsonl("train.jsonl", [{"text": t, "label": r["label"]} for t, r in zip(["", "  ", "\t"] * 3, ROWS)])
    return c.finetune("--train", path, "--validation", c.good()), [str(path), "every text is empty", "--text-column"]


@case
def null_label(c: Ctx):
    path = c.file("train.jsonl", json.dumps(ROWS[0]) + '\n{"text": "a dull film", "label": null}\n' + json.dumps(ROWS[1]) + "\n")
    return c.finetune("--train", path, "--validation", c.good()), [str(path), "line/row 2", "label is empty", "fill it in or drop the row"]


@case
def nan_label(c: Ctx):
    path = c.file("train.jsonl", json.dumps(ROWS[0]) + "\n" + json.dumps(ROWS[1]) + '\n{"text": "a dull film", "label": NaN}\n')
    return c.finetune("--train", path, "--validation", c.good()), [str(path), "line/row 3", "label is empty", "fill it in"]


@case
def empty_csv_label(c: Ctx):
    path = c.file("train.csv", "text,label\na great film,positive\na dull film,\na fine film,positive\n")
    return c.finetune("--train", path, "--validation", c.good()), [str(path), "line/row 3", "label is empty"]


@case
def single_class(c: Ctx):
    path = c.jsonl("train.jsonl", [{"text": f"a great film {i}", "label": "positive"} for i in range(8)])
    return c.finetune("--train", path, "--validation", c.good()), [str(path), "'positive'", "at least two classes", "--label-column"]


@case
def validation_label_unseen_in_training(c: Ctx):
    path = c.jsonl("validation.jsonl", [ROWS[0], ROWS[1], {"text": "a so-so film", "label": "neutral"}])
    return c.finetune("--train", c.good(), "--validation", path), [str(path), "'neutral' (first at line/row 3)", "never had", "Known labels: negative, positive"]


@case
def unseen_test_label(c: Ctx):
    path = c.jsonl("test.jsonl", [{"text": "a so-so film", "label": "mixed"}, ROWS[0]])
    return c.finetune("--train", c.good(), "--validation", c.good("v.jsonl"), "--test", path), [str(path), "test has label(s)", "'mixed' (first at line/row 1)"]


# ---------------------------------------------------------------------------- recipes and options


@case
def unknown_recipe(c: Ctx):
    return c.finetune("--train", c.good(), recipe="sentimnt"), ["unknown recipe 'sentimnt'", "Did you mean 'sentiment'?", "ftkit recipes list"]


@case
def recipe_file_invalid_yaml(c: Ctx):
    path = c.file("mine.yaml", "name: mine\ntask: [sequence-classification\n")
    return c.finetune("--train", c.good(), recipe=str(path)), [str(path), "invalid YAML", "line 3"]


@case
def recipe_file_unknown_key(c: Ctx):
    path = c.file("mine.yaml", "name: mine\ntask: sequence-classification\nmodel: x\ntrain:\n  epoch: 2\n")
    return c.finetune("--train", c.good(), recipe=str(path)), [str(path), "unknown key 'train.epoch'", "Did you mean 'epochs'?", "Valid keys under train"]


@case
def unknown_set_key(c: Ctx):
    return c.finetune("--train", c.good(), "--set", "train.learnin_rate=1e-4"), [
        "unknown config key 'train.learnin_rate'", "Did you mean 'train.learning_rate'?", "Valid keys:", "train.warmup_ratio"
    ]


@case
def ill_typed_set_value(c: Ctx):
    return c.finetune("--train", c.good(), "--set", "train.epochs=three"), ["'train.epochs' must be an integer", "'three'"]


@case
def set_without_equals(c: Ctx):
    return c.finetune("--train", c.good(), "--set", "train.epochs"), ["--set expects key=value", "'train.epochs'", "--set train.warmup_ratio=0.06"]


@case
def unknown_mixed_precision(c: Ctx):
    return c.finetune("--train", c.good(), "--mixed-precision", "fp17"), ["'train.mixed_precision' must be one of auto, no, fp16, bf16", "Did you mean 'fp16'?"]


@case
def batch_size_zero(c: Ctx):
    return c.finetune("--train", c.good(), "--batch-size", "0"), ["'train.batch_size' must be a positive integer, got 0", "--batch-size N"]


@case
def epochs_negative(c: Ctx):
    return c.finetune("--train", c.good(), "--epochs", "-1"), ["'train.epochs' must be positive, got -1", "--epochs N", "--max-steps N"]


@case
def learning_rate_negative(c: Ctx):
    return c.finetune("--train", c.good(), "--learning-rate", "-1"), ["'train.learning_rate' must be positive, got -1.0", "--learning-rate 2e-5"]


@case
def max_steps_zero(c: Ctx):
    return c.finetune("--train", c.good(), "--max-steps", "0"), ["'train.max_steps' must be a positive integer, got 0", "--max-steps N"]


@case
def max_length_negative(c: Ctx):
    return c.finetune("--train", c.good(), "--max-length", "-5"), ["'train.max_length' must be a positive integer, got -5", "--max-length N"]


@case
def epochs_not_a_number(c: Ctx):
    return c.finetune("--train", c.good(), "--epochs", "abc"), ["--epochs", "integer"]


@case
def unknown_option(c: Ctx):
    return c.finetune("--train", c.good(), "--epoch", "3"), ["--epoch", "--epochs"]


# ---------------------------------------------------------------------------- models


@case
def model_folder_without_config(c: Ctx):
    folder = c.tmp / "not-a-model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0")
    return c.finetune("--train", c.good(), model=str(folder)), [str(folder), "no config.json", "save_pretrained", "Hub id"]


@case
def model_is_a_file(c: Ctx):
    path = c.file("model.bin", b"\0")
    return c.finetune("--train", c.good(), model=str(path)), [str(path), "is a file", "the model folder"]


@case
def bert_for_summarization(c: Ctx):
    path = c.jsonl("train.jsonl", [{"document": "a long text", "summary": "short"}] * 4)
    return c.finetune("--train", path, recipe="summarization", model="bert"), [
        str(c.models["bert"]), "is a 'bert' model", "cannot do sequence to sequence generation", "t5, bart"
    ]


@case
def t5_for_generation(c: Ctx):
    path = c.jsonl("train.jsonl", [{"text": "once upon a time"}] * 4)
    return c.finetune("--train", path, recipe="generation", model="t5"), ["is a 't5' model", "cannot do causal language modelling", "gpt2"]


@case
def gpt2_for_translation(c: Ctx):
    path = c.jsonl("train.jsonl", [{"translation": {"en": "hello", "es": "hola"}}] * 4)
    return c.finetune("--train", path, recipe="translation", model="gpt2"), ["is a 'gpt2' model", "cannot do sequence to sequence generation"]


@case
def bart_for_ner(c: Ctx):
    from transformers import BartConfig

    folder = c.tmp / "bart"
    BartConfig(vocab_size=99, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2).save_pretrained(folder)
    return c.finetune("--train", c.jsonl("train.jsonl", NER_ROWS), recipe="ner", model=str(folder)), [
        "is a 'bart' model", "cannot do token classification", "bert, roberta"
    ]


@case
def hub_model_offline(c: Ctx):
    c.monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return c.finetune("--train", c.good(), model="nobody-here/no-such-model"), [
        "cannot load model 'nobody-here/no-such-model'", "offline", "pass a local folder: --model /path/to/model"
    ]


@case
def hub_dataset_offline(c: Ctx):
    c.monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    c.monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    argv = ["finetune", "sentiment", "--model", c.models["bert"], "--dataset", "nobody-here/no-such-data", "--output-dir", c.out, "--quiet"]
    return argv, ["cannot load Hub dataset 'nobody-here/no-such-data'", "offline", "--train FILE"]


@case
def max_length_beyond_the_model(c: Ctx):
    return c.finetune("--train", c.good(), "--max-length", "4096"), ["--max-length 4096", str(c.models["bert"]), "(128 tokens)", "use <= 128"]


# ---------------------------------------------------------------------------- task data


@case
def aligned_files_differ_in_length(c: Ctx):
    source = c.file("train.en.txt", "hello\ngood morning\nthank you\n")
    target = c.file("train.es.txt", "hola\nbuenos días\n")
    return c.finetune("--train", f"{source}:{target}", recipe="translation", model="t5"), [
        f"{source} has 3 lines but {target} has 2", "one translation per line", "stray or missing line"
    ]


@case
def ner_tags_not_iob(c: Ctx):
    path = c.jsonl("train.jsonl", [NER_ROWS[0], {"tokens": ["Alice", "met", "Bob"], "ner_tags": ["PER", "O", "PER"]}])
    return c.finetune("--train", path, "--validation", c.jsonl("v.jsonl", NER_ROWS), recipe="ner"), [
        str(path), "line/row 2", "tag 'PER' is not IOB", "B-TYPE", "convert the tags"
    ]


@case
def ner_tag_unseen_in_training(c: Ctx):
    path = c.jsonl("v.jsonl", [{"tokens": ["Bob", "left", "today"], "ner_tags": ["B-PER", "O", "B-DATE"]}])
    return c.finetune("--train", c.jsonl("train.jsonl", NER_ROWS), "--validation", path, recipe="ner"), [
        str(path), "validation has tag(s) the model does not know: B-DATE", "Known tags: O, B-PER, I-PER", "add examples of them to train"
    ]


@case
def conll_line_without_a_tag(c: Ctx):
    path = c.file("train.conll", "Alice B-PER\nmet O\nBob\n\n")
    return c.finetune("--train", path, recipe="ner"), [str(path), "line 3", "tag in the last column", "'Bob'"]


# ---------------------------------------------------------------------------- output places


@case
def output_dir_is_a_file(c: Ctx):
    taken = c.file("taken", "mine")
    argv = c.finetune("--train", c.good())
    argv[argv.index("--output-dir") + 1] = taken
    return argv, [str(taken), "is a file", "choose another --output-dir"]


@case
def output_dir_holds_a_run(c: Ctx):
    c.out.mkdir()
    (c.out / "notes.txt").write_text("mine")
    return c.finetune("--train", c.good()), [str(c.out), "not empty", "--overwrite"]


@case
def output_dir_permission_denied(c: Ctx):
    deny(c.monkeypatch, errno.EACCES)
    return c.finetune("--train", c.good()), [str(c.out), "cannot write there (Permission denied)", "choose another --output-dir"]


@case
def output_dir_disk_full(c: Ctx):
    deny(c.monkeypatch, errno.ENOSPC)
    return c.finetune("--train", c.good()), [str(c.out), "cannot write there (No space left on device)", "choose another --output-dir"]


# ---------------------------------------------------------------------------- predict / evaluate


@case
def predict_on_a_folder_that_is_not_a_run(c: Ctx):
    folder = c.tmp / "somewhere"
    folder.mkdir()
    (folder / "config.yaml").write_text("name: x\n")
    return ["predict", folder, c.file("in.txt", "hello\n")], [str(folder), "not an ftkit run folder", "nor a model folder", "--output-dir of a finished"]


@case
def predict_on_a_missing_folder(c: Ctx):
    folder = c.tmp / "runs" / "nope"
    return ["predict", folder, c.file("in.txt", "hello\n")], [str(folder), "no such folder", "--output-dir of a finished"]


@case
def evaluate_on_a_folder_that_is_not_a_run(c: Ctx):
    return ["evaluate", c.tmp, "--data", c.good()], [str(c.tmp), "not an ftkit run folder"]


@case
def predict_missing_input(c: Ctx):
    path = c.tmp / "nope.txt"
    return ["predict", c.classifier(), path], [str(path), "no such file"]


@case
def predict_input_not_utf8(c: Ctx):
    path = c.file("in.txt", "good\nun café terne\n".encode("latin-1"))
    return ["predict", c.classifier(), path], [str(path), "line 2", "encoding", "--encoding"]


@case
def predict_batch_size_zero(c: Ctx):
    return ["predict", c.classifier(), c.file("in.txt", "hi\n"), "--batch-size", "0"], ["--batch-size must be a positive integer, got 0"]


@case
def predict_output_is_a_folder(c: Ctx):
    return ["predict", c.classifier(), c.file("in.txt", "hi\n"), "--output", c.tmp], [str(c.tmp), "is a folder", "--output"]


@case
def predict_output_in_a_missing_folder(c: Ctx):
    path = c.tmp / "nope" / "p.jsonl"
    return ["predict", c.classifier(), c.file("in.txt", "hi\n"), "--output", path], [str(path.parent), "no such folder", "--output"]


@case
def predict_output_permission_denied(c: Ctx):
    deny(c.monkeypatch, errno.EACCES)
    path = c.tmp / "p.jsonl"
    return ["predict", c.classifier(), c.file("in.txt", "hi\n"), "--output", path], [str(path), "Permission denied", "choose another --output"]


@case
def predict_output_disk_full(c: Ctx):
    """A real ENOSPC: a copy of /dev/full made here (so a regression cannot replace the real one)."""
    full = c.tmp / "full"
    try:
        os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        full.open("w").close()
    except OSError:
        full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full on this machine")
    return ["predict", c.classifier(), c.file("in.txt", "hi\nthere\n"), "--output", full], [str(full), "No space left on device", "choose another --output"]


# ---------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def classifier_dir(tiny_models, tmp_path_factory) -> Path:
    """A bare sequence-classification model folder (random head, never trained) for predict."""
    return save_classifier(tiny_models["bert"], tmp_path_factory.mktemp("classifier"))


@pytest.fixture
def no_training(monkeypatch):
    """A case that reaches a training loop is a failure: every check must come before it."""
    from ftkit.progress import Reporter

    def start(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise AssertionError("training started: this bad input was not caught before the loop")

    monkeypatch.setattr(Reporter, "start", start)


@pytest.mark.parametrize(
    "name",
    list(CASES),
)
def test_bad_input_is_one_clean_line(name, cli, capsys, tmp_path, tiny_models, monkeypatch, request, no_training):
    ctx = Ctx(tmp_path, {k: str(v) for k, v in tiny_models.items()}, monkeypatch, lambda: request.getfixturevalue("classifier_dir"))
    argv, fragments = CASES[name](ctx)
    capsys.readouterr()  # what building a fixture printed is not the command's output
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    devices = [Path(a) for a in argv if isinstance(a, Path) and a.exists() and stat.S_ISCHR(a.stat().st_mode)]

    code, out, err = cli(*argv)

    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "FTKIT_DEBUG" not in err  # an expected error, not a crash
    missing = [f for f in fragments if f not in lines[0]]
    assert not missing, f"{missing} not in: {lines[0]}"
    # Nothing half-written: no run file (model/, metrics.json, config.yaml, log, checkpoints), no
    # other new or changed file.
    assert not [name for name in RUN_FILES if (ctx.out / name).exists()]
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    # Devices are written in place, never replaced by a renamed temporary file.
    assert all(stat.S_ISCHR(d.stat().st_mode) for d in devices)


def test_every_case_is_in_the_readme():
    """README.md's "Bad input" table has one row per case above (by its name in backticks)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    assert [name for name in CASES if f"`{name}`" not in section] == []


def test_empty_texts_are_skipped_with_a_count(cli, tmp_path, tiny_models, monkeypatch):
    """Some empty or blank texts: dropped and counted in a note, and the run goes on to train
    (stopped here as the loop starts, so nothing trains)."""
    from ftkit.errors import FtkitError
    from ftkit.progress import Reporter

    notes: list[str] = []
    original = Reporter.note

    def note(self, message: str) -> None:  # noqa: ANN001
        notes.append(message)
        original(self, message)

    monkeypatch.setattr(Reporter, "note", note)

    def start(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise FtkitError("stopped by the test as training starts")

    monkeypatch.setattr(Reporter, "start", start)
    train = write_jsonl(tmp_path / "train.jsonl", ROWS + [{"text": "", "label": "positive"}, {"text": "  \t", "label": "negative"}])
    valid = write_jsonl(tmp_path / "valid.jsonl", ROWS)
    code, _, err = cli(
        "finetune", "sentiment", "--model", tiny_models["bert"], "--text-column", "text", "--label-column", "label",
        "--train", train, "--validation", valid, "--output-dir", tmp_path / "out",
    )
    assert (code, err) == (2, "error: stopped by the test as training starts\n")
    assert f"{train}: skipped 2 example(s) with an empty text" in notes


def test_write_failure_keeps_the_earlier_run(cli, tmp_path, tiny_models, monkeypatch, no_training):
    """--overwrite on a folder that cannot be written: the earlier run's files stay."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    deny(monkeypatch, errno.ENOSPC)
    train = write_jsonl(tmp_path / "train.jsonl", ROWS)
    code, _, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], "--text-column", "text", "--train", train, "-o", out, "--overwrite", "--quiet")
    assert code == 2 and "No space left on device" in err
    assert (out / "metrics.json").read_text() == "{}"
