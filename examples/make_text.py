"""Rebuild the real text data sets for tweets, regression, multi-label and sentence pairs.

    python examples/make_text.py SDIST [APT_LISTS]

writes tests/data/real_text/{tweets,regression,multilabel}/{train,validation,test}.jsonl (the
MiniLM real-learning tests) and the small README examples examples/{tweets,regression,
multilabel,pairs}/ (multilabel/ also as .csv). Deterministic: every draw uses random.Random(13);
running it twice writes the same bytes.

Sources (nothing is fetched here; both are checked by SHA-256 before use):
- SDIST: vaderSentiment-3.3.2.tar.gz from PyPI (MIT license, C.J. Hutto 2016), got with
  `pip download --no-deps --no-binary :all: vadersentiment==3.3.2 -d DIR`. Its
  additional_resources/hutto_ICWSM_2014.tar.gz holds the human ratings of Hutto & Gilbert,
  "VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text", ICWSM
  2014: *_GroundTruth.txt, one line per text: id TAB mean valence TAB text, the mean of at least
  20 raters on -4 (extremely negative) .. +4 (extremely positive).
- APT_LISTS (default /var/lib/apt/lists): Debian 12 "bookworm" main/amd64 index files, the
  `Packages` (with each package's short description and debtags `Tag:` field) and
  `Translation-en` (the long descriptions, keyed by Description-md5) of the InRelease in the same
  folder (Debian 12.15, 11 Jul 2026). The stock image fetches no Translation-en; get it without
  touching the system's lists with
  `apt-get update -o Dir::State::Lists=DIR -o Acquire::Languages=en` (DIR holding partial/).
  Package descriptions are under each package's own license (DFSG-free; see its copyright
  file); the debtags are the Debian project's (debtags.debian.org).

Steps:
1. Texts everywhere (as ../shared/datasets): UTF-8 (the VADER files are valid UTF-8, which is
   what sentiment-movies' latin-1 round-trip amounts to), NFC, CR/LF -> LF, control characters
   other than LF removed, stripped, empty texts dropped; in VADER texts &amp; &lt; &gt; unescaped
   (the only entities they hold). Exact duplicate texts dropped, first kept.
2. tweets: tweets_GroundTruth.txt (4,000 tweets with @anonymous / http://url_removed put in,
   plus 200 tweet-like texts the authors wrote to test intensity cues). label = positive if
   valence > +1.0, negative if < -1.0, else neutral: a band of +-1 (an eighth of the scale)
   because texts rated 0.6-0.9 read as plain statements ("Finished the interview. Now on to
   OH."), and it gives 42% positive / 19% negative / 38% neutral, near TweetEval's own balance.
3. regression: amazonReviewSnippets (3,708 sentences of 309 product reviews) and
   nytEditorialSnippets (5,190 sentences of 500 NYT opinion articles), not the movie snippets
   (those are sentiment-movies, so a regression test on them would reuse its texts) nor the
   tweets (above). {"text", "valence"} with valence as rated (a float, -4..+4). Split by
   document (review / article: the id before "_"), so no document is in two splits.
4. multilabel: packages with debtags whose names do not end in -dev, -doc or -dbg (those
   repeat their main package's description) and whose short description does not say
   "transitional". Labels: the facets a description tells, works-with:: (what data the program
   handles) and use:: (what it is for), sub-values folded into their value
   (works-with::image:raster -> works-with::image), TODO dropped; the 12 most frequent values
   kept; rows with at least one of them. text = short description + LF + the long one
   (Translation-en, joined by Description-md5), each " ." paragraph on one line, lines joined
   by spaces, cut to 320 characters at a word boundary (max_length 64-128 tokens never read
   further). Split by source package, so binaries of one source are in one split.
5. Splits: groups (one tweet; a document; a source package) shuffled with random.Random(13)
   and dealt in that order to test, validation, then train until each holds its rows
   (2000 / 250 / 250; a group cut by a full split loses its rest, it goes nowhere else).
   Rows keep their source order within a group.
6. Examples: the first 200 / 50 / 50 rows of the same split there (already in random order),
   so no text is in two splits. examples/multilabel/*.csv: the same rows, labels joined by ",".
7. pairs: examples/pairs/ from the multilabel rows of the same split: {"text": short
   description, "text_pair": long description, "label": match|mismatch}; each package is, by a
   coin from random.Random(13), paired with its own long description or with that of another
   package of the split drawn from the same generator.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import random
import re
import subprocess
import sys
import tarfile
import unicodedata
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REAL = ROOT / "tests" / "data" / "real_text"
SEED = 13
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
SIZES = {"test": 250, "validation": 250, "train": 2000}  # dealt in this order: test first
EXAMPLE_SIZES = {"train": 200, "validation": 50, "test": 50}
TWEET_CUT = 1.0  # |valence| above this is positive / negative, within it neutral
REGRESSION_SOURCES = ("amazonReviewSnippets", "nytEditorialSnippets")
FACETS = ("works-with::", "use::")
TOP_LABELS = 12
MAX_CHARS = 320  # Debian texts; the tests read 64 tokens (about 250 characters)
DROPPED_SUFFIXES = ("-dev", "-doc", "-dbg")
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """NFC, LF line ends, no control characters but LF, stripped."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return CONTROL.sub("", text).strip()


