"""Property tests: whatever a config or a data file holds, ftkit answers with an FtkitError
(one line, exit code 2, naming the source) or a valid result; never another exception.

Inputs mix the structured (near-valid configs, JSON lines, CSV rows, CoNLL blocks, parquet
tables of odd types) with raw bytes, so the deep checks are reached, not only the first parse.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ftkit.config import RunConfig
from ftkit.config_load import all_keys, apply_overrides, from_dict, load_yaml_file, parse_set
from ftkit.data import adapt_columns, iter_records, read_columns
from ftkit.errors import FtkitError

SRC = "recipe.yaml"
BASE = {"name": "demo", "task": "sequence-classification", "model": "tiny-bert"}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def check_error(err: FtkitError, *sources: str) -> None:
    """An expected failure: exit code 2, a non-empty message naming where the input came from."""
    assert err.exit_code == 2 and err.message.strip()
    if sources and not err.message.startswith("unknown encoding"):
        assert any(s in err.message for s in sources), err.message


# ---------------------------------------------------------------------------- config values

LEAVES = sorted(all_keys())
SECTIONS = sorted({k.split(".")[0] for k in LEAVES} | {"expect"})
weird_strings = st.sampled_from([
    "", " ", "null", "~", "None", "yes", "no", "on", "true", "0", "-1", "+5 ", "1e999", "-inf", "nan", "2e-5",
    "1" * 5000, "0x1f", "1_000", ">= 0.9", ">=", "<> 1", "auto", "bf16", "fp17", "seq2seq", "causal-lm",
    "a,b,,c", "[a, b]", "{a: 1}", "\x00", "\ud7ff", "é", "line\nbreak", "B-PER", "../x", "-", "--",
])
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12), weird_strings,
    st.integers(min_value=-3, max_value=3).map(float),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from(LEAVES)), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def configs(draw) -> Any:
    """Near-valid mappings (known sections and leaves with values of any type), sometimes junk."""
    data: dict[Any, Any] = dict(BASE)
    for _ in range(draw(st.integers(0, 6))):
        key = draw(st.one_of(st.sampled_from(LEAVES), st.sampled_from(SECTIONS), st.text(max_size=8), st.integers(), st.none()))
        value = draw(values)
        if isinstance(key, str) and "." in key:
            section, leaf = key.split(".", 1)
            node = data.setdefault(section, {})
            if isinstance(node, dict):
                node[leaf] = value
        else:
            data[key] = value
    if draw(st.integers(0, 9)) == 0:
        data.pop(draw(st.sampled_from(sorted(BASE))))
    return draw(values) if draw(st.integers(0, 14)) == 0 else data


@SETTINGS
@given(configs())
def test_from_dict_gives_a_valid_config_or_an_ftkit_error(data):
    try:
        config = from_dict(data, SRC)
    except FtkitError as err:
        check_error(err, SRC)
    else:
        assert isinstance(config, RunConfig)
        assert all(math.isfinite(v) for v in (config.train.learning_rate, config.train.warmup_ratio, config.data.validation_fraction))
        assert config.train.batch_size > 0 and config.train.max_length > 0
        assert from_dict(config.to_dict(), SRC) == config  # what config.yaml holds reloads to the same run


yaml_tokens = st.sampled_from([
    "name: x", "task: causal-lm", "model: m", "train:", "data:", "expect:", "  epochs: 3", "  seed: 2024-13-45",
    "  learning_rate: !!float abc", "  labels: [a, b", "  labels: &a [*a]", "  batch_size: !!int 0xZZ", "  x: !!python/tuple [1]",
    "  accuracy: '>= 0.9'", "{[1]: 2}", "? [a]", "- a", "  - b", "\t", ":", "'", '"', "[" * 200, "a: !!binary aGk=", "\x00", "%YAML 9.9",
])


@SETTINGS
@given(st.lists(st.one_of(yaml_tokens, st.text(max_size=15)), max_size=8), st.booleans())
@example(["train:", "  seed: 2024-13-45"], True)  # found here: YAML builds a date, and it is invalid
@example(["[" * 2000], False)  # found here: the YAML parser recursed too deep
def test_recipe_files_give_a_valid_config_or_an_ftkit_error(tmp_path: Path, lines: list[str], valid_head: bool):
    path = tmp_path / "mine.yaml"
    head = ["name: mine", "task: sequence-classification", "model: m"] if valid_head else []
    path.write_text("\n".join(head + lines) + "\n", encoding="utf-8", errors="surrogatepass")
    try:
        config = from_dict(load_yaml_file(path), str(path))
    except FtkitError as err:
        check_error(err, str(path))
    else:
        assert isinstance(config, RunConfig)


set_keys = st.one_of(
    st.sampled_from(LEAVES), st.sampled_from(LEAVES).map(lambda k: k.rsplit(".", 1)[-1]),
    st.sampled_from(["expect", "expect.", "expect.accuracy", "expect.per_class.spam.f1", "data", "train", ".", "a.b.c", " train.seed "]),
    st.text(max_size=10),
)
set_values = st.one_of(
    weird_strings, st.text(max_size=20),
    st.sampled_from(["!!binary aGk=", "&a [*a]", "2024-13-45", "!!float abc", "!!set {a}", "[" * 300, "{a: [1, {b: 2}]}", "'>= 0.5'", "> 1e999"]),
)


@SETTINGS
@given(st.lists(st.one_of(st.tuples(set_keys, set_values).map("=".join), st.text(max_size=20)), max_size=5))
@example(["expect=1", "expect.accuracy=>= 0.9"])  # found here: a key set inside a scalar
def test_set_overrides_give_a_valid_config_or_an_ftkit_error(pairs: list[str]):
    base = from_dict({**BASE, "expect": {"accuracy": ">= 0.5"}}, SRC)
    try:
        config = apply_overrides(base, parse_set(pairs), "command line")
    except FtkitError as err:
        check_error(err)
    else:
        assert isinstance(config, RunConfig)
        assert from_dict(config.to_dict(), SRC) == config
    assert base.expect == {"accuracy": ">= 0.5"}  # overrides never change the config they start from


# ---------------------------------------------------------------------------- data files

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
record_keys = st.sampled_from(["text", "label", "tokens", "ner_tags", "entities", "translation", "en", "es", "source", "target", "start", "end", ""])
records = st.dictionaries(st.one_of(record_keys, st.text(max_size=5)), st.one_of(json_values, st.lists(st.text(max_size=4), max_size=4)), max_size=4)
entities = st.lists(st.fixed_dictionaries({"start": st.integers(-2, 30), "end": st.integers(-2, 30), "label": st.one_of(st.text(max_size=3), json_scalars)}), max_size=3)
span_records = st.fixed_dictionaries({"text": st.text(max_size=30), "entities": st.one_of(entities, json_values)})


def json_lines(rows: list[Any]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8", "surrogatepass")


def table_text(delimiter: str):
    cell = st.one_of(st.text(alphabet=st.sampled_from(f'ab é"\n\r{delimiter}\x00,\t'), max_size=6), st.sampled_from(["", '"', '""', "NaN", "B-PER"]))
    return st.lists(st.lists(cell, max_size=4), max_size=6).map(lambda rows: "\n".join(delimiter.join(r) for r in [["text", "label"], *rows]).encode("utf-8", "surrogatepass"))


conll_text = st.lists(
    st.one_of(st.just(""), st.just("-DOCSTART- -X- O"), st.tuples(st.text(alphabet="aB\t -é", min_size=1, max_size=5), st.sampled_from(["O", "B-PER", "I-LOC", "PER", "B-", "X"])).map(" ".join)),
    max_size=10,
).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))
contents = st.one_of(
    st.binary(max_size=200),
    st.text(alphabet=st.sampled_from('{}[]",:\n\r\t \\a1éx\x00\ufeff-'), max_size=120).map(lambda t: t.encode("utf-8")),
    st.lists(st.one_of(records, span_records, json_values), max_size=5).map(json_lines),
    st.lists(st.one_of(records, span_records), max_size=5).map(lambda rows: json.dumps(rows).encode()),
    table_text(","), table_text("\t"), conll_text,
    st.text(max_size=60).map(lambda t: t.encode("latin-1", "replace")),
)
SUFFIXES = [".csv", ".tsv", ".json", ".jsonl", ".txt", ".conll", ".iob", ".parquet"]
ENCODINGS = st.sampled_from(["utf-8", "utf-8", "utf-8", "latin-1", "utf-16", "cp1252", "utf-99", "rot13"])
FORMATS = st.sampled_from(["auto", "conll", "text"])


@SETTINGS
@given(content=contents, suffix=st.sampled_from(SUFFIXES), encoding=ENCODINGS, fmt=FORMATS)
@example(content=b"\x00\x00", suffix=".csv", encoding="utf-16", fmt="auto")  # found here: UTF-16 without a BOM
@example(content=b'{"text": ' + b"1" * 5000 + b"}\n", suffix=".jsonl", encoding="utf-8", fmt="auto")  # an int past Python's digit limit
@example(content=b'[{"label": ' + b"1" * 5000 + b"}]", suffix=".json", encoding="utf-8", fmt="auto")
def test_iter_records_on_any_bytes_gives_records_or_an_ftkit_error(tmp_path: Path, content: bytes, suffix: str, encoding: str, fmt: str):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content)
    try:
        rows = list(iter_records(path, encoding, fmt))
    except FtkitError as err:
        check_error(err, str(path))
    else:
        numbers = [n for n, _ in rows]
        assert numbers == sorted(set(numbers)) and all(n >= 1 for n in numbers)
        assert all(isinstance(record, dict) for _, record in rows)


def normalizers() -> dict[str, Any]:
    """Each task family's record rewrite (NER spans -> tags; translation pairs -> columns)."""
    from ftkit.tasks import seq2seq, tokens

    ner = from_dict({**BASE, "task": "token-classification", "data": {"text_column": "tokens", "label_column": "ner_tags"}}, SRC)
    mt = from_dict({**BASE, "task": "seq2seq", "data": {"source_lang": "en", "target_lang": "es"}}, SRC)
    return {
        "classification": ({"text": "text", "label": "label"}, None),
        "ner": ({"text": "tokens", "label": "ner_tags"}, tokens.normalizer(ner)),
        "translation": (seq2seq.columns(mt), seq2seq.normalizer(mt)),
    }


