"""Examples in: local files (csv, tsv, json, jsonl, parquet, txt) and Hub datasets.

Readers stream records with their line/row number, so training and `predict` share them and
every complaint names the file and the row. Splits come back as plain columns
(`{"text": [...], "label": [...]}`): the task family turns them into features.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftkit.config import DataConfig
from ftkit.datafile import AUDIO_SUFFIXES, CONLL_SUFFIXES, MEDIA_SUFFIXES, TABLE_SUFFIXES, TEXT_SUFFIXES, check_readable, text_codec
from ftkit.bounded import shown
from ftkit.columns import SAMPLE_ROWS, Roles, check_roles, flag, kinds_of, missing_column
from ftkit.errors import FtkitError, first_line
from ftkit.values import MIN_TEXT_CHARS

# check_readable and the suffixes live in ftkit.datafile; predict and the CLI import them from here too.

# A task family's rewrite of each raw record (record, source, row) -> (record, note or None).
Normalize = Callable[[dict[str, Any], str, int], tuple[dict[str, Any], str | None]]


@dataclass
class Split:
    """One split as plain columns keyed by role ('text', 'label', ...), with where each row came from."""

    columns: dict[str, list[Any]]
    rows: list[int]  # line/row number in the source of each example, for error messages
    source: str  # a file path or 'Hub dataset X [split]'
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, indices: list[int], source: str) -> "Split":
        return Split({k: [v[i] for i in indices] for k, v in self.columns.items()}, [self.rows[i] for i in indices], source)


def data_suffixes(fmt: str = "auto") -> tuple[str, ...]:
    """Extensions a data file may have; .txt only with a format that says how to read it."""
    return TABLE_SUFFIXES + CONLL_SUFFIXES + (TEXT_SUFFIXES if fmt in ("conll", "text") else ())


def iter_records(
    path: Path | str, encoding: str = "utf-8", fmt: str = "auto", notes: list[str] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line or row number, record) from a data file, or text lines from '-' (stdin).

    CoNLL files (.conll, .iob, or .txt with fmt='conll') yield one record per sentence,
    {"tokens": [...], "ner_tags": [...]}, numbered by the line of its first token. How a file
    was read, where that is worth saying (a .json file of columns), is appended to `notes`.
    """
    if str(path) == "-":
        for n, line in enumerate(sys.stdin, start=1):
            yield n, {"text": line.rstrip("\r\n")}
        return
    path = Path(path)
    check_readable(path, TABLE_SUFFIXES + TEXT_SUFFIXES + CONLL_SUFFIXES)
    suffix = path.suffix.lower()
    # --format conll is about .txt files: a .jsonl/.csv beside them keeps its own format
    conll = suffix in CONLL_SUFFIXES or (fmt == "conll" and suffix in TEXT_SUFFIXES)
    if suffix == ".parquet":
        yield from _parquet_records(path)
        return
    codec = text_codec(path, encoding)
    try:
        with open(path, encoding=codec, newline="") as handle:
            if conll:
                yield from _conll_records(path, handle)
            elif fmt == "text" and suffix in TEXT_SUFFIXES:
                yield from _paragraph_records(handle)
            elif suffix in (".csv", ".tsv"):
                yield from _csv_records(path, handle, "\t" if suffix == ".tsv" else ",")
            elif suffix in (".json", ".jsonl"):
                yield from _json_records(path, handle, [] if notes is None else notes)
            else:
                for n, line in enumerate(handle, start=1):
                    yield n, {"text": line.rstrip("\r\n")}
    except UnicodeDecodeError as err:
        line = _undecodable_line(path, codec)
        where = f"line {line}: " if line else ""
        raise FtkitError(
            f"{path}: {where}not valid {encoding} text (byte 0x{err.object[err.start]:02x}); the file has another "
            "encoding: re-save it as UTF-8 or pass --encoding (e.g. latin-1)"
        ) from None
    except UnicodeError as err:  # no position to name: e.g. UTF-16 without its byte-order mark
        raise FtkitError(
            f"{path}: not valid {encoding} text ({err}); the file has another encoding: pass another --encoding (e.g. utf-16-le)"
        ) from None
    except LookupError:  # a codec that is not a text encoding (rot13): open() refuses it
        raise FtkitError(f"unknown encoding '{encoding}': pass another --encoding (e.g. utf-8, latin-1, cp1252)") from None


