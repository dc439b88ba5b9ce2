"""What `ftkit data check` finds in a run's data before a GPU-hour is spent, and finetune's one
line of it: label balance, empty and duplicate texts, texts of validation/test also in train
(exactly, or once normalised), label sets that differ between splits, and the share of texts
the model's tokenizer cuts at train.max_length. Each check is held to its `data_checks:` limit.

Which checks apply comes from the family: text checks need a "text" role (images and speech
have none), label checks a "label" role that does not hold numbers. Texts are compared by
16-byte digests, not copies, so 100k rows take seconds; only the tokenizer pass costs more.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ftkit.errors import FtkitError, first_line
from ftkit.values import text_limit

if TYPE_CHECKING:
    from ftkit.config import RunConfig
    from ftkit.data import Split
    from ftkit.tasks.family import Family

EVAL_SPLITS = ("validation", "test")
BATCH = 1000  # texts per tokenizer call
SAMPLE = 500  # training texts finetune's summary tokenizes (the data check tokenizes every text)
_TAG = re.compile(r"([BIESLU])[-_](.+)")  # an IOB / IOBES / BILOU tag: prefix, entity type


@dataclass
class SplitFacts:
    """What one split holds, as counted."""

    rows: int
    source: str
    labels: dict[str, int] | None = None  # label (entity type for tag sequences) -> count; None: not counted
    empty: int = 0  # rows whose text (or either text of a pair) is empty or blank
    duplicates: int = 0  # rows repeating an earlier row's exact text
    in_train: int = 0  # validation/test: rows whose normalised text is in train
    in_train_exact: int = 0  # ... of which the exact text is
    truncated: int | None = None  # texts longer than train.max_length tokens; None: not measured
    measured: int = 0  # texts the tokenizer pass looked at


@dataclass
class Check:
    """One check's verdict: ok (within its limit), warn (over it), fail (over it, and the recipe's
    data_checks.fatal names it: `data check` exits 1), skip (does not apply, or could not run)."""

    name: str
    status: str
    detail: str  # one line: what was found ("none" when nothing)
    found: bool = False  # something to mention even within the limit
    over: bool = False  # over its limit (a fatal check then fails)
    value: float | None = None  # the share or ratio held to the limit
    limit: float | None = None


@dataclass
class Report:
    """Every split's facts and every check's verdict (in config.DataCheck's order)."""

    model: str  # whose tokenizer measured truncation
    max_length: int
    splits: dict[str, SplitFacts]
    checks: list[Check]
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "max_length": self.max_length, "splits": {s: asdict(f) for s, f in self.splits.items()},
                "checks": [asdict(c) for c in self.checks], "failed": self.failed, "notes": self.notes}


# --- reading, as finetune reads

def load(config: RunConfig) -> tuple[dict[str, Split], Family]:
    """The splits exactly as finetune's setup reads them (carved ones included), and the family."""
    from ftkit.data import load_splits
    from ftkit.tasks import get_task

    task = get_task(config.task)
    splits = load_splits(config.data, task.columns(config), config.train.seed, task.STRATIFY, task.normalizer(config),
                         lambda path: task.read_local(path, config), task.LOCAL_FOLDERS)
    return splits, task


def run(config: RunConfig) -> Report:
    """`ftkit data check`: read the data, load the tokenizer where the text checks need it, check."""
    splits, task = load(config)
    processor, reason = None, ""
    if "text" in task.columns(config) and task.LONG_INPUTS == "truncated":
        from ftkit.models import quiet_transformers

        quiet_transformers()
        try:  # a model not reachable offline costs the truncation check only (see check_truncation)
            processor = task.load_processor(config.model)
        except FtkitError as err:
            reason = err.message
    report = check(splits, config, task, processor, reason=reason)
    report.notes[:0] = [note for split in splits.values() for note in split.notes]
    return report


# --- the checks

