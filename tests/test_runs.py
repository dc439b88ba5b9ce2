"""`ftkit runs show | compare` on real tiny runs (made once, through the real CLI) and on
hand-made folders for the cases a run leaves behind when it stops: a checkpoint and a log but
no metrics, a damaged file, a folder that is not a run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_startup import PROBE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COMMON = ["--batch-size", "16", "--learning-rate", "3e-3", "--quiet"]
# a/run trains long enough to learn the fixture task, b/run not: the best marks must go to a/run.
# b/run also changes a setting that is no key row (logging_steps): it must show as a difference.
RUNS = {
    "a/run": ["--epochs", "8", "--seed", "1"],
    "b/run": ["--epochs", "2", "--seed", "2", "--set", "train.logging_steps=5"],
}


@pytest.fixture(scope="module")
def runs(tiny_models, sentiment_files, tmp_path_factory) -> dict[str, Path]:
    from ftkit.cli import main

    root = tmp_path_factory.mktemp("runs")
    data = ["--train", sentiment_files["train"], "--validation", sentiment_files["validation"], "--test", sentiment_files["test"]]
    out = {}
    for name, extra in RUNS.items():
        try:
            main(["finetune", "sentiment", "--model", str(tiny_models["bert"]), *map(str, data), "--output-dir", str(root / name), *COMMON, *extra])
        except SystemExit as exit_:
            assert exit_.code in (0, None), f"finetune {name} exited {exit_.code}"
        out[name] = root / name
    return out


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def num(value, digits: int = 4) -> str:
    """How the tables print a number."""
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def rich_rows(out: str) -> tuple[list[str], dict[str, list[str]]]:
    """(header cells, {row label: cells}) of the Rich tables in `out` (later tables win).

    A long value folds onto the next lines (label cell empty): its pieces are joined, so
    compare such values with their spaces removed."""
    header, rows, last = [], {}, None
    for line in out.splitlines():
        if line.startswith("┃"):
            header = [c.strip() for c in line.strip("┃").split("┃")]
        elif line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            if cells[0] or last is None:
                last = cells[0]
                rows[last] = cells[1:]
            else:
                rows[last] = [a + b for a, b in zip(rows[last], cells[1:])]
        else:
            last = None
    return header, rows


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def markdown_rows(out: str, columns: int) -> tuple[list[str], dict[str, list[str]]]:
    """Parse a GitHub table; every line of it has `columns` cells (plus the label)."""
    lines = [line for line in out.splitlines() if line.startswith("|")]
    parsed = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
    assert all(len(cells) == columns + 1 for cells in parsed), "a row with the wrong number of cells"
    assert all(re.fullmatch(r"-+:?", c) for c in parsed[1]), "the second line must be the separator"
    return parsed[0], {cells[0]: cells[1:] for cells in parsed[2:]}


def error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ------------------------------------------------------------------------------- show


def test_show_prints_the_run(runs, cli, sentiment_files):
    run = runs["a/run"]
    code, out, err = cli("runs", "show", run)
    assert code == 0, err
    metrics = metrics_of(run)
    _, rows = rich_rows(out)
    assert rows["recipe"] == ["sentiment"] and rows["task family"] == ["sequence-classification"]
    assert rows["status"] == ["finished"]
    files = ", ".join(f"{s}: {sentiment_files[s]}" for s in ("train", "validation", "test"))
    assert squeeze(rows["data"][0]) == squeeze(files)
    best = metrics["validation"]
    assert rows["best step"][0].startswith(f"{best['step']} (epoch {best['epoch']:.2f}), validation accuracy {best['accuracy']:.4f}")
    assert rows["epochs"] == ["8"] and rows["seed"] == ["1"] and rows["learning_rate"] == ["0.003"]
    # the metrics table: primary first, validation and test columns equal to metrics.json
    table = out[out.index("metrics"):]
    first_metric = next(line for line in table.splitlines() if line.startswith("│"))
    assert first_metric.split("│")[1].strip() == "accuracy (primary)"
    for key in ("precision", "recall", "f1", "loss", "samples"):
        assert rows[key] == [num(metrics["validation"][key]), num(metrics["test"][key])], key
    assert rows["accuracy (primary)"] == [num(metrics["validation"]["accuracy"]), num(metrics["test"]["accuracy"])]
    # per-class tables, the test one printed last
    for name in ("negative", "positive"):
        scores = metrics["test"]["per_class"][name]
        assert rows[name] == [num(scores["precision"]), num(scores["recall"]), num(scores["f1"]), str(scores["support"])]
    train = metrics["train"]
    assert rows["steps"] == [str(train["steps"])] and rows["samples/s"] == [f"{train['samples_per_second']:.1f}"]
    assert rows["train loss"][0].startswith(f"{train['loss']:.4f} mean over the run")
    assert rows["epochs trained"] == [f"{train['epochs']:.2f}"]
    assert {"config.yaml", "log.jsonl", "metrics.json", "model/"} <= set(rows)
    if (run / "plots").is_dir():
        for png in (run / "plots").glob("*.png"):
            assert png.name in rows["plots/"][0]


def test_show_lists_the_settings_a_run_changed(runs, cli):
    """Beyond the key settings, `show` lists every train/lora key off ftkit's default, and no other."""
    code, out, err = cli("runs", "show", runs["b/run"])
    assert code == 0, err
    _, rows = rich_rows(out)
    assert rows["train.logging_steps"] == ["5"]
    assert "train.group_by_length" not in rows and "lora.enabled" not in rows  # defaults stay quiet


