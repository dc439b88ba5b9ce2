"""A fifth task family is one module plus one registry line: tests/toy_regression.py (text
regression) registered as "text-regression" trains, evaluates, predicts, resumes, trains a LoRA
adapter and writes its card through the real CLI, with nothing in ftkit/ naming it. Also: every
family answers every member of the protocol, no family name is spelled outside ftkit/tasks/,
and no function in ftkit/ is longer than 80 lines."""

from __future__ import annotations

import ast
import json
import random
import signal
from pathlib import Path

import pytest

import ftkit.errors
import ftkit.tasks
from conftest import FILLER, POSITIVE, ROOT, call, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILY = "text-regression"
TIMING_KEYS = {"runtime_s", "samples_per_second", "eval_runtime_s"}
STEPS = 100  # 40 training rows / batch 4 * 10 epochs: enough for a tiny random BERT to learn the count
STOP_AT = 43  # inside the fifth epoch, between its checkpoints
LONGEST_FUNCTION = 80


@pytest.fixture(scope="module", autouse=True)
def registered():
    """The one registry line. tests/ is on sys.path, so the module is importable as toy_regression."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(ftkit.tasks.FAMILY_MODULES, FAMILY, "toy_regression")
        yield


def sentence(rng: random.Random, positives: int) -> str:
    words = rng.sample(FILLER, rng.randint(2, 5)) + rng.sample(POSITIVE, positives)
    rng.shuffle(words)
    return " ".join(words)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """{"text", "score"} rows whose score is the number of positive words in the text."""
    root = tmp_path_factory.mktemp("regression-data")
    rng = random.Random(3)
    out = {}
    for split, n in (("train", 40), ("validation", 16), ("test", 16)):
        rows = []
        for i in range(n):
            k = i % 4
            rows.append({"text": sentence(rng, k), "score": float(k)})
        out[split] = write_jsonl(root / f"{split}.jsonl", rows)
    return out


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, tiny_models) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "toy-regression.yaml"
    path.write_text(f"""\
# ftkit finetune toy-regression.yaml --train train.jsonl --validation val.jsonl --test test.jsonl
name: toy-regression
description: Counts the positive words of a sentence (a family that lives in the tests).
task: {FAMILY}
model: {tiny_models["bert"]}
data:
  text_column: text
  label_column: score
train:
  epochs: 10
  batch_size: 4
  learning_rate: 3.0e-3
  warmup_ratio: 0.0
  max_length: 32
  seed: 0
  logging_steps: 1
metrics:
  primary: mse
  greater_is_better: false