def check(splits: dict[str, Split], config: RunConfig, task: Family, processor: Any, sample: int | None = None, reason: str = "") -> Report:
    """Count and check. `processor`: the tokenizer (None: the truncation check is skipped, for
    `reason`); `sample`: tokenize at most this many training texts and no others (finetune's summary)."""
    roles, limits = task.columns(config), config.data_checks
    facts = {name: SplitFacts(len(split), split.source) for name, split in splits.items()}
    label_mode = _label_mode(task.COLUMN_KINDS.get("label")) if roles.get("label") else None
    if label_mode:
        for name, split in splits.items():
            facts[name].labels = _label_counts(split.columns["label"], label_mode, config.data.label_separator)
    text = bool(roles.get("text"))
    words = text and task.COLUMN_KINDS.get("text") == "words"
    if text:
        _count_texts(splits, facts, words)
    checks = [
        _balance(facts.get("train"), limits.max_imbalance) if label_mode else _skip("balance", "no class labels"),
        _shares("empty", facts, "empty", "empty text(s)", limits.max_empty) if text else _skip("empty", "no text input"),
        _shares("duplicates", facts, "duplicates", "duplicate text(s)", limits.max_duplicates) if text else _skip("duplicates", "no text input"),
        _overlap(facts, limits.max_overlap) if text else _skip("overlap", "no text input"),
        _truncation(splits, facts, config, task, processor, words, sample, reason) if text else _skip("truncation", "no text input"),
        _label_sets(facts) if label_mode else _skip("label_sets", "no class labels"),
    ]
    for c in checks:  # over the limit: fatal ones fail, others warn
        if c.over and c.name in limits.fatal:
            c.status = "fail"
    return Report(config.model, config.train.max_length, facts, checks)


def _skip(name: str, why: str) -> Check:
    return Check(name, "skip", why)


def _verdict(name: str, value: float | None, limit: float, detail: str, found: bool) -> Check:
    over = value is not None and value > limit
    return Check(name, "warn" if over else "ok", detail if found else "none", found, over, value, limit)


def _percent(count: int, rows: int) -> str:
    """'12 (0.4%)'; a share that rounds to 0.0% but is not nil says '<0.1%'."""
    share = 100 * count / max(rows, 1)
    return f"{count} ({share:.1f}%)" if share >= 0.1 or not count else f"{count} (<0.1%)"


def _balance(train: SplitFacts | None, limit: float) -> Check:
    counts = train.labels if train else None
    if not counts:
        return _skip("balance", "no labels in train")
    (most, high), (least, low) = next(iter(counts.items())), list(counts.items())[-1]  # counts are most common first
    if len(counts) == 1:
        return Check("balance", "warn", f"train has one label only ({most}): nothing to tell apart", True, True, None, limit)
    ratio = high / low
    detail = f"train labels {ratio:.1f}:1 ({most} {high}, {least} {low})"  # said even when balanced; mentioned from 2:1
    return Check("balance", "warn" if ratio > limit else "ok", detail, ratio >= 2, ratio > limit, ratio, limit)


def _shares(name: str, facts: dict[str, SplitFacts], key: str, what: str, limit: float) -> Check:
    """A per-split count held to a share of the split's rows (the worst split decides)."""
    found = [(s, getattr(f, key), f.rows) for s, f in facts.items() if getattr(f, key)]
    detail = "; ".join(f"{_percent(n, rows)} {what} in {s}" for s, n, rows in found)
    worst = max((n / rows for _, n, rows in found), default=0.0)
    return _verdict(name, worst, limit, detail, bool(found))


def _overlap(facts: dict[str, SplitFacts], limit: float) -> Check:
    found = [(s, f) for s, f in facts.items() if s in EVAL_SPLITS and f.in_train]
    detail = "; ".join(
        f"{_percent(f.in_train, f.rows)} {s} text(s) also in train ({f.in_train_exact} exact, {f.in_train - f.in_train_exact} once normalised)"
        for s, f in found
    )
    return _verdict("overlap", max((f.in_train / f.rows for _, f in found), default=0.0), limit, detail, bool(found))


def _label_sets(facts: dict[str, SplitFacts]) -> Check:
    """Labels of validation/test that train lacks (over the limit: the model cannot predict them);
    train labels a split lacks only warn (its scores say nothing about them)."""
    train = set((facts["train"].labels or {}) if "train" in facts else {})
    unseen, missing = [], []
    for s, f in facts.items():
        if s in EVAL_SPLITS and f.labels is not None:
            if extra := sorted(set(f.labels) - train):
                unseen.append(f"{s} has label(s) train lacks: {', '.join(extra)}")
            if absent := sorted(train - set(f.labels)):
                missing.append(f"train label(s) missing from {s}: {', '.join(absent)}")
    count = sum(len(set(f.labels or {}) - train) for s, f in facts.items() if s in EVAL_SPLITS)
    return Check("label_sets", "warn" if unseen or missing else "ok", "; ".join(unseen + missing) or "none", bool(unseen or missing), bool(unseen), count)


