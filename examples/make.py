"""Rebuild the example data in this folder (README.md here says what each file is and its source).

    python examples/make.py [SHARED_DATASETS]     # default: ../shared/datasets beside the clone

sentiment/: stratified subsets of sentiment-movies (each split drawn from the same split of
the source, so no text is in two splits), equal classes, random.Random(13), in source order.
ner/: the first sentences of each split of tests/data/ner-en (already in random order).
images/: the first images of four classes of fashion-mnist (its folders are filled in a seed-13
shuffled order, so the first ones are a random draw), PNG bytes copied; test and new/ come from
its validation split, past the images taken for validation (new/: 2 per class, shuffled).
speech/: the first clips of speech-synth's splits (already in a seed-13 shuffled order), WAV
re-encoded as FLAC (lossless: the samples are checked equal after decoding).
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIZES = {"train": 400, "validation": 100, "test": 100}  # rows per split, half of each class
REVIEWS = 12  # unlabelled lines for `ftkit predict`, from test rows not drawn above
NER_SIZES = {"train": 200, "validation": 40, "test": 60}  # sentences per split
IMAGE_CLASSES = ["trouser", "bag", "sneaker", "dress"]  # fashion-mnist folders, easy to tell apart
# split here -> (fashion-mnist split, first image, count) per class: test follows validation in
# fashion-mnist's validation split (it has no test split), so no image is in two splits.
IMAGE_SLICES = {"train": ("train", 0, 20), "validation": ("validation", 0, 5), "test": ("validation", 5, 5)}
NEW_IMAGES = 2  # unlabelled images per class for `ftkit predict`, validation images not taken above
# split here -> (speech-synth split, first clip, count); test follows validation, as for images
SPEECH_SLICES = {"train": ("train", 0, 16), "validation": ("validation", 0, 4), "test": ("validation", 4, 4)}


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


def images(source: Path) -> None:
    out = fresh(HERE / "images", source)
    for split, (origin, first, n) in IMAGE_SLICES.items():
        for label in IMAGE_CLASSES:
            (out / split / label).mkdir(parents=True)
            for k, png in enumerate(sorted((source / origin / label).glob("*.png"))[first : first + n]):
                shutil.copyfile(png, out / split / label / f"{k:04d}.png")
    taken = max(first + n for origin, first, n in IMAGE_SLICES.values() if origin == "validation")
    new = [p for label in IMAGE_CLASSES for p in sorted((source / "validation" / label).glob("*.png"))[taken : taken + NEW_IMAGES]]
    random.Random(13).shuffle(new)  # so that the sorted file names do not follow the classes
    (out / "new").mkdir()
    for k, png in enumerate(new, 1):
        shutil.copyfile(png, out / "new" / f"{k:02d}.png")


def speech(source: Path) -> None:
    out = fresh(HERE / "speech", source)
    for split, (origin, first, n) in SPEECH_SLICES.items():
        (out / split).mkdir()
        with open(source / origin / "metadata.csv", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))[first : first + n]
        for k, row in enumerate(rows):
            name = f"{k:04d}.flac"  # numbered from 0000 in each split, as in speech-synth
            to_flac(source / origin / row["file_name"], out / split / name)
            row["file_name"] = name
        text = io.StringIO()
        writer = csv.DictWriter(text, ["file_name", "transcription"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        (out / split / "metadata.csv").write_text(text.getvalue(), encoding="utf-8")


def to_flac(wav: Path, flac: Path) -> None:
    """Lossless re-encoding (FLAC is about half of WAV's size), checked sample for sample."""
    import numpy as np
    import soundfile

    samples, rate = soundfile.read(wav, dtype="int16")
    soundfile.write(flac, samples, rate, format="FLAC", subtype="PCM_16")
    again, rate_again = soundfile.read(flac, dtype="int16")
    assert rate_again == rate and np.array_equal(again, samples), f"{flac}: decodes to other samples than {wav}"


def fresh(folder: Path, source: Path) -> Path:
    """An empty `folder` (make.py writes all of it: a file no longer drawn must not stay), once
    `source` is known to be there (a missing one would leave it empty, not rebuilt)."""
    if not source.is_dir():
        sys.exit(f"{source}: no such dataset folder; pass the folder holding it (see examples/README.md)")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


if __name__ == "__main__":
    datasets = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "datasets"
    sentiment(datasets / "sentiment-movies")
    ner()
    images(datasets / "fashion-mnist")
    speech(datasets / "speech-synth")
