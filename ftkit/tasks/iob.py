"""IOB tags: validation, repair to IOB2, label sets, and character spans -> tokens + tags.

Pure Python (no torch): the readers and the tests use it directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ftkit.errors import FtkitError

# Words for span-annotated text: runs of word characters, or single other non-space characters
# ("New York-based" -> New, York, -, based), each with its character offsets.
_WORD = re.compile(r"\w+|[^\w\s]")


def split_words(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) for each word of `text`; offsets index into the original string."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def parse_tag(tag: str) -> tuple[str, str | None]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', None); anything else is not IOB."""
    if tag == "O":
        return "O", None
    if len(tag) > 2 and tag[0] in "BI" and tag[1] in "-_":
        return tag[0], tag[2:]
    raise ValueError(tag)


@dataclass
class Repairs:
    """How many tags were changed to make the sequences IOB2 (I- that opens an entity)."""

    count: int = 0
    sequences: int = 0
    first_row: int | None = None


def to_iob2(tags: list[str], source: str, row: int, repairs: Repairs, strict: bool) -> list[str]:
    """Check IOB tags and repair IOB1 / broken sequences to IOB2 (an I-X opening an entity
    becomes B-X); with strict, the first such tag is an error instead."""
    out, prev_type, changed = [], None, False
    for i, tag in enumerate(tags):
        try:
            prefix, kind = parse_tag(tag)
        except ValueError:
            raise FtkitError(
                f"{source}: line/row {row}: tag {tag!r} is not IOB (expected O, B-TYPE or I-TYPE); "
                "convert the tags (IOBES/BILOU are not read) or check --label-column"
            ) from None
        if prefix == "I" and prev_type != kind:
            if strict:
                raise FtkitError(
                    f"{source}: line/row {row}: tag {tag!r} at token {i + 1} continues no entity (IOB1 or a "
                    "broken sequence); fix it, or drop --strict to repair such tags to IOB2 with a warning"
                )
            prefix, changed = "B", True
            repairs.count += 1
        # 'B_PER' is read as 'B-PER': one spelling, or the same tag would count as two labels
        out.append(tag if kind is None else f"{prefix}-{kind}")
        prev_type = kind
    if changed:
        repairs.sequences += 1
        repairs.first_row = repairs.first_row or row
    return out


def label_set(seen: set[str], recipe_labels: list[str] | None) -> list[str]:
    """Tags in id order: the recipe's when they cover the data, else O then B-/I- per type."""
    if recipe_labels and seen <= set(recipe_labels):
        return list(recipe_labels)
    kinds = sorted({parse_tag(t)[1] for t in seen if t != "O"})  # type: ignore[type-var]
    # Every type gets both B- and I-, so the model can predict a continuation it rarely saw.
    return ["O"] + [f"{p}-{k}" for k in kinds for p in "BI"]


def spans_to_tags(text: str, entities: list, source: str, row: int) -> tuple[list[str], list[str], int]:
    """Character-span annotations -> (words, IOB2 tags, spans not on word boundaries).

    A word belongs to an entity when it overlaps the span; a span that cuts a word still tags
    the whole word and is counted, so the caller can warn.
    """
    words = split_words(text)
    tags = ["O"] * len(words)
    misaligned = 0
    spans = []
    for entity in entities:
        if not isinstance(entity, dict) or not {"start", "end", "label"} <= set(entity):
            raise FtkitError(f"{source}: line/row {row}: each entity needs start, end and label, got {entity!r}")
        try:
            start, end = int(entity["start"]), int(entity["end"])
        except (TypeError, ValueError):
            raise FtkitError(f"{source}: line/row {row}: entity offsets must be integers, got {entity!r}") from None
        if not 0 <= start < end <= len(text):
            raise FtkitError(f"{source}: line/row {row}: entity {entity!r} is outside the text (length {len(text)})")
        spans.append((start, end, str(entity["label"])))
    for start, end, label in sorted(spans):
        inside = [i for i, (_, s, e) in enumerate(words) if s < end and e > start]
        if not inside:
            continue
        if words[inside[0]][1] != start or words[inside[-1]][2] != end:
            misaligned += 1
        if any(tags[i] != "O" for i in inside):
            raise FtkitError(f"{source}: line/row {row}: entities overlap at {text[start:end]!r}; keep one of them")
        tags[inside[0]] = f"B-{label}"
        for i in inside[1:]:
            tags[i] = f"I-{label}"
    return [w for w, _, _ in words], tags, misaligned