def _truncation(splits: dict[str, Split], facts: dict[str, SplitFacts], config: RunConfig, task: Family, processor: Any,
                words: bool, sample: int | None, reason: str) -> Check:
    """The share of texts longer than max_length tokens. A tokenizer that cannot load skips the
    check with its reason (the other checks still stand), unless the recipe makes it fatal:
    then it fails, since CI must not pass a check that never ran."""
    mode, max_length, limit = task.LONG_INPUTS, config.train.max_length, config.data_checks.max_truncated
    if mode != "truncated":
        return _skip("truncation", f"inputs longer than {max_length} tokens are read in {mode}: nothing is cut")
    if processor is None:
        why = f"not measured: no tokenizer ({reason})" if reason else "not measured: no tokenizer"
        fatal = "truncation" in config.data_checks.fatal
        return Check("truncation", "warn" if fatal else "skip", why, over=fatal, limit=limit)
    try:
        for name, split in splits.items():
            if sample is None or name == "train":
                rows = _sample(len(split), sample)
                facts[name].truncated = _over_length(processor, split, rows, words, max_length, config.data.prefix)
                facts[name].measured = len(rows)
    except Exception as err:  # a processor that does not tokenize text this way: the check, not the command, gives up
        return Check("truncation", "skip", f"the tokenizer failed ({type(err).__name__}: {first_line(err, empty='')[:120]})")
    measured = [(s, f) for s, f in facts.items() if f.truncated is not None]
    found = [(s, f) for s, f in measured if f.truncated]
    of = f" of a {sample}-row sample" if sample is not None and facts["train"].measured < facts["train"].rows else ""
    detail = "; ".join(f"{_percent(f.truncated, f.measured)} {s} text(s){of} longer than {max_length} tokens" for s, f in found)
    return _verdict("truncation", max((f.truncated / max(f.measured, 1) for _, f in measured), default=0.0), limit, detail, bool(found))