""", encoding="utf-8")
    return path


def finetune(recipe: Path, files: dict[str, Path], out: Path, *extra, quiet: bool = True) -> list[str]:
    return ["finetune", str(recipe), "--train", str(files["train"]), "--validation", str(files["validation"]),
            "--test", str(files["test"]), "-o", str(out), *(["--quiet"] if quiet else []), *map(str, extra)]


@pytest.fixture(scope="module")
def run(recipe, files, tmp_path_factory) -> Path:
    """One finished run that the tests reading it share."""
    out = tmp_path_factory.mktemp("toy-run") / "run"
    assert call(finetune(recipe, files, out)) == 0
    return out


def scores_of(path: Path) -> list[float]:
    return [json.loads(line)["score"] for line in path.read_text(encoding="utf-8").splitlines()]


def predicted(cli, model: Path, data: Path, tmp_path: Path, *extra) -> list[dict]:
    out_file = tmp_path / f"pred-{model.name}.jsonl"
    code, _, err = cli("predict", model, data, "--output", out_file, *extra)
    assert code == 0, err
    return [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ train, card, pipeline


def test_trains_and_its_metrics_come_from_its_predictions(run, files, cli, tmp_path):
    """metrics.json's test section is mse/mae/pearson of what `predict` gives on the test file; and
    the model learned (it beats predicting the mean: mse below the targets' variance)."""
    import numpy as np

    test = metrics_of(run)["test"]
    assert test["samples"] == 16
    rows = predicted(cli, run, files["test"], tmp_path, "--batch-size", "5")
    assert all(set(r) == {"score"} and isinstance(r["score"], float) for r in rows)
    p, t = np.array([r["score"] for r in rows]), np.array(scores_of(files["test"]))
    assert test["mse"] == pytest.approx(float(np.mean((p - t) ** 2)), rel=1e-4, abs=1e-6)
    assert test["mae"] == pytest.approx(float(np.mean(np.abs(p - t))), rel=1e-4, abs=1e-6)
    assert test["pearson"] == pytest.approx(float(np.corrcoef(p, t)[0, 1]), abs=1e-4)
    assert test["mse"] < float(np.var(t))


def test_best_model_is_the_lowest_validation_mse(run):
    """metrics.primary mse with greater_is_better false: the kept evaluation is the lowest one."""
    evals = [json.loads(line) for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    evals = [r for r in evals if r.get("type") == "eval" and r["split"] == "validation"]
    assert len(evals) == 10
    best = min(evals, key=lambda r: r["mse"])
    assert best["mse"] < max(r["mse"] for r in evals)
    assert metrics_of(run)["validation"]["step"] == best["step"]
    assert metrics_of(run)["validation"]["mse"] == best["mse"]


def test_card_carries_the_family_texts_and_hub_metrics(run):
    import toy_regression
    import yaml

    card = (run / "model" / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["metrics"] == ["mse", "mae", "pearsonr"]
    assert meta["pipeline_tag"] == "text-classification"
    assert "Predicts a numeric score (`score`) for a text." in card
    assert "text column `text`, score column `score`" in card
    assert 'function_to_apply="none"' in card and toy_regression.usage(None).example in card
    assert f"plots/{toy_regression.PLOT}" in card and (run / "model" / "plots" / toy_regression.PLOT).is_file()


def test_pipeline_loads_the_model_folder(run):
    """transformers.pipeline serves the saved model as the card says, with the scores the family's
    predictor gives."""
    import toy_regression
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    pipe = pipeline("text-classification", model=str(run / "model"), function_to_apply="none")
    texts = ["great superb the film", "the plot was very"]
    from_pipe = [r["score"] for r in pipe(texts)]
    model = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(run / "model")

    class Options:
        max_length = 32

    direct = [r["score"] for r in toy_regression.predictor(model, tokenizer, Options())([{"text": t} for t in texts])]
    assert from_pipe == pytest.approx(direct, abs=1e-5)
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"


# ------------------------------------------------------------------------------ evaluate and predict


def test_evaluate_gives_the_test_metrics(run, files, cli, tmp_path):
    out_file = tmp_path / "eval.json"
    code, out, err = cli("evaluate", run, "--data", files["test"], "--output", out_file)
    assert code == 0, err
    scored = json.loads(out_file.read_text(encoding="utf-8"))
    test = metrics_of(run)["test"]
    assert scored["samples"] == test["samples"] == 16
    for key in ("mse", "mae", "pearson"):
        assert scored[key] == pytest.approx(test[key], rel=1e-4, abs=1e-6), key


def test_predict_lines_are_scores_the_model_gives(run, files, cli, tmp_path):
    """One {"score"} line per input, in order, equal to the saved model's own output."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = [json.loads(line)["text"] for line in files["validation"].read_text(encoding="utf-8").splitlines()]
    rows = predicted(cli, run, files["validation"], tmp_path, "--batch-size", "3")
    assert len(rows) == len(texts) and all(list(r) == ["score"] for r in rows)
    model = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    with torch.inference_mode():  # one text at a time: no padding at all
        expected = [model(**tokenizer(t, truncation=True, max_length=32, return_tensors="pt")).logits.item() for t in texts]
    assert [r["score"] for r in rows] == pytest.approx(expected, abs=1e-5)
    code, out, err = cli("predict", run, "--text", texts[0])
    assert code == 0, err
    assert json.loads(out)["score"] == pytest.approx(expected[0], abs=1e-5)


def test_family_refuses_settings_that_do_not_apply(recipe, files, cli, tmp_path):
    """The family's check_config runs at load time: another family's setting is refused at once;
    class weights by the family's CLASS_WEIGHTS = False."""
    code, _, err = cli(*finetune(recipe, files, tmp_path / "run", "--set", "data.labels=[low,high]"))
    assert code == 2 and "'data.labels' does not apply to text-regression recipes" in err
    code, _, err = cli(*finetune(recipe, files, tmp_path / "run", "--class-weights", "balanced"))
    assert code == 2 and "'train.class_weights' applies to" in err and "not text-regression" in err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ resume


def test_stopped_run_resumes_to_the_uninterrupted_metrics(run, recipe, files, cli, tmp_path, monkeypatch):
    """SIGINT at step STOP_AT (raised by the loss itself: no race with a fast run) checkpoints and
    exits 130; --resume ends with the uninterrupted run's metrics and weights."""
    import toy_regression
    from safetensors.torch import load_file

    from ftkit.tasks.family import Loss

    def stopping(prepared, config):
        loss, calls = toy_regression.model_loss(toy_regression.META_KEYS), []

        def compute(forward, batch):
            calls.append(1)
            if len(calls) == STOP_AT:
                signal.raise_signal(signal.SIGINT)  # as Ctrl-C during this step
            return loss.compute(forward, batch)

        return Loss(compute)

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(toy_regression, "training_loss", stopping)
        code, _, err = cli(*finetune(recipe, files, out))
    assert code == 130, err
    assert f"stopped by SIGINT at step {STOP_AT}" in err and not (out / "metrics.json").exists()
    code, _, err = cli(*finetune(recipe, files, out, "--resume", quiet=False))
    assert code == 0, err
    assert f"resuming from {out / 'checkpoints' / f'step-{STOP_AT}'} (step {STOP_AT} of {STEPS})" in " ".join(err.split())
    strip = lambda m: {**m, "train": {k: v for k, v in m["train"].items() if k not in TIMING_KEYS}}  # noqa: E731
    assert strip(metrics_of(out)) == strip(metrics_of(run))
    resumed, whole = (load_file(str(r / "model" / "model.safetensors")) for r in (out, run))
    assert resumed.keys() == whole.keys() and all(bool((resumed[k] == whole[k]).all()) for k in whole)


# ------------------------------------------------------------------------------ LoRA


def test_lora_trains_and_the_adapter_predicts(recipe, files, cli, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "lora"
    code, _, err = cli(*finetune(recipe, files, out, "--lora", "--merge", "--lora-r", "4", "--lora-alpha", "8", "--lora-dropout", "0.0"))
    assert code == 0, err
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert any("lora_A" in k for k in adapter) and any("classifier" in k for k in adapter)  # the new head trains in full
    assert max(float(t.abs().max()) for k, t in adapter.items() if "lora_B" in k) > 0  # lora_B starts at 0: it trained
    from_adapter = predicted(cli, out / "adapter", files["test"], tmp_path)
    from_model = predicted(cli, out, files["test"], tmp_path)
    assert len(from_adapter) == 16 and all(list(r) == ["score"] for r in from_adapter)
    assert [r["score"] for r in from_adapter] == pytest.approx([r["score"] for r in from_model], abs=1e-5)
    train = metrics_of(out)["train"]
    assert 0 < train["trainable_parameters"] < train["parameters"]  # the adapter and the head, not the body


# ------------------------------------------------------------------------------ the code itself


def test_every_family_answers_every_member():
    import toy_regression

    from ftkit.tasks.family import MEMBERS

    modules = {**ftkit.tasks.families(), "toy_regression": toy_regression}
    assert FAMILY in ftkit.tasks.families()  # registered by the one line above
    missing = {name: [m for m in MEMBERS if not hasattr(module, m)] for name, module in modules.items()}
    assert not any(missing.values()), "members missing:\n" + "\n".join(f"{n}: {', '.join(m)}" for n, m in missing.items() if m)
    assert len(MEMBERS) > 20  # the protocol is read, not an empty tuple



def test_a_module_lacking_members_is_refused_by_name(recipe, files, cli, monkeypatch, tmp_path):
    """A family under construction fails at once, naming what it lacks, before any work."""
    monkeypatch.setitem(ftkit.tasks.FAMILY_MODULES, "half-done", "string")  # a module with none of the members
    with pytest.raises(ftkit.errors.FtkitError, match=r"task family 'half-done' \(string\) lacks AUTO_MODEL, ARCHITECTURES, .*usage"):
        ftkit.tasks.get_task("half-done")
    half = tmp_path / "half.yaml"
    half.write_text(Path(recipe).read_text().replace(f"task: {FAMILY}", "task: half-done"))
    code, _, err = cli("finetune", half, "--train", files["train"], "-o", tmp_path / "out")
    assert code == 2 and "lacks AUTO_MODEL" in err and not (tmp_path / "out").exists(), err

def sources() -> list[Path]:
    found = sorted((ROOT / "ftkit").rglob("*.py"))
    assert len(found) > 20
    return found


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (a bare string expression statement)."""
    return {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}


def test_no_family_name_outside_ftkit_tasks():
    names = set(ftkit.tasks.FAMILY_MODULES) - {FAMILY}
    found = []
    for path in sources():
        if (ROOT / "ftkit" / "tasks") in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = docstrings(tree)
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names and id(node) not in skip]
    assert not found, "family names outside ftkit/tasks/:\n" + "\n".join(found)


def test_no_function_longer_than_80_lines():
    long = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, "functions over 80 lines:\n" + "\n".join(long)
