"""Which column holds what: a task family's column roles, what a file's columns look like, and
the one-line complaints about columns (one missing, or one named for two roles).

A recipe names its Hub dataset's columns (SST-2 says 'sentence'); a user's file may call them
anything. When a column is missing, the suggestion must fit the role: a column spelled like
'sentence' but holding two values ('sentiment') is the label, not the text. So the suggestion
looks at the values of the rows read, not only at the names.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from ftkit.bounded import shown
from ftkit.errors import FtkitError, nearest

# What a role's column holds (a family's COLUMN_KINDS values), as a message says it.
KINDS = {"text": "text", "labels": "labels", "numbers": "numbers", "words": "lists of words", "tags": "lists of tags"}

SAMPLE_ROWS = 1000  # rows looked at to say what a column holds: enough to count a few labels many times

_TAG = re.compile(r"O|[BIESLU][-_]\S+")  # IOB / IOBES / BILOU tags: O, B-PER, I-LOC, ...


class Roles(dict):
    """role ('text', 'label', ...) -> column name (None: the role is unused), as a task family
    reads its data; a plain dict to every reader. `kinds` (role -> a KINDS key, the family's
    COLUMN_KINDS) travels with it to the readers, so a missing column's suggestion fits its role."""

    def __init__(self, names: dict[str, str | None], kinds: dict[str, str | tuple[str, ...]]) -> None:
        super().__init__(names)
        self.kinds = kinds


def kinds_of(columns: dict[str, str | None]) -> dict[str, str | tuple[str, ...]]:
    """What each role holds (a kind, or the kinds it takes): a family's Roles say; a plain dict
    does not (then names alone are suggested)."""
    return getattr(columns, "kinds", {})


def flag(role: str, value: str | None = None) -> str:
    """The option that sets a role's column: '--text-column review', '--set data.target_column=summary'
    (a value quoted for the shell where it needs it)."""
    if role in ("text", "text_pair", "label"):
        return f"--{role.replace('_', '-')}-column" + (f" {shlex.quote(value)}" if value else "")
    return f"--set {shlex.quote(f'data.{role}_column={value}')}" if value else f"--set data.{role}_column=NAME"


@dataclass(frozen=True)
class Shape:
    """What a column's values look like."""

    kind: str  # a KINDS key
    spread: float  # text: mean characters; labels, words, tags: distinct values


def shapes(records: list[dict[str, Any]]) -> dict[str, Shape]:
    """What each column of `records` looks like, for the columns whose look is clear."""
    out = {}
    for name in dict.fromkeys(key for record in records for key in record):
        shape = _shape([record.get(name) for record in records])
        if shape:
            out[name] = shape
    # Tags that are not IOB (POS tags: NN, VBZ) are words too; of word-list columns, one with a
    # vocabulary far smaller than another's holds the tags.
    words = sorted((s.spread, n) for n, s in out.items() if s.kind == "words")
    if len(words) > 1 and words[0][0] * 4 <= words[-1][0] and not any(s.kind == "tags" for s in out.values()):
        out[words[0][1]] = Shape("tags", words[0][0])
    return out


def _shape(values: list[Any]) -> Shape | None:
    values = [v for v in values if v is not None]
    if values and all(isinstance(v, list) for v in values):
        return _list_shape([x for v in values for x in v])
    return _scalar_shape(values)


def _scalar_shape(values: list[Any]) -> Shape | None:
    """A column of single values: labels (few values, each many times) or text."""
    if not values or not all(isinstance(v, (str, int, float, bool)) for v in values):
        return None  # mixed, nested or empty: no clear look
    # labels first: a few phrases (or numbers) repeated are labels; many distinct numbers are a measure
    return _labels_shape(values) or _numbers_shape(values) or _text_shape(values)


def _list_shape(items: list[Any]) -> Shape | None:
    """A column of lists (its items flattened): tags (ids, or IOB-style strings) or words."""
    if not items:
        return None
    if all(type(x) is int for x in items) or all(isinstance(x, str) and _TAG.fullmatch(x) for x in items):
        return Shape("tags", len(set(items)))
    return Shape("words", len(set(items))) if all(isinstance(x, str) for x in items) else None