def unescape(text: str) -> str:
    """The three entities the VADER files hold; &amp; last so '&amp;lt;' stays '&lt;'."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- VADER ratings


def vader_files(sdist: Path) -> dict[str, str]:
    """name -> text of every *_GroundTruth.txt in the sdist's inner tarball."""
    data = sdist.read_bytes()
    if sha256(data) != SDIST_SHA256:
        sys.exit(f"{sdist}: not vaderSentiment 3.3.2 (sha256 {sha256(data)}, want {SDIST_SHA256})")
    with tarfile.open(fileobj=io.BytesIO(data)) as outer:
        inner = outer.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz").read()
    found = {}
    with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if name.endswith("_GroundTruth.txt"):
                found[name.removesuffix("_GroundTruth.txt")] = tar.extractfile(member).read().decode("utf-8")
    return found


def ratings(text: str) -> list[tuple[str, float, str]]:
    """(id, mean valence, cleaned text) per line; empty texts dropped."""
    rows = []
    for line in text.splitlines():
        ident, valence, body = line.split("\t", 2)
        body = clean(unescape(body))
        if body:
            rows.append((ident, float(valence), body))
    return rows


def tweets(files: dict[str, str]) -> list[dict]:
    rows = []
    for ident, valence, text in ratings(files["tweets"]):
        label = "positive" if valence > TWEET_CUT else "negative" if valence < -TWEET_CUT else "neutral"
        rows.append({"group": ident, "text": text, "label": label})
    return rows


def regression(files: dict[str, str]) -> list[dict]:
    rows = []
    for source in REGRESSION_SOURCES:
        for ident, valence, text in ratings(files[source]):
            rows.append({"group": f"{source}/{ident.split('_')[0]}", "text": text, "valence": valence})
    return rows


# ----------------------------------------------------------------------------- Debian packages


def apt_index(lists: Path, pattern: str, key: str) -> str:
    """A decompressed bookworm index file, checked against the InRelease beside it."""
    [path] = sorted(lists.glob(pattern)) or sys.exit(f"{lists}: no {pattern} (see this script's docstring)")
    text = subprocess.run(["lz4cat", str(path)], capture_output=True, check=True).stdout
    release = next(lists.glob("*_debian_dists_bookworm_InRelease")).read_text(encoding="utf-8")
    if not re.search(rf"^ {sha256(text)}\s+{len(text)} {re.escape(key)}$", release, re.M):
        sys.exit(f"{path}: its sha256 is not the one InRelease lists for {key}")
    return text.decode("utf-8")


def stanzas(text: str) -> list[dict[str, str]]:
    """Deb822 paragraphs; continuation lines kept with their newline and leading space."""
    found = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.split("\n"):
            if line.startswith((" ", "\t")):
                fields[key] += "\n" + line
            elif line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            found.append(fields)
    return found


def long_text(description: str) -> str:
    """Debian's long description: ' .' lines end paragraphs; each paragraph on one line."""
    paragraphs, lines = [], []
    for line in description.split("\n")[1:]:  # the first line is the short description
        line = line.strip()
        if line == ".":
            paragraphs.append(" ".join(lines))
            lines = []
        elif line:
            lines.append(line)
    paragraphs.append(" ".join(lines))
    return "\n".join(p for p in paragraphs if p)


def cut(text: str, limit: int) -> str:
    """At most `limit` characters, ended at a word boundary."""
    if len(text) <= limit:
        return text
    return text[: limit + 1].rsplit(None, 1)[0].rstrip()


def tag_values(tags: str) -> set[str]:
    """The package's works-with:: / use:: values, sub-values folded into their value."""
    found = set()
    for tag in re.split(r",\s*", " ".join(tags.split())):
        facet, _, value = tag.partition("::")
        if f"{facet}::" in FACETS and value and value != "TODO":
            found.add(f"{facet}::{value.split(':')[0]}")
    return found


