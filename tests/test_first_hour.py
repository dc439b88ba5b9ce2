"""A new user's first hour (issue 14): `predict --text`, `recipes copy` into a folder, a model
card that names no local path outside its Reproduce command (which runs as pasted from another
folder), and `evaluate`'s table headed by the file it scored."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from conftest import save_classifier

from ftkit.recipes import get_recipe, load_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def classifier(tiny_models, tmp_path_factory) -> Path:
    return save_classifier(tiny_models["bert"], tmp_path_factory.mktemp("classifier"))


def lines_of(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


# ---------------------------------------------------------------------------- predict --text


def test_predict_text_equals_predicting_a_file_of_the_same_texts(cli, classifier, tmp_path):
    texts = ["a great and moving film", "dull boring plot", "superb acting"]
    code, out, err = cli("predict", classifier, "--text", texts[0])
    assert code == 0, err
    assert [r["text"] for r in lines_of(out)] == texts[:1]

    code, out, err = cli("predict", classifier, *[arg for text in texts for arg in ("--text", text)])
    assert code == 0, err
    from_texts = lines_of(out)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    code, out, err = cli("predict", classifier, tmp_path / "in.txt")
    assert code == 0, err
    assert from_texts == lines_of(out) and [r["text"] for r in from_texts] == texts


def test_a_sentence_given_as_the_input_file_points_to_text(cli, classifier):
    code, out, err = cli("predict", classifier, "Great movie!")
    assert (code, out) == (2, "")
    assert err == 'error: "Great movie!": no such file; to predict a literal text use --text "Great movie!"\n'
    # a text the shell would expand inside double quotes is shown in single quotes
    code, _, err = cli("predict", classifier, "It cost $5")
    assert code == 2 and err.endswith("use --text 'It cost $5'\n")


def test_a_missing_data_file_keeps_its_own_message(cli, classifier, tmp_path):
    code, _, err = cli("predict", classifier, tmp_path / "reviews.txt")
    assert code == 2 and err == f"error: {tmp_path / 'reviews.txt'}: no such file; check the path\n"


@pytest.mark.parametrize("args, words", [
    ((), "nothing to predict"),
    (("in.txt", "--text", "a film"), "not both"),
    (("--text", " "), "empty text"),
])
def test_predict_needs_exactly_one_input(cli, classifier, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    Path("in.txt").write_text("a film\n", encoding="utf-8")
    code, out, err = cli("predict", classifier, *args)
    assert (code, out) == (2, "") and err.startswith("error: ") and words in err and err.count("\n") == 1


def test_predict_stdin_still_reads_lines(cli, classifier, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO("a great film\n\na dull film\n"))
    code, out, err = cli("predict", classifier, "-")
    assert code == 0, err
    assert [r["text"] for r in lines_of(out)] == ["a great film", "a dull film"]


def test_predict_text_into_an_output_file(cli, classifier, tmp_path):
    out_file = tmp_path / "p.jsonl"
    code, _, err = cli("predict", classifier, "--text", "a great film", "--text", "a dull film", "--output", out_file)
    assert code == 0 and err.strip().endswith(f"wrote 2 predictions to {out_file}")
    assert [r["text"] for r in lines_of(out_file.read_text(encoding="utf-8"))] == ["a great film", "a dull film"]


def test_an_interrupted_predict_of_texts_resumes_with_the_same_texts_only(cli, classifier, tmp_path, monkeypatch):
    from test_output_safety import interrupt_after

    texts = [f"film number {'very ' * i}good" for i in range(20)]
    args = [arg for text in texts for arg in ("--text", text)]
    output = tmp_path / "p.jsonl"
    interrupt_after(monkeypatch, calls=17)  # batches of 1, 16 a chunk: the first chunk is written
    code, _, err = cli("predict", classifier, *args, "--output", output, "--batch-size", "1")
    assert code == 130 and f"16 predictions are in {output}" in err
    monkeypatch.undo()

    code, _, err = cli("predict", classifier, *args[2:], "--output", output, "--resume")
    assert code == 2 and "written for another input (the first 16 inputs of --text" in err
    code, _, err = cli("predict", classifier, *args, "--output", output, "--resume")
    assert code == 0 and "resuming after the 16 predictions" in err
    assert [r["text"] for r in lines_of(output.read_text(encoding="utf-8"))] == texts


def test_predict_text_for_ner_and_generation(cli, tiny_models, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    names = {0: "O", 1: "B-PER", 2: "I-PER"}
    ner = tmp_path / "ner"
    AutoModelForTokenClassification.from_pretrained(tiny_models["bert"], id2label=names, label2id={v: k for k, v in names.items()}).save_pretrained(ner)
    AutoTokenizer.from_pretrained(tiny_models["bert"]).save_pretrained(ner)
    code, out, err = cli("predict", ner, "--text", "Alice met Bob in Paris")
    assert code == 0, err
    (record,) = lines_of(out)
    assert record["text"] == "Alice met Bob in Paris" and isinstance(record["entities"], list)

    code, out, err = cli("predict", tiny_models["gpt2"], "--text", "the film was", "--max-new-tokens", "3")
    assert code == 0, err
    (record,) = lines_of(out)
    assert record["text"] == "the film was" and record["generated_text"].startswith("the film was")


# ---------------------------------------------------------------------------- recipes copy


def test_recipes_copy_into_an_existing_folder(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("mine").mkdir()
    code, out, err = cli("recipes", "copy", "sentiment", "mine")
    assert (code, err) == (0, "")
    assert out == "wrote mine/sentiment.yaml; run it with: ftkit finetune mine/sentiment.yaml\n"
    assert Path("mine/sentiment.yaml").read_bytes() == get_recipe("sentiment").path.read_bytes()


def test_recipes_copy_into_a_new_folder_named_with_a_slash(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("recipes", "copy", "sentiment", "newdir/")
    assert (code, err) == (0, "")
    assert out == "created newdir/; wrote newdir/sentiment.yaml; run it with: ftkit finetune newdir/sentiment.yaml\n"
    assert Path("newdir").is_dir()
    assert load_config("newdir/sentiment.yaml")[0] == get_recipe("sentiment").config  # what `finetune` reads

    code, out, err = cli("recipes", "copy", "sentiment", "a/b/")  # only the last folder is made
    assert (code, out) == (2, "") and "no such folder" in err and not Path("a").exists()


def test_recipes_copy_to_a_bare_name_prints_a_command_that_reads_the_file(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("recipes", "copy", "sentiment", "mycopy")
    assert code == 0 and out.endswith("run it with: ftkit finetune ./mycopy\n")
    assert load_config("./mycopy")[0] == get_recipe("sentiment").config

    code, out, err = cli("recipes", "copy", "sentiment", "mycopy/")  # a file where a folder was asked
    assert (code, out) == (2, "") and "is a file, not a folder" in err


def test_recipes_copy_never_writes_through_a_link_at_the_old_temporary_name(cli, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n", encoding="utf-8")
    dest = tmp_path / "work"
    dest.mkdir()
    (dest / ".sentiment.yaml.ftkit-tmp").symlink_to(victim)
    code, _, err = cli("recipes", "copy", "sentiment", dest)
    assert code == 0, err
    assert victim.read_text(encoding="utf-8") == "keep me\n"
    assert (dest / "sentiment.yaml").read_bytes() == get_recipe("sentiment").path.read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == [".sentiment.yaml.ftkit-tmp", "sentiment.yaml"]  # no temp file left
    assert oct((dest / "sentiment.yaml").stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # as any new file


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------- model card


def test_card_names_no_local_path_and_its_reproduce_command_runs_from_another_folder(cli, tiny_models, sentiment_files, tmp_path, monkeypatch):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    (work / "train.jsonl").write_bytes(sentiment_files["train"].read_bytes())
    monkeypatch.chdir(work)
    model = os.path.relpath(tiny_models["bert"])  # relative, as a user types it
    code, _, err = cli("finetune", "sentiment", "--model", model, "--train", "train.jsonl", "-o", "run", "--max-steps", "2", "--quiet")
    assert code == 0, err
    card = (work / "run" / "model" / "README.md").read_text(encoding="utf-8")
    assert "# sentiment: bert fine-tuned with ftkit" in card.splitlines()

    command = card.split("## Reproduce", 1)[1].split("```")[1].strip()
    prose = card.replace(command, "")
    for local in (str(tmp_path), str(tiny_models["bert"].parent)):
        assert local not in prose, f"{local} outside the Reproduce command"
    words = shlex.split(command)
    assert words[:3] == ["HF_HUB_OFFLINE=1", "HF_DATASETS_OFFLINE=1", "ftkit"]  # all inputs were local
    assert "run" not in words and "-o" not in words and "--output-dir" not in words  # a fresh runs/ folder

    monkeypatch.chdir(elsewhere)
    code, _, err = cli(*words[3:])
    assert code == 0, err
    (rerun,) = (elsewhere / "runs").iterdir()
    assert rerun.name.startswith("sentiment-") and (rerun / "model" / "README.md").is_file()
    assert (rerun / "metrics.json").is_file()


# ---------------------------------------------------------------------------- evaluate


def test_evaluate_heads_its_column_with_the_file_it_scored(cli, classifier, sentiment_files, tmp_path):
    out_file = tmp_path / "m.json"
    code, out, err = cli("evaluate", classifier, "--data", sentiment_files["validation"], "--output", out_file)
    assert code == 0, err
    header = next(line for line in out.splitlines() if "metric" in line and "metrics" not in line)  # not the title
    assert "validation.jsonl" in header and "test" not in header
    assert "accuracy" in json.loads(out_file.read_text(encoding="utf-8"))  # the JSON is the metrics, as before
