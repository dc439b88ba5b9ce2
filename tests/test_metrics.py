"""Metrics must be scikit-learn's numbers exactly, and `expect:` bars must read them honestly."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from ftkit.errors import FtkitError
from ftkit.metrics import available, check_bars, class_scores, is_better, lookup

# class 2 ('neutral') is in the gold labels but never predicted; class 3 ('other') appears nowhere
NAMES = ["negative", "positive", "neutral", "other"]
Y_TRUE = [0, 0, 1, 1, 1, 2, 2, 0, 1, 2]
Y_PRED = [0, 1, 1, 1, 0, 1, 0, 0, 1, 1]


def test_classification_equals_sklearn_with_a_class_never_predicted():
    result = class_scores(Y_TRUE, Y_PRED, NAMES)
    p, r, f, _ = precision_recall_fscore_support(Y_TRUE, Y_PRED, average="macro", zero_division=0)
    assert result["accuracy"] == accuracy_score(Y_TRUE, Y_PRED) == 0.5
    assert (result["precision"], result["recall"], result["f1"]) == (p, r, f)
    assert result["samples"] == 10
    for i, name in enumerate(NAMES):
        expected_f1 = f1_score(Y_TRUE, Y_PRED, labels=[i], average=None, zero_division=0)[0]
        assert result["per_class"][name]["f1"] == expected_f1
        assert result["per_class"][name]["support"] == Y_TRUE.count(i)
    assert result["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3}
    assert result["per_class"]["other"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_macro_average_skips_classes_absent_from_gold_and_predictions():
    """sklearn's macro runs over the labels seen; 'other' must not drag the average down."""
    result = class_scores(Y_TRUE, Y_PRED, NAMES)
    seen = [result["per_class"][n]["f1"] for n in NAMES[:3]]
    assert result["f1"] == pytest.approx(sum(seen) / 3)


def test_binary_per_class_f1_equals_sklearn_pos_label():
    """The spam recipe's bar is the F1 of the spam class alone: f1_score(pos_label=...)."""
    y_true = [0, 0, 0, 0, 0, 0, 1, 1, 1, 0]
    y_pred = [0, 0, 1, 0, 0, 0, 1, 0, 1, 0]
    result = class_scores(y_true, y_pred, ["ham", "spam"])
    assert result["per_class"]["spam"]["f1"] == f1_score(y_true, y_pred, pos_label=1) == pytest.approx(2 / 3)
    assert result["per_class"]["ham"]["f1"] == f1_score(y_true, y_pred, pos_label=0)
    assert result["per_class"]["spam"]["precision"] == 2 / 3 and result["per_class"]["spam"]["recall"] == 2 / 3
    assert lookup(result, "per_class.spam.f1") == f1_score(y_true, y_pred, pos_label=1)


def test_every_value_is_a_plain_python_number():
    """metrics.json is written with the json module: numpy scalars would not serialise."""
    result = class_scores(Y_TRUE, Y_PRED, NAMES)
    assert all(type(result[k]) is float for k in ("accuracy", "precision", "recall", "f1"))
    assert type(result["samples"]) is int
    for row in result["per_class"].values():
        assert [type(v) for v in row.values()] == [float, float, float, int]


def test_no_examples_is_an_error():
    with pytest.raises(FtkitError, match="^no examples to evaluate$"):
        class_scores([], [], ["a", "b"])


@st.composite
def predictions(draw) -> tuple[int, list[tuple[int, int]]]:
    """k classes and (gold, predicted) id pairs; some classes may never occur."""
    k = draw(st.integers(2, 5))
    ids = st.integers(0, k - 1)
    return k, draw(st.lists(st.tuples(ids, ids), min_size=1, max_size=40))


@settings(max_examples=50, deadline=None)
@given(predictions())
def test_classification_matches_sklearn_on_any_predictions(case):
    k, pairs = case
    y_true, y_pred = [t for t, _ in pairs], [p for _, p in pairs]
    result = class_scores(y_true, y_pred, [f"c{i}" for i in range(k)])
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    assert (result["accuracy"], result["precision"], result["recall"], result["f1"]) == (
        accuracy_score(y_true, y_pred), p, r, f,
    )
    per_class = f1_score(y_true, y_pred, labels=list(range(k)), average=None, zero_division=0)
    assert [result["per_class"][f"c{i}"]["f1"] for i in range(k)] == list(per_class)
    assert sum(row["support"] for row in result["per_class"].values()) == len(pairs)


# ---------------------------------------------------------------------------- lookup

METRICS = {
    "accuracy": 0.9,
    "samples": 10,
    "flag": True,
    "note": "text",
    "loss": float("nan"),
    "per_class": {
        "v1.2": {"f1": 0.25, "support": 3},
        "v1": {"f1": 0.5},
        "a.b.c": {"f1": 0.75},
        "spam": {"f1": 0.8, "precision": 1},
    },
    "rouge": {"rougeL": 0.4},
}