def _undecodable_line(path: Path, codec: str) -> int | None:
    """The number of the first line that does not decode, for the error message.

    The reader decodes blocks, not lines, so its error only knows a block offset. Splitting the
    raw bytes at newline bytes is exact for ASCII-compatible codecs (in UTF-8 a newline byte is never
    part of another character); for others (UTF-16) there is no line to name.
    """
    import codecs

    try:
        if codecs.getincrementaldecoder(codec)().decode(b"\n", final=True) != "\n":
            return None
    except UnicodeDecodeError:  # UTF-16/32: a lone newline byte is not even a character
        return None
    decoder = codecs.getincrementaldecoder(codec)()
    with open(path, "rb") as handle:
        for n, raw in enumerate(handle, start=1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError:
                return n
    return None


def _csv_records(path: Path, handle: io.TextIOBase, delimiter: str) -> Iterator[tuple[int, dict]]:
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as err:
        raise FtkitError(f"{path}: line 1: {err}") from None
    header = [h.strip().lstrip("\ufeff") for h in header]
    _refuse_duplicates(path, header, "line 1: the header")
    try:
        for row in reader:
            if not row:  # csv yields [] for a blank line
                continue
            if len(row) != len(header):
                raise FtkitError(
                    f"{path}: line {reader.line_num} has {len(row)} fields but the header has "
                    f"{len(header)}; quote fields that contain '{delimiter}' or fix the row"
                )
            yield reader.line_num, dict(zip(header, row))
    except csv.Error as err:
        if "field larger than field limit" in str(err):  # a text past csv's bound, or a stray quote
            raise FtkitError(
                f"{path}: line {reader.line_num}: a field is longer than {csv.field_size_limit():,} characters (the csv "
                "reader's limit), or a quote is never closed; close the quote, or save long texts as .jsonl or .parquet"
            ) from None
        raise FtkitError(f"{path}: line {reader.line_num}: {err}") from None


def _refuse_duplicates(path: Path, names: list[str], where: str) -> None:
    """Two columns of one name: a record keeps only the last, so the first would vanish unseen."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise FtkitError(f"{path}: {where} names the column {shown(name)} twice; rename one of them (each column needs its own name)")
        seen.add(name)


def _paragraph_records(handle: io.TextIOBase) -> Iterator[tuple[int, dict]]:
    """Documents separated by blank lines -> {"text"} each, numbered by its first line."""
    lines: list[str] = []
    first = 0
    for n, line in enumerate(handle, start=1):
        if line.strip():
            first = first if lines else n
            lines.append(line.rstrip("\r\n"))
        elif lines:
            yield first, {"text": "\n".join(lines)}
            lines = []
    if lines:
        yield first, {"text": "\n".join(lines)}


def aligned_pair(spec: str) -> tuple[Path, Path] | None:
    """'src.txt:tgt.txt' -> the two paths (translation as two line-aligned plain-text files)."""
    if ":" not in spec or Path(spec).exists():
        return None
    source, _, target = spec.partition(":")
    return Path(source), Path(target)


def file_names(spec: Path | str) -> str:
    """What a data file is called in a table or progress line: its name, without the folders
    (both names of an aligned 'src.txt:tgt.txt' pair)."""
    return ":".join(p.name for p in aligned_pair(str(spec)) or [Path(spec)])


def check_data(spec: Path | str, fmt: str = "auto") -> None:
    """check_readable for a --train/--validation/--test/--data value: one data file, or both
    files of an aligned 'SRC.txt:TGT.txt' pair."""
    pair = aligned_pair(str(spec))
    for path in pair or (Path(spec),):
        check_readable(path, TEXT_SUFFIXES if pair else data_suffixes(fmt))


def check_local_files(data: DataConfig, folders: bool = False) -> None:
    """Every local data file of a run, checked before any of them is read (or a model loads).
    folders: a folder is data too (a family's LOCAL_FOLDERS: its read_local checks what is inside)."""
    for split in ("train", "validation", "test"):
        spec = getattr(data, split)
        if spec and not (folders and Path(spec).is_dir()):
            check_data(spec, data.format)


def _aligned_records(source: Path, target: Path, encoding: str) -> Iterator[tuple[int, dict]]:
    """Line n of the source file with line n of the target file, as {"source", "target"}."""
    for path in (source, target):
        check_readable(path, TEXT_SUFFIXES)
    left = list(iter_records(source, encoding))
    right = list(iter_records(target, encoding))
    if len(left) != len(right):
        raise FtkitError(
            f"{source} has {len(left)} lines but {target} has {len(right)}: aligned files need one "
            "translation per line, in the same order (look for a stray or missing line)"
        )
    for (n, a), (_, b) in zip(left, right):
        yield n, {"source": a["text"], "target": b["text"]}


def _conll_records(path: Path, handle: io.TextIOBase) -> Iterator[tuple[int, dict]]:
    tokens: list[str] = []
    tags: list[str] = []
    first = 0
    for n, line in _bounded_lines(path, handle, CONLL_LINE_CHARS):
        fields = line.split()
        if fields and fields[0] == "-DOCSTART-":
            continue
        if not fields:
            if tokens:
                yield first, {"tokens": tokens, "ner_tags": tags}
            tokens, tags = [], []
            continue
        if len(fields) < 2:
            raise FtkitError(f"{path}: line {n}: expected 'TOKEN ... TAG' (tag in the last column), got {line.strip()!r}")
        if not tokens:
            first = n
        tokens.append(fields[0])
        tags.append(fields[-1])
    if tokens:
        yield first, {"tokens": tokens, "ner_tags": tags}


# A CoNLL line holds one token and its tag: a line past this is not one (a whole text without line
# breaks, a binary file), and a token cut short would lose its tag, so it is refused, read no further.
CONLL_LINE_CHARS = MIN_TEXT_CHARS


def _bounded_lines(path: Path, handle: io.TextIOBase, limit: int) -> Iterator[tuple[int, str]]:
    """(number, line) of a text file, refusing a line longer than `limit` before reading it all."""
    for n, line in enumerate(iter(lambda: handle.readline(limit + 1), ""), start=1):
        if len(line) > limit and line[-1] not in "\r\n":
            raise FtkitError(
                f"{path}: line {n} is longer than {limit:,} characters; a CoNLL line holds one token and its tag "
                "(is this a CoNLL file?)"
            )
        yield n, line


def _json_records(path: Path, handle: io.TextIOBase, notes: list[str]) -> Iterator[tuple[int, dict]]:
    skipped, first = "", handle.read(1)
    while first and first.isspace():
        skipped, first = skipped + first, handle.read(1)
    if first == "[":  # a JSON array of objects: read whole (such files are not streamed)
        try:  # keep the skipped blank lines so line numbers match the file
            rows = json.loads(skipped + first + handle.read())
        except json.JSONDecodeError as err:
            raise FtkitError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}; fix it (or write one object per line as .jsonl)") from None
        except ValueError:  # json's only other complaint: an integer beyond Python's digit limit
            raise FtkitError(f"{path}: invalid JSON: a number with too many digits; quote it as a string") from None
        except RecursionError:
            raise FtkitError(f"{path}: invalid JSON: nested too deeply; expected an array of objects") from None
        for n, row in enumerate(rows, start=1):
            yield n, _as_record(path, row, f"item {n}")
        return
    if first == "{" and path.suffix.lower() == ".json":  # one object: a table of columns, or one record
        whole = _whole_json_object(path, skipped + first + handle.read())
        if whole is not None:
            yield from _object_records(path, whole, notes)
            return
    handle.seek(0)
    for n, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise FtkitError(f"{path}: line {n}: invalid JSON ({err.msg}); each line must be one JSON object") from None
        except ValueError:  # json's only other complaint: an integer beyond Python's digit limit
            raise FtkitError(f"{path}: line {n}: invalid JSON: a number with too many digits; quote it as a string") from None
        except RecursionError:
            raise FtkitError(f"{path}: line {n}: invalid JSON (nested too deeply); each line must be one JSON object") from None
        yield n, _as_record(path, row, f"line {n}")


def _whole_json_object(path: Path, text: str) -> dict | None:
    """A .json file that opens with '{' parsed whole; None when it holds several objects (one per
    line, as .jsonl), which are then read line by line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":
            return None
        raise FtkitError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}; fix it (or write one object per line as .jsonl)") from None
    except (ValueError, RecursionError):  # too many digits, nested too deeply: the line reader names the line
        return None


def _object_records(path: Path, table: dict, notes: list[str]) -> Iterator[tuple[int, dict]]:
    """Rows of a .json file holding one object.

    Columns of equal length, {"text": [...], "label": [...]} (a dataset's to_dict()), or pandas'
    default to_json(), {"text": {"0": ...}, "label": {"0": ...}}, are read as rows, with a note;
    any other object is one record. Columns that do not line up are refused: pairing their values
    by position would be a guess.
    """
    columns = list(table.values())
    if not columns or not (all(isinstance(c, list) for c in columns) or all(isinstance(c, dict) for c in columns)):
        yield 1, table
        return
    index = list(columns[0]) if isinstance(columns[0], dict) else None  # pandas' row labels
    shapes = {len(c) if index is None else frozenset(c) for c in columns}
    if len(shapes) > 1:
        sizes = ", ".join(f"{shown(name)}: {len(c)}" for name, c in list(table.items())[:4])
        raise FtkitError(
            f"{path}: an object of columns that do not line up ({sizes}{', ...' if len(table) > 4 else ''}); "
            "give every column one value per row, or write one object per line as .jsonl"
        )
    n = len(columns[0])
    notes.append(f"{path}: read as a table of {len(table)} columns, {n} rows (one JSON object of columns); row numbers count from 1")
    for i in range(n):
        key = i if index is None else index[i]
        yield i + 1, {name: column[key] for name, column in table.items()}


def _as_record(path: Path, row: Any, where: str) -> dict:
    if not isinstance(row, dict):
        raise FtkitError(f"{path}: {where} is a JSON {type(row).__name__}, expected an object like {{\"text\": ...}}")
    return row


def _parquet_records(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise FtkitError(f"{path}: not a readable parquet file ({err})") from None
    _refuse_duplicates(path, parquet.schema_arrow.names, "the schema")
    n = 0
    try:
        for batch in parquet.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                n += 1
                yield n, row
    except (pyarrow.ArrowException, OSError) as err:  # a damaged page past the footer
        reason = first_line(err)
        raise FtkitError(f"{path}: row {n + 1}: cannot read the parquet file ({reason}); re-export it") from None


def read_columns(
    path: Path, columns: dict[str, str | None], encoding: str = "utf-8", fmt: str = "auto", normalize: Normalize | None = None
) -> Split:
    """Read a local file into lists for each wanted column.

    `columns` maps our role ('text', 'label', ...) to the file's column name; None means the
    role is not used. A missing column is an error that lists the columns the file has and
    suggests one that fits the role (ftkit.columns). `normalize` lets a task family rewrite each
    record first (e.g. character spans -> tags).
    """
    from collections import Counter

    wanted = {role: name for role, name in columns.items() if name}
    out: dict[str, list[Any]] = {role: [] for role in wanted}
    rows: list[int] = []
    notes: Counter[str] = Counter()
    read_notes: list[str] = []  # how the file was read (once per file, not per record)
    for n, record, note in _records(path, encoding, fmt, normalize, read_notes):
        notes.update([note] if note else [])
        if any(name not in record for name in wanted.values()):
            sample = _first_rows(_records(path, encoding, fmt, normalize))
            raise FtkitError(missing_column(str(path), n, columns, list(record), sample))
        for role, name in wanted.items():
            out[role].append(record[name])
        rows.append(n)
    if not rows:
        raise FtkitError(f"{path}: the file is empty (no records); put the examples in it, or pass another file")
    return Split(out, rows, str(path), read_notes + [f"{path}: {count} record(s): {note}" for note, count in notes.items()])


def _records(
    path: Path, encoding: str, fmt: str, normalize: Normalize | None, read_notes: list[str] | None = None
) -> Iterator[tuple[int, dict[str, Any], str | None]]:
    """(row number, record as the family reads it, the family's note or None) of a local file."""
    pair = aligned_pair(str(path))
    for n, record in _aligned_records(*pair, encoding) if pair else iter_records(path, encoding, fmt, read_notes):
        yield (n, *normalize(record, str(path), n)) if normalize is not None else (n, record, None)


def _first_rows(records: Iterator[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The records of up to SAMPLE_ROWS (number, record, ...) for a missing column's suggestion; a
    fault further on (a row the family cannot read) ends the sample, not the error being reported."""
    sample: list[dict[str, Any]] = []
    try:
        for _, record, *_ in itertools.islice(records, SAMPLE_ROWS):
            sample.append(record)
    except FtkitError:
        pass
    return sample


def hub_columns(data: DataConfig, split: str, columns: dict[str, str | None], normalize: Normalize | None = None) -> Split:
    """Read one split of the Hub dataset into column lists; class ids become their names."""
    dataset = _undecoded_audio(load_hub_dataset(data.dataset, data.dataset_config, split))
    wanted = {role: name for role, name in columns.items() if name}
    source = f"Hub dataset {data.dataset} [{split}]"
    rows = list(range(1, len(dataset) + 1))
    if all(name in dataset.column_names for name in wanted.values()):  # the fast path: whole columns
        return Split({role: _class_names(dataset.features[name], dataset[name]) for role, name in wanted.items()}, rows, source)

    def sample() -> list[dict[str, Any]]:
        head = enumerate(dataset.select(range(min(len(dataset), SAMPLE_ROWS))), start=1)
        return _first_rows((n, *normalize(row, source, n)) if normalize else (n, row) for n, row in head)

    if normalize is None:
        raise FtkitError(missing_column(source, None, columns, dataset.column_names, sample()))
    out: dict[str, list[Any]] = {role: [] for role in wanted}
    for n, row in enumerate(dataset, start=1):  # rows need rewriting (e.g. {"translation": {...}})
        record = normalize(row, source, n)[0]
        if any(name not in record for name in wanted.values()):
            raise FtkitError(missing_column(source, n, columns, list(record), sample()))
        for role, name in wanted.items():
            out[role].append(record[name])
    return Split(out, rows, source)


def _undecoded_audio(dataset: Any) -> Any:
    """Audio columns as their encoded {"bytes", "path"}: the family reads them with soundfile
    (datasets would decode them with torchcodec, which ftkit does not install)."""
    import datasets

    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Audio) and feature.decode:
            dataset = dataset.cast_column(name, datasets.Audio(decode=False))
    return dataset


def _class_names(feature: Any, values: list[Any]) -> list[Any]:
    """ClassLabel ids -> names (-1, a hidden label, -> None); sequences of them likewise."""
    if hasattr(feature, "int2str"):
        return [feature.int2str(v) if v is not None and v >= 0 else None for v in values]
    if hasattr(getattr(feature, "feature", None), "int2str"):  # NER tags: a list of ClassLabel
        names = feature.feature.names
        return [[names[i] for i in seq] if seq is not None else None for seq in values]
    return list(values)


def load_hub_dataset(name: str, config: str | None, split: str) -> Any:
    """One split of a Hub dataset, with an actionable error when it cannot be reached."""
    import datasets

    from ftkit import hub

    datasets.utils.logging.disable_progress_bar()
    unreachable = hub.prepare_dataset()
    try:
        return datasets.load_dataset(name, config, split=split)
    except ValueError as err:
        if "split" in str(err).lower():
            raise FtkitError(
                f"Hub dataset '{name}' has no split '{split}': {first_line(err)} "
                "Set data.train_split / data.validation_split / data.test_split (null to carve from train)."
            ) from None
        raise _unreachable(name, err, unreachable) from None
    except Exception as err:  # connection, auth and not-found errors differ across versions
        raise _unreachable(name, err, unreachable) from None


def _unreachable(name: str, err: Exception, hub_down: str | None = None) -> FtkitError:
    reason = first_line(err)
    if hub_down:  # the probe found no Hub: say that, not the cache miss it caused
        reason = f"the Hub cannot be reached ({hub_down}) and the dataset is not in the local cache"
    return FtkitError(
        f"cannot load Hub dataset '{name}' ({reason[:200]}). If you are offline, pass local files: "
        "--train FILE [--validation FILE] [--test FILE] (csv, tsv, json, jsonl, parquet); set HF_HUB_OFFLINE=1 "
        "to skip Hub look-ups (cached datasets only)."
    )


def load_splits(
    data: DataConfig, columns: dict[str, str | None], seed: int, stratify: str | None, normalize: Normalize | None = None,
    reader: Callable[[Path], Split | None] | None = None, folders: bool = False,
) -> dict[str, Split]:
    """train / validation / test columns, from local files or the Hub, carving what is missing.

    Local files win over the Hub dataset. A missing validation (or test, when test_fraction > 0)
    split is carved from train with the seed, stratified by `stratify` where every class allows.
    `reader`: the family's own reading of a local path (its read_local; returning None leaves
    the path to read_columns here); `folders`: a local path may be a folder (the reader reads it).
    """
    local = {s: getattr(data, s) for s in ("train", "validation", "test") if getattr(data, s)}
    splits: dict[str, Split] = {}
    if local:
        if "train" not in local:
            raise FtkitError("--validation/--test given without --train: pass the training file too")
        check_local_files(data, folders)
        for split, file in local.items():
            own = reader(Path(file)) if reader is not None else None
            splits[split] = own if own is not None else read_columns(Path(file), columns, data.encoding, data.format, normalize)
    elif data.dataset:
        for split, hub_split in (("train", data.train_split), ("validation", data.validation_split), ("test", data.test_split)):
            if hub_split:
                splits[split] = hub_columns(data, hub_split, columns, normalize)
    else:
        raise FtkitError("no data: pass --train FILE (and --validation/--test), or --dataset HUB_ID")
    remaining = 1.0  # fractions are of the original train set, whatever was carved before
    for split, fraction in (("test", data.test_fraction), ("validation", data.validation_fraction)):
        if split not in splits and fraction > 0:
            notes = splits["train"].notes
            splits["train"], splits[split] = carve(splits["train"], fraction / remaining, seed, stratify)
            remaining -= fraction
            splits["train"].notes = notes + [
                f"no {split} split: carved {len(splits[split])} rows ({fraction:.0%}) from train with seed {seed}"
            ]
    if "validation" not in splits:
        raise FtkitError("no validation data: pass --validation FILE or set data.validation_fraction > 0")
    return splits


def carve(split: Split, fraction: float, seed: int, stratify: str | None) -> tuple[Split, Split]:
    """Split rows into (rest, carved) with the seed; stratified when every class has 2+ rows."""
    import math
    from collections import Counter

    from sklearn.model_selection import train_test_split

    n = len(split)
    held_n = math.ceil(fraction * n)  # as train_test_split rounds
    if n < 2 or held_n >= n:
        raise FtkitError(
            f"only {n} training row(s): too few to carve a validation split; pass --validation FILE "
            f"(or --test FILE, or lower data.validation_fraction / data.test_fraction: {fraction:.0%} of {n} leaves none)"
        )
    keys = None
    if stratify and stratify in split.columns:
        keys = [str(v) for v in split.columns[stratify]]
        counts = Counter(keys)
        # sklearn needs every class twice and both parts at least as large as the class count
        if min(counts.values()) < 2 or len(counts) > min(held_n, n - held_n):
            keys = None
    rest, held = train_test_split(list(range(n)), test_size=fraction, random_state=seed, stratify=keys)
    carved = f"{fraction:.0%} of {split.source} (seed {seed})"
    return split.select(sorted(rest), split.source), split.select(sorted(held), carved)


# Roles a recipe may name that a local file can do without: STS-B's second sentence ('sentence2')
# is the regression recipe's, and a file of single texts with a score is regression too.
OPTIONAL_ROLES = ("text_pair",)


def adapt_columns(
    path: Path, wanted: dict[str, str | None], explicit: set[str], encoding: str = "utf-8", fmt: str = "auto",
    normalize: Normalize | None = None, conventional: dict[str, str] | None = None,
) -> tuple[dict[str, str | None], list[str]]:
    """Fit a recipe's column names to a local file.

    A recipe names its Hub dataset's columns (SST-2 calls the text 'sentence'); a local file
    usually says 'text' and 'label' (`conventional`, per role; NER: 'tokens', 'ner_tags').
    When a configured column is missing but the conventional one is present, use it and say so;
    an OPTIONAL_ROLES column the file lacks is dropped, saying so; a column given explicitly on
    the command line is kept (and fails later with the columns
    present and the one that fits the role). The result keeps the family's Roles, and never
    names one column for two roles.
    """
    conventional = conventional or {"text": "text", "label": "label"}
    check_data(path, fmt)
    first = next(_records(path, encoding, fmt, normalize), None)
    if first is None:
        return wanted, []
    record = first[1]
    out, notes = Roles(wanted, kinds_of(wanted)), []
    for role, usual in conventional.items():
        name = wanted.get(role)
        if name and name not in record and role not in explicit and usual in record:
            out[role] = usual
            notes.append(f"{path} has no column '{name}'; using its '{usual}' column ({flag(role)} to choose)")
    for role in OPTIONAL_ROLES:
        name = out.get(role)
        if name and name not in record and role not in explicit:
            out[role] = None
            notes.append(f"{path} has no column '{name}'; reading one text per row ({flag(role)} names the second text of a pair)")
    check_roles(out)  # evaluate reads with these at once; finetune's config check would catch it later
    return out, notes