def test_show_unfinished_run(runs, cli, tmp_path):
    run = unfinished(runs["b/run"], tmp_path / "stopped")
    code, out, err = cli("runs", "show", run)
    assert code == 0, err
    _, rows = rich_rows(out)
    resume = f"ftkit finetune {run / 'config.yaml'} --resume {run}"
    assert squeeze(rows["status"][0]) == squeeze(f"unfinished: latest checkpoint at step 10; continue with: {resume}")
    last = [r for r in read_log(runs["b/run"]) if r["type"] == "eval" and r["step"] <= 10][-1]
    assert f"last validation (step {last['step']}" in out
    assert rows["accuracy"] == [num(last["accuracy"])] and rows["loss"] == [num(last["loss"])]
    assert "metrics.json" not in rows and "checkpoints/" in rows


def test_show_incomplete_run(runs, cli, tmp_path):
    folder = tmp_path / "fresh"
    folder.mkdir()
    shutil.copy(runs["b/run"] / "config.yaml", folder)
    code, out, err = cli("runs", "show", folder)
    assert code == 0, err
    _, rows = rich_rows(out)
    assert squeeze(rows["status"][0]).startswith(squeeze("incomplete: no metrics.json and no checkpoint"))
    assert "metrics" not in rows and set(rows) >= {"config.yaml", "epochs", "seed"}


# ---------------------------------------------------------------------------- compare


def test_compare_table(runs, cli):
    a, b = runs["a/run"], runs["b/run"]
    code, out, err = cli("runs", "compare", a, b)
    assert code == 0, err
    header, rows = rich_rows(out)
    assert header == ["run", "a/run", "b/run"]  # equal folder names grow their parent
    assert rows["recipe"] == ["sentiment", "sentiment"]
    assert rows["epochs"] == ["8", "2"] and rows["seed"] == ["1", "2"] and rows["learning_rate"] == ["0.003", "0.003"]
    assert rows["batch_size"] == ["16", "16"] and rows["gradient_accumulation_steps"] == ["1", "1"]
    assert rows["train.logging_steps"] == ["10", "5"]  # differs: shown although no key row
    assert "data.train" not in rows and "train.stride" not in rows  # equal: left out
    ma, mb = metrics_of(a)["test"], metrics_of(b)["test"]  # every run has test: test is the default
    assert "metrics of the test split" in out
    for key in ("accuracy", "precision", "recall", "f1", "loss", "samples"):
        label = "accuracy (primary)" if key == "accuracy" else key
        assert rows[label] == [num(ma[key]), num(mb[key])], key
    for name in ("negative", "positive"):
        assert rows[f"per_class.{name}.f1"] == [num(ma["per_class"][name]["f1"]), num(mb["per_class"][name]["f1"])]
    ta, tb = metrics_of(a)["train"], metrics_of(b)["train"]
    assert rows["runtime (s)"] == [f"{ta['runtime_s']:.1f}", f"{tb['runtime_s']:.1f}"]
    assert rows["samples/s"] == [f"{ta['samples_per_second']:.1f}", f"{tb['samples_per_second']:.1f}"]
    assert rows["steps"] == [str(ta["steps"]), str(tb["steps"])]
    labels = list(rows)
    assert labels.index("accuracy (primary)") < labels.index("precision") < labels.index("per_class.negative.f1") < labels.index("samples/s")


