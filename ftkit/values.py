"""One cell of data as a task family reads it: text, or a refusal naming the row; and how much
of a text can matter to a model that reads at most N tokens of it.

The decisions, per value (README "Data files" lists them):
- a string is text; a missing value (None, NaN) is an empty text, which the family skips and
  counts in a note; a number or boolean is text in its usual spelling ("3", "0.5", "True");
- an object (JSON {...}, a parquet struct), a list or bytes is refused with its row: str() of it
  would train on Python's spelling of a structure. Only token classification takes a list (its
  words), and it checks each word here too.
"""

from __future__ import annotations

import math
from typing import Any

from ftkit.errors import FtkitError

# How many characters a text may have before its end cannot reach the model. Natural text
# averages about 4 characters per token and vocabularies hold no entry near 100 characters
# (WordPiece splits words of up to 100 characters; SentencePiece pieces are at most 16 by
# default), so the first `max_tokens * CHARS_PER_TOKEN` characters hold every token that a model
# reading `max_tokens` tokens sees: cutting there changes nothing it reads, and it bounds the cost
# (a 190 MB line was tokenized whole before truncation kept 512 of its tokens). Never under a
# million characters. Only text made mostly of what tokenizers drop or lump together (runs of
# spaces, control characters, 100+-character words that become one [UNK]) can need more; every
# cut is counted in a note.
CHARS_PER_TOKEN = 100
MIN_TEXT_CHARS = 1_000_000


def text_limit(max_tokens: int) -> int:
    """Characters of one text that hold every token a model reading `max_tokens` tokens sees."""
    return max(MIN_TEXT_CHARS, max_tokens * CHARS_PER_TOKEN)


def cut_texts(texts: list[str], limit: int, keep_end: bool = False) -> tuple[list[str], int]:
    """Texts cut to `limit` characters (their start, or their end for prompts read from the end),
    and how many were cut."""
    cut = sum(len(t) > limit for t in texts)
    if not cut:
        return texts, 0
    return [t if len(t) <= limit else t[-limit:] if keep_end else t[:limit] for t in texts], cut


def cut_note(source: str, count: int, what: str, limit: int, why: str) -> str:
    """The one note for the `count` texts of a file that were cut, and why that is safe."""
    return f"{source}: cut {count} {what}(s) longer than {limit:,} characters to their first {limit:,} before tokenizing ({why})"


def reads_at_most(max_tokens: int) -> str:
    """Why a cut at text_limit(max_tokens) is safe, for cut_note."""
    return f"the model reads at most {max_tokens} tokens of each"


def column_texts(values: list[Any], rows: list[int], source: str, what: str, limit: int) -> tuple[list[str], int]:
    """The cells of one column as text (see as_text), cut to `limit` characters; and how many were cut."""
    return cut_texts([as_text(v, source, r, what) for v, r in zip(values, rows)], limit)


def as_text(value: Any, source: str, row: int, what: str = "text") -> str:
    """A text cell as a string ('' when missing), or a one-line refusal naming the row."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    kind = structure(value)
    if kind:
        words = f" (a list of words is read only by {_word_readers()})" if kind == "a list" else ""
        raise FtkitError(
            f"{source}: line/row {row}: the {what} is {kind}, not text{words}; choose a column that holds "
            "text, or convert this one to strings"
        )
    return str(value)  # numbers, booleans, dates: their usual spelling


def _word_readers() -> str:
    """The task families whose columns hold lists of words (token classification)."""
    from ftkit.tasks import families  # lazily, on a refusal only: the families import this module

    return " or ".join(name for name, family in families().items() if "words" in family.COLUMN_KINDS.values())


def structure(value: Any) -> str | None:
    """What a value is when it is a structure rather than one text, else None."""
    if isinstance(value, dict):
        return "an object ({...})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes (binary data)"
    return None
