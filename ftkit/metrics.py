"""Metrics computed by the libraries made for them, on real predictions; and the bars of `expect:`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ftkit.checks import parse_bar
from ftkit.errors import FtkitError


def class_scores(y_true: Sequence[int], y_pred: Sequence[int], names: list[str]) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1 and per-class P/R/F1/support (scikit-learn).

    Macro averages run over the classes present in the gold or predicted labels, as
    sklearn's f1_score(average="macro") does; per-class entries cover every known class
    (a class never predicted nor present scores 0 with support 0).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    if len(y_true) == 0:
        raise FtkitError("no examples to evaluate")
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    pc, rc, fc, sc = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(names))), average=None, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
        "per_class": {
            name: {"precision": float(pc[i]), "recall": float(rc[i]), "f1": float(fc[i]), "support": int(sc[i])}
            for i, name in enumerate(names)
        },
        # rows: gold class, columns: predicted class (sklearn's convention), every known class
        "confusion_matrix": {"labels": list(names), "matrix": confusion_matrix(y_true, y_pred, labels=list(range(len(names)))).tolist()},
        "samples": len(y_true),
    }


CALIBRATION_BINS = 15  # Guo et al. (2017)'s choice; their ECE is what papers and torchmetrics report


def calibration(probs: Any, gold: Sequence[int], bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Expected calibration error ("ece") and the reliability diagram's bins ("reliability").

    The top-label ECE of Guo et al., "On Calibration of Modern Neural Networks" (2017): each
    example's confidence (its predicted class's probability) falls into one of `bins`
    equal-width bins ((0, 1/M], ..., ((M-1)/M, 1]); ECE = sum over bins of |B|/n * |accuracy(B) -
    mean confidence(B)|. `probs`: (n, classes) probabilities. Per bin, the reliability diagram
    gets the examples' mean confidence, accuracy (None for an empty bin) and count.
    """
    import numpy as np

    p, y = np.asarray(probs, dtype=np.float64), np.asarray(gold)
    if len(y) == 0:
        raise FtkitError("no examples to evaluate")
    confidence, correct = p.max(axis=-1), (p.argmax(axis=-1) == y).astype(np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    confidence_sum = np.bincount(index, weights=confidence, minlength=bins)
    correct_sum = np.bincount(index, weights=correct, minlength=bins)
    mean = lambda sums: [float(s / c) if c else None for s, c in zip(sums, count)]  # noqa: E731
    return {
        "ece": float(np.abs(correct_sum - confidence_sum).sum() / len(y)),  # = sum |B|/n * |acc(B) - conf(B)|
        "reliability": {"confidence": mean(confidence_sum), "accuracy": mean(correct_sum), "count": count.tolist()},
    }


def entities(gold: list[list[str]], pred: list[list[str]], mode: str = "default") -> dict[str, Any]:
    """Entity-level precision/recall/F1 (micro) and per type, plus token accuracy (seqeval).

    mode "default" is conlleval's matching (what CoNLL papers report); "strict" matches IOB2
    entities exactly (seqeval mode="strict", scheme=IOB2).
    """
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    if not gold:
        raise FtkitError("no examples to evaluate")
    kwargs: dict[str, Any] = {"zero_division": 0}
    if mode == "strict":
        from seqeval.scheme import IOB2

        kwargs.update(mode="strict", scheme=IOB2)
    report = classification_report(gold, pred, output_dict=True, **kwargs)
    per_type = {
        kind: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]), "support": int(v["support"])}
        for kind, v in report.items()
        if not kind.endswith(" avg")
    }
    return {
        "precision": float(precision_score(gold, pred, average="micro", **kwargs)),
        "recall": float(recall_score(gold, pred, average="micro", **kwargs)),
        "f1": float(f1_score(gold, pred, average="micro", **kwargs)),
        "accuracy": float(accuracy_score(gold, pred)),
        "per_type": per_type,
        "samples": len(gold),
        "entities": sum(v["support"] for v in per_type.values()),
    }


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F-measures (rouge-score, Porter stemming), averaged over examples.

    ROUGE-Lsum splits both texts into sentences at newlines, as the CNN/DailyMail references
    are written; a one-line summary is one sentence.
    """
    from rouge_score import rouge_scorer

    keys = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(keys, use_stemmer=True)
    totals = dict.fromkeys(keys, 0.0)
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(reference, prediction)
        for key in keys:
            totals[key] += scores[key].fmeasure
    return {key: totals[key] / max(len(predictions), 1) for key in keys}


def bleu(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Corpus sacreBLEU and chrF (default tokenization), on the 0-100 scale sacreBLEU reports."""
    import sacrebleu

    return {
        "bleu": float(sacrebleu.corpus_bleu(predictions, [references]).score),
        "chrf": float(sacrebleu.corpus_chrf(predictions, [references]).score),
    }


def length_counts(lengths: Sequence[int]) -> list[list[int]]:
    """[[length, count], ...] sorted by length: a histogram that keeps every value, compactly."""
    from collections import Counter

    return [[length, count] for length, count in sorted(Counter(lengths).items())]


def lookup(metrics: dict[str, Any], key: str) -> float | None:
    """metrics['per_class']['spam']['f1'] for 'per_class.spam.f1'; keys may contain dots."""
    if key in metrics:
        value = metrics[key]
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    for name, value in metrics.items():
        if isinstance(value, dict) and key.startswith(f"{name}."):
            found = lookup(value, key[len(name) + 1 :])
            if found is not None:
                return found
    return None


def check_reported(keys: list[str], sample: dict[str, Any] | tuple[str, ...], what: str, fix: str = "", hidden: tuple[str, ...] = ("samples",)) -> None:
    """Each key (a recipe's primary metric and `expect:` bars) is one a family reports, before any
    training: `sample` is a result it computed on made-up predictions (every key it would report,
    nested ones too), or its flat tuple of keys. `what` names the family in the message."""
    for key in keys:
        if (key not in sample) if isinstance(sample, tuple) else (lookup(sample, key) is None):
            shown_keys = sample if isinstance(sample, tuple) else [k for k in available(sample) if k not in hidden]
            raise FtkitError(f"metric '{key}' is not reported for {what}. Metrics available: {', '.join(shown_keys)}. "
                             f"Change metrics.primary / expect (--set){fix}.")


def available(metrics: dict[str, Any], prefix: str = "") -> list[str]:
    """Every numeric metric key, dotted, for error messages."""
    keys = []
    for name, value in metrics.items():
        if isinstance(value, dict):
            keys += available(value, f"{prefix}{name}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            keys.append(f"{prefix}{name}")
    return keys


def is_better(new: float, best: float | None, greater_is_better: bool) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(new)
    return new > best if greater_is_better else new < best


def check_bars(metrics: dict[str, Any], expect: dict[str, str]) -> list[dict[str, Any]]:
    """One row per `expect:` bar: metric, bar, value (None when missing) and whether it passed."""
    ops = {
        ">=": lambda a, b: a >= b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        "<": lambda a, b: a < b,
        "==": lambda a, b: math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12),
    }
    rows = []
    for key, bar in expect.items():
        op, threshold = parse_bar(bar)
        value = lookup(metrics, key)
        passed = value is not None and not math.isnan(value) and ops[op](value, threshold)
        rows.append({"metric": key, "bar": f"{op} {threshold:g}", "value": value, "passed": passed})
    return rows
