"""Config and YAML input that is hostile or out of range: refused in one line, exit 2, fast.

Two classes: resource bombs (YAML aliases that expand to billions of values, oversized or too
deep files, values echoed whole into a message) and numbers no library can take (a seed below 0,
a batch of 1e20), each checked when the config loads, before anything is read or created.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
import typing
from pathlib import Path

import pytest

from conftest import write_jsonl
from ftkit.bounded import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES, shown
from ftkit.checks import COUNT, RANGES, SEED, SIZE
from ftkit.config_load import all_keys, from_dict, load_yaml_file, parse_set
from ftkit.errors import FtkitError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE = {"name": "x", "task": "sequence-classification", "model": "m"}
ROWS = [{"text": "a great film", "label": "positive"}, {"text": "a dull film", "label": "negative"}] * 4
HUGE = str(10**20)


def laughs(levels: int) -> str:
    """A YAML flow list of `levels` anchors, each nine uses of the one before: 9**levels values."""
    parts = ["&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    parts += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


def one_line(code: int, out: str, err: str) -> str:
    """The single `error: ...` line of an exit-2 refusal, short and with nothing on stdout."""
    lines = err.splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and lines[0].startswith("error: "), (code, err[:500])
    assert len(lines[0]) < 1000, f"{len(lines[0])} characters: a user value was echoed whole"
    return lines[0]


def error_of(fn, *args) -> str:  # noqa: ANN001, ANN002
    with pytest.raises(FtkitError) as info:
        fn(*args)
    assert info.value.exit_code == 2
    return info.value.message


# ---------------------------------------------------------------------------- YAML bombs


def test_alias_bomb_recipe_is_refused_in_a_blink(cli, tmp_path):
    """531,441 values from 230 bytes: before, a 4 MB error line (and 60 s, GBs at 9 levels)."""
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(f"name: bomb\nmodel: m\ntask: {laughs(6)}\n", encoding="utf-8")
    started = time.monotonic()
    line = one_line(*cli("finetune", recipe, "--output-dir", tmp_path / "out"))
    assert time.monotonic() - started < 10
    assert str(recipe) in line and "refused" in line and f"more than {MAX_YAML_NODES:,} values" in line and "aliases" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("levels", [6, 9, 12])
def test_the_loader_refuses_an_expansion_before_building_it(tmp_path, levels):
    """9**12 values through aliases (shared, so cheap to compose): counted, never built."""
    path = tmp_path / "bomb.yaml"
    path.write_text(f"description: {laughs(levels)}\n", encoding="utf-8")
    started = time.monotonic()
    assert "refused" in error_of(load_yaml_file, path)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("a: " + "[" * (MAX_YAML_DEPTH + 5) + "]" * (MAX_YAML_DEPTH + 5) + "\n", f"deeper than {MAX_YAML_DEPTH} levels"),
        ("a: " + "[" * 100_000 + "\n", f"deeper than {MAX_YAML_DEPTH} levels"),
        ("a: &a [*a]\n", "an alias holds itself"),
        ("a: &a {b: *a}\n", "an alias holds itself"),
        # a shared node measured shallow, then used deep: the depth counts where it is used
        ("x: &x " + "[" * 40 + "1" + "]" * 40 + "\ny: " + "[" * 20 + "*x" + "]" * 20 + "\n", "deeper than"),
        ("labels: [" + ", ".join(["a"] * (MAX_YAML_NODES + 1)) + "]\n", f"more than {MAX_YAML_NODES:,} values"),
        ("description: " + "x" * MAX_YAML_BYTES + "\n", f"larger than {MAX_YAML_BYTES:,} bytes"),
        ("a: *" + "z" * 50_000 + "\n", "found undefined alias"),
    ],
    ids=["deep", "deep-unclosed", "self-list", "self-mapping", "shared-deep", "many-values", "big-file", "long-alias"],
)
def test_yaml_beyond_the_bounds_is_one_short_line(tmp_path, text, fragment):
    path = tmp_path / "mine.yaml"
    path.write_text(text, encoding="utf-8")
    message = error_of(load_yaml_file, path)
    assert message.startswith(f"{path}: ") and fragment in message and len(message) < 600, message[:600]


def test_yaml_within_the_bounds_still_loads(tmp_path):
    """A long labels list, a merge key and a 40-level list are ordinary YAML, not bombs."""
    path = tmp_path / "ok.yaml"
    labels = [f"l{i}" for i in range(5000)]
    deep = "[" * 40 + "1" + "]" * 40
    path.write_text(f"labels: [{', '.join(labels)}]\nbase: &b {{x: 1}}\nc: {{<<: *b, y: 2}}\nd: {deep}\n", encoding="utf-8")
    data = load_yaml_file(path)
    assert data["labels"] == labels and data["c"] == {"x": 1, "y": 2}


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    """Opening a FIFO for reading blocks until a writer comes: refuse it before opening."""
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    result: list[str] = []

    def load() -> None:
        try:
            load_yaml_file(fifo)
        except FtkitError as err:
            result.append(err.message)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():  # release the blocked reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert result == [f"{fifo}: not a regular file; give a YAML file"]


@pytest.fixture
def bomb_run(tmp_path, tiny_models) -> Path:
    """A downloaded 'run folder': a real model/, and a config.yaml that is an alias bomb."""
    run = tmp_path / "run"
    shutil.copytree(tiny_models["bert"], run / "model")
    (run / "config.yaml").write_text(f"name: x\nmodel: m\ntask: {laughs(7)}\n", encoding="utf-8")
    return run


@pytest.mark.parametrize("command", ["predict", "evaluate", "runs show"])
def test_alias_bomb_in_a_runs_config_is_refused(cli, tmp_path, bomb_run, command):
    texts = tmp_path / "in.txt"
    texts.write_text("a great film\n", encoding="utf-8")
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    args = {"predict": ["predict", bomb_run, texts], "evaluate": ["evaluate", bomb_run, "--data", data], "runs show": ["runs", "show", bomb_run]}[command]
    started = time.monotonic()
    line = one_line(*cli(*args))
    assert time.monotonic() - started < 10
    assert str(bomb_run / "config.yaml") in line and "refused" in line


# ---------------------------------------------------------------------------- values in messages


def test_shown_is_bounded_for_a_billion_shared_items():
    inner = ["lol"] * 1000
    billion = [[inner] * 1000] * 1000
    started = time.monotonic()
    texts = [shown(billion), shown({i: billion for i in range(1000)}), shown("x" * 10**7), shown(10**5000), shown(b"\0" * 10**6)]
    assert time.monotonic() - started < 0.5
    assert all(len(t) <= 500 for t in texts), [len(t) for t in texts]
    assert shown("three") == "'three'" and shown(10**400) == repr(10**400)  # short values stay whole


@pytest.mark.parametrize(
    "extra",
    [
        {"task": [[["lol"] * 100] * 100] * 100},  # Literal key: was `got {value!r}` and closest(str(value))
        {"train": {"seed": [["x"] * 1000] * 1000}},
        {"train": {"learning_rate": "y" * 100_000}},
        {"generation": {"do_sample": "n" * 100_000}},
        {"name": "z " * 50_000},
        {"expect": {"accuracy": ">" * 100_000}},
        {"expect": {"k" * 100_000: [1]}},
        {"data": {"labels": ["a"] * 50_000}},
        {"train": {"checkpoint_every": "9" * 100_000}},
        {"q" * 100_000: 1},
    ],
    ids=["task", "seed", "learning_rate", "do_sample", "name", "expect-bar", "expect-key", "labels", "checkpoint_every", "unknown-key"],
)
def test_type_and_check_errors_show_a_bounded_value(extra):
    started = time.monotonic()
    message = error_of(from_dict, {**BASE, **extra}, "r.yaml")
    assert time.monotonic() - started < 2
    assert message.startswith("r.yaml: ") and len(message) < 1000, message[:300]


def test_set_bomb_is_kept_as_text_and_refused_by_the_type_check(cli, tmp_path):
    """A --set value beyond the bounds is judged as the text typed (bounded by the shell)."""
    assert parse_set([f"task={laughs(9)}"]) == {"task": laughs(9)}
    line = one_line(*cli("finetune", "sentiment", "--set", f"task={laughs(9)}", "--output-dir", tmp_path / "out"))
    assert "'task' must be one of" in line and "'[&l0 [lol" in line


def test_set_key_and_pair_are_bounded():
    assert len(error_of(parse_set, ["k" * 100_000])) < 300
    from ftkit.config_load import resolve_key

    assert len(error_of(resolve_key, "k" * 100_000)) < 3000  # the list of valid keys is ftkit's own


# ---------------------------------------------------------------------------- numbers in range


def test_every_number_in_a_config_has_a_range():
    """A new int or float key must say its range in RANGES: nothing unchecked reaches a library."""
    numeric = {k for k, hint in all_keys().items() if {int, float} & ({hint} | set(typing.get_args(hint)))}
    assert numeric == set(RANGES)


def _setting(key: str, value: object) -> dict:
    """A config with `key` set to `value`, the rest chosen so no other check interferes."""
    data = {**BASE, "train": {"max_steps": 10}, "data": {"validation_fraction": 0.0}}  # epochs 0, test_fraction ~1
    section, _, name = key.rpartition(".")
    data[section] = {**data.get(section, {}), name: value}
    return data


@pytest.mark.parametrize("key", sorted(RANGES))
def test_each_range_refuses_just_outside_and_accepts_its_ends(key):
    allowed = RANGES[key]
    is_int = all_keys()[key] in (int, int | None)
    step = 1 if is_int else 1e-9
    outside = [allowed.low - step] + ([allowed.high + step] if math.isfinite(allowed.high) else [])
    outside += [allowed.low] if allowed.open_low else []
    outside += [allowed.high] if allowed.open_high else []
    for value in outside:
        message = error_of(from_dict, _setting(key, value), "r.yaml")
        assert f"'{key}' must " in message and f"got {shown(value)}" in message and "set it with" in message, message
    inside = [allowed.low + (step if allowed.open_low else 0), min(allowed.high - (step if allowed.open_high else 0), 10**6)]
    for value in inside:
        assert from_dict(_setting(key, value), "r.yaml") is not None


NUMBER_CASES = [
    (["--seed", "-1"], "'train.seed' must not be negative, got -1", "--seed N"),
    (["--seed", str(SEED + 1)], f"'train.seed' must be at most {SEED}, got {SEED + 1}", "--seed N"),
    (["--batch-size", HUGE], f"'train.batch_size' must be at most {SIZE}, got {HUGE}", "--batch-size N"),
    (["--set", "batch_size=1.0e+20"], f"'train.batch_size' must be at most {SIZE}, got {HUGE}", "--batch-size N"),
    (["--max-steps", HUGE], f"'train.max_steps' must be at most {COUNT}, got {HUGE}", "--max-steps N"),
    (["--epochs", HUGE], f"'train.epochs' must be at most {COUNT}", "--epochs N"),
    (["--set", f"train.gradient_accumulation_steps={HUGE}"], "'train.gradient_accumulation_steps' must be at most", "--set train.gradient_accumulation_steps=N"),
    (["--set", f"train.logging_steps={HUGE}"], "'train.logging_steps' must be at most", "--set train.logging_steps=N"),
    (["--set", f"train.keep_checkpoints={HUGE}"], "'train.keep_checkpoints' must be at most", "--set train.keep_checkpoints=N"),
    (["--set", f"train.eval_batch_size={HUGE}"], "'train.eval_batch_size' must be at most", "--set train.eval_batch_size=N"),
    (["--set", f"data.max_train_samples={HUGE}"], "'data.max_train_samples' must be at most", "--set data.max_train_samples=N"),
    (["--set", "train.stride=-1"], "'train.stride' must not be negative, got -1", "--set train.stride=N"),
    (["--lora", "--lora-r", HUGE], f"'lora.r' must be at most {SIZE}", "--lora-r N"),
    (["--lora", "--lora-alpha", HUGE], f"'lora.alpha' must be at most {COUNT}", "--lora-alpha N"),
    (["--set", "generation.temperature=0"], "'generation.temperature' must be at least 0.01, got 0.0", "--set generation.temperature=0.7"),
    (["--set", "generation.num_beams=100000"], "'generation.num_beams' must be at most 1024, got 100000", "--set generation.num_beams=N"),
    (["--set", "generation.top_p=5"], "'generation.top_p' must be at most 1, got 5.0", "--set generation.top_p=0.9"),
    (["--set", f"generation.max_new_tokens={HUGE}"], "'generation.max_new_tokens' must be at most", "--set generation.max_new_tokens=N"),
    (["--set", "train.checkpoint_every=1" + "0" * 5000], "'train.checkpoint_every' must be a positive number of steps", "'100000000"),
    (["--set", "train.checkpoint_every=²"], "'train.checkpoint_every' must be a positive number of steps", "'²'"),
    (["--set", "train.warmup_ratio=-0.5"], "'train.warmup_ratio' must not be negative, got -0.5", "--set train.warmup_ratio=0.1"),
    (["--learning-rate", "-1"], "'train.learning_rate' must be positive, got -1.0", "--learning-rate 2e-5"),
]


@pytest.mark.parametrize("flags, fragment, fix", NUMBER_CASES, ids=[" ".join(f)[:40] for f, _, _ in NUMBER_CASES])
def test_out_of_range_numbers_exit_2_before_anything_is_made(cli, tmp_path, tiny_models, flags, fragment, fix):
    """Each was an internal error (exit 1) or a silent run; now one line naming key, value and fix."""
    train = write_jsonl(tmp_path / "train.jsonl", ROWS)
    out = tmp_path / "out"
    argv = ["finetune", "sentiment", "--model", tiny_models["bert"], "--train", train, "--text-column", "text", "--label-column", "label", "-o", out, "--quiet", *flags]
    line = one_line(*cli(*argv))
    assert fragment in line and fix in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    "flag, key, value, message",
    [
        ("--seed", "train.seed", -1, "--seed must not be negative, got -1"),
        ("--seed", "train.seed", SEED + 1, f"--seed must be at most {SEED}, got {SEED + 1}"),
        ("--num-beams", "generation.num_beams", 10**20, f"--num-beams must be at most 1024, got {10**20}"),
        ("--temperature", "generation.temperature", float("nan"), "--temperature must be a finite number, got nan"),
        ("--top-p", "generation.top_p", float("inf"), "--top-p must be a finite number, got inf"),
    ],
)
def test_check_flag_holds_a_flag_to_its_keys_range(flag, key, value, message):
    """For commands whose flags stand for config keys (predict, evaluate): the same bounds."""
    from ftkit.checks import check_flag

    assert error_of(check_flag, flag, key, value) == message
    check_flag(flag, key, None)
    check_flag(flag, key, RANGES[key].high if math.isfinite(RANGES[key].high) else 1)


def test_a_recipe_number_out_of_range_names_the_file(cli, tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("name: mine\ntask: sequence-classification\nmodel: m\ntrain:\n  batch_size: 1.0e+20\n", encoding="utf-8")
    line = one_line(*cli("finetune", recipe, "-o", tmp_path / "out"))
    assert line.startswith(f"error: {recipe}: 'train.batch_size' must be at most {SIZE}, got {HUGE}")