NORMALIZERS = normalizers()


@SETTINGS
@given(content=contents, suffix=st.sampled_from(SUFFIXES), family=st.sampled_from(sorted(NORMALIZERS)), fmt=FORMATS)
def test_read_columns_gives_columns_or_an_ftkit_error(tmp_path: Path, content: bytes, suffix: str, family: str, fmt: str):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content)
    columns, normalize = NORMALIZERS[family]
    try:
        adapted, notes = adapt_columns(path, columns, set(), "utf-8", fmt, normalize)
        split = read_columns(path, adapted, "utf-8", fmt, normalize)
    except FtkitError as err:
        check_error(err, str(path))
    else:
        assert len(split) >= 1 and all(len(v) == len(split) for v in split.columns.values())
        if family == "classification":  # the labels reach the classifier's checks: same promise
            from ftkit.tasks import classification

            try:
                names, _ = classification.label_names(split, None)
                assert len(classification.encode(split, names, "train")) == len(split)
            except FtkitError as err:
                check_error(err, str(path))


@SETTINGS
@given(st.lists(st.text(max_size=10), max_size=6), st.lists(st.text(max_size=10), max_size=6), st.binary(max_size=20))
def test_aligned_pairs_give_columns_or_an_ftkit_error(tmp_path: Path, left: list[str], right: list[str], junk: bytes):
    source, target = tmp_path / "a.en.txt", tmp_path / "a.es.txt"
    source.write_bytes("\n".join(left).encode("utf-8", "surrogatepass") + junk[:3])
    target.write_text("\n".join(right), encoding="utf-8", errors="surrogatepass")
    columns, normalize = NORMALIZERS["translation"]
    try:
        split = read_columns(Path(f"{source}:{target}"), columns, "utf-8", "auto", normalize)
    except FtkitError as err:
        check_error(err, str(source), str(target))
    else:
        assert split.columns["text"] == [line.rstrip("\r\n") for line in io.StringIO(source.read_text(encoding="utf-8-sig"), newline="")]


