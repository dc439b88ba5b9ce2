"""`ftkit data check` through the CLI: a crafted dataset with one of each problem, each reported
with its exact count; the exit code follows data_checks.fatal; --json / --output; finetune's
one-line summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import WORDS, call, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LONG = " ".join(WORDS[i % len(WORDS)] for i in range(60))  # 60 fixture words: past a 32-token max_length


def text(i: int) -> str:
    """A distinct short text of fixture words (each word one token of the tiny BERT)."""
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3)) + f" {i}"


@pytest.fixture(scope="module")
def crafted(tmp_path_factory) -> dict[str, Path]:
    """train: 40 clean rows, 2 empty, 3 exact repeats, 3 long texts, 2 test texts copied in and one
    test text in another case and punctuation; test: 10 rows, one labelled 'neutral' (not in train)."""
    root = tmp_path_factory.mktemp("datacheck")
    label = lambda i: "positive" if i % 2 else "negative"  # noqa: E731
    train = [{"text": text(i), "label": label(i)} for i in range(40)]
    train += [{"text": "", "label": "positive"}, {"text": "   ", "label": "negative"}]
    train += [dict(train[i]) for i in (1, 2, 3)]  # exact repeats
    train += [{"text": LONG, "label": label(i)} for i in range(3)]  # one text thrice: 2 more repeats
    train += [{"text": text(100), "label": "positive"}, {"text": text(101), "label": "negative"}]  # test rows copied in
    train += [{"text": "great film really", "label": "positive"}]
    test = [{"text": text(100 + i), "label": label(i)} for i in range(8)]
    test += [{"text": "Great  Film, REALLY!", "label": "positive"}, {"text": text(200), "label": "neutral"}]
    validation = [{"text": text(300 + i), "label": label(i)} for i in range(10)]
    return {s: write_jsonl(root / f"{s}.jsonl", rows) for s, rows in (("train", train), ("validation", validation), ("test", test))}


def check(files: dict[str, Path], model: Path | None, *extra: str) -> tuple[int, dict]:
    """`ftkit data check sentiment ... --json`: (exit code, report)."""
    out = files["train"].parent / "report.json"
    args = ["data", "check", "sentiment", "--train", files["train"], "--validation", files["validation"], "--max-length", "32", "--output", out, "--overwrite"]
    args += ["--test", files["test"]] if "test" in files else []
    args += ["--model", model] if model else []
    code = call([*args, *extra])
    return code, json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def report(crafted, tiny_models) -> tuple[int, dict]:
    return check(crafted, tiny_models["bert"])


def verdicts(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_each_problem_is_counted_exactly(report):
    code, data = report
    train, test, validation = (data["splits"][s] for s in ("train", "test", "validation"))
    assert (train["rows"], train["empty"], train["duplicates"]) == (51, 2, 5)
    assert train["labels"] == {"positive": 26, "negative": 25}
    assert (test["in_train"], test["in_train_exact"]) == (3, 2)  # 2 copied, 1 equal once normalised
    assert (validation["in_train"], validation["empty"], validation["duplicates"]) == (0, 0, 0)
    assert (train["truncated"], train["measured"]) == (3, 51)
    assert test["labels"]["neutral"] == 1


def test_verdicts_follow_the_limits_and_fatal_ones_exit_1(report):
    code, data = report
    v = verdicts(data)
    assert code == 1 and data["failed"] == ["overlap", "label_sets"]  # the defaults' fatal checks
    assert v["overlap"]["status"] == "fail" and v["overlap"]["value"] == pytest.approx(3 / 10)
    assert "test has label(s) train lacks: neutral" in v["label_sets"]["detail"]
    assert v["empty"]["status"] == "warn" and v["empty"]["value"] == pytest.approx(2 / 51)  # limit 0, not fatal
    assert v["duplicates"]["status"] == "warn" and v["duplicates"]["value"] == pytest.approx(5 / 51)  # over 5%
    assert v["truncation"]["status"] == "warn" and "3 (5.9%) train text(s) longer than 32 tokens" in v["truncation"]["detail"]
    assert v["balance"]["status"] == "ok" and v["balance"]["value"] == pytest.approx(26 / 25)


def test_only_warnings_exit_0_and_the_table_says_them(crafted, tiny_models, cli):
    files = {s: crafted[s] for s in ("train", "validation")}  # no test: no overlap, no unseen label
    code, data = check(files, tiny_models["bert"])
    assert code == 0 and data["failed"] == []
    assert {c["name"]: c["status"] for c in data["checks"]} == {
        "balance": "ok", "empty": "warn", "duplicates": "warn", "overlap": "ok", "truncation": "warn", "label_sets": "ok"}
    code, out, err = cli("data", "check", "sentiment", "--train", crafted["train"], "--validation", crafted["validation"],
                         "--max-length", "32", "--model", tiny_models["bert"])
    assert code == 0, err
    assert "2 (3.9%) empty text(s) in train" in out and "no fatal check failed" in out


def test_set_overrides_limits_and_the_fatal_list(crafted, tiny_models):
    code, data = check(crafted, tiny_models["bert"], "--set", "data_checks.max_overlap=0.5", "--set", "data_checks.fatal=[overlap, duplicates]")
    v = verdicts(data)
    assert code == 1 and data["failed"] == ["duplicates"]
    assert v["overlap"]["status"] == "ok" and v["label_sets"]["status"] == "warn"  # over, but no longer fatal


def test_a_recipe_file_sets_data_checks(crafted, tiny_models, tmp_path):
    recipe = tmp_path / "strict.yaml"
    base = (Path(__file__).resolve().parent.parent / "recipes" / "sentiment.yaml").read_text(encoding="utf-8")
    recipe.write_text(base.replace("name: sentiment", "name: strict") + "\ndata_checks:\n  fatal: [empty]\n  max_empty: 0.1\n", encoding="utf-8")
    code = call(["data", "check", recipe, "--train", crafted["train"], "--validation", crafted["validation"], "--test", crafted["test"],
                 "--model", tiny_models["bert"], "--json"])
    assert code == 0  # empty 3.9% is within 10%; overlap and label_sets fail but are not fatal here


def test_json_on_stdout_matches_the_output_file(crafted, tiny_models, cli, tmp_path):
    out = tmp_path / "r.json"
    code, stdout, err = cli("data", "check", "sentiment", "--train", crafted["train"], "--validation", crafted["validation"],
                            "--test", crafted["test"], "--model", tiny_models["bert"], "--max-length", "32", "--json", "--output", out)
    assert code == 1
    assert json.loads(stdout) == json.loads(out.read_text(encoding="utf-8"))
    assert "using its 'text' column" in err  # resolve's notes go to stderr, stdout stays JSON


def test_tags_count_entity_mentions_and_an_unreachable_model_skips_truncation(cli, tmp_path, sentiment_files):
    rows = [{"tokens": ["Ann", "Lee", "in", "Oslo"], "ner_tags": ["B-PER", "I-PER", "O", "B-LOC"]},
            {"tokens": ["Bo", "came", "late", "again"], "ner_tags": ["B-PER", "O", "O", "O"]},
            {"tokens": ["Acme", "Corp", "in", "Rome"], "ner_tags": ["I-ORG", "I-ORG", "O", "B-LOC"]}]  # IOB1: an I- opens a mention
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    validation = write_jsonl(tmp_path / "validation.jsonl", [{"tokens": ["Eve", "saw", "Paris"], "ner_tags": ["B-PER", "O", "B-LOC"]}])
    code, out, err = cli("data", "check", "ner", "--train", train, "--validation", validation, "--json")
    data = json.loads(out)
    assert code == 0, err
    assert data["splits"]["train"]["labels"] == {"PER": 2, "LOC": 2, "ORG": 1}  # mentions by type, O never
    v = verdicts(data)
    assert v["label_sets"]["status"] == "warn" and "train label(s) missing from validation: ORG" in v["label_sets"]["detail"]
    # token classification reads long sentences in windows (LONG_INPUTS): nothing is cut, nothing to measure
    assert v["truncation"]["status"] == "skip" and "read in windows" in v["truncation"]["detail"]
    # a text recipe's Hub model is not reachable offline: that check alone is skipped, and says why
    code, out, err = cli("data", "check", "sentiment", "--train", sentiment_files["train"], "--text-column", "text", "--json")
    v = verdicts(json.loads(out))
    assert code == 0, err
    assert v["truncation"]["status"] == "skip" and "not measured: no tokenizer (cannot load model" in v["truncation"]["detail"]
    assert v["duplicates"]["status"] in ("ok", "warn")  # the other checks still ran


def test_a_long_text_of_few_tokens_is_tokenized_whole(cli, tiny_models, tmp_path):
    """A text past the head the first pass reads (8 characters per token of max_length) is settled
    by the whole text: 20 words of 40 letters are 22 tokens of the tiny BERT, under 32."""
    word = "x" * 40
    rows = [{"text": " ".join([word] * 20), "label": "positive"}, {"text": " ".join([word] * 40), "label": "negative"}]
    rows += [{"text": text(i), "label": "positive" if i % 2 else "negative"} for i in range(6)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    code, out, err = cli("data", "check", "sentiment", "--train", train, "--validation", train, "--model", tiny_models["bert"],
                         "--max-length", "32", "--json")
    assert json.loads(out)["splits"]["train"]["truncated"] == 1, err


def test_bad_input_exits_2_and_no_input_is_written_over(cli, crafted, tmp_path):
    code, out, err = cli("data", "check", "sentiment", "--train", tmp_path / "missing.jsonl")
    assert code == 2 and "missing.jsonl" in err
    before = crafted["train"].read_bytes()
    code, out, err = cli("data", "check", "sentiment", "--train", crafted["train"], "--output", crafted["train"], "--overwrite")
    assert code == 2 and "writing it would destroy the input" in err and crafted["train"].read_bytes() == before
    kept = tmp_path / "kept.json"
    kept.write_text("{}", encoding="utf-8")
    code, out, err = cli("data", "check", "sentiment", "--train", crafted["train"], "--output", kept)
    assert code == 2 and "pass --overwrite" in err and kept.read_text(encoding="utf-8") == "{}"


def test_finetune_prints_the_summary_line(crafted, tiny_models, cli, tmp_path):
    code, out, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", crafted["train"], "--validation", crafted["validation"],
                         "--max-length", "32", "--max-steps", "1", "--batch-size", "8", "-o", tmp_path / "run")
    assert code == 0, err
    line = next(line for line in err.splitlines() if "data:" in line)
    assert "2 (3.9%) empty text(s) in train (over its data_checks limit)" in line
    assert "5 (9.8%) duplicate text(s) in train" in line
    assert "3 (5.9%) train text(s) longer than 32 tokens" in line
