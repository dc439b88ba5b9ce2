"""IOB tags without torch: parsing, repair to IOB2, tag sets, words and character spans."""

from __future__ import annotations

import pytest

from ftkit.errors import FtkitError
from ftkit.tasks.iob import Repairs, label_set, parse_tag, spans_to_tags, split_words, to_iob2


@pytest.mark.parametrize(
    "tag, expected",
    [("O", ("O", None)), ("B-PER", ("B", "PER")), ("I-LOC", ("I", "LOC")), ("B_ORG", ("B", "ORG")), ("I-WORK_OF_ART", ("I", "WORK_OF_ART"))],
)
def test_parse_tag(tag, expected):
    assert parse_tag(tag) == expected


@pytest.mark.parametrize("tag", ["PER", "E-PER", "S-LOC", "B-", "I", "o", "", "B PER", "U-ORG"])
def test_parse_tag_refuses_what_is_not_iob(tag):
    with pytest.raises(ValueError):
        parse_tag(tag)


def repair(tags: list[str], row: int = 1, repairs: Repairs | None = None, strict: bool = False) -> list[str]:
    return to_iob2(tags, "data.jsonl", row, repairs if repairs is not None else Repairs(), strict)


def test_iob2_is_kept_as_is():
    repairs = Repairs()
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O"]
    assert repair(tags, repairs=repairs) == tags
    assert repairs == Repairs(count=0, sequences=0, first_row=None)


def test_iob1_is_repaired_to_iob2():
    # IOB1: I- everywhere, B- only between two adjacent entities of the same type.
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "O", "I-ORG"]
    repairs = Repairs()
    assert repair(iob1, row=7, repairs=repairs) == ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
    assert repairs == Repairs(count=3, sequences=1, first_row=7)


def test_broken_sequences_are_repaired():
    # An I- after O, after another type, or first in the sentence opens an entity.
    repairs = Repairs()
    assert repair(["I-LOC", "I-LOC"], row=2, repairs=repairs) == ["B-LOC", "I-LOC"]
    assert repair(["B-PER", "I-PER", "I-LOC", "O", "I-PER"], row=3, repairs=repairs) == ["B-PER", "I-PER", "B-LOC", "O", "B-PER"]
    assert repair(["O", "B-ORG", "I-ORG"], row=4, repairs=repairs) == ["O", "B-ORG", "I-ORG"]
    # Counts add up over sentences: 3 tags in 2 sentences, the first at row 2.
    assert repairs == Repairs(count=3, sequences=2, first_row=2)


def test_repairs_remember_the_first_row_repaired():
    repairs = Repairs()
    repair(["B-PER", "O"], row=1, repairs=repairs)
    repair(["O", "I-PER"], row=5, repairs=repairs)
    repair(["I-PER"], row=9, repairs=repairs)
    assert repairs == Repairs(count=2, sequences=2, first_row=5)


def test_underscore_tags_are_spelled_with_a_dash():
    # 'B_PER' and 'B-PER' are one tag: two spellings would make two labels for the model.
    assert repair(["B_PER", "I_PER", "O", "I_LOC"]) == ["B-PER", "I-PER", "O", "B-LOC"]


def test_strict_refuses_a_tag_that_continues_no_entity():
    with pytest.raises(FtkitError) as err:
        repair(["O", "B-PER", "O", "I-PER"], row=12, strict=True)
    message = err.value.message
    assert message.startswith("data.jsonl: line/row 12: tag 'I-PER' at token 4 continues no entity")
    assert "IOB1" in message and "drop --strict" in message
    # strict still accepts clean IOB2
    assert repair(["B-PER", "I-PER", "O"], strict=True) == ["B-PER", "I-PER", "O"]


@pytest.mark.parametrize("bad", ["PER", "S-PER", "E-LOC", "B-"])
def test_non_iob_tag_is_an_error_naming_it(bad):
    with pytest.raises(FtkitError) as err:
        repair(["O", bad], row=3)
    assert f"line/row 3: tag {bad!r} is not IOB" in err.value.message
    assert "IOBES/BILOU" in err.value.message