def test_compare_marks_the_best_in_rich(runs, cli, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "250")
    code, out, err = cli("runs", "compare", runs["a/run"], runs["b/run"])
    assert code == 0, err
    ma, mb = metrics_of(runs["a/run"])["test"], metrics_of(runs["b/run"])["test"]
    assert ma["accuracy"] > mb["accuracy"], "the 8-epoch run should beat the 2-epoch one"
    line = next(line for line in out.splitlines() if "accuracy (primary)" in line)
    bold = re.findall(r"\x1b\[[0-9;]*1;32m([^\x1b]+)\x1b", line) or re.findall(r"\x1b\[[0-9;]*32m([^\x1b]+)\x1b", line)
    assert [cell.strip() for cell in bold] == [num(ma["accuracy"])]


def test_compare_markdown(runs, cli):
    a, b = runs["a/run"], runs["b/run"]
    code, out, err = cli("runs", "compare", b, a, "--markdown")
    assert code == 0, err
    assert "\x1b" not in out
    header, rows = markdown_rows(out, columns=2)
    assert header == ["run", "b/run", "a/run"]
    mb, ma = metrics_of(b)["test"], metrics_of(a)["test"]
    for key, label, lower in (("accuracy", "accuracy (primary)", False), ("f1", "f1", False), ("loss", "loss", True)):
        values = [mb[key], ma[key]]
        best = (min if lower else max)(values)
        expected = [f"**{num(v)}**" if num(v) == num(best) and num(values[0]) != num(values[1]) else num(v) for v in values]
        assert rows[label] == expected, label
    assert rows["samples"] == ["48", "48"]  # a count: never marked
    assert rows["epochs"] == ["2", "8"]  # settings: never marked
    assert "Metrics of the test split" in out


def test_compare_split_option_and_default(runs, cli, tmp_path):
    a, b = runs["a/run"], runs["b/run"]
    code, out, _ = cli("runs", "compare", a, b, "--split", "validation", "--markdown")
    assert code == 0
    _, rows = markdown_rows(out, columns=2)
    va, vb = metrics_of(a)["validation"], metrics_of(b)["validation"]
    assert [c.strip("*") for c in rows["loss"]] == [num(va["loss"]), num(vb["loss"])]
    assert rows["best step"] == [str(va["step"]), str(vb["step"])]
    # a run without test metrics: the default falls back to validation, where every run has numbers
    no_test = copy_run(b, tmp_path / "no-test")
    metrics = metrics_of(no_test)
    del metrics["test"]
    (no_test / "metrics.json").write_text(json.dumps(metrics))
    code, out, _ = cli("runs", "compare", a, no_test, "--markdown")
    assert code == 0 and "Metrics of the validation split" in out
    _, rows = markdown_rows(out, columns=2)
    assert [c.strip("*") for c in rows["f1"]] == [num(va["f1"]), num(metrics["validation"]["f1"])]
    code, out, _ = cli("runs", "compare", a, no_test, "--split", "test", "--markdown")
    _, rows = markdown_rows(out, columns=2)
    assert rows["f1"] == [num(metrics_of(a)["test"]["f1"]), "-"]  # one value: nothing to mark