def debian(lists: Path) -> list[dict]:
    """{"group", "text", "short", "long", "labels"} for tagged packages with a kept label."""
    packages = stanzas(apt_index(lists, "*_debian_dists_bookworm_main_binary-amd64_Packages.lz4", "main/binary-amd64/Packages"))
    english = {s["Description-md5"]: s["Description-en"] for s in stanzas(
        apt_index(lists, "*_debian_dists_bookworm_main_i18n_Translation-en.lz4", "main/i18n/Translation-en"))}
    candidates = []
    for p in packages:
        if "Tag" not in p or p["Package"].endswith(DROPPED_SUFFIXES):
            continue
        description = english[p["Description-md5"]]
        short = clean(description.split("\n")[0])
        values = tag_values(p["Tag"])
        if values and "transitional" not in short.lower():
            source = p.get("Source", p["Package"]).split()[0]
            candidates.append((source, short, clean(long_text(description)), values))
    counts = Counter(v for *_, values in candidates for v in values)
    kept = [v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_LABELS]]
    rows = []
    for source, short, long, values in candidates:
        labels = [v for v in kept if v in values]  # in frequency order
        if labels and long:
            rows.append({"group": source, "text": cut(f"{short}\n{long}", MAX_CHARS), "short": short, "long": long, "labels": labels})
    return rows


# ----------------------------------------------------------------------------- splits and files


def deduplicated(rows: list[dict]) -> list[dict]:
    """Exact duplicate texts dropped, the first kept."""
    seen: set[str] = set()
    kept = []
    for row in rows:
        if row["text"] not in seen:
            seen.add(row["text"])
            kept.append(row)
    return kept


def split(rows: list[dict]) -> dict[str, list[dict]]:
    """Whole groups, shuffled, dealt to test, validation, then train (see step 5)."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    order = list(groups)
    random.Random(SEED).shuffle(order)
    splits: dict[str, list[dict]] = {name: [] for name in SIZES}
    names = iter(SIZES)
    current = next(names)
    for group in order:
        if len(splits[current]) >= SIZES[current]:
            current = next(names, None)
            if current is None:
                break
        splits[current].extend(groups[group][: SIZES[current] - len(splits[current])])
    if any(len(splits[name]) < n for name, n in SIZES.items()):
        sys.exit(f"too few rows for {SIZES}: {({k: len(v) for k, v in splits.items()})}")
    return splits


def write_jsonl(path: Path, rows: list[dict], fields: tuple[str, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps({f: r[f] for f in fields}, ensure_ascii=False) + "\n" for r in rows)
    path.write_text("".join(lines), encoding="utf-8")


def write_csv(path: Path, rows: list[dict]) -> None:
    """text,labels with the labels joined by ',' (ftkit's default data.label_separator)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["text", "labels"])
    writer.writerows([r["text"], ",".join(r["labels"])] for r in rows)
    path.write_text(out.getvalue(), encoding="utf-8")


def pairs(rows: list[dict], rng: random.Random) -> list[dict]:
    """Short description with its own long one (match) or another package's (mismatch)."""
    made = []
    for i, row in enumerate(rows):
        if rng.random() < 0.5:
            made.append({"text": row["short"], "text_pair": cut(row["long"], MAX_CHARS), "label": "match"})
        else:
            other = rows[rng.choice([j for j in range(len(rows)) if j != i])]
            made.append({"text": row["short"], "text_pair": cut(other["long"], MAX_CHARS), "label": "mismatch"})
    return made


def summary(name: str, splits: dict[str, list[dict]], key: str) -> None:
    """Rows per split and label counts (or the valence range), for the README."""
    for part, rows in splits.items():
        values = [label for r in rows for label in (r[key] if isinstance(r[key], list) else [r[key]])]
        if all(isinstance(v, float) for v in values):
            shown = f"valence {min(values):.2f}..{max(values):.2f}, mean {sum(values) / len(values):.2f}"
        else:
            shown = ", ".join(f"{k} {n}" for k, n in sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0])))
        print(f"{name} {part}: {len(rows)} rows; {shown}")


def build(name: str, rows: list[dict], fields: tuple[str, ...]) -> dict[str, list[dict]]:
    """Splits written under tests/data/real_text/NAME and their heads under examples/NAME."""
    splits = split(deduplicated(rows))
    summary(name, splits, fields[-1])
    for part, chosen in splits.items():
        write_jsonl(REAL / name / f"{part}.jsonl", chosen, fields)
        write_jsonl(HERE / name / f"{part}.jsonl", chosen[: EXAMPLE_SIZES[part]], fields)
    return splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sdist", type=Path, help="vaderSentiment-3.3.2.tar.gz")
    parser.add_argument("apt_lists", type=Path, nargs="?", default=Path("/var/lib/apt/lists"))
    args = parser.parse_args()
    files = vader_files(args.sdist)
    build("tweets", tweets(files), ("text", "label"))
    build("regression", regression(files), ("text", "valence"))
    splits = build("multilabel", debian(args.apt_lists), ("text", "labels"))
    rng = random.Random(SEED)
    for part, n in EXAMPLE_SIZES.items():
        write_csv(HERE / "multilabel" / f"{part}.csv", splits[part][:n])
        made = pairs(splits[part][:n], rng)
        write_jsonl(HERE / "pairs" / f"{part}.jsonl", made, ("text", "text_pair", "label"))
        print(f"pairs {part}: {len(made)} rows; " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r["label"] for r in made).items())))


if __name__ == "__main__":
    main()
