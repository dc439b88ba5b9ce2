"""The typed run config: building from YAML mappings, coercion, `--set` overrides and checks.

Every error case checks that the message names the key (or file) and the way out, since that
message is all a user sees.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from ftkit.config import DataConfig, RunConfig, TrainConfig
from ftkit.config_load import (
    all_keys,
    apply_overrides,
    coerce,
    from_dict,
    load_yaml_file,
    parse_set,
    resolve_key,
)
from ftkit.checks import parse_bar
from ftkit.errors import FtkitError

SRC = "recipe.yaml"


def minimal(**extra: Any) -> dict[str, Any]:
    """The smallest valid config mapping, plus any keys given."""
    return {"name": "demo", "task": "sequence-classification", "model": "tiny-bert", **extra}


def build(**extra: Any) -> RunConfig:
    return from_dict(minimal(**extra), SRC)


def error_of(fn, *args: Any) -> str:
    with pytest.raises(FtkitError) as info:
        fn(*args)
    assert info.value.exit_code == 2  # bad input: the user can fix the command
    return info.value.message


# ---------------------------------------------------------------------------- from_dict


def test_from_dict_fills_defaults_and_types_every_section():
    config = build()
    assert (config.name, config.task, config.model) == ("demo", "sequence-classification", "tiny-bert")
    assert config.data == DataConfig()
    assert config.train == TrainConfig()
    assert config.train.learning_rate == 2e-5 and config.train.mixed_precision == "auto"
    assert config.metrics.primary == "accuracy" and config.metrics.greater_is_better is True
    assert config.expect == {}


def test_from_dict_coerces_values_whose_intent_is_clear():
    config = build(
        data={"labels": "neg, pos", "validation_split": "null", "max_train_samples": "100", "validation_fraction": 0},
        train={"learning_rate": "2e-5", "epochs": 2.0, "batch_size": "+8", "max_grad_norm": 1, "mixed_precision": "bf16"},
        metrics={"greater_is_better": "no"},
        generation={"do_sample": "true", "num_beams": "4"},
        expect={"accuracy": ">= 0.9", "f1": "<0.5"},
    )
    assert config.data.labels == ["neg", "pos"]
    assert config.data.validation_split is None
    assert config.data.max_train_samples == 100
    assert config.data.validation_fraction == 0.0 and isinstance(config.data.validation_fraction, float)
    assert config.train.learning_rate == 2e-5
    assert config.train.epochs == 2 and isinstance(config.train.epochs, int)
    assert config.train.batch_size == 8
    assert config.train.max_grad_norm == 1.0 and isinstance(config.train.max_grad_norm, float)
    assert config.train.mixed_precision == "bf16"
    assert config.metrics.greater_is_better is False
    assert config.generation.do_sample is True and config.generation.num_beams == 4
    assert config.expect == {"accuracy": ">= 0.9", "f1": "<0.5"}


def test_from_dict_null_section_keeps_defaults():
    assert build(train=None).train == TrainConfig()


def test_yaml_no_for_mixed_precision_means_the_string_no():
    """YAML 1.1 reads a bare `no` as False; `mixed_precision: no` is the documented value."""
    config = from_dict(yaml.safe_load("name: d\ntask: causal-lm\nmodel: m\ntrain:\n  mixed_precision: no\n"), SRC)
    assert config.train.mixed_precision == "no"


def test_to_dict_round_trips_through_yaml():
    """config.yaml in a run folder reruns the run: dump, load, rebuild gives the same config."""
    config = build(
        data={"labels": ["a", "b"], "train": "/data/train.csv", "test_fraction": 0.1},
        train={"mixed_precision": "no", "learning_rate": 3e-5, "max_steps": 7},
        expect={"per_class.spam.f1": ">= 0.9"},
    )
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    assert from_dict(yaml.safe_load(text), "config.yaml") == config


@pytest.mark.parametrize("data, expected", [(None, "nothing"), ([1, 2], "list"), ("name: x", "str"), (3, "int")])
def test_from_dict_rejects_a_non_mapping(data, expected):
    message = error_of(from_dict, data, SRC)
    assert message == f"{SRC}: expected a YAML mapping of config keys, got {expected}"


def test_unknown_top_level_key_suggests_the_closest_and_lists_valid_keys():
    message = error_of(from_dict, minimal(trian={"epochs": 1}), SRC)
    assert message.startswith(f"{SRC}: unknown key 'trian'. Did you mean 'train'?")
    sections = ", ".join(f.name for f in dataclasses.fields(RunConfig))  # every top-level key, in declared order
    assert f"Valid keys: {sections}" in message and sections.startswith("name, task, model, description, data, train")


def test_unknown_nested_key_names_its_section_and_the_closest():
    message = error_of(from_dict, minimal(train={"learning_rat": 1e-4}), SRC)
    assert "unknown key 'train.learning_rat'. Did you mean 'learning_rate'?" in message
    assert "Valid keys under train: epochs, max_steps, batch_size" in message


def test_unknown_key_far_from_any_gets_no_guess_but_the_list():
    message = error_of(from_dict, minimal(zzzzzz=1), SRC)
    assert "Did you mean" not in message
    assert "unknown key 'zzzzzz'" in message and "Valid keys: name, task" in message


def test_missing_required_keys_are_all_named():
    message = error_of(from_dict, {"name": "x"}, SRC)
    assert message == f"{SRC}: missing required key(s): task, model"


def test_section_that_is_not_a_mapping():
    assert error_of(from_dict, minimal(train=5), SRC) == f"{SRC}: 'train' must be a mapping, got int"


@pytest.mark.parametrize(
    "extra, fragment",
    [
        ({"train": {"epochs": "three"}}, "'train.epochs' must be an integer, got 'three'"),
        ({"train": {"epochs": 2.5}}, "'train.epochs' must be an integer, got 2.5"),
        ({"train": {"batch_size": True}}, "'train.batch_size' must be an integer, got True"),
        ({"train": {"learning_rate": "fast"}}, "'train.learning_rate' must be a finite number, got 'fast'"),
        ({"train": {"learning_rate": False}}, "'train.learning_rate' must be a finite number, got False"),
        ({"generation": {"do_sample": "maybe"}}, "'generation.do_sample' must be true or false, got 'maybe'"),
        ({"data": {"labels": 3}}, "'data.labels' must be a list, got int"),
        ({"data": {"labels": ["a", ["b"]]}}, "'data.labels[1]' must be a string, got list"),
        ({"data": {"text_column": {"a": 1}}}, "'data.text_column' must be a string, got dict"),
        ({"expect": ">= 0.9"}, "'expect' must be a mapping, got str"),
        ({"model": None}, "'model' must be a string, got nothing"),
    ],
)
def test_wrong_types_name_the_dotted_key_and_the_value(extra, fragment):
    message = error_of(from_dict, minimal(**extra), SRC)
    assert message == f"{SRC}: {fragment}"


def test_task_typo_lists_families_and_suggests_the_closest():
    message = error_of(from_dict, minimal(task="sequence-clasification"), SRC)
    assert "'task' must be one of sequence-classification, token-classification, seq2seq, causal-lm" in message
    assert message.endswith("Did you mean 'sequence-classification'?")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "nan", "-inf", "1e999", pytest.param(10**400, id="10**400")])
def test_non_finite_numbers_are_rejected(value):
    message = error_of(from_dict, minimal(train={"learning_rate": value}), SRC)
    assert message == f"{SRC}: 'train.learning_rate' must be a finite number, got {value!r}"


# ---------------------------------------------------------------------------- coerce


@pytest.mark.parametrize(
    "value, hint, expected",
    [
        ("7", int, 7),
        (" -3 ", int, -3),
        (4.0, int, 4),
        ("1e-3", float, 0.001),
        (3, float, 3.0),
        ("YES", bool, True),
        ("0", bool, False),
        (12, str, "12"),
        ("None", int | None, None),
        ("~", str | None, None),
        (None, float | None, None),
        ("5", int | None, 5),
        ("a,, b ,c", list[str], ["a", "b", "c"]),
        ({"acc": ">= 1", 2: "< 3"}, dict[str, str], {"acc": ">= 1", "2": "< 3"}),
        ("fp16", Literal["no", "fp16"], "fp16"),
    ],
)
def test_coerce_converts(value, hint, expected):
    result = coerce(value, hint, "k", SRC)
    assert result == expected and type(result) is type(expected)


def test_coerce_refuses_an_integer_too_long_to_convert():
    message = error_of(coerce, "9" * 5000, int, "train.seed", SRC)
    assert "'train.seed' must be an integer" in message


def test_coerce_unsupported_type_is_an_ftkit_bug_not_user_error():
    with pytest.raises(TypeError, match="unsupported config type"):
        coerce(1, complex, "k", SRC)


# ---------------------------------------------------------------------------- check


@pytest.mark.parametrize(
    "extra, fragment",
    [
        ({"name": "my run"}, "'name' must be a simple identifier"),
        ({"name": "-x"}, "'name' must be a simple identifier"),
        ({"model": "  "}, "'model' is empty: pass --model NAME_OR_PATH"),
        ({"train": {"batch_size": 0}}, "'train.batch_size' must be a positive integer, got 0"),
        ({"train": {"max_length": -1}}, "'train.max_length' must be a positive integer, got -1"),
        ({"train": {"max_steps": 0}}, "'train.max_steps' must be a positive integer, got 0"),
        ({"train": {"eval_batch_size": 0}}, "'train.eval_batch_size' must be a positive integer"),
        ({"data": {"max_eval_samples": -5}}, "'data.max_eval_samples' must be a positive integer, got -5"),
        ({"generation": {"num_beams": 0}}, "'generation.num_beams' must be a positive integer"),
        ({"train": {"epochs": 0}}, "'train.epochs' must be positive, got 0 (or set train.max_steps)"),
        ({"train": {"learning_rate": 0}}, "'train.learning_rate' must be positive, got 0.0"),
        ({"train": {"weight_decay": -0.1}}, "'train.weight_decay' must not be negative, got -0.1"),
        ({"train": {"warmup_ratio": 1}}, "'train.warmup_ratio' must be below 1, got 1.0"),
        ({"data": {"validation_fraction": 1}}, "'data.validation_fraction' must be in [0, 1), got 1.0"),
        ({"data": {"test_fraction": -0.1}}, "'data.test_fraction' must be in [0, 1), got -0.1"),
        (
            {"data": {"validation_fraction": 0.5, "test_fraction": 0.5}},
            "'data.validation_fraction' + 'data.test_fraction' must leave rows to train on",
        ),
        ({"data": {"labels": ["a", "b", "a"]}}, "'data.labels' has duplicates: ['a', 'b', 'a']"),
        ({"expect": {"accuracy": "at least 0.9"}}, "expect bar 'at least 0.9' is not of the form '>= 0.91'"),
        ({"task": "seq2seq"}, "seq2seq needs 'data.target_column' (or data.source_lang and data.target_lang)"),
    ],
)
def test_check_names_the_key_to_change(extra, fragment):
    message = error_of(from_dict, minimal(**extra), SRC)
    assert message.startswith(f"{SRC}: ")  # from_dict adds the source to check()'s message
    assert fragment in message


def test_check_accepts_the_documented_escape_hatches():
    assert build(train={"epochs": 0, "max_steps": 10}).train.max_steps == 10
    assert build(train={"max_grad_norm": 0, "warmup_ratio": 0}).train.max_grad_norm == 0.0
    assert build(task="seq2seq", data={"target_column": "summary"}).data.target_column == "summary"
    assert build(task="seq2seq", data={"source_lang": "en", "target_lang": "de"}).data.target_lang == "de"
    assert build(name="a.b-c_1").name == "a.b-c_1"


def test_constructing_a_run_config_directly_runs_the_checks():
    with pytest.raises(FtkitError, match="'train.batch_size' must be a positive integer"):
        RunConfig(name="x", task="causal-lm", model="m", train=TrainConfig(batch_size=0))


# ---------------------------------------------------------------------------- parse_bar


@pytest.mark.parametrize(
    "bar, expected",
    [
        (">= 0.91", (">=", 0.91)),
        (">0.5", (">", 0.5)),
        ("  <=  1e-3 ", ("<=", 0.001)),
        ("< .5", ("<", 0.5)),
        ("== -2", ("==", -2.0)),
        ("== 3.", ("==", 3.0)),
        (">= +1.5E2", (">=", 150.0)),
    ],
)
def test_parse_bar(bar, expected):
    assert parse_bar(bar) == expected


@pytest.mark.parametrize("bar", ["0.9", "=> 0.9", ">= ", ">= 0.9 extra", "!= 1", ">= nan", ""])
def test_parse_bar_rejects_with_the_form_and_operators(bar):
    message = error_of(parse_bar, bar)
    assert message == f"expect bar {bar!r} is not of the form '>= 0.91' (operators: >= > <= < ==)"


# ---------------------------------------------------------------------------- resolve_key / parse_set


@pytest.mark.parametrize(
    "key, expected",
    [
        ("train.learning_rate", "train.learning_rate"),
        ("learning_rate", "train.learning_rate"),
        ("text_column", "data.text_column"),
        ("num_beams", "generation.num_beams"),
        ("model", "model"),
        ("expect.accuracy", "expect.accuracy"),
        ("expect.per_class.spam.f1", "expect.per_class.spam.f1"),
    ],
)
def test_resolve_key(key, expected):
    assert resolve_key(key) == expected


def test_resolve_key_unknown_suggests_the_closest_and_lists_every_key():
    message = error_of(resolve_key, "learnin_rate")
    assert message.startswith("unknown config key 'learnin_rate'. Did you mean")
    assert "learning_rate" in message.split("Valid keys:")[0]
    listed = message.split("Valid keys: ", 1)[1].split(", ")
    assert listed == list(all_keys())


def test_every_leaf_name_is_unique_so_short_keys_are_unambiguous():
    leaves = [k.rsplit(".", 1)[-1] for k in all_keys()]
    assert len(leaves) == len(set(leaves))
    assert all(resolve_key(leaf) == key for leaf, key in zip(leaves, all_keys()))


def test_parse_set_reads_yaml_scalars_and_lists():
    parsed = parse_set(
        [
            "train.warmup_ratio=0.06",
            "epochs=2",
            "do_sample=true",
            "labels=[neg, pos]",
            "name = x=y",
            "test=",
            "prefix='a: b'",
        ]
    )
    assert parsed == {
        "train.warmup_ratio": 0.06,
        "epochs": 2,
        "do_sample": True,
        "labels": ["neg", "pos"],
        "name": "x=y",  # only the first '=' splits; the value is YAML
        "test": None,
        "prefix": "a: b",
    }


def test_parse_set_keeps_invalid_yaml_as_the_raw_string():
    assert parse_set(["prefix=[unclosed", "name=a: b: c"]) == {"prefix": "[unclosed", "name": "a: b: c"}


@pytest.mark.parametrize("raw", ["2024-13-45", "9" * 5000, "[" * 3000])
def test_parse_set_values_yaml_cannot_construct_stay_strings(raw):
    assert parse_set([f"name={raw}"]) == {"name": raw}


@pytest.mark.parametrize("pair", ["epochs", "=3", "  =3", ""])
def test_parse_set_without_key_value_shows_an_example(pair):
    message = error_of(parse_set, [pair])
    assert message == f"--set expects key=value, got '{pair}' (e.g. --set train.warmup_ratio=0.06)"


# ---------------------------------------------------------------------------- apply_overrides


def test_apply_overrides_returns_a_new_checked_config():
    base = build(expect={"accuracy": ">= 0.9"})
    new = apply_overrides(
        base,
        parse_set(["learning_rate=5e-5", "data.labels=a,b", "max_steps=null", "mixed_precision=no", "seed=7"]),
        "command line",
    )
    assert new.train.learning_rate == 5e-5
    assert new.data.labels == ["a", "b"]
    assert new.train.mixed_precision == "no"
    assert new.train.seed == 7
    assert base.train.learning_rate == 2e-5 and base.data.labels is None  # the original is untouched
    assert new.expect == {"accuracy": ">= 0.9"}


def test_apply_overrides_sets_expect_bars_for_dotted_metric_names():
    base = build(expect={"per_class.spam.f1": ">= 0.90"})
    new = apply_overrides(base, parse_set(["expect.per_class.spam.f1=>= 0.95", "expect.accuracy=> 0.5"]), "command line")
    assert new.expect == {"per_class.spam.f1": ">= 0.95", "accuracy": "> 0.5"}


def test_apply_overrides_runs_the_checks_again():
    message = error_of(apply_overrides, build(), {"batch_size": 0}, "command line")
    assert message == "command line: 'train.batch_size' must be a positive integer, got 0; set it with --batch-size N (or --set train.batch_size=N)"


def test_apply_overrides_unknown_key():
    message = error_of(apply_overrides, build(), {"train.epoch": 1}, "command line")
    assert message.startswith("unknown config key 'train.epoch'. Did you mean 'train.epochs'?")


def test_apply_overrides_bad_expect_bar():
    message = error_of(apply_overrides, build(), {"expect.f1": "high"}, "command line")
    assert "expect bar 'high' is not of the form '>= 0.91'" in message


# ---------------------------------------------------------------------------- load_yaml_file


def test_load_yaml_file_missing(tmp_path: Path):
    path = tmp_path / "nope.yaml"
    assert error_of(load_yaml_file, path) == f"{path}: no such file"


def test_load_yaml_file_syntax_error_names_line_and_column(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntrain:\n  epochs: [1, 2\n", encoding="utf-8")
    message = error_of(load_yaml_file, path)
    assert message.startswith(f"{path}: invalid YAML (line ")
    assert "column" in message and "\n" not in message


def test_load_yaml_file_not_utf8(tmp_path: Path):
    path = tmp_path / "latin.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert error_of(load_yaml_file, path) == f"{path}: not valid UTF-8 text (byte 0xe9), an encoding problem; save the file as UTF-8"
