"""Local data files: every reader, the row numbers it reports, split carving and column checks.

Files are written here with the standard writers (csv, json, pyarrow) so the readers are tested
against what other tools produce, and every complaint must name the file, the row and the fix.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from ftkit.config import DataConfig
from ftkit.data import Split, adapt_columns, carve, check_readable, iter_records, load_splits, read_columns
from ftkit.errors import FtkitError

ROWS = [
    {"text": "a great, moving film", "label": "positive"},
    {"text": 'he said "dull"\tand left', "label": "negative"},
    {"text": "naïve café ☕ — très bien", "label": "positive"},
]
COLUMNS = {"text": "text", "label": "label"}


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


WRITERS = {
    "csv": lambda p, rows: write_csv(p, rows),
    "tsv": lambda p, rows: write_csv(p, rows, "\t"),
    "json": lambda p, rows: (p.write_text(json.dumps(rows, indent=2), encoding="utf-8"), p)[1],
    "jsonl": write_jsonl,
    "parquet": write_parquet,
}


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(FtkitError) as info:
        result = fn(*args, **kwargs)
        if hasattr(result, "__next__"):
            list(result)
    assert info.value.exit_code == 2
    return info.value.message


# ---------------------------------------------------------------------------- readers


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_reads_back_the_same_columns(tmp_path: Path, fmt: str):
    path = WRITERS[fmt](tmp_path / f"data.{fmt}", ROWS)
    split = read_columns(path, COLUMNS)
    assert split.columns == {"text": [r["text"] for r in ROWS], "label": [r["label"] for r in ROWS]}
    assert split.source == str(path) and len(split) == 3
    # csv/tsv count file lines (the header is line 1); the others count records from 1
    assert split.rows == ([2, 3, 4] if fmt in ("csv", "tsv") else [1, 2, 3])


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_iter_records_yields_whole_records(tmp_path: Path, fmt: str):
    path = WRITERS[fmt](tmp_path / f"data.{fmt.upper()}", ROWS)  # extensions are case-blind
    assert [record for _, record in iter_records(path)] == ROWS


def test_read_columns_ignores_unused_roles(tmp_path: Path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    split = read_columns(path, {"text": "text", "label": None, "text_pair": None})
    assert list(split.columns) == ["text"]


def test_parquet_keeps_types(tmp_path: Path):
    path = write_parquet(tmp_path / "d.parquet", [{"text": "x", "label": 1}, {"text": "y", "label": 0}])
    assert list(iter_records(path)) == [(1, {"text": "x", "label": 1}), (2, {"text": "y", "label": 0})]


def test_csv_multiline_field_bom_and_blank_lines(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text('\ufefftext , label\r\n"two\nlines",a\r\n\r\nplain,b\r\n', encoding="utf-8")
    assert list(iter_records(path)) == [(3, {"text": "two\nlines", "label": "a"}), (5, {"text": "plain", "label": "b"})]


def test_tsv_fields_may_hold_commas(tmp_path: Path):
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\nyes, really\tpos\n", encoding="utf-8")
    assert list(iter_records(path)) == [(2, {"text": "yes, really", "label": "pos"})]


def test_jsonl_skips_blank_lines_but_keeps_line_numbers(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text('\n{"text": "a"}\r\n   \n{"text": "b"}', encoding="utf-8")
    assert list(iter_records(path)) == [(2, {"text": "a"}), (4, {"text": "b"})]


def test_json_array_after_leading_whitespace(tmp_path: Path):
    path = tmp_path / "d.json"
    path.write_text('\n  \n [{"text": "a"}, {"text": "b"}]\n', encoding="utf-8")
    assert list(iter_records(path)) == [(1, {"text": "a"}), (2, {"text": "b"})]


def test_txt_is_one_text_per_line(tmp_path: Path):
    path = tmp_path / "d.txt"
    path.write_bytes("first line\r\nsecond, with comma\n\nlast\u2028same line".encode())
    assert list(iter_records(path)) == [
        (1, {"text": "first line"}),
        (2, {"text": "second, with comma"}),
        (3, {"text": ""}),
        (4, {"text": "last\u2028same line"}),  # only \n, \r\n and \r end a line
    ]


def test_stdin_dash_reads_text_lines(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("one\ntwo\r\n"))
    assert list(iter_records("-")) == [(1, {"text": "one"}), (2, {"text": "two"})]


def test_other_encodings_with_the_encoding_argument(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_bytes("text,label\ncafé,pos\n".encode("latin-1"))
    assert list(iter_records(path, encoding="latin-1")) == [(2, {"text": "café", "label": "pos"})]


# ---------------------------------------------------------------------------- reader errors


def test_non_utf8_bytes_name_the_byte_and_suggest_encoding(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_bytes("text,label\ncafé,pos\n".encode("latin-1"))
    message = error_of(iter_records, path)
    assert message.startswith(f"{path}: line 2: not valid utf-8 text (byte 0xe9); the file has another encoding")
    assert "pass --encoding (e.g. latin-1)" in message


def test_unknown_encoding(tmp_path: Path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    assert error_of(iter_records, path, encoding="utf-99") == "unknown encoding 'utf-99': pass another --encoding (e.g. utf-8, latin-1, cp1252)"


def test_invalid_json_line_gives_its_line_number(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b",}\n', encoding="utf-8")
    message = error_of(iter_records, path)
    assert message.startswith(f"{path}: line 3: invalid JSON (")
    assert message.endswith("each line must be one JSON object")


def test_jsonl_line_that_is_not_an_object(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n["text", "b"]\n', encoding="utf-8")
    assert error_of(iter_records, path) == f'{path}: line 2 is a JSON list, expected an object like {{"text": ...}}'


def test_invalid_json_array_gives_the_file_line(tmp_path: Path):
    path = tmp_path / "d.json"
    path.write_text('\n\n[{"text": "a"},\n {"text": "b",}\n]\n', encoding="utf-8")
    message = error_of(iter_records, path)
    assert message.startswith(f"{path}: invalid JSON at line 4: ")


def test_json_array_item_that_is_not_an_object(tmp_path: Path):
    path = tmp_path / "d.json"
    path.write_text('[{"text": "a"}, 7]', encoding="utf-8")
    assert error_of(iter_records, path) == f'{path}: item 2 is a JSON int, expected an object like {{"text": ...}}'


@pytest.mark.parametrize("name", ["d.json", "d.jsonl"])
def test_deeply_nested_json_is_an_error_not_a_crash(tmp_path: Path, name: str):
    path = tmp_path / name
    path.write_text("[" * 100_000, encoding="utf-8")
    assert "nested too deeply" in error_of(iter_records, path)


def test_ragged_csv_row_gives_its_line_and_the_fix(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood,pos\nbad, really bad,neg\n", encoding="utf-8")
    message = error_of(iter_records, path)
    assert message == (
        f"{path}: line 3 has 3 fields but the header has 2; quote fields that contain ',' or fix the row"
    )


def test_csv_field_over_the_size_limit(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text('text\n"' + "x" * 200_000 + '"\n', encoding="utf-8")
    assert error_of(iter_records, path).startswith(f"{path}: line ")


def test_damaged_parquet(tmp_path: Path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1 not really")
    assert error_of(iter_records, path).startswith(f"{path}: not a readable parquet file (")


def test_missing_column_lists_the_columns_present(tmp_path: Path):
    path = write_csv(tmp_path / "d.csv", [{"sentence": "x", "label": "a"}])
    message = error_of(read_columns, path, {"text": "sentense", "label": "label"})
    assert message == (
        f"{path}: no column 'sentense' (line/row 2). Did you mean 'sentence'? "
        "Columns present: sentence, label. Choose one with --text-column."
    )


@pytest.mark.parametrize(
    "role, flag", [("label", "--label-column"), ("target", "--set data.target_column=NAME")]
)
def test_missing_column_names_the_flag_for_its_role(tmp_path: Path, role: str, flag: str):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "x"}])
    message = error_of(read_columns, path, {"text": "text", role: "zzz"})
    assert message.endswith(f"Columns present: text. Choose one with {flag}.")
    assert "(line/row 1)" in message


@pytest.mark.parametrize("content", ["", "text,label\n"])
def test_empty_file(tmp_path: Path, content: str):
    path = tmp_path / "d.csv"
    path.write_text(content, encoding="utf-8")
    assert error_of(read_columns, path, COLUMNS) == f"{path}: the file is empty (no records); put the examples in it, or pass another file"


# ---------------------------------------------------------------------------- check_readable


def test_check_readable_missing_file(tmp_path: Path):
    assert error_of(check_readable, tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'}: no such file; check the path"


def test_check_readable_folder(tmp_path: Path):
    message = error_of(check_readable, tmp_path)
    assert message == f"{tmp_path}: is a folder; pass a data file (.csv, .tsv, .json, .jsonl, .parquet)"


def test_check_readable_unknown_extension(tmp_path: Path):
    path = tmp_path / "d.xlsx"
    path.write_text("x", encoding="utf-8")
    message = error_of(check_readable, path)
    assert message == (
        f"{path}: unknown extension '.xlsx'; use one of .csv, .tsv, .json, .jsonl, .parquet "
        "(rename the file if its content is one of these)"
    )


def test_check_readable_txt_only_where_allowed(tmp_path: Path):
    path = tmp_path / "d.txt"
    path.write_text("x\n", encoding="utf-8")
    assert "unknown extension '.txt'" in error_of(check_readable, path)
    check_readable(path, (".txt",))  # predict accepts plain text


# ---------------------------------------------------------------------------- load_splits


def labelled(n: int, minority_every: int = 0) -> list[dict]:
    """n rows with distinct texts; every `minority_every`-th row is 'b', the rest 'a'."""
    return [
        {"text": f"row {i}", "label": "b" if minority_every and i % minority_every == 0 else "a"} for i in range(n)
    ]


def test_local_files_give_all_three_splits(tmp_path: Path):
    files = {
        "train": write_jsonl(tmp_path / "train.jsonl", labelled(6)),
        "validation": write_csv(tmp_path / "val.csv", labelled(3)),
        "test": write_parquet(tmp_path / "test.parquet", labelled(2)),
    }
    data = DataConfig(**{k: str(v) for k, v in files.items()}, dataset="ignored/when-local")
    splits = load_splits(data, COLUMNS, seed=0, stratify="label")
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "validation": 3, "test": 2}
    assert splits["validation"].columns["text"] == ["row 0", "row 1", "row 2"]
    assert splits["validation"].rows == [2, 3, 4]
    assert splits["test"].source == str(files["test"])
    assert splits["train"].notes == []


def test_validation_without_train(tmp_path: Path):
    data = DataConfig(validation=str(write_jsonl(tmp_path / "v.jsonl", labelled(2))))
    message = error_of(load_splits, data, COLUMNS, 0, None)
    assert message == "--validation/--test given without --train: pass the training file too"


def test_no_data_at_all():
    message = error_of(load_splits, DataConfig(), COLUMNS, 0, None)
    assert message == "no data: pass --train FILE (and --validation/--test), or --dataset HUB_ID"


def test_every_file_is_checked_before_any_is_read(tmp_path: Path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\nragged,row,here\n", encoding="utf-8")  # would fail if read first
    data = DataConfig(train=str(train), test=str(tmp_path / "missing.jsonl"))
    assert error_of(load_splits, data, COLUMNS, 0, None) == f"{tmp_path / 'missing.jsonl'}: no such file; check the path"


def test_carved_validation_is_seeded_disjoint_and_noted(tmp_path: Path):
    train = write_jsonl(tmp_path / "train.jsonl", labelled(50))
    data = DataConfig(train=str(train), validation_fraction=0.2)
    first = load_splits(data, COLUMNS, seed=1, stratify=None)
    again = load_splits(data, COLUMNS, seed=1, stratify=None)
    other = load_splits(data, COLUMNS, seed=2, stratify=None)
    train_texts, val_texts = first["train"].columns["text"], first["validation"].columns["text"]
    assert (len(train_texts), len(val_texts)) == (40, 10)
    assert sorted(train_texts + val_texts) == sorted(r["text"] for r in labelled(50))
    assert again["validation"].columns == first["validation"].columns
    assert other["validation"].columns != first["validation"].columns
    # rows still point at the source file's lines, in file order
    assert first["validation"].rows == sorted(first["validation"].rows)
    assert [int(t.split()[1]) + 1 for t in val_texts] == first["validation"].rows
    assert first["validation"].source == f"20% of {train} (seed 1)"
    assert first["train"].notes == ["no validation split: carved 10 rows (20%) from train with seed 1"]
    assert "test" not in first


def test_carving_test_and_validation(tmp_path: Path):
    train = write_jsonl(tmp_path / "train.jsonl", labelled(100))
    data = DataConfig(train=str(train), validation_fraction=0.1, test_fraction=0.2)
    splits = load_splits(data, COLUMNS, seed=0, stratify=None)
    # the test set is carved first; validation then comes from what is left, both as fractions of the whole
    assert {k: len(v) for k, v in splits.items()} == {"train": 70, "validation": 10, "test": 20}
    texts = [t for s in splits.values() for t in s.columns["text"]]
    assert len(set(texts)) == 100
    assert splits["train"].notes == [
        "no test split: carved 20 rows (20%) from train with seed 0",
        "no validation split: carved 10 rows (10%) from train with seed 0",
    ]


def test_given_validation_file_is_not_replaced_by_a_carve(tmp_path: Path):
    data = DataConfig(
        train=str(write_jsonl(tmp_path / "t.jsonl", labelled(20))),
        validation=str(write_jsonl(tmp_path / "v.jsonl", labelled(4))),
        validation_fraction=0.5,
    )
    splits = load_splits(data, COLUMNS, seed=0, stratify=None)
    assert (len(splits["train"]), len(splits["validation"])) == (20, 4)


@pytest.mark.parametrize("seed", range(5))
def test_stratified_carve_keeps_the_class_balance(tmp_path: Path, seed: int):
    train = write_jsonl(tmp_path / "train.jsonl", labelled(40, minority_every=10))  # 36 'a', 4 'b'
    data = DataConfig(train=str(train), validation_fraction=0.5)
    splits = load_splits(data, COLUMNS, seed=seed, stratify="label")
    assert Counter(splits["validation"].columns["label"]) == {"a": 18, "b": 2}
    assert Counter(splits["train"].columns["label"]) == {"a": 18, "b": 2}


def test_stratify_falls_back_when_a_class_has_one_row():
    split = Split({"text": list("abcdefghij"), "label": ["x"] * 9 + ["y"]}, list(range(1, 11)), "f.csv")
    rest, held = carve(split, 0.3, seed=0, stratify="label")
    assert (len(rest), len(held)) == (7, 3)
    assert sorted(rest.columns["text"] + held.columns["text"]) == list("abcdefghij")


def test_stratify_falls_back_when_a_part_is_smaller_than_the_class_count():
    split = Split({"text": list("abcdef"), "label": list("xxyyzz")}, list(range(1, 7)), "f.csv")
    rest, held = carve(split, 0.6, seed=0, stratify="label")  # 4 held, 2 left: fewer than 3 classes
    assert (len(rest), len(held)) == (2, 4)


@pytest.mark.parametrize("n, fraction", [(1, 0.1), (3, 0.7), (2, 0.6)])
def test_too_few_rows_to_carve(tmp_path: Path, n: int, fraction: float):
    data = DataConfig(train=str(write_jsonl(tmp_path / "t.jsonl", labelled(n))), validation_fraction=fraction)
    message = error_of(load_splits, data, COLUMNS, 0, "label")
    assert message.startswith(f"only {n} training row(s): too few to carve a validation split; pass --validation FILE")


def test_no_validation_and_no_fraction(tmp_path: Path):
    data = DataConfig(train=str(write_jsonl(tmp_path / "t.jsonl", labelled(5))), validation_fraction=0.0)
    message = error_of(load_splits, data, COLUMNS, 0, None)
    assert message == "no validation data: pass --validation FILE or set data.validation_fraction > 0"


def test_load_splits_reports_a_missing_column_with_the_file(tmp_path: Path):
    train = write_jsonl(tmp_path / "t.jsonl", [{"sentence": "x", "label": "a"}])
    message = error_of(load_splits, DataConfig(train=str(train)), COLUMNS, 0, None)
    assert message.startswith(f"{train}: no column 'text' (line/row 1).")
    assert "Columns present: sentence, label" in message


def test_load_splits_passes_the_encoding(tmp_path: Path):
    train = tmp_path / "t.csv"
    train.write_bytes("text,label\n".encode() + "".join(f"caf\xe9 {i},a\n" for i in range(10)).encode("latin-1"))
    assert "pass --encoding" in error_of(load_splits, DataConfig(train=str(train)), COLUMNS, 0, None)
    splits = load_splits(DataConfig(train=str(train), encoding="latin-1"), COLUMNS, 0, None)
    assert all(t.startswith("café") for t in splits["train"].columns["text"])


# ---------------------------------------------------------------------------- adapt_columns


def test_adapt_columns_uses_conventional_names_and_says_so(tmp_path: Path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    out, notes = adapt_columns(path, {"text": "sentence", "label": "label", "text_pair": None}, explicit=set())
    assert out == {"text": "text", "label": "label", "text_pair": None}
    assert notes == [f"{path} has no column 'sentence'; using its 'text' column (--text-column to choose)"]


def test_adapt_columns_keeps_explicit_choices(tmp_path: Path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    wanted = {"text": "sentence", "label": "gold"}
    out, notes = adapt_columns(path, wanted, explicit={"text"})
    assert out == {"text": "sentence", "label": "label"}
    assert notes == [f"{path} has no column 'gold'; using its 'label' column (--label-column to choose)"]


def test_adapt_columns_leaves_present_or_unmatched_columns(tmp_path: Path):
    path = write_csv(tmp_path / "d.csv", [{"sentence": "x", "text": "y", "y": "1"}])
    wanted = {"text": "sentence", "label": "label"}
    assert adapt_columns(path, wanted, explicit=set()) == (wanted, [])


def test_adapt_columns_on_an_empty_file_changes_nothing(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("", encoding="utf-8")
    assert adapt_columns(path, {"text": "sentence"}, explicit=set()) == ({"text": "sentence"}, [])


def test_adapt_columns_checks_the_file(tmp_path: Path):
    assert error_of(adapt_columns, tmp_path / "no.jsonl", {}, set()) == f"{tmp_path / 'no.jsonl'}: no such file; check the path"