def test_label_set_from_data_is_o_then_b_i_per_type_sorted():
    seen = {"O", "B-PER", "I-PER", "B-LOC", "B-ORG"}  # I-LOC and I-ORG never seen: still listed
    assert label_set(seen, None) == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert label_set({"B-MISC"}, None) == ["O", "B-MISC", "I-MISC"]


def test_label_set_keeps_the_recipe_order_when_it_covers_the_data():
    recipe = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    assert label_set({"O", "B-LOC", "B-PER", "I-PER"}, recipe) == recipe
    # a tag outside the recipe's list: the tags come from the data instead
    assert label_set({"O", "B-DATE", "B-PER"}, recipe) == ["O", "B-DATE", "I-DATE", "B-PER", "I-PER"]


def test_split_words_offsets():
    text = "New York-based, Inc.  hired  Zoë's team"
    words = split_words(text)
    assert words == [
        ("New", 0, 3), ("York", 4, 8), ("-", 8, 9), ("based", 9, 14), (",", 14, 15), ("Inc", 16, 19), (".", 19, 20),
        ("hired", 22, 27), ("Zoë", 29, 32), ("'", 32, 33), ("s", 33, 34), ("team", 35, 39),
    ]
    assert all(text[s:e] == w for w, s, e in words)
    assert split_words("  ") == []


def test_spans_to_tags_with_multi_word_entities():
    text = "Alice met Carol Smith in New York."
    entities = [  # unsorted on purpose
        {"start": 25, "end": 33, "label": "LOC"},
        {"start": 0, "end": 5, "label": "PER"},
        {"start": 10, "end": 21, "label": "PER"},
    ]
    words, tags, misaligned = spans_to_tags(text, entities, "spans.jsonl", 1)
    assert words == ["Alice", "met", "Carol", "Smith", "in", "New", "York", "."]
    assert tags == ["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]
    assert misaligned == 0


def test_spans_to_tags_without_entities():
    assert spans_to_tags("quiet day", [], "s", 1) == (["quiet", "day"], ["O", "O"], 0)


def test_a_span_cutting_a_word_tags_the_whole_word_and_is_counted():
    text = "Acme Corporation hired Bob"
    # 'Acme Corp' stops inside 'Corporation'; 'ob' starts inside 'Bob'
    entities = [{"start": 0, "end": 9, "label": "ORG"}, {"start": 24, "end": 26, "label": "PER"}]
    words, tags, misaligned = spans_to_tags(text, entities, "s", 1)
    assert words == ["Acme", "Corporation", "hired", "Bob"]
    assert tags == ["B-ORG", "I-ORG", "O", "B-PER"]
    assert misaligned == 2


def test_a_span_with_spaces_around_the_entity_is_misaligned_but_tagged():
    words, tags, misaligned = spans_to_tags("met Bob today", [{"start": 3, "end": 8, "label": "PER"}], "s", 1)
    assert tags == ["O", "B-PER", "O"] and misaligned == 1


def test_overlapping_spans_are_an_error():
    text = "Carol Smith met Bob"
    with pytest.raises(FtkitError) as err:
        spans_to_tags(text, [{"start": 0, "end": 11, "label": "PER"}, {"start": 6, "end": 11, "label": "PER"}], "spans.jsonl", 4)
    assert err.value.message == "spans.jsonl: line/row 4: entities overlap at 'Smith'; keep one of them"


@pytest.mark.parametrize(
    "entity, fragment",
    [
        ({"start": 0, "end": 99, "label": "PER"}, "outside the text (length 7)"),
        ({"start": -1, "end": 3, "label": "PER"}, "outside the text"),
        ({"start": 3, "end": 3, "label": "PER"}, "outside the text"),
        ({"start": 4, "end": 2, "label": "PER"}, "outside the text"),
        ({"start": "a", "end": 3, "label": "PER"}, "offsets must be integers"),
        ({"start": 0, "end": 3}, "needs start, end and label"),
        ("PER", "needs start, end and label"),
    ],
)
def test_bad_spans_are_errors(entity, fragment):
    with pytest.raises(FtkitError) as err:
        spans_to_tags("Bob ran", [entity], "spans.jsonl", 2)
    assert err.value.message.startswith("spans.jsonl: line/row 2: ")
    assert fragment in err.value.message