@pytest.mark.parametrize(
    "key, expected",
    [
        ("accuracy", 0.9),
        ("samples", 10.0),
        ("per_class.spam.f1", 0.8),
        ("per_class.spam.precision", 1.0),
        ("per_class.v1.2.f1", 0.25),  # a label with a dot, next to a label that is its prefix
        ("per_class.v1.2.support", 3.0),
        ("per_class.v1.f1", 0.5),
        ("per_class.a.b.c.f1", 0.75),
        ("rouge.rougeL", 0.4),
    ],
)
def test_lookup_finds_dotted_keys(key, expected):
    value = lookup(METRICS, key)
    assert value == expected and type(value) is float


@pytest.mark.parametrize(
    "key",
    ["missing", "per_class", "per_class.spam", "per_class.spam.recall", "per_class.v1.2", "flag", "note", "accuracy.x", ""],
)
def test_lookup_returns_none_for_missing_or_non_numeric(key):
    assert lookup(METRICS, key) is None


def test_lookup_nan_is_returned_as_nan():
    assert math.isnan(lookup(METRICS, "loss"))


def test_available_lists_every_numeric_key_dotted():
    assert available(METRICS) == [
        "accuracy",
        "samples",
        "loss",
        "per_class.v1.2.f1",
        "per_class.v1.2.support",
        "per_class.v1.f1",
        "per_class.a.b.c.f1",
        "per_class.spam.f1",
        "per_class.spam.precision",
        "rouge.rougeL",
    ]
    assert all(lookup(METRICS, key) is not None for key in available(METRICS))


@pytest.mark.parametrize(
    "new, best, greater, expected",
    [
        (0.5, None, True, True),
        (0.5, 0.4, True, True),
        (0.4, 0.4, True, False),
        (0.3, 0.4, False, True),
        (0.5, 0.4, False, False),
        (float("nan"), None, True, False),
        (float("nan"), 0.4, True, False),
        (0.1, float("nan"), True, True),
    ],
)
def test_is_better(new, best, greater, expected):
    assert is_better(new, best, greater) is expected


# ---------------------------------------------------------------------------- check_bars


@pytest.mark.parametrize(
    "bar, value, passed",
    [
        (">= 0.9", 0.9, True),
        (">= 0.9", 0.8999, False),
        ("> 0.9", 0.9, False),
        ("> 0.9", 0.9001, True),
        ("<= 0.9", 0.9, True),
        ("<= 0.9", 0.9001, False),
        ("< 0.9", 0.9, False),
        ("< 0.9", 0.8999, True),
        ("== 0.3", 0.1 + 0.2, True),  # float round-off is not a failure
        ("== 0.3", 0.3001, False),
        ("== 0", 0.0, True),
    ],
)
def test_check_bars_every_operator(bar, value, passed):
    op, threshold = bar.split()
    rows = check_bars({"accuracy": value}, {"accuracy": bar})
    assert rows == [{"metric": "accuracy", "bar": f"{op} {float(threshold):g}", "value": value, "passed": passed}]


def test_check_bars_rows_in_expect_order_with_normalised_bars():
    metrics = {"accuracy": 0.95, "per_class": {"spam": {"f1": 0.85}}}
    rows = check_bars(metrics, {"per_class.spam.f1": ">=0.90", "accuracy": ">=  9.1e-1"})
    assert rows == [
        {"metric": "per_class.spam.f1", "bar": ">= 0.9", "value": 0.85, "passed": False},
        {"metric": "accuracy", "bar": ">= 0.91", "value": 0.95, "passed": True},
    ]


@pytest.mark.parametrize("op", [">=", ">", "<=", "<", "=="])
def test_a_missing_metric_fails_every_bar(op):
    assert check_bars({"accuracy": 1.0}, {"f1": f"{op} 0.5"}) == [
        {"metric": "f1", "bar": f"{op} 0.5", "value": None, "passed": False}
    ]


@pytest.mark.parametrize("op", [">=", ">", "<=", "<", "=="])
def test_nan_fails_every_bar(op):
    (row,) = check_bars({"loss": float("nan")}, {"loss": f"{op} 0.5"})
    assert math.isnan(row["value"]) and row["passed"] is False


def test_non_numeric_metric_fails():
    assert check_bars({"accuracy": "0.99"}, {"accuracy": ">= 0.5"})[0] == {
        "metric": "accuracy", "bar": ">= 0.5", "value": None, "passed": False
    }


def test_a_malformed_bar_is_an_error():
    with pytest.raises(FtkitError) as info:
        check_bars({"accuracy": 1.0}, {"accuracy": "at least 0.9"})
    assert info.value.message == "expect bar 'at least 0.9' is not of the form '>= 0.91' (operators: >= > <= < ==)"


def test_no_bars_no_rows():
    assert check_bars({"accuracy": 1.0}, {}) == []