def _labels_shape(values: list[str | int | float | bool]) -> Shape | None:
    distinct = len({str(v) for v in values})
    if len(values) >= 4 and 2 <= distinct <= max(2, len(values) // 4):  # few values, each many times
        return Shape("labels", distinct)
    return None


def _numbers_shape(values: list[str | int | float | bool]) -> Shape | None:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return Shape("numbers", len(set(values)))
    return None


def _text_shape(values: list[str | int | float | bool]) -> Shape | None:
    if all(isinstance(v, str) for v in values) and sum(len(v.split()) for v in values) >= 2 * len(values):
        return Shape("text", sum(map(len, values)) / len(values))  # several words a value, on average
    return None


def _pick(name: str, kinds: tuple[str, ...], others: set[str], free: list[str], looks: dict[str, Shape], alone: bool) -> tuple[str, bool] | None:
    """(column, chosen by its values) to suggest for a missing role, or None.

    `alone`: the only role missing, where a name spelled like the wanted one is most likely a
    typo, and is suggested unless its values show it holds something else. When several are
    missing the file names its columns its own way, and the values decide: the longest text,
    the richest word lists, the fewest labels or tags. With no column whose values fit, a name
    spelled alike is all there is, unless its values fit another missing role (`others`).
    """
    similar = nearest(name, free)
    shape = looks[similar].kind if similar in looks else None
    fits = [c for c in free if c in looks and looks[c].kind in kinds]
    if similar is not None and (shape is None or shape in kinds) and (alone or not fits):
        return similar, False
    if fits:
        return max(fits, key=lambda c: looks[c].spread if looks[c].kind in ("text", "words") else -looks[c].spread), True
    return (similar, False) if similar is not None and shape not in others else None


def missing_column(source: str, n: int | None, columns: dict[str, str | None], present: list[str], records: list[dict[str, Any]]) -> str:
    """The one-line error for the roles of `columns` that `present` lacks, suggesting by role.

    `records` are the first rows of the source (normalized as read): what the suggestions judge
    the columns by.
    """
    wanted = {role: name for role, name in columns.items() if name}
    missing = [role for role, name in wanted.items() if name not in present]
    looks = shapes(records)
    picks = _suggestions(wanted, missing, present, records, looks, _accepts(kinds_of(columns)))
    where = f" (line/row {n})" if n else ""
    head = f"{source}: no column{'s' if len(missing) > 1 else ''} {', '.join(shown(wanted[r]) for r in missing)}{where}."
    listing = f" Columns present: {', '.join(map(str, present))}."
    if len(missing) == 1:
        return _one_missing(head, listing, missing[0], picks.get(missing[0], (None, False)), looks)
    return _several_missing(head + listing, missing, picks, looks)


def _accepts(kinds: dict[str, str | tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """role -> the kinds it takes, always a tuple (a family may say one kind as a plain string)."""
    return {role: (kind,) if isinstance(kind, str) else kind for role, kind in kinds.items()}


def _suggestions(
    wanted: dict[str, str], missing: list[str], present: list[str], records: list[dict[str, Any]],
    looks: dict[str, Shape], accepts: dict[str, tuple[str, ...]],
) -> dict[str, tuple[str, bool]]:
    """role -> (column, chosen by its values) for the missing roles that get a suggestion. Roles
    are served in order, and a column given to one (or named by a role present) is not offered
    to the next: one column for two roles would be refused anyway."""
    taken = {name for role, name in wanted.items() if role not in missing}
    picks: dict[str, tuple[str, bool]] = {}
    for role in missing:
        if any(wanted[role] in record for record in records):
            continue  # other rows have it: this row is the fault, not the column name
        free = [c for c in present if c not in taken]
        others = _other_kinds(role, missing, accepts)
        pick = _pick(wanted[role], accepts.get(role, ()), others, free, looks, alone=len(missing) == 1)
        if pick:
            picks[role] = pick
            taken.add(pick[0])
    return picks


def _other_kinds(role: str, missing: list[str], accepts: dict[str, tuple[str, ...]]) -> set[str]:
    """The kinds the other missing roles take: a name spelled like this role's, holding one of
    these, belongs to another role."""
    return {kind for other in missing if other != role for kind in accepts.get(other, ())}


def _one_missing(head: str, listing: str, role: str, pick: tuple[str | None, bool], looks: dict[str, Shape]) -> str:
    """The message for one missing role: a likely typo, a column whose values fit, or neither."""
    column, by_values = pick
    if column is None:
        return f"{head}{listing} Choose one with {flag(role)}."
    if not by_values:
        return f"{head} Did you mean {shown(column)}?{listing} Choose one with {flag(role)}."
    looks_like = f"{shown(column)} looks like {KINDS[looks[column].kind]}"
    return f"{head}{listing} For the {_spoken(role)} column, {looks_like}: pass {flag(role, column)}."


def _several_missing(text: str, missing: list[str], picks: dict[str, tuple[str, bool]], looks: dict[str, Shape]) -> str:
    """The message for several missing roles: one 'Pass ...' with every suggestion (and why, for
    those chosen by their values), then the roles left without one."""
    fixes = [flag(role, column) for role, (column, _) in picks.items()]
    if fixes:
        text += f" Pass {' '.join(fixes)}" + _reasons([column for column, judged in picks.values() if judged], looks)
    return text + "".join(f" Choose the {_spoken(role)} column with {flag(role)}." for role in missing if role not in picks)


def _reasons(by_values: list[str], looks: dict[str, Shape]) -> str:
    """' (a looks like text, b like labels).', or '.' when no column was chosen by its values."""
    reasons = ", ".join(f"{shown(c)} {'looks ' if i == 0 else ''}like {KINDS[looks[c].kind]}" for i, c in enumerate(by_values))
    return f" ({reasons})." if reasons else "."


def _spoken(role: str) -> str:
    """A role as a message says it: underscores as spaces."""
    return role.replace("_", " ")


def check_roles(columns: dict[str, str | None]) -> None:
    """One column for two roles is refused: trained on it, a model would be handed its own answer."""
    seen: dict[str, str] = {}
    for role, name in columns.items():
        if not name:
            continue
        if name in seen:
            first, options = seen[name], [flag(r).removesuffix("=NAME") for r in (seen[name], role)]
            raise FtkitError(
                f"{options[0]} and {options[1]} both name the column {shown(name)}: one column cannot be both the "
                f"{_spoken(first)} and the {_spoken(role)}; pass another column to one of them"
            )
        seen[name] = role