def _sample(n: int, size: int | None) -> list[int]:
    """Row indices: all, or `size` spread evenly over the split (not its first rows: files are often sorted)."""
    if size is None or n <= size:
        return list(range(n))
    return [i * n // size for i in range(size)]


# --- counting

def _label_mode(kinds: Any) -> str | None:
    """How the family's label column is counted: 'tags' (a tag per word: by entity type),
    'multi' (a row holds several labels), 'single'; None: numbers (nothing to balance)."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds or ())
    if not kinds or "numbers" in kinds:
        return None
    if kinds == ("tags",):
        return "tags"
    return "multi" if {"words", "tags"} & set(kinds) else "single"


def _label_counts(values: list[Any], mode: str, separator: str | None) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for value in values:
        if value is None:  # a hidden label (a Hub test split's -1)
            continue
        if mode == "tags":
            counts.update(_mentions(value))
        elif mode == "multi" and isinstance(value, (list, tuple)):
            counts.update(str(v) for v in value)
        elif mode == "multi" and isinstance(value, str) and separator:
            counts.update(part.strip() for part in value.split(separator) if part.strip())
        else:
            counts[str(value)] += 1
    return dict(counts.most_common())


def _mentions(tags: Any) -> Iterator[str]:
    """Entity mentions of a tag sequence, by type: B-PER I-PER O B-LOC -> PER, LOC (an I- after
    another type opens one, as IOB1 does); plain tags (POS, ids) count once per word; O never."""
    previous = None
    for tag in map(str, tags if isinstance(tags, (list, tuple)) else [tags]):
        match = _TAG.fullmatch(tag)
        kind = match.group(2) if match else (None if tag == "O" else tag)
        if kind is not None and (match is None or match.group(1) in "BSU" or kind != previous):
            yield kind
        previous = kind


def _as_text(value: Any, words: bool) -> str:
    if value is None:
        return ""
    if words and isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def _rows(split: Split, words: bool) -> Iterator[tuple[str, str | None]]:
    """(text, second text or None) of each row, as strings."""
    texts, pairs = split.columns["text"], split.columns.get("text_pair")
    for i, value in enumerate(texts):
        yield _as_text(value, words), (None if pairs is None else _as_text(pairs[i], False))


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class _Punctuation(dict):
    """str.translate's table: punctuation (Unicode categories P*) -> deleted, anything else kept;
    filled as characters are met, so a character's category is looked up once."""

    def __missing__(self, code: int) -> int | None:
        self[code] = None if unicodedata.category(chr(code)).startswith("P") else code
        return self[code]


_PUNCTUATION = _Punctuation()


def normalised(text: str) -> str:
    """The text near-duplicates share: Unicode NFKC, casefolded, punctuation (P*) deleted,
    whitespace runs as one space, trimmed. 'Great movie!!' and 'great  movie' are one text;
    symbols, digits and emoji stay."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().translate(_PUNCTUATION).split())


def _count_texts(splits: dict[str, Split], facts: dict[str, SplitFacts], words: bool) -> None:
    """Empty and duplicate rows of each split; validation/test rows whose text is in train."""
    train_exact: set[bytes] = set()
    train_near: set[bytes] = set()
    for name in ["train", *(s for s in splits if s != "train")]:  # train first: the others compare with it
        seen: set[bytes] = set()
        f = facts[name]
        for text, pair in _rows(splits[name], words):
            if not text.strip() or (pair is not None and not pair.strip()):
                f.empty += 1
                continue
            exact = _digest(text if pair is None else f"{text}\x00{pair}")
            near = _digest(normalised(text) if pair is None else f"{normalised(text)}\x00{normalised(pair)}")
            f.duplicates += exact in seen
            seen.add(exact)
            if name == "train":
                train_exact.add(exact)
                train_near.add(near)
            elif near in train_near:
                f.in_train += 1
                f.in_train_exact += exact in train_exact


def _over_length(processor: Any, split: Split, rows: list[int], words: bool, max_length: int, prefix: str) -> int:
    """How many of `rows` come to more than max_length tokens, special tokens included, as the
    family tokenizes them (the prefix before a text; words as given). Each input's head is
    tokenized first: a head already over the limit settles it, and only the rare long input whose
    head stays under it is tokenized whole. Empty rows (finetune drops them) count as short."""
    texts, pairs = split.columns["text"], split.columns.get("text_pair")

    def inputs(i: int, whole: bool) -> tuple[Any, Any, bool]:
        if words:
            seq = [str(w) for w in texts[i] or []]
            return (seq, None, False) if whole else (seq[:HEAD_WORDS * max_length], None, len(seq) > HEAD_WORDS * max_length)
        text, pair = prefix + _as_text(texts[i], False), None if pairs is None else _as_text(pairs[i], False)
        if whole:  # what finetune reads: text_limit characters at most (it cuts before tokenizing)
            cap = text_limit(max_length)
            return text[:cap], None if pair is None else pair[:cap], False
        (text, cut), (pair, cut_pair) = _head(text, max_length), _head(pair, max_length) if pair is not None else (None, False)
        return text, pair, cut or cut_pair

    over, undecided = 0, []
    for batch in _batches(rows):
        heads = [inputs(i, whole=False) for i in batch]
        counts = _token_counts(processor, heads, words)
        over += sum(n > max_length for n in counts)
        undecided += [i for i, n, (_, _, cut) in zip(batch, counts, heads) if cut and n <= max_length]
    for batch in _batches(undecided):
        over += sum(n > max_length for n in _token_counts(processor, [inputs(i, whole=True) for i in batch], words))
    return over


HEAD_CHARS = 8  # characters of a text's head per token of max_length: English averages about 4 a token
HEAD_WORDS = 2  # words of a word list's head per token of max_length (a word is one token or more)


def _head(text: str, max_length: int) -> tuple[str, bool]:
    """The text's head, cut at a space so that it never tokenizes to more tokens than the whole
    (tokenizers split at spaces first); whether it was cut."""
    cap = HEAD_CHARS * max_length
    if len(text) <= cap:
        return text, False
    space = text.rfind(" ", 0, cap)
    return (text[:space], True) if space > 0 else (text, False)  # one huge word: tokenized whole


def _batches(rows: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(rows), BATCH):
        yield rows[start:start + BATCH]


def _token_counts(processor: Any, items: list[tuple[Any, Any, bool]], words: bool) -> list[int]:
    texts = [text for text, _, _ in items]
    pairs = [pair for _, pair, _ in items] if items and items[0][1] is not None else None
    encoded = processor(texts, pairs, is_split_into_words=words, truncation=False, verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]


# --- finetune's line

def summary(splits: dict[str, Split], config: RunConfig, processor: Any) -> str:
    """One line for finetune: the clean checks counted, each finding said. Cheap (the tokenizer
    reads a sample of train) and never an error: finetune goes on whatever it finds."""
    from ftkit.tasks import get_task

    try:
        report = check(splits, config, get_task(config.task), processor, sample=SAMPLE)
    except Exception as err:  # the summary must never stop a run
        return f"data: checks skipped ({type(err).__name__}: {first_line(err, empty='')[:120]})"
    clean = sum(c.status == "ok" and not c.found for c in report.checks)
    said = [c.detail + (" (over its data_checks limit)" if c.status in ("warn", "fail") else "") for c in report.checks if c.found]
    tail = "; `ftkit data check` gives the full report" if said else ""
    return f"data: {clean} check{'s' if clean != 1 else ''} ok" + "".join(f"; {s}" for s in said) + tail