@st.composite
def tables(draw) -> dict[str, list]:
    """Columns of one type each (as parquet has), any of them null, named as the readers look for."""
    n = draw(st.integers(0, 5))
    cells = [st.text(max_size=5), st.integers(-5, 5), st.floats(), st.booleans(), st.lists(st.text(max_size=3), max_size=3), st.lists(st.integers(-2, 9), max_size=3)]
    table = {}
    for name in draw(st.lists(st.sampled_from(["text", "label", "tokens", "ner_tags", "en", "es"]), unique=True, max_size=4)):
        table[name] = draw(st.lists(st.one_of(st.none(), draw(st.sampled_from(cells))), min_size=n, max_size=n))
    return table


@SETTINGS
@given(tables(), st.sampled_from(sorted(NORMALIZERS)), st.integers(0, 40))
def test_parquet_tables_give_columns_or_an_ftkit_error(tmp_path: Path, table: dict[str, list], family: str, cut: int):
    """Tables of odd cell types, and the same file damaged (cut short, or bytes zeroed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(pa.table(table) if table else pa.table({"other": [1]}), path)
    if cut:
        data = path.read_bytes()
        path.write_bytes(data[: max(0, len(data) - cut)] if cut % 2 else data[:4] + bytes(cut) + data[4 + cut :])
    columns, normalize = NORMALIZERS[family]
    try:
        read_columns(path, columns, "utf-8", "auto", normalize)
    except FtkitError as err:
        check_error(err, str(path))