def test_compare_lower_is_better_primary(runs, cli, tmp_path):
    """A recipe whose primary metric is a loss marks the lowest value, as its config says."""
    folders = []
    for name in ("a/run", "b/run"):
        folder = copy_run(runs[name], tmp_path / name.replace("/", "-"))
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config["metrics"].update(primary="loss", greater_is_better=False)
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        folders.append(folder)
    code, out, err = cli("runs", "compare", *folders, "--markdown")
    assert code == 0, err
    _, rows = markdown_rows(out, columns=2)
    losses = [metrics_of(f)["test"]["loss"] for f in folders]
    labels = list(rows)
    assert labels.index("loss (primary)") < labels.index("accuracy")  # the primary comes first
    assert rows["loss (primary)"] == [f"**{num(v)}**" if v == min(losses) else num(v) for v in losses]
    assert rows["accuracy"][0].startswith("**")  # a/run learnt the task: the best accuracy too
    assert "metrics.primary" not in rows  # equal in both: not a difference


def test_compare_different_recipes_and_unfinished(runs, cli, tmp_path):
    """A NER run beside a sentiment run: each one's rows, '-' where a run has no such metric."""
    ner = copy_run(runs["b/run"], tmp_path / "ner")
    config = yaml.safe_load((ner / "config.yaml").read_text())
    config.update(name="ner", task="token-classification")
    config["metrics"].update(primary="f1")
    (ner / "config.yaml").write_text(yaml.safe_dump(config))
    scores = {"precision": 0.8, "recall": 0.7, "f1": 0.75, "accuracy": 0.9, "samples": 40, "entities": 55,
              "per_type": {"PER": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 30}}, "loss": 0.4}
    metrics = metrics_of(ner)
    metrics.update(validation={**scores, "step": 10, "epoch": 1.0}, test=scores)
    (ner / "metrics.json").write_text(json.dumps(metrics))
    stopped = unfinished(runs["b/run"], tmp_path / "stopped")
    code, out, err = cli("runs", "compare", runs["a/run"], ner, stopped, "--markdown")
    assert code == 0, err
    _, rows = markdown_rows(out, columns=3)
    ma = metrics_of(runs["a/run"])["test"]
    assert rows["recipe"] == ["sentiment", "ner", "sentiment"]
    assert rows["status"] == ["finished", "finished", "unfinished (step 10)"]
    assert [c.strip("*") for c in rows["accuracy (primary)"]] == [num(ma["accuracy"]), "0.9000", "-"]
    assert [c.strip("*") for c in rows["f1 (primary)"]] == [num(ma["f1"]), "0.7500", "-"]
    assert rows["per_type.PER.f1"] == ["-", "0.8500", "-"]
    assert rows["per_class.positive.f1"][1:] == ["-", "-"]
    assert rows["entities"] == ["-", "55", "-"]
    assert rows["metrics.primary"] == ["accuracy", "f1", "accuracy"]  # a differing key of the config


def test_values_print_as_written(runs, cli, tmp_path):
    """Paths and names come from files: Rich must not read '[red]' in them as markup."""
    odd = copy_run(runs["b/run"], tmp_path / "odd[red]run")
    config = yaml.safe_load((odd / "config.yaml").read_text())
    config["model"] = "org/model[red]x"
    (odd / "config.yaml").write_text(yaml.safe_dump(config))
    code, out, err = cli("runs", "compare", runs["a/run"], odd)
    assert code == 0, err
    header, rows = rich_rows(out)
    assert header[-1] == "odd[red]run" and rows["model"][-1] == "org/model[red]x"
    code, out, err = cli("runs", "show", odd)
    assert code == 0, err
    assert "org/model[red]x" in out and f"run {odd}" in out


# ----------------------------------------------------------------------------- errors


