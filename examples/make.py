"""Rebuild the example data in this folder (README.md here says what each file is and its source).

    python examples/make.py [SHARED_DATASETS]     # default: ../shared/datasets beside the clone

sentiment/: stratified subsets of sentiment-movies (each split drawn from the same split of
the source, so no text is in two splits), equal classes, random.Random(13), in source order.
ner/: the first sentences of each split of tests/data/ner-en (already in random order).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIZES = {"train": 400, "validation": 100, "test": 100}  # rows per split, half of each class
REVIEWS = 12  # unlabelled lines for `ftkit predict`, from test rows not drawn above
NER_SIZES = {"train": 200, "validation": 40, "test": 60}  # sentences per split


def stratified(rows: list[dict], n: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """n rows, n // 2 per label, in source order; and the rows left over."""
    picked: set[int] = set()
    for label in sorted({r["label"] for r in rows}):
        indices = [i for i, r in enumerate(rows) if r["label"] == label]
        picked.update(rng.sample(indices, n // 2))
    return [r for i, r in enumerate(rows) if i in picked], [r for i, r in enumerate(rows) if i not in picked]


def sentiment(source: Path) -> None:
    out = HERE / "sentiment"
    out.mkdir(exist_ok=True)
    rng = random.Random(13)
    for split, n in SIZES.items():
        rows = [json.loads(line) for line in (source / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
        chosen, rest = stratified(rows, n, rng)
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen), encoding="utf-8")
    reviews = [r["text"] for r in rng.sample(rest, REVIEWS)]  # `rest` is the test split's
    (out / "reviews.txt").write_text("".join(t + "\n" for t in reviews), encoding="utf-8")


def ner() -> None:
    out = HERE / "ner"
    out.mkdir(exist_ok=True)
    for split, n in NER_SIZES.items():
        text = (ROOT / "tests" / "data" / "ner-en" / f"{split}.conll").read_text(encoding="utf-8")
        header, *sentences = text.strip().split("\n\n")  # -DOCSTART- first
        (out / f"{split}.conll").write_text("\n\n".join([header, *sentences[:n]]) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sentiment(Path(sys.argv[1]) / "sentiment-movies" if len(sys.argv) > 1 else ROOT.parent / "shared" / "datasets" / "sentiment-movies")
    ner()
