"""`ftkit export --format onnx` and `ftkit predict --runtime onnx` end to end through the real
entry point, on tiny runs: the export folder's contract, its parity report, predictions that
equal PyTorch's, and the refusals (no export, a stale one, an existing one, a failed check)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import call, finish_run

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one torch thread (conftest)

TEXTS = ["a wonderful and moving film", "dull plot and terrible acting", "it was fine", "great great great"]


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder`: (size, mtime) by relative path."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def one_line_error(code: int, err: str, expected_code: int = 2) -> str:
    assert code == expected_code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def exported(tiny_models, sentiment_files, tmp_path_factory) -> dict:
    """A finished sentiment run, exported once with --quantize int8 (model/ listed before)."""
    run = finish_run(tmp_path_factory.mktemp("export") / "run", tiny_models["bert"], sentiment_files["train"], 6)
    before = listing(run / "model")
    code = call(["export", run, "--format", "onnx", "--quantize", "int8"])
    assert code == 0
    return {"run": run, "model_before": before}


def test_export_folder_contract(exported):
    run = exported["run"]
    onnx = run / "onnx"
    for name in ("model.onnx", "model.int8.onnx", "config.json", "parity.json", "export.json", "tokenizer_config.json"):
        assert (onnx / name).is_file(), name
    assert not (run / "onnx.tmp").exists()
    assert listing(run / "model") == exported["model_before"], "export must only read model/"
    record = json.loads((onnx / "export.json").read_text())
    assert record["format"] == "onnx" and record["quantize"] == "int8"
    assert record["fused"].get("Attention") == 2, "BERT's attention should be fused (2 layers)"


def test_parity_report(exported):
    report = json.loads((exported["run"] / "onnx" / "parity.json").read_text())
    scored = json.loads((exported["run"] / "metrics.json").read_text())
    assert report["split"] == ("test" if "test" in scored else "validation") and report["rows"] > 0  # the run's held-out split
    fp32, int8 = report["runtimes"]["onnx"], report["runtimes"]["onnx-int8"]
    assert fp32["max_abs_diff"] < 1e-4 and fp32["label_agreement"] == 1.0 and fp32["compared"] == report["rows"]
    assert report["metric"] == "accuracy"
    assert fp32["accuracy"] == pytest.approx(report["torch"]["accuracy"])
    assert 0.0 <= int8["label_agreement"] <= 1.0 and int8["finite"]


def test_export_prints_the_parity_table(exported, cli):
    code, out, err = cli("export", exported["run"], "--format", "onnx", "--overwrite")
    assert code == 0, err
    assert "ONNX parity" in out and "onnx" in out and "accuracy" in out
    assert not (exported["run"] / "onnx" / "model.int8.onnx").exists(), "--overwrite replaces the whole export"
    assert listing(exported["run"] / "model") == exported["model_before"]


def test_predict_onnx_equals_torch(exported, cli, tmp_path):
    args = ["predict", exported["run"], *[a for t in TEXTS for a in ("--text", t)], "--top-k", "2"]
    code, torch_out, err = cli(*args)
    assert code == 0, err
    code, onnx_out, err = cli(*args, "--runtime", "onnx")
    assert code == 0, err
    torch_rows, onnx_rows = [json.loads(x) for x in torch_out.splitlines()], [json.loads(x) for x in onnx_out.splitlines()]
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]
    assert [sorted(r) for r in onnx_rows] == [sorted(r) for r in torch_rows]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(torch_rows, onnx_rows)) < 1e-5


def test_export_refuses_an_existing_export(exported, cli):
    before = listing(exported["run"])
    code, _, err = cli("export", exported["run"], "--format", "onnx")
    assert "--overwrite" in one_line_error(code, err)
    assert listing(exported["run"]) == before


def test_predict_without_or_with_a_stale_export(exported, cli, tmp_path):
    run = Path(shutil.copytree(exported["run"], tmp_path / "run"))  # with the files' times: the export still fits
    code, _, err = cli("predict", run, "--text", TEXTS[0], "--runtime", "onnx")
    assert code == 0, err
    weights = next((run / "model").glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # as a new finetune into the folder
    code, _, err = cli("predict", run, "--text", TEXTS[0], "--runtime", "onnx")
    assert "another version" in one_line_error(code, err) and "--overwrite" in err
    shutil.rmtree(run / "onnx")
    code, _, err = cli("predict", run, "--text", TEXTS[0], "--runtime", "onnx")
    assert "ftkit export" in one_line_error(code, err) and "first" in err
    code, _, err = cli("predict", exported["run"], "--text", TEXTS[0], "--runtime", "onx")
    assert "Did you mean 'onnx'" in one_line_error(code, err)


def test_a_failed_check_leaves_the_run_as_it_was(exported, cli, tmp_path, monkeypatch):
    import ftkit.export

    run = Path(shutil.copytree(exported["run"], tmp_path / "run", ignore=shutil.ignore_patterns("onnx")))
    before = listing(run)
    monkeypatch.setattr(ftkit.export, "TOLERANCE", -1.0)  # any difference fails
    code, _, err = cli("export", run, "--format", "onnx")
    assert "nothing was written" in one_line_error(code, err, expected_code=1)
    assert listing(run) == before and not (run / "onnx.tmp").exists()


def test_resume_stamp_names_the_runtime(exported):
    from ftkit.predict import PredictOptions, producer

    model = exported["run"] / "model"
    torch_stamp = producer(model, PredictOptions(), None, "utf-8")
    onnx_stamp = producer(model, PredictOptions(runtime="onnx"), None, "utf-8")
    assert "--runtime" not in torch_stamp and onnx_stamp["--runtime"] == "onnx"
    assert onnx_stamp["model files"] != torch_stamp["model files"], "the graph's file is part of the stamp"


def test_generation_families_say_export_is_not_available(tiny_models, cli):
    code, _, err = cli("export", tiny_models["gpt2"], "--format", "onnx")
    line = one_line_error(code, err)
    assert "sequence-classification" in line and "not yet" in line


def test_ner_export_predicts_the_same_entities(tiny_models, ner_files, tmp_path, cli):
    out = tmp_path / "ner"
    code = call(["finetune", "ner", "--model", tiny_models["bert"], "--train", ner_files["train"], "--test", ner_files["test"],
                 "--max-steps", "60", "--batch-size", "16", "--learning-rate", "3e-3", "-o", out, "--quiet"])
    assert code == 0
    code, _, err = cli("export", out, "--format", "onnx", "--rows", "16")
    assert code == 0, err
    report = json.loads((out / "onnx" / "parity.json").read_text())
    assert report["runtimes"]["onnx"]["compared"] > report["rows"], "per-token logits are compared token by token"
    assert report["runtimes"]["onnx"]["label_agreement"] == 1.0
    sentences = [json.loads(line)["tokens"] for line in ner_files["test"].read_text().splitlines()[:8]]
    texts = [a for words in sentences for a in ("--text", " ".join(words))]
    results = []
    for runtime in ("torch", "onnx"):
        code, stdout, err = cli("predict", out, *texts, "--runtime", runtime)  # texts: the pipeline's entities
        assert code == 0, err
        code, words, err = cli("predict", out, ner_files["test"], "--runtime", runtime)  # words: a tag each
        assert code == 0, err
        results.append(([json.loads(x) for x in stdout.splitlines()], [json.loads(x)["tags"] for x in words.splitlines()]))
    (torch_entities, torch_tags), (onnx_entities, onnx_tags) = results
    assert onnx_tags == torch_tags and any(tag != "O" for tags in torch_tags for tag in tags), "the tags must say something"
    spans = lambda rows: [[(e["entity_group"], e["start"], e["end"]) for e in r["entities"]] for r in rows]  # noqa: E731
    assert spans(onnx_entities) == spans(torch_entities)
    assert os.path.getsize(out / "onnx" / "model.onnx") > 0


def close(a, b) -> bool:
    """Two output records alike: the same keys, labels and tokens; numbers within 1e-4."""
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) < 1e-4
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


def family_rows(recipe: str, i: int) -> dict:
    words = ["good", "bad", "paris", "film", "plot", "the", "and", "music"]
    text = " ".join(words[(i + k) % len(words)] for k in range(3 + i % 4))
    return {"regression": {"text": text, "label": float(i % 4)}, "multilabel": {"text": text, "labels": [words[i % 3]] if i % 5 else []},
            "mlm": {"text": text + " " + text}}[recipe]


@pytest.mark.parametrize("recipe, extra", [
    ("regression", ["--text-column", "text", "--set", "data.text_pair_column=null"]),
    ("multilabel", []),
    ("mlm", []),
])
def test_other_text_families_predict_alike_in_onnx(recipe, extra, tiny_models, tmp_path, cli):
    from tests.conftest import write_jsonl

    files = {split: write_jsonl(tmp_path / f"{split}.jsonl", [family_rows(recipe, i) for i in range(n)]) for split, n in (("train", 40), ("test", 12))}
    out = tmp_path / "run"
    assert call(["finetune", recipe, "--model", tiny_models["bert"], "--train", files["train"], "--test", files["test"], *extra,
                 "--max-steps", "3", "--batch-size", "8", "--max-length", "32", "-o", out, "--quiet"]) == 0
    code, _, err = cli("export", out, "--format", "onnx", "--rows", "12")
    assert code == 0, err
    texts = ["good film and [MASK] music", "the plot was [MASK]"]
    results = []
    for runtime in ("torch", "onnx"):
        code, stdout, err = cli("predict", out, *[a for t in texts for a in ("--text", t)], "--runtime", runtime)
        assert code == 0, err
        results.append([json.loads(x) for x in stdout.splitlines()])
    assert len(results[0]) == 2 and close(results[0], results[1]), (results[0], results[1])


def test_a_lora_run_exports_its_merged_model(tiny_models, sentiment_files, tmp_path, cli):
    out = tmp_path / "lora"
    assert call(["finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"], "--test", sentiment_files["test"],
                 "--lora", "--max-steps", "4", "-o", out, "--quiet"]) == 0
    assert (out / "adapter").is_dir() and not (out / "model").exists()
    code, _, err = cli("export", out, "--format", "onnx", "--rows", "16")
    assert code == 0, err
    assert json.loads((out / "onnx" / "parity.json").read_text())["runtimes"]["onnx"]["label_agreement"] == 1.0
    args = ["predict", out, *[a for t in TEXTS for a in ("--text", t)]]
    (code, torch_out, err), (code2, onnx_out, err2) = cli(*args), cli(*args, "--runtime", "onnx")
    assert code == code2 == 0, err + err2
    assert close([json.loads(x) for x in torch_out.splitlines()], [json.loads(x) for x in onnx_out.splitlines()])
