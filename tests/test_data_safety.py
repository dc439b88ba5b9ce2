"""Data files and the values in them (issue 13), through the real entry point.

Three classes: a data path that is not a regular, readable file is refused at once (never opened
when that could block); a huge record costs no more than what the model reads of it; an odd value
type is either read by a documented rule (with a note) or refused in one line naming the row.
README.md's "Data files" section lists the decisions.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import save_classifier, write_jsonl
from ftkit.data import iter_records
from ftkit.errors import FtkitError
from ftkit.values import CHARS_PER_TOKEN, MIN_TEXT_CHARS, cut_texts, text_limit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS = [{"text": "a great film", "label": "positive"}, {"text": "a dull film", "label": "negative"}] * 4
NER_ROWS = [{"tokens": ["Alice", "met", "Bob"], "ner_tags": ["B-PER", "O", "B-PER"]}] * 4
BIG = 20_000_000  # characters: tokenizing this whole took ~45 s on the tiny BERT; the cut takes under 1


def finetune(models: dict, out: Path, *args: object, recipe: str = "sentiment", model: str = "bert") -> list[object]:
    columns = ["--text-column", "text", "--label-column", "label"] if recipe == "sentiment" else []
    return ["finetune", recipe, "--model", models[model], *columns, "--output-dir", out, "--quiet", *args]


def one_line(result: tuple[int, str, str], *fragments: str) -> str:
    """The house rule for bad input: exit 2, nothing on stdout, one `error:` line holding every fragment."""
    code, out, err = result
    lines = err.splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and lines[0].startswith("error: "), (code, err[-2000:])
    missing = [f for f in fragments if f not in lines[0]]
    assert not missing, f"{missing} not in: {lines[0]}"
    return lines[0]


@pytest.fixture(scope="module")
def classifier_dir(tiny_models, tmp_path_factory) -> Path:
    """A bare sequence-classification model folder (random head) for predict and evaluate."""
    return save_classifier(tiny_models["bert"], tmp_path_factory.mktemp("classifier"))


@pytest.fixture
def stop_at_model(monkeypatch) -> dict:
    """Run finetune up to the model: returns what it got to ('prepared', 'notes'); nothing trains."""
    from ftkit.progress import Reporter
    from ftkit.tasks import causal_lm, classification, seq2seq, tokens

    seen: dict = {"notes": []}
    original = Reporter.note

    def note(self, message: str) -> None:  # noqa: ANN001
        seen["notes"].append(message)
        original(self, message)

    def load_model(source, prepared, tokenizer, config):  # noqa: ANN001, ANN202
        seen["prepared"] = prepared
        raise FtkitError("stopped by the test at the model")

    monkeypatch.setattr(Reporter, "note", note)
    for family in (classification, tokens, seq2seq, causal_lm):
        monkeypatch.setattr(family, "load_model", load_model)
    return seen


def stopped(result: tuple[int, str, str]) -> None:
    code, _, err = result
    assert (code, err.strip().splitlines()[-1:]) == (2, ["error: stopped by the test at the model"]), err[-2000:]


@pytest.fixture
def no_model(monkeypatch):
    """predict / evaluate must refuse the input before the model loads."""
    import ftkit.inference

    def load(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the model loaded before the input was checked")

    monkeypatch.setattr(ftkit.inference, "load_for_inference", load)


# ---------------------------------------------------------------------------- not a regular file


@contextlib.contextmanager
def rescued(fifo: Path, after: float = 20.0) -> Iterator[None]:
    """If ftkit regresses and opens the pipe, open its other end after a while so the test fails
    instead of hanging the suite."""
    done = threading.Event()

    def rescue() -> None:
        if done.wait(after):
            return
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    thread = threading.Thread(target=rescue, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def special(kind: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, name: str = "data.jsonl") -> tuple[Path, str]:
    """A data path that is not a readable regular file, and what ftkit's line must say of it."""
    path = tmp / f"{kind}-{name}"
    if kind == "fifo":
        os.mkfifo(path)
        return path, "is a named pipe (FIFO), not a regular file"
    if kind == "socket":  # the socket file stays when the socket closes
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
        return path, "is a socket, not a regular file"
    if kind == "device":
        return Path("/dev/null"), "is a character device, not a regular file"
    if kind == "loop":
        path.symlink_to(path.name)
        return path, "symbolic link loop"
    if kind == "broken-link":
        path.symlink_to(tmp / "gone.jsonl")
        return path, "broken symbolic link to"
    write_jsonl(path, ROWS)  # unreadable: chmod for a normal user; root reads anyway, so the open is refused here too
    path.chmod(0)
    real_open = os.open

    def deny(file, flags, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if os.fspath(file) == str(path) and not flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    return path, "permission denied"


KINDS = ["fifo", "socket", "device", "loop", "broken-link", "unreadable"]


@pytest.mark.parametrize("kind", KINDS)
def test_finetune_refuses_a_training_file_that_is_not_a_readable_file(kind, cli, tmp_path, tiny_models, monkeypatch):
    path, what = special(kind, tmp_path, monkeypatch)
    fragments = (str(path), what)
    started = time.monotonic()
    with rescued(path):
        line = one_line(cli(*finetune(tiny_models, tmp_path / "out", "--train", path)), *fragments)
    assert time.monotonic() - started < 15, "a FIFO was opened: the check must come from stat(), never block"
    assert not (tmp_path / "out").exists(), line


def test_finetune_refuses_a_symlink_loop_through_set(cli, tmp_path, tiny_models, monkeypatch):
    path, what = special("loop", tmp_path, monkeypatch)
    one_line(cli(*finetune(tiny_models, tmp_path / "out", "--set", f"data.train={path}")), str(path), what)


@pytest.mark.parametrize("kind", ["fifo", "loop", "unreadable"])
def test_finetune_refuses_a_validation_file_that_is_not_readable(kind, cli, tmp_path, tiny_models, monkeypatch):
    path, what = special(kind, tmp_path, monkeypatch)
    with rescued(path):
        argv = finetune(tiny_models, tmp_path / "out", "--train", write_jsonl(tmp_path / "t.jsonl", ROWS), "--set", f"data.validation={path}")
        one_line(cli(*argv), str(path), what)


@pytest.mark.parametrize("kind", ["fifo", "loop", "unreadable"])
def test_finetune_refuses_an_aligned_pair_side_that_is_not_readable(kind, cli, tmp_path, tiny_models, monkeypatch):
    source = tmp_path / "train.en.txt"
    source.write_text("hello\n", encoding="utf-8")
    target, what = special(kind, tmp_path, monkeypatch, name="train.es.txt")
    with rescued(target):
        argv = finetune(tiny_models, tmp_path / "out", "--set", f"data.train={source}:{target}", recipe="translation", model="t5")
        one_line(cli(*argv), str(target), what)


@pytest.mark.parametrize("kind", KINDS)
def test_predict_and_evaluate_refuse_an_input_before_the_model_loads(kind, cli, tmp_path, classifier_dir, monkeypatch, no_model):
    path, what = special(kind, tmp_path, monkeypatch)
    with rescued(path):
        one_line(cli("predict", classifier_dir, path), str(path), what)
        one_line(cli("evaluate", classifier_dir, "--data", path), str(path), what)


def test_predict_still_reads_standard_input(cli, classifier_dir, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO("a great film\na dull film\n"))
    code, out, _ = cli("predict", classifier_dir, "-")
    assert code == 0 and [json.loads(line)["text"] for line in out.splitlines()] == ["a great film", "a dull film"]


# ---------------------------------------------------------------------------- resource bombs


def test_a_huge_text_is_cut_before_tokenization_with_a_note(cli, tmp_path, tiny_models, monkeypatch, stop_at_model):
    from ftkit.tasks import classification

    longest: list[int] = []
    tokenize = classification.tokenize

    def spy(tokenizer, texts, pairs, max_length):  # noqa: ANN001, ANN202
        longest.append(max(map(len, texts)))
        return tokenize(tokenizer, texts, pairs, max_length)

    monkeypatch.setattr(classification, "tokenize", spy)
    train = write_jsonl(tmp_path / "train.jsonl", ROWS + [{"text": "a great film " * (BIG // 13), "label": "positive"}])
    started = time.monotonic()
    stopped(cli(*finetune(tiny_models, tmp_path / "out", "--train", train, "--validation", write_jsonl(tmp_path / "v.jsonl", ROWS))))
    assert time.monotonic() - started < 30
    assert max(longest) == MIN_TEXT_CHARS
    limit = f"{MIN_TEXT_CHARS:,}"  # the sentiment recipe reads 128 tokens: the floor of a million characters applies
    assert f"{train}: cut 1 text(s) longer than {limit} characters to their first {limit} before tokenizing (the model reads at most 128 tokens of each)" in stop_at_model["notes"]


def test_a_huge_predict_line_costs_what_the_model_reads_and_stays_whole(cli, tmp_path, classifier_dir, monkeypatch):
    from ftkit.tasks import classification

    cut_sizes: list[int] = []
    cut = classification.cut_texts

    def spy(texts, limit, keep_end=False):  # noqa: ANN001, ANN202
        out = cut(texts, limit, keep_end)
        cut_sizes.append(max(map(len, out[0])))
        return out

    monkeypatch.setattr(classification, "cut_texts", spy)
    line = "a dull film " * (BIG // 12)
    source = tmp_path / "in.txt"
    source.write_text(f"a great film\n{line}\n", encoding="utf-8")
    started = time.monotonic()
    code, out, err = cli("predict", classifier_dir, source, "--output", tmp_path / "p.jsonl")
    assert code == 0, err
    assert time.monotonic() - started < 30
    assert max(cut_sizes) <= text_limit(128)
    results = [json.loads(r) for r in (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in results] == ["a great film", line]  # the output echoes the whole input


def test_a_word_past_the_bound_is_cut_for_ner_with_a_note(cli, tmp_path, tiny_models, stop_at_model):
    word = "x" * (MIN_TEXT_CHARS + 5)
    train = write_jsonl(tmp_path / "train.jsonl", NER_ROWS + [{"tokens": ["Alice", word], "ner_tags": ["B-PER", "O"]}])
    stopped(cli(*finetune(tiny_models, tmp_path / "out", "--train", train, "--validation", write_jsonl(tmp_path / "v.jsonl", NER_ROWS), recipe="ner")))
    assert any(n.startswith(f"{train}: cut 1 word(s) longer than") and "first sub-token" in n for n in stop_at_model["notes"])


def test_a_conll_line_past_the_bound_is_refused_unread(cli, tmp_path, tiny_models):
    path = tmp_path / "train.conll"
    path.write_text("Alice B-PER\n" + "x" * (MIN_TEXT_CHARS + 10) + " O\n", encoding="utf-8")
    one_line(cli(*finetune(tiny_models, tmp_path / "out", "--train", path, recipe="ner")), str(path), "line 2 is longer than 1,000,000 characters", "one token and its tag")


def test_the_bound_holds_every_token_the_model_reads():
    """Per family: the cut keeps max_length tokens at CHARS_PER_TOKEN each, and prompts keep their end."""
    assert text_limit(128) == MIN_TEXT_CHARS and text_limit(50_000) == 50_000 * CHARS_PER_TOKEN
    assert cut_texts(["abcdef", "ab"], 3) == (["abc", "ab"], 1)
    assert cut_texts(["abcdef"], 3, keep_end=True) == (["def"], 1)
    texts = ["short"]
    assert cut_texts(texts, 3 * len(texts[0]))[0] is texts  # nothing to cut: no copy


# ---------------------------------------------------------------------------- odd value types


def write_parquet(path: Path, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def test_one_class_however_its_id_is_spelled(cli, tmp_path, tiny_models, stop_at_model):
    """1, 1.0, "1", "1.0", "+1" and true are one class; so are 0, 0.0, "0" and false."""
    ones, zeros = [1, 1.0, "1", "1.0", "+1", True], [0, 0.0, "0", "0.0", False, 0]
    rows = [{"text": f"film {i}", "label": v} for i, v in enumerate(ones + zeros)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    argv = finetune(tiny_models, tmp_path / "out", "--train", train, "--validation", train, "--set", "data.labels=null")
    stopped(cli(*argv))
    prepared = stop_at_model["prepared"]
    assert prepared.names == ["0", "1"]
    assert list(prepared.features["train"]["labels"]) == [1] * 6 + [0] * 6


def test_integer_ids_index_only_names_given_in_order(cli, tmp_path, tiny_models, stop_at_model):
    """Names sorted from the data have no id order: 0/1 in validation are refused, not guessed."""
    train = write_jsonl(tmp_path / "train.jsonl", ROWS)
    valid = write_jsonl(tmp_path / "v.jsonl", [{"text": "a film", "label": 1}])
    argv = finetune(tiny_models, tmp_path / "out", "--train", train, "--validation", valid, "--set", "data.labels=null")
    one_line(cli(*argv), str(valid), "'1' (first at line/row 1)", "Known labels: negative, positive", "data.labels naming the classes in id order")
    # With the recipe's labels [negative, positive] the same ids are an explicit order: accepted.
    stopped(cli(*finetune(tiny_models, tmp_path / "out2", "--train", train, "--validation", valid)))
    assert list(stop_at_model["prepared"].features["validation"]["labels"]) == [1]


def test_names_and_ids_in_one_column_are_noted(cli, tmp_path, tiny_models, stop_at_model):
    rows = [{"text": f"film {i}", "label": v} for i, v in enumerate(["positive", "negative", 1, 0] * 2)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    stopped(cli(*finetune(tiny_models, tmp_path / "out", "--train", train, "--validation", train, "--set", "data.labels=null")))
    assert any("mix integer ids" in n and "each is its own class" in n for n in stop_at_model["notes"])


@pytest.mark.parametrize(
    "value, what",
    [({"en": "a film"}, "an object ({...})"), (["a", "film"], "a list"), (b"a film", "bytes (binary data)")],
    ids=["object", "list", "bytes"],
)
def test_a_text_that_is_a_structure_is_refused_with_its_row(value, what, cli, tmp_path, tiny_models):
    rows = [{"text": "a great film", "label": 1}, {"text": value, "label": 0}, {"text": "fine", "label": 1}]
    if isinstance(value, bytes):  # parquet's binary type; JSON has no bytes
        train = write_parquet(tmp_path / "train.parquet", {"text": [b"a great film", value, b"fine"], "label": [1, 0, 1]})
        row = "line/row 1"
    else:
        train, row = write_jsonl(tmp_path / "train.jsonl", rows), "line/row 2"
    one_line(cli(*finetune(tiny_models, tmp_path / "out", "--train", train, "--validation", train)), str(train), row, f"the text is {what}, not text")


def test_a_list_of_words_is_text_only_for_ner_and_a_missing_word_is_refused(cli, tmp_path, tiny_models, stop_at_model):
    train = write_jsonl(tmp_path / "train.jsonl", NER_ROWS)
    stopped(cli(*finetune(tiny_models, tmp_path / "out", "--train", train, "--validation", train, recipe="ner")))
    bad = write_jsonl(tmp_path / "bad.jsonl", NER_ROWS + [{"tokens": ["Alice", None], "ner_tags": ["B-PER", "O"]}])
    one_line(cli(*finetune(tiny_models, tmp_path / "out2", "--train", bad, "--validation", train, recipe="ner")), str(bad), "line/row 5", "word 2 is empty")


def test_a_document_that_is_an_object_is_refused_not_dropped(cli, tmp_path, tiny_models):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "once upon a time"}] * 3 + [{"text": {"body": "x"}}])
    argv = finetune(tiny_models, tmp_path / "out", "--train", train, "--max-length", "64", recipe="generation", model="gpt2")
    one_line(cli(*argv), str(train), "line/row 4", "the text is an object")


def test_a_missing_parquet_label_is_refused(cli, tmp_path, tiny_models):
    train = write_parquet(tmp_path / "train.parquet", {"text": ["a", "b", "c"], "label": [1, None, 0]})
    one_line(cli(*finetune(tiny_models, tmp_path / "out", "--train", train, "--validation", train)), str(train), "line/row 2", "label is empty")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_column_named_twice_is_refused(suffix, cli, tmp_path, tiny_models):
    if suffix == ".csv":
        train = tmp_path / "train.csv"
        train.write_text("text,label,text\na great film,positive,x\na dull film,negative,y\n", encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        train = tmp_path / "train.parquet"
        pq.write_table(pa.Table.from_arrays([pa.array(["a", "b"]), pa.array([1, 0]), pa.array(["x", "y"])], names=["text", "label", "text"]), train)
    one_line(cli(*finetune(tiny_models, tmp_path / "out", "--train", train)), str(train), "names the column 'text' twice", "rename one of them")


@pytest.mark.parametrize("orient", ["lists", "pandas"])
def test_a_json_object_of_columns_is_read_as_rows_with_a_note(orient, cli, tmp_path, tiny_models, stop_at_model):
    texts, labels = [r["text"] for r in ROWS], [r["label"] for r in ROWS]
    if orient == "lists":  # a dataset's to_dict()
        table = {"text": texts, "label": labels}
    else:  # pandas' DataFrame.to_json() default: {column: {row label: value}}
        table = {"text": {str(i): t for i, t in enumerate(texts)}, "label": {str(i): v for i, v in enumerate(labels)}}
    train = tmp_path / "train.json"
    train.write_text(json.dumps(table, indent=2), encoding="utf-8")
    stopped(cli(*finetune(tiny_models, tmp_path / "out", "--train", train, "--validation", train)))
    assert f"{train}: read as a table of 2 columns, 8 rows (one JSON object of columns); row numbers count from 1" in stop_at_model["notes"]
    assert list(stop_at_model["prepared"].features["train"]["labels"]) == [1, 0] * 4


def test_a_json_object_of_uneven_columns_is_refused(cli, tmp_path, tiny_models):
    train = tmp_path / "train.json"
    train.write_text(json.dumps({"text": ["a", "b", "c"], "label": [1, 0]}), encoding="utf-8")
    one_line(cli(*finetune(tiny_models, tmp_path / "out", "--train", train)), str(train), "columns that do not line up ('text': 3, 'label': 2)", ".jsonl")


def test_a_single_json_object_is_one_record(tmp_path):
    """A .json file holding one record (not columns), even pretty-printed, reads as that record."""
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"text": "a film", "label": 1}, indent=2), encoding="utf-8")
    assert list(iter_records(path)) == [(1, {"text": "a film", "label": 1})]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_wide_unicode_without_a_byte_order_mark_is_refused_with_the_encoding_to_pass(encoding, cli, tmp_path, tiny_models, classifier_dir):
    train = tmp_path / "train.csv"
    train.write_bytes("text,label\na great film,positive\na dull film,negative\n".encode(encoding))
    fragments = [str(train), f"looks like {encoding.upper()} text without a byte-order mark", f"--encoding {encoding}"]
    one_line(cli(*finetune(tiny_models, tmp_path / "out", "--train", train)), *fragments)
    one_line(cli("predict", classifier_dir, train), *fragments)
    # What the line says to do works.
    assert [r for _, r in iter_records(train, encoding)][0] == {"text": "a great film", "label": "positive"}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-8-sig"])
def test_a_byte_order_mark_names_the_encoding(encoding, cli, tmp_path, tiny_models, stop_at_model):
    train = tmp_path / "train.csv"
    train.write_bytes(("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in ROWS)).encode(encoding))
    stopped(cli(*finetune(tiny_models, tmp_path / "out", "--train", train, "--validation", train)))
    assert stop_at_model["prepared"].features["train"].num_rows == len(ROWS)
    lines = tmp_path / "in.jsonl"
    lines.write_bytes((json.dumps({"text": "a film"}) + "\n").encode(encoding))
    assert [r for _, r in iter_records(lines)] == [{"text": "a film"}]