def test_errors_are_one_line_with_the_fix(runs, cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    many = tmp_path / "many"  # a folder of run folders
    copy_run(runs["a/run"], many / "x")
    copy_run(runs["b/run"], many / "y")
    damaged = copy_run(runs["a/run"], tmp_path / "damaged")
    (damaged / "metrics.json").write_text('{"train": {"loss": 0.3')
    bad_yaml = copy_run(runs["a/run"], tmp_path / "bad-yaml")
    (bad_yaml / "config.yaml").write_text("name: sentiment\ntrain: [unclosed\n")
    unknown = copy_run(runs["a/run"], tmp_path / "unknown-key")
    (unknown / "config.yaml").write_text((unknown / "config.yaml").read_text() + "nonsense: 1\n")
    not_dict = copy_run(runs["a/run"], tmp_path / "not-dict")
    (not_dict / "metrics.json").write_text("[1, 2]")
    cases = [
        (("show", tmp_path / "missing"), [str(tmp_path / "missing"), "no such folder", "--output-dir"]),
        (("show", runs["a/run"] / "metrics.json"), ["is a file", str(runs["a/run"])]),
        (("show", empty), [str(empty), "not an ftkit run folder (no config.yaml)"]),
        (("show", many), [str(many), "not a run folder, but it holds 2", str(many / "x"), f"ftkit runs compare {many}/*"]),
        (("show", damaged), [str(damaged / "metrics.json"), "damaged (not valid JSON at line 1)", "--overwrite"]),
        (("compare", runs["b/run"], damaged), [str(damaged / "metrics.json"), "damaged"]),
        (("show", not_dict), [str(not_dict / "metrics.json"), "not an ftkit metrics file"]),
        (("show", bad_yaml), [str(bad_yaml / "config.yaml"), "invalid YAML", "repair it"]),
        (("show", unknown), [str(unknown / "config.yaml"), "unknown key 'nonsense'"]),
        (("compare", runs["a/run"]), ["two or more run folders", f"ftkit runs show {runs['a/run']}"]),
        (("compare", runs["a/run"], runs["a/run"]), ["given twice"]),
        (("compare", runs["a/run"], runs["b/run"], "--split", "train"), ["--split must be one of validation, test"]),
    ]
    for args, parts in cases:
        code, _, err = cli("runs", *args)
        line = error_line(err)
        assert code == 2, (args, err)
        for part in parts:
            assert part in line, (args, part, line)


def test_commands_do_not_import_torch(runs):
    for argv in (["runs", "compare", str(runs["a/run"]), str(runs["b/run"])], ["runs", "show", str(runs["a/run"])]):
        result = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], check=False, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith("HEAVY:"), result.stdout[-300:]
        assert "accuracy" in result.stdout


# ---------------------------------------------------------------------------- helpers


def copy_run(run: Path, dest: Path) -> Path:
    """config.yaml, metrics.json and log.jsonl of a run (model/ is not read by these commands)."""
    dest.mkdir(parents=True)
    for name in ("config.yaml", "metrics.json", "log.jsonl"):
        shutil.copy(run / name, dest / name)
    return dest


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def unfinished(run: Path, dest: Path) -> Path:
    """A run stopped after step 10: config.yaml, the log up to step 10 (plus a line cut by the
    kill) and checkpoints/step-10 with its trainer_state.json; no metrics.json, no model/."""
    dest.mkdir(parents=True)
    shutil.copy(run / "config.yaml", dest / "config.yaml")
    kept = [r for r in read_log(run) if r["step"] <= 10 and r.get("split") != "test"]
    assert any(r["type"] == "eval" for r in kept), "the fixture run evaluates by step 10"
    (dest / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"type": "train", "st')
    step = dest / "checkpoints" / "step-10"
    step.mkdir(parents=True)
    (step / "trainer_state.json").write_text(json.dumps({"step": 10, "epoch": 1, "best_step": 10}))
    (dest / "checkpoints" / "step-20.tmp").mkdir()  # a save cut by the kill: not a checkpoint
    return dest
